/**
 * `kv nats push`: runs the JetStream pusher (`NatsPusher.run`) until SIGINT/SIGTERM, then
 * releases the consumer's lock and exits 0. It prints nothing on stdout; connection changes and
 * retries are logged on stderr.
 *
 * The NATS client is loaded only when the command runs (`NatsPusher.ts` is a chunk of its own in
 * the bundle), so that other commands do not pay for it at start-up.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { MessageIdStreamName, SubjectPrefix } from "../NatsMessage.js"
import { InvalidArgumentError } from "../Store.js"
import { nameArg } from "./arguments.js"
import { layerFor } from "./backend.js"
import { MissingCommandError } from "./errors.js"
import { kv } from "./globals.js"
import { ofTypeOption, prefixFilterOption } from "./stream.js"

export const defaultNatsUrl = "nats://127.0.0.1:4222"

/** What `connect` takes from a `--nats-url`: the servers, and credentials given in the URL. */
export interface NatsTarget {
  readonly servers: ReadonlyArray<string>
  readonly user?: string
  readonly pass?: string
  readonly token?: string
}

/**
 * `nats://host:4222[,host:4222...]`, credentials as `nats://user:password@host` or
 * `nats://token@host` (the client does not read them from URLs: they are passed apart and left
 * out of every message).
 */
export const parseNatsUrl = (text: string): NatsTarget | InvalidArgumentError => {
  const servers: Array<string> = []
  let credentials: { user?: string; pass?: string; token?: string } = {}
  for (const part of text.split(",").map((part) => part.trim())) {
    const withScheme = part.includes("://") ? part : `nats://${part}`
    let url: URL
    try {
      url = new URL(withScheme)
    } catch {
      return new InvalidArgumentError({ message: `--nats-url: not a NATS URL: ${JSON.stringify(part)}` })
    }
    if (url.hostname === "") {
      return new InvalidArgumentError({ message: `--nats-url: not a NATS URL: ${JSON.stringify(part)}` })
    }
    if (url.username !== "" || url.password !== "") {
      const user = decodeURIComponent(url.username)
      credentials = url.password === "" ? { token: user } : { user, pass: decodeURIComponent(url.password) }
    }
    servers.push(`${url.protocol}//${url.host}`)
  }
  return { servers, ...credentials }
}

const natsUrlOption = Options.text("nats-url").pipe(
  Options.withPseudoName("url"),
  Options.withDescription(
    `The NATS server(s) (env NATS_URL; default ${defaultNatsUrl}): nats://host:4222[,host:4222...], ` +
      "credentials as nats://user:password@host:4222 or nats://token@host:4222.",
  ),
  Options.withFallbackConfig(Config.string("NATS_URL")),
  Options.withDefault(defaultNatsUrl),
)

const natsPush = Command.make(
  "push",
  {
    streamName: Args.text({ name: "stream-name" }).pipe(
      Args.withDescription(
        "The consumer (a named cursor over the stream); also the first part of each Nats-Msg-Id.",
      ),
      Args.withSchema(MessageIdStreamName),
    ),
    consumerName: nameArg(
      "consumer-name",
      "consumer name",
      "This instance: the holder of the consumer's lock.",
    ),
    natsUrl: natsUrlOption,
    subjectPrefix: Options.text("subject-prefix").pipe(
      Options.withDescription("The first token(s) of every subject, separated by dots (default kv)."),
      Options.withDefault("kv"),
      Options.withSchema(SubjectPrefix),
    ),
    ofType: ofTypeOption,
    prefix: prefixFilterOption,
  },
  ({ consumerName, natsUrl, ofType, prefix, streamName, subjectPrefix }) =>
    Effect.gen(function* () {
      const target = parseNatsUrl(natsUrl)
      if (target instanceof InvalidArgumentError) return yield* target
      const { connection, type } = yield* kv
      const NatsPusher = yield* Effect.promise(() => import("../NatsPusher.js"))
      const run = NatsPusher.run({
        streamName,
        consumerName,
        subjectPrefix,
        ofType,
        prefix,
      })
      yield* Effect.provide(
        run,
        Layer.merge(
          layerFor(type, connection, "long-running"),
          NatsPusher.layerConnection({
            ...target,
            servers: [...target.servers],
            name: `kv nats push ${streamName}`,
          }),
        ),
      )
    }),
).pipe(
  Command.withDescription(
    "Publish the change stream to NATS JetStream: each record (after the consumer's position) to " +
      "<subject-prefix>.<key segments>.<type>, with kv-* headers and Nats-Msg-Id <stream-name>:<seq>, " +
      "committed only once JetStream acknowledged it. Runs until SIGINT/SIGTERM, then releases the " +
      "consumer's lock and exits 0.",
  ),
)

export const nats = Command.make("nats", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv nats", expected: ["push"] })),
).pipe(
  Command.withDescription("NATS JetStream: publish the change stream."),
  Command.withSubcommands([natsPush]),
)
