/**
 * Model-checked random histories: fast-check generates sequences of put / patch / delete /
 * deletePrefix / deleteRange / mutateAll / get / getBatch / getPrefix / countPrefix /
 * streamTrim / expire and clock steps with random versions, ttls of a few milliseconds (so that
 * records expire within a history), keys full of `%`, `_`, `\`, unicode and prefixes of each
 * other, and values that break the rules now and then. The layer's own sweep is off: `expire`
 * commands sweep. Each history runs on a backend and on
 * the model in `support/storeModel.ts`; every result, the final records and the stream must
 * agree. A failure prints the history shrunk to its smallest form. Fixed seed, bounded number
 * of runs: the same histories on every run.
 */
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { afterAll } from "vitest"
import {
  type KvRecord,
  Mutation,
  type Mutation as MutationType,
  Store,
  type StoreService,
  type StreamRecord,
} from "../src/Store.js"
import {
  type Command,
  compareKeys,
  Model,
  type ModelRecord,
  type MutationSpec,
  type Outcome,
  type Page,
} from "./support/storeModel.js"

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

/** Pieces of keys: LIKE wildcards, escapes, multi-byte and astral characters, the last BMP one. */
const atoms = ["a", "b", "%", "_", "\\", "é", "😀", "\uffff", "/"] as const

/**
 * A small pool of keys, so that histories keep meeting the same keys (versions match, deletes
 * find something): LIKE wildcards, a backslash, multi-byte and astral characters, the last
 * BMP character, and keys that are prefixes of each other.
 */
const pool = [
  "a",
  "a%",
  "a_",
  "a\\",
  "a%b",
  "ab",
  "a/b",
  "é",
  "é😀",
  "😀",
  "\uffff",
  "\uffff😀",
  "%",
  "_",
  "\\",
]

/** Now and then a key made of the same atoms, outside the pool. */
const composedKey = fc
  .array(fc.constantFrom(...atoms), { minLength: 1, maxLength: 3 })
  .map((parts) => parts.join(""))

const invalidKey = fc.constantFrom(
  "",
  "a\u0000",
  "\u0000",
  "\ud800",
  "a\udfff",
  "k".repeat(1025),
  "é".repeat(513),
)

const key = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom(...pool) },
  { weight: 3, arbitrary: composedKey },
  { weight: 1, arbitrary: invalidKey },
)

const prefix = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.constantFrom("", "a", "a%", "a_", "a\\", "a/", "é", "😀", "\uffff", "%", "_", "\\", "b"),
  },
  { weight: 2, arbitrary: composedKey },
  { weight: 1, arbitrary: fc.constantFrom("*", "a\u0000", "\udc00") },
)

const version = fc.oneof(
  { weight: 3, arbitrary: fc.constant(-1) },
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom(-2, 1.5) },
)

const page = fc.option(
  fc.record(
    {
      offset: fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: 0, max: 3 }) },
        { weight: 1, arbitrary: fc.constant(-1) },
      ),
      limit: fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: -1, max: 3 }) },
        { weight: 1, arbitrary: fc.constant(-2) },
      ),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
) as fc.Arbitrary<Page | undefined>

const recordType = fc.option(fc.constantFrom("Thing", "Other", "all", "😀", "a\u0000"), {
  nil: undefined,
  freq: 3,
})

const memberName = fc.constantFrom("a", "b", "c", "%", "_", "\\", "é", "😀", "", "__proto__", "1")

const text = fc.oneof(
  fc
    .array(fc.constantFrom("a", "%", "_", "\\", "é", "😀", '"', "\n", "\u0001", " "), { maxLength: 4 })
    .map((p) => p.join("")),
  fc.constantFrom("a\u0000b", "\ud800", "x\udfff"), // refused
)

/** A JSON value nested `depth` deep: `[[...[0]...]]`. */
const nested = (depth: number): unknown => {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = [value]
  return value
}

const scalar = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -3, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  text,
)

const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { weight: 40, arbitrary: scalar },
    { weight: 10, arbitrary: fc.array(tie("value"), { maxLength: 3 }) },
    { weight: 20, arbitrary: fc.dictionary(memberName, tie("value"), { maxKeys: 3 }) },
    { weight: 1, arbitrary: fc.constantFrom(nested(100), nested(101)) },
  ),
}))

