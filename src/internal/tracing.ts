/**
 * Spans for the operations of a service, in one place: `traced(prefix, service, spec)` returns
 * the service with each operation wrapped in a span named `prefix.operation` (`kv.store.get`,
 * `kv.scheduler.lock`, `kv.consumer.commit`, ...), carrying the attributes `spec` derives from
 * its arguments: keys, prefixes, type names, task ids and names, stream and consumer names,
 * counts. Never values, payloads or connection strings: a spec sees the arguments, and each
 * one in this package picks only names and counts out of them.
 *
 * The spec lists every operation of the service (the compiler checks it), so an operation
 * added later cannot go untraced by accident; `false` leaves one out (subscriptions that last
 * as long as their scope: a span per wake-up source would only measure its life).
 *
 * A span costs several microseconds in Effect 3 (as much as a SQLite point read), so the spans
 * are only made when the application installed a tracer (`@effect/opentelemetry`'s layers,
 * `Effect.withTracer`, ...): under Effect's built-in tracer, which exports nothing, an operation
 * runs as it is, for the price of one look at the current tracer. They skip the stack trace
 * Effect captures by default (one `new Error()` per span).
 */
import * as Effect from "effect/Effect"
import type { SchedulerService } from "../Scheduler.js"
import type { Mutation, StoreService } from "../Store.js"

/** Span attributes: strings, numbers, booleans and arrays of them. */
export type Attributes = Readonly<Record<string, string | number | boolean | ReadonlyArray<string>>>

/** How one operation is traced: its attributes, and optionally attributes of its result. */
export type OperationSpec<Args extends ReadonlyArray<any>, A> =
  | false
  | ((...args: Args) => Attributes)
  | {
      readonly attributes: (...args: Args) => Attributes
      /** Attributes of the result (counts), added to the span when the operation succeeds. */
      readonly result?: ((a: A) => Attributes) | undefined
      /** The span's name after the prefix, when not the operation's. */
      readonly name?: string | undefined
    }

/** A spec for every operation of `S`: functions returning effects, and effects. */
export type Spec<S> = {
  readonly [K in keyof S]-?: S[K] extends (
    ...args: infer Args extends ReadonlyArray<any>
  ) => Effect.Effect<infer A, any, any>
    ? OperationSpec<Args, A>
    : S[K] extends Effect.Effect<infer A, any, any>
      ? OperationSpec<[], A>
      : false
}

const noAttributes: Attributes = {}

/** Effect's own tracer, the one of the default services: its spans go nowhere. */
const builtInTracer = Effect.runSync(Effect.tracer)

/** `effect` in a span when the application installed a tracer, else as it is (as `traced` does). */
export const withSpanWhenTraced =
  (name: string, options: { readonly attributes: Attributes }) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.tracerWith((tracer) =>
      tracer === builtInTracer
        ? effect
        : Effect.withSpan(effect, name, { attributes: options.attributes, captureStackTrace: false }),
    )

/** The service with every operation of `spec` in a span `prefix.name`. */
export const traced = <S extends object>(prefix: string, service: S, spec: Spec<S>): S => {
  const out: Record<string, unknown> = { ...(service as Record<string, unknown>) }
  for (const name of Object.keys(spec) as Array<keyof S & string>) {
    const operation = spec[name] as OperationSpec<ReadonlyArray<unknown>, unknown>
    const original = (service as Record<string, unknown>)[name]
    if (operation === false || original === undefined) continue
    const spanName = `${prefix}.${typeof operation === "function" ? name : (operation.name ?? name)}`
    const attributesOf = typeof operation === "function" ? operation : operation.attributes
    const resultOf = typeof operation === "function" ? undefined : operation.result
    const wrap = (effect: Effect.Effect<unknown, unknown, unknown>, args: ReadonlyArray<unknown>) =>
      Effect.tracerWith((tracer) =>
        tracer === builtInTracer
          ? effect
          : Effect.withSpan(
              resultOf === undefined
                ? effect
                : Effect.tap(effect, (a) =>
                    Effect.annotateCurrentSpan(resultOf(a) as Record<string, unknown>),
                  ),
              spanName,
              { attributes: attributesOf(...args), captureStackTrace: false },
            ),
      )
    out[name] =
      typeof original === "function"
        ? (...args: ReadonlyArray<unknown>) =>
            wrap((original as (...a: ReadonlyArray<unknown>) => Effect.Effect<unknown>)(...args), args)
        : wrap(original as Effect.Effect<unknown>, [])
  }
  return out as S
}

