/**
 * `effect-kv/nats`: the change stream published to NATS JetStream (`NatsPusher.run`, and
 * `NatsPusher.layerConnection` for its connection). Needs the optional peers
 * `@nats-io/transport-node` and `@nats-io/jetstream`.
 */
export * as NatsPusher from "./NatsPusher.js"