/** Mostly objects (members set to null delete); sometimes a non-object, which is refused. */
const patch = fc.oneof(
  { weight: 10, arbitrary: fc.dictionary(memberName, fc.oneof(fc.constant(null), value), { maxKeys: 3 }) },
  { weight: 1, arbitrary: value },
)

/** Mostly none; a few milliseconds (every command moves the clock by one); now and then refused. */
const ttl = fc.option(
  fc.oneof(
    { weight: 10, arbitrary: fc.integer({ min: 1, max: 8 }) },
    { weight: 1, arbitrary: fc.constantFrom(0, -1, 2.5) },
  ),
  { nil: undefined, freq: 2 },
)

const putCommand = fc.record(
  { op: fc.constant("put" as const), key, version, value, type: recordType, ttl },
  { requiredKeys: ["op", "key", "version", "value"] },
)
const patchCommand = fc.record(
  { op: fc.constant("patch" as const), key, version, patch, type: recordType, ttl },
  { requiredKeys: ["op", "key", "version", "patch"] },
)
const deleteOne = fc.record({ op: fc.constant("delete" as const), key })
const deletePrefixCommand = fc.record({ op: fc.constant("deletePrefix" as const), prefix, page })
const deleteRangeCommand = fc.record({
  op: fc.constant("deleteRange" as const),
  from: prefix,
  to: prefix,
  page,
})