/** Attributes for no arguments. */
export const none = (): Attributes => noAttributes

/** At most this many keys are listed in an attribute (the count says how many there were). */
const listedKeys = 16

/** The keys of a call (the first 16) and how many there were. */
export const keysOf = (keys: Iterable<string>): Attributes => {
  const all: ReadonlyArray<string> = Array.isArray(keys)
    ? keys
    : typeof (keys as Partial<Iterable<string>> | null)?.[Symbol.iterator] === "function"
      ? Array.from(keys)
      : []
  return {
    "kv.keys": all.length > listedKeys ? all.slice(0, listedKeys) : all,
    "kv.key_count": all.length,
  }
}

/** A page's offset and limit, when given. */
export const pageOf = (
  page: { readonly offset?: number | undefined; readonly limit?: number | undefined } | undefined,
) =>
  page === undefined
    ? noAttributes
    : {
        ...(page.offset === undefined ? {} : { "kv.offset": page.offset }),
        ...(page.limit === undefined ? {} : { "kv.limit": page.limit }),
      }

/** The number of elements of an array result. */
export const countOf = (a: ReadonlyArray<unknown>): Attributes => ({ "kv.result_count": a.length })

// ---------------------------------------------------------------------------------------------
// The specs of this package's services
// ---------------------------------------------------------------------------------------------

/** The keys a batch of mutations names (prefixes and ranges by their bounds). */
const mutationAttributes = (mutations: ReadonlyArray<Mutation>): Attributes => {
  const keys: Array<string> = []
  const prefixes: Array<string> = []
  for (const mutation of Array.isArray(mutations) ? mutations : []) {
    switch (mutation?._tag) {
      case "Put":
      case "Patch":
      case "Delete":
      case "Check":
      case "Increment":
        keys.push(mutation.key)
        break
      case "DeletePrefix":
        prefixes.push(mutation.prefix)
        break
      case "DeleteRange":
        prefixes.push(`${mutation.from}..${mutation.to}`)
        break
    }
  }
  return {
    "kv.mutation_count": Array.isArray(mutations) ? mutations.length : 0,
    ...keysOf(keys),
    ...(prefixes.length > 0 ? { "kv.prefixes": prefixes.slice(0, listedKeys) } : {}),
  }
}

const typeOption = (options: { readonly type?: string | undefined } | undefined): Attributes =>
  options?.type === undefined ? noAttributes : { "kv.type": options.type }

const affected = (n: number): Attributes => ({ "kv.result_count": n })

