/**
 * Event-sourced processing of a record: a state, inbound events applied to it one by one by a
 * `process` function (each step giving the next state and outbound events), an Effect `Schema`
 * for the state and the events, and an audit trail of every event.
 *
 * `process(id, events)` reads the stored state, applies the events in order and writes, in ONE
 * `mutateAll`, the new state (checked against the version it read) and every inbound and
 * outbound event of the call (each insert-only, so the trail is never overwritten). Another
 * writer that got there first makes it fail with `VersionMismatchError` and write nothing;
 * since each call reads afresh, retrying it (`Effect.retry({ while: (e) => e._tag ===
 * "VersionMismatchError" })`) applies the events to the newer state.
 *
 * Keys (an `id` may contain `/`: `cart/42`):
 *
 * ```text
 * <id>/_state                                   the state; its record version is the machine's version
 * <id>/events/<version>/<n>/in                  the n-th inbound event of the call that wrote <version>
 * <id>/events/<version>/<n>/out/<m>             the m-th outbound event that inbound event produced
 * ```
 *
 * `<version>` is 16 digits and `<n>`, `<m>` 10 digits, zero-padded, so that a prefix read of
 * `<id>/events/` lists the trail in the order it happened: by version, and within a call each
 * inbound event followed by the outbound events it produced.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as Arg from "./Arguments.js"
import {
  InvalidArgumentError,
  type KvRecord,
  Mutation,
  Store,
  type StoreError,
  type VersionMismatchError,
} from "./Store.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** What one step of `process` gives: the next state and the events to send out. */
export interface Step<S, O> {
  readonly state: S
  readonly outbound: ReadonlyArray<O>
}

/** A machine's stored state. `version` is 0 before anything was stored (then `state` is `initial`). */
export interface Snapshot<S> {
  readonly id: string
  readonly state: S
  readonly version: number
}

/** What `process` wrote: the new state and version, and every outbound event of the call in order. */
export interface Processed<S, O> extends Snapshot<S> {
  readonly outbound: ReadonlyArray<O>
}

/** One event of the audit trail. */
export type AuditEntry<E, O> =
  | {
      readonly key: string
      readonly direction: "inbound"
      /** The version the call wrote. */
      readonly version: number
      /** Its place among the inbound events of the call. */
      readonly index: number
      readonly event: E
      readonly created: Date
    }
  | {
      readonly key: string
      readonly direction: "outbound"
      readonly version: number
      /** The inbound event (its `index`) that produced it. */
      readonly index: number
      /** Its place among the outbound events of that inbound event. */
      readonly outboundIndex: number
      readonly event: O
      readonly created: Date
    }

type Fails<A, E = never, R = never> = Effect.Effect<
  A,
  E | InvalidArgumentError | StoreError | ParseResult.ParseError,
  R
>