const mutation: fc.Arbitrary<MutationSpec> = fc.oneof(
  { weight: 4, arbitrary: putCommand },
  { weight: 2, arbitrary: patchCommand },
  { weight: 1, arbitrary: deleteOne },
  { weight: 1, arbitrary: deletePrefixCommand },
  { weight: 1, arbitrary: deleteRangeCommand },
)

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: putCommand },
  { weight: 3, arbitrary: patchCommand },
  { weight: 1, arbitrary: deleteOne },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("deleteKeys" as const), keys: fc.array(key, { maxLength: 4 }) }),
  },
  { weight: 1, arbitrary: deletePrefixCommand },
  { weight: 1, arbitrary: deleteRangeCommand },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("getPrefix" as const), prefix, page }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("countPrefix" as const), prefix }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("getBatch" as const), keys: fc.array(key, { maxLength: 4 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("get" as const), key }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("mutateAll" as const),
      mutations: fc.array(mutation, { maxLength: 5 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("streamTrim" as const), back: fc.integer({ min: -1, max: 4 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("tick" as const), millis: fc.integer({ min: 1, max: 5 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("expire" as const) }) },
)

export const history = fc.array(command, { minLength: 1, maxLength: 40, size: "max" })

// ---------------------------------------------------------------------------------------------
// Running a command on the store
// ---------------------------------------------------------------------------------------------

const toMutation = (spec: MutationSpec): MutationType => {
  switch (spec.op) {
    case "put":
      return Mutation.put(spec.key, spec.version, spec.value, { type: spec.type, ttl: spec.ttl })
    case "patch":
      return Mutation.patch(spec.key, spec.version, spec.patch, { type: spec.type, ttl: spec.ttl })
    case "delete":
      return Mutation.delete(spec.key)
    case "deletePrefix":
      return Mutation.deletePrefix(spec.prefix, spec.page)
    case "deleteRange":
      return Mutation.deleteRange(spec.from, spec.to, spec.page)
  }
}

const plain = (record: KvRecord): ModelRecord => ({
  key: record.key,
  version: record.version,
  value: record.value,
  type: record.type,
  created: record.created.getTime(),
  ...(record.expiresAt === undefined ? {} : { expiresAt: record.expiresAt.getTime() }),
})

/** Runs a command on the store; a failure other than the two argument/version errors fails the test. */
const runOnStore = (
  store: StoreService,
  command: Command,
  latestSeq: number,
): Effect.Effect<Outcome, unknown> => {
  const answer = (effect: Effect.Effect<unknown, { readonly _tag: string }>) =>
    Effect.catchAll(
      Effect.map(effect, (ok): Outcome => ({ ok })),
      (error): Effect.Effect<Outcome, unknown> => {
        if (error._tag === "InvalidArgumentError") return Effect.succeed({ error: "InvalidArgumentError" })
        if (error._tag === "VersionMismatchError") {
          const { key, expected } = error as unknown as { key: string; expected: number }
          return Effect.succeed({ error: "VersionMismatchError", key, expected })
        }
        return Effect.fail(error)
      },
    )
  switch (command.op) {
    case "put":
      return answer(
        Effect.map(
          store.put(command.key, command.version, command.value, { type: command.type, ttl: command.ttl }),
          plain,
        ),
      )
    case "patch":
      return answer(
        Effect.map(
          store.patch(command.key, command.version, command.patch, { type: command.type, ttl: command.ttl }),
          plain,
        ),
      )
    case "delete":
      return answer(store.delete(command.key))
    case "deleteKeys":
      return answer(store.delete(...command.keys))
    case "deletePrefix":
      return answer(store.deletePrefix(command.prefix, command.page))
    case "deleteRange":
      return answer(store.deleteRange(command.from, command.to, command.page))
    case "countPrefix":
      return answer(store.countPrefix(command.prefix))
    case "getBatch":
      return answer(
        Effect.map(store.getBatch(command.keys), (found) =>
          [...found.values()].sort((a, b) => compareKeys(a.key, b.key)).map(plain),
        ),
      )
    case "get":
      return answer(Effect.map(store.get(command.key), (found) => Option.getOrNull(Option.map(found, plain))))
    case "getPrefix":
      return answer(
        Effect.map(store.getPrefix(command.prefix, command.page), (records) => records.map(plain)),
      )
    case "mutateAll":
      return answer(store.mutateAll(command.mutations.map(toMutation)))
    case "streamTrim": {
      const seq = latestSeq - command.back
      return answer(Effect.map(store.streamTrim(seq), (trimmed) => ({ seq, trimmed })))
    }
    case "tick":
      return Effect.as(TestClock.adjust(command.millis), { ok: null })
    case "expire":
      return answer(store.expire())
  }
}

const plainStream = (records: ReadonlyArray<StreamRecord>) =>
  records.map((r) => ({ seq: r.seq, action: r.action, record: plain(r.record) }))

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

export interface ModelOptions {
  /** Histories to check. */
  readonly runs: number
  readonly seed?: number
}

/** How many histories were checked, and the longest; printed when the suite ends. */
const checked = { histories: 0, longest: 0, commands: 0 }

export const storeModelSuite = (
  name: string,
  backend: Layer.Layer<Store, unknown>,
  options: ModelOptions,
) => {
  afterAll(() => {
    console.log(
      `${name}: ${checked.histories} random histories agreed with the model ` +
        `(${checked.commands} commands, the longest ${checked.longest})`,
    )
  })
  layer(backend, { timeout: "5 minutes" })(name, (it) => {
    it.effect.prop(
      "random histories agree with the model: every result, the records and the stream",
      { history },
      ({ history }) =>
        Effect.gen(function* () {
          const store = yield* Store
          // start from an empty store (seq numbers go on)
          yield* store.deletePrefix("*")
          yield* store.expire() // what the last history left expired
          yield* store.streamTrim(yield* store.streamSeq())
          const model = new Model((yield* store.streamSeq()) + 1)
          const first = model.nextSeq
          for (const [step, command] of history.entries()) {
            yield* TestClock.adjust("1 millis")
            // a tick moves the clock first, so that the model runs at the time the store will
            const now = (yield* Clock.currentTimeMillis) + (command.op === "tick" ? command.millis : 0)
            const latest = model.nextSeq - 1
            const expected = model.run(command, now)
            const actual = yield* runOnStore(store, command, latest)
            assert.deepStrictEqual(actual, expected, `step ${step}: ${JSON.stringify(command)}`)
          }
          const now = yield* Clock.currentTimeMillis
          const records = (yield* store.list()).map(plain)
          assert.deepStrictEqual(
            records,
            model.sortedKeys(now).map((key) => model.records.get(key)!),
            "the records at the end",
          )
          assert.deepStrictEqual(
            plainStream(yield* store.stream("all", first)),
            model.stream,
            "the stream at the end",
          )
          checked.histories++
          checked.commands += history.length
          checked.longest = Math.max(checked.longest, history.length)
        }),
      {
        timeout: 600_000,
        fastCheck: {
          // CI: fixed; to explore, KV_MODEL_SEED=<n> KV_MODEL_RUNS=<n> npx vitest run test/StoreModel.*
          numRuns: Number(process.env.KV_MODEL_RUNS ?? options.runs),
          seed: Number(process.env.KV_MODEL_SEED ?? options.seed ?? 9090),
        },
      },
    )
  })
}