/** `kv.store.*`: keys, prefixes, bounds, types, versions, lock names and holders; never values. */
export const storeSpec: Spec<StoreService> = {
  init: none,
  get: (key) => ({ "kv.key": key }),
  getBatch: { attributes: keysOf, result: (found) => ({ "kv.result_count": found.size }) },
  getPrefix: {
    attributes: (prefix, page, options) => ({ "kv.prefix": prefix, ...pageOf(page), ...typeOption(options) }),
    result: countOf,
  },
  getRange: {
    attributes: (from, to, page) => ({ "kv.from": from, "kv.to": to, ...pageOf(page) }),
    result: countOf,
  },
  getType: { attributes: (type, page) => ({ "kv.type": type, ...pageOf(page) }), result: countOf },
  list: { attributes: pageOf, result: countOf },
  put: (key, version, _value, options) => ({ "kv.key": key, "kv.version": version, ...typeOption(options) }),
  patch: (key, version, _patch, options) => ({
    "kv.key": key,
    "kv.version": version,
    ...typeOption(options),
  }),
  increment: (key) => ({ "kv.key": key }),
  delete: { attributes: (...keys) => keysOf(keys), result: affected },
  deletePrefix: {
    attributes: (prefix, page) => ({ "kv.prefix": prefix, ...pageOf(page) }),
    result: affected,
  },
  deleteRange: {
    attributes: (from, to, page) => ({ "kv.from": from, "kv.to": to, ...pageOf(page) }),
    result: affected,
  },
  count: { attributes: none, result: affected },
  countPrefix: { attributes: (prefix) => ({ "kv.prefix": prefix }), result: affected },
  countRange: { attributes: (from, to) => ({ "kv.from": from, "kv.to": to }), result: affected },
  expire: { attributes: none, result: affected },
  mutateAll: mutationAttributes,
  stream: {
    attributes: (type, seq, limit, options) => ({
      "kv.type": type,
      "kv.seq": seq,
      ...(limit === undefined ? {} : { "kv.limit": limit }),
      ...(options?.prefix === undefined ? {} : { "kv.prefix": options.prefix }),
    }),
    result: countOf,
  },
  streamSeq: { attributes: none, result: (seq) => ({ "kv.seq": seq }) },
  streamTrim: { attributes: (seq) => ({ "kv.seq": seq }), result: affected },
  lockAcquire: {
    attributes: (name, lockedBy) => ({ "kv.lock": name, "kv.locked_by": lockedBy }),
    result: (acquired) => ({ "kv.acquired": acquired }),
  },
  lockRelease: {
    attributes: (name, lockedBy) => ({ "kv.lock": name, "kv.locked_by": lockedBy }),
    result: (released) => ({ "kv.released": released }),
  },
  lockStatus: (name) => ({ "kv.lock": name }),
}

const taskNames = (names: ReadonlyArray<string> | undefined): Attributes =>
  Array.isArray(names) ? { "kv.task.names": names.slice(0, listedKeys) } : noAttributes

/** `kv.scheduler.*`: task ids, names, statuses, runner ids, counts; never payloads or errors. */
export const schedulerSpec: Spec<SchedulerService> = {
  create: (task) => ({
    "kv.task.id": task?.id ?? "",
    "kv.task.name": task?.name ?? "",
    ...(task?.key === undefined ? {} : { "kv.task.key": task.key }),
  }),
  createMany: {
    attributes: (tasks) => ({ "kv.count": tasks?.length ?? 0 }),
    result: countOf,
  },
  retry: (id) => ({ "kv.task.id": id }),
  prune: {
    attributes: (options) => ({
      ...(options?.statuses === undefined ? {} : { "kv.task.statuses": [...options.statuses] }),
    }),
    result: affected,
  },
  stats: { attributes: none, result: (stats) => ({ "kv.result_count": stats.total }) },
  get: (id) => ({ "kv.task.id": id }),
  list: {
    attributes: (filter) => ({
      ...(filter?.status === undefined ? {} : { "kv.task.status": filter.status }),
      ...(filter?.name === undefined ? {} : { "kv.task.name": filter.name }),
      ...pageOf(filter),
    }),
    result: countOf,
  },
  cancel: (id) => ({ "kv.task.id": id }),
  lock: {
    attributes: (runnerId, _lockDuration, names, limit) => ({
      "kv.runner": runnerId,
      ...taskNames(names),
      ...(limit === undefined ? {} : { "kv.limit": limit }),
    }),
    result: (tasks) => ({
      "kv.result_count": tasks.length,
      "kv.task.ids": tasks.slice(0, listedKeys).map((task) => task.id),
    }),
  },
  release: (id, runnerId, status) => ({ "kv.task.id": id, "kv.runner": runnerId, "kv.task.status": status }),
  heartbeat: {
    attributes: (id, runnerId) => ({ "kv.task.id": id, "kv.runner": runnerId }),
    result: (status) => ({ "kv.task.status": status }),
  },
  nextDue: taskNames,
  wakeups: false,
}