export interface StateMachine<S, E, O, PE, PR> {
  /** The machine's name: the record type of its states (events: `<name>.inbound`, `<name>.outbound`). */
  readonly name: string
  /** The stored state of `id`, or `initial` at version 0. */
  readonly load: (id: string) => Fails<Snapshot<S>>
  /**
   * Applies `events` in order to the stored state and writes the result with one version-checked
   * `mutateAll`; nothing is written when `process` fails, an event or the state does not encode,
   * or another writer changed the state since it was read (`VersionMismatchError`). No events:
   * nothing is written, the stored state is returned.
   */
  readonly process: (
    id: string,
    events: ReadonlyArray<E>,
  ) => Fails<Processed<S, O>, PE | VersionMismatchError, PR>
  /** The audit trail of `id`, in order (every event of every call). */
  readonly history: (id: string) => Fails<ReadonlyArray<AuditEntry<E, O>>>
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

const versionDigits = 16
const indexDigits = 10
const pad = (n: number, width: number) => String(n).padStart(width, "0")

export const stateKey = (id: string) => `${id}/_state`
const eventsPrefix = (id: string) => `${id}/events/`
const callPrefix = (id: string, version: number, index: number) =>
  `${eventsPrefix(id)}${pad(version, versionDigits)}/${pad(index, indexDigits)}`
export const inboundKey = (id: string, version: number, index: number) =>
  `${callPrefix(id, version, index)}/in`
export const outboundKey = (id: string, version: number, index: number, outboundIndex: number) =>
  `${callPrefix(id, version, index)}/out/${pad(outboundIndex, indexDigits)}`

/** What follows `<id>/events/` in an event key; other keys there belong to ids nested under it. */
const eventSuffix = new RegExp(
  `^(\\d{${versionDigits}})/(\\d{${indexDigits}})/(?:in|out/(\\d{${indexDigits}}))$`,
)

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

interface Schemas<S, SI, E, EI, O, OI> {
  readonly state: Schema.Schema<S, SI>
  readonly event: Schema.Schema<E, EI>
  /** Outbound events; absent: any JSON. */
  readonly outbound?: Schema.Schema<O, OI>
}

export interface Options<S, SI, E, EI, O, OI, PE, PR> {
  /** The machine's name (default: the state Schema's identifier, else `StateMachine`). */
  readonly id?: string | undefined
  /** The state of an id nothing was stored for yet. */
  readonly initial: NoInfer<S>
  readonly schema: Schemas<S, SI, E, EI, O, OI>
  readonly process: (state: S, event: E) => Effect.Effect<Step<NoInfer<S>, NoInfer<O>>, PE, PR>
}

/** The Schema's identifier (of its type side for a transformation such as a Class). */
const identifierOf = (schema: Schema.Schema.Any): Option.Option<string> =>
  Option.orElse(SchemaAST.getIdentifierAnnotation(schema.ast), () =>
    SchemaAST.isTransformation(schema.ast) ? SchemaAST.getIdentifierAnnotation(schema.ast.to) : Option.none(),
  )

const decodeName = Arg.decoder(Arg.RecordType)
const decodeIdText = Arg.decoder(Arg.name("state machine id"))

/** The id, refused when its longest key would exceed what every backend can store. */
const decodeId = (id: string) =>
  Effect.flatMap(decodeIdText(id), (checked) => {
    const bytes = Buffer.byteLength(outboundKey(checked, 0, 0, 0))
    return bytes <= Arg.maxNameBytes
      ? Effect.succeed(checked)
      : Effect.fail(
          new InvalidArgumentError({
            message: `state machine id is too long: its event keys would be ${bytes} bytes of UTF-8, at most ${Arg.maxNameBytes}`,
          }),
        )
  })

/** A failure of `schema` on the value at `key`, naming the key. */
const atKey = (key: string, actual: unknown) => (issue: ParseResult.ParseIssue) =>
  new ParseResult.ParseError({ issue: new ParseResult.Pointer(key, actual, issue) })

/**
 * A state machine over the store. Without `schema.outbound`, outbound events are stored as
 * the JSON they are and read back as `unknown`.
 */
export function make<S, SI, E, EI, O, OI, PE = never, PR = never>(
  options: Options<S, SI, E, EI, O, OI, PE, PR> & {
    readonly schema: { readonly outbound: Schema.Schema<O, OI> }
  },
): Effect.Effect<StateMachine<S, E, O, PE, PR>, InvalidArgumentError, Store>
export function make<S, SI, E, EI, PE = never, PR = never>(
  options: Options<S, SI, E, EI, unknown, unknown, PE, PR>,
): Effect.Effect<StateMachine<S, E, unknown, PE, PR>, InvalidArgumentError, Store>
export function make<S, SI, E, EI, O, OI, PE, PR>(
  options: Options<S, SI, E, EI, O, OI, PE, PR>,
): Effect.Effect<StateMachine<S, E, O, PE, PR>, InvalidArgumentError, Store> {
  return Effect.gen(function* () {
    const store = yield* Store
    const name = yield* decodeName(
      options.id ?? Option.getOrElse(identifierOf(options.schema.state), () => "StateMachine"),
    )
    const types = { state: name, inbound: `${name}.inbound`, outbound: `${name}.outbound` }
    const outboundSchema = (options.schema.outbound ?? Schema.Unknown) as Schema.Schema<O, unknown>
    const decodeState = ParseResult.decodeUnknown(options.schema.state)
    const encodeState = ParseResult.encode(options.schema.state)
    const decodeEvent = ParseResult.decodeUnknown(options.schema.event)
    const encodeEvent = ParseResult.encode(options.schema.event)
    const decodeOutbound = ParseResult.decodeUnknown(outboundSchema)
    const encodeOutbound = ParseResult.encode(outboundSchema)

    const loadChecked = (id: string) =>
      Effect.gen(function* () {
        const key = stateKey(id)
        const record = yield* store.get(key)
        if (Option.isNone(record)) return { id, state: options.initial, version: 0 }
        const state = yield* Effect.mapError(decodeState(record.value.value), atKey(key, record.value.value))
        return { id, state, version: record.value.version }
      })

    const load = (id: string) =>
      Effect.flatMap(decodeId(id), loadChecked).pipe(
        Effect.withSpan("StateMachine.load", { attributes: { name, id } }),
      )

    const process = (id: string, events: ReadonlyArray<E>) =>
      Effect.gen(function* () {
        const checkedId = yield* decodeId(id)
        const current = yield* loadChecked(checkedId)
        if (events.length === 0) return { ...current, outbound: [] }
        const version = current.version + 1
        let state = current.state
        const mutations: Array<Mutation> = []
        const outbound: Array<O> = []
        for (const [index, event] of events.entries()) {
          const step = yield* options.process(state, event)
          state = step.state
          const inKey = inboundKey(checkedId, version, index)
          const encoded = yield* Effect.mapError(encodeEvent(event), atKey(inKey, event))
          mutations.push(Mutation.put(inKey, 0, encoded, { type: types.inbound }))
          for (const [outboundIndex, out] of step.outbound.entries()) {
            const outKey = outboundKey(checkedId, version, index, outboundIndex)
            const encodedOut = yield* Effect.mapError(encodeOutbound(out), atKey(outKey, out))
            mutations.push(Mutation.put(outKey, 0, encodedOut, { type: types.outbound }))
            outbound.push(out)
          }
        }
        const key = stateKey(checkedId)
        const encodedState = yield* Effect.mapError(encodeState(state), atKey(key, state))
        // the state first: a concurrent writer is reported on the state key, and nothing is written
        yield* store.mutateAll([
          Mutation.put(key, current.version, encodedState, { type: types.state }),
          ...mutations,
        ])
        return { id: checkedId, state, version, outbound }
      }).pipe(Effect.withSpan("StateMachine.process", { attributes: { name, id, events: events.length } }))

    /** One record of the trail; `undefined` for a key of an id nested under this one. */
    const entryOf = (id: string, record: KvRecord) => {
      const match = eventSuffix.exec(record.key.slice(eventsPrefix(id).length))
      if (match === null) return Effect.succeed(undefined)
      const version = Number(match[1])
      const index = Number(match[2])
      const fail = atKey(record.key, record.value)
      return match[3] === undefined
        ? Effect.map(
            Effect.mapError(decodeEvent(record.value), fail),
            (event): AuditEntry<E, O> => ({
              key: record.key,
              direction: "inbound",
              version,
              index,
              event,
              created: record.created,
            }),
          )
        : Effect.map(
            Effect.mapError(decodeOutbound(record.value), fail),
            (event): AuditEntry<E, O> => ({
              key: record.key,
              direction: "outbound",
              version,
              index,
              outboundIndex: Number(match[3]),
              event,
              created: record.created,
            }),
          )
    }

    const history = (id: string) =>
      Effect.gen(function* () {
        const checkedId = yield* decodeId(id)
        const records = yield* store.getPrefix(eventsPrefix(checkedId))
        const entries = yield* Effect.forEach(records, (record) => entryOf(checkedId, record))
        return entries.filter((entry) => entry !== undefined)
      }).pipe(Effect.withSpan("StateMachine.history", { attributes: { name, id } }))

    return { name, load, process, history }
  })
}
