/**
 * A simple in-memory model of the Store, written from the contract (SPEC.md, README "What
 * every backend accepts") and nothing else: the property test in `StoreModel.suite.ts` runs
 * the same random history on a backend and here, and compares every result, the final records
 * and the stream.
 *
 * Keys are ordered by code point (UTF-8 byte order), as every backend orders them. Values are
 * compared by their JSON form. The model keeps only the stream records of its own history.
 *
 * Expiry: a record written with a ttl expires at `now + ttl`; from then on it is absent for
 * every read, count, delete and version check, but stays in `records` (as in the table) until
 * `expire` sweeps it or a write replaces it, each appending its `delete` record (which keeps
 * `expiresAt`; an explicit delete's record has none).
 */

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

export interface Page {
  readonly offset?: number | undefined
  readonly limit?: number | undefined
}

export type MutationSpec =
  | {
      readonly op: "put"
      readonly key: string
      readonly version: number
      readonly value: unknown
      readonly type?: string | undefined
      /** milliseconds */
      readonly ttl?: number | undefined
    }
  | {
      readonly op: "patch"
      readonly key: string
      readonly version: number
      readonly patch: unknown
      readonly type?: string | undefined
      /** milliseconds */
      readonly ttl?: number | undefined
    }
  | { readonly op: "delete"; readonly key: string }
  | { readonly op: "deletePrefix"; readonly prefix: string; readonly page?: Page | undefined }
  | {
      readonly op: "deleteRange"
      readonly from: string
      readonly to: string
      readonly page?: Page | undefined
    }

export type Command =
  | MutationSpec
  | { readonly op: "get"; readonly key: string }
  | { readonly op: "deleteKeys"; readonly keys: ReadonlyArray<string> }
  | { readonly op: "getPrefix"; readonly prefix: string; readonly page?: Page | undefined }
  | { readonly op: "countPrefix"; readonly prefix: string }
  | { readonly op: "getBatch"; readonly keys: ReadonlyArray<string> }
  | { readonly op: "mutateAll"; readonly mutations: ReadonlyArray<MutationSpec> }
  /** `streamTrim(latest seq - back)`: relative, so that a history means the same on every backend */
  | { readonly op: "streamTrim"; readonly back: number }
  /** the clock moves on by `millis` (besides the millisecond every command moves it) */
  | { readonly op: "tick"; readonly millis: number }
  | { readonly op: "expire" }

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

export interface ModelRecord {
  readonly key: string
  readonly version: number
  readonly value: unknown
  readonly type: string
  readonly created: number
  /** absent: it does not expire */
  readonly expiresAt?: number
}

export interface ModelStreamRecord {
  readonly seq: number
  readonly action: "create" | "update" | "delete"
  readonly record: ModelRecord
}

/** What an operation returned, in a form both sides can be compared in. */
export type Outcome =
  | { readonly ok: unknown }
  | { readonly error: "InvalidArgumentError" }
  | { readonly error: "VersionMismatchError"; readonly key: string; readonly expected: number }

class Refused {
  constructor(readonly outcome: Outcome) {}
}

const invalid = (): never => {
  throw new Refused({ error: "InvalidArgumentError" })
}

// ---------------------------------------------------------------------------------------------
// The rules of what is accepted
// ---------------------------------------------------------------------------------------------

const maxNameBytes = 1024
const maxDepth = 100

const wellFormed = (text: string) =>
  !text.includes("\u0000") && (text as unknown as { isWellFormed(): boolean }).isWellFormed()

const checkName = (name: unknown): string => {
  if (typeof name !== "string" || name.length === 0 || !wellFormed(name)) return invalid()
  if (Buffer.byteLength(name) > maxNameBytes) return invalid()
  return name
}

const checkBound = (bound: unknown): string =>
  typeof bound === "string" && wellFormed(bound) ? bound : invalid()

const checkVersion = (version: unknown): number =>
  typeof version === "number" && Number.isSafeInteger(version) && version >= -1 ? version : invalid()

const checkPage = (page: Page | undefined): { offset: number; limit: number } => {
  const offset = page?.offset ?? 0
  const limit = page?.limit ?? -1
  if (!Number.isSafeInteger(offset) || offset < 0) return invalid()
  if (!Number.isSafeInteger(limit) || limit < -1) return invalid()
  return { offset, limit }
}

/** Depth of arrays and objects: a scalar is 0, `[]` is 1. */
const depthOf = (value: unknown): number => {
  if (typeof value !== "object" || value === null) return 0
  let deepest = 0
  for (const child of Object.values(value)) deepest = Math.max(deepest, depthOf(child))
  return deepest + 1
}

const allTextWellFormed = (value: unknown): boolean => {
  if (typeof value === "string") return wellFormed(value)
  if (typeof value !== "object" || value === null) return true
  return Object.entries(value).every(([name, child]) => wellFormed(name) && allTextWellFormed(child))
}

/** The value as the store keeps it (its JSON form), or a refusal. */
const checkValue = (value: unknown): unknown => {
  const json = JSON.stringify(value)
  if (json === undefined) return invalid()
  const parsed: unknown = JSON.parse(json)
  if (depthOf(parsed) > maxDepth || !allTextWellFormed(parsed)) return invalid()
  return parsed
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const checkPatch = (patch: unknown): Record<string, unknown> => {
  const parsed = checkValue(patch)
  return isObject(parsed) ? parsed : invalid()
}

const checkType = (type: string | undefined): string | undefined =>
  type === undefined ? undefined : checkName(type)

/** A ttl: a positive finite number of milliseconds (whole ms, rounded up, as stored). */
const checkTtl = (ttl: number | undefined): number | undefined =>
  ttl === undefined ? undefined : Number.isFinite(ttl) && ttl > 0 ? Math.ceil(ttl) : invalid()

/** The derived record type of a JSON value. */
const typeOf = (value: unknown): string =>
  value === null
    ? "null"
    : Array.isArray(value)
      ? "array"
      : typeof value === "object"
        ? "object"
        : typeof value

// ---------------------------------------------------------------------------------------------
// Semantics
// ---------------------------------------------------------------------------------------------

/** Code point order, i.e. UTF-8 byte order: how every backend orders keys. */
export const compareKeys = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b))

/** Sets an own member (also `__proto__`, which plain assignment would not create). */
const setMember = (target: Record<string, unknown>, name: string, value: unknown) => {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true })
}

/** RFC 7396: a JSON merge patch applied to `target`. */
export const mergePatch = (target: unknown, patch: unknown): unknown => {
  if (!isObject(patch)) return patch
  const result: Record<string, unknown> = {}
  if (isObject(target)) for (const [name, value] of Object.entries(target)) setMember(result, name, value)
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) delete result[name]
    else setMember(result, name, mergePatch(Object.hasOwn(result, name) ? result[name] : undefined, value))
  }
  return result
}

const pageOf = <A>(items: ReadonlyArray<A>, page: { offset: number; limit: number }): ReadonlyArray<A> =>
  items.slice(page.offset, page.limit < 0 ? undefined : page.offset + page.limit)

export class Model {
  records = new Map<string, ModelRecord>()
  stream: Array<ModelStreamRecord> = []
  constructor(
    /** the seq the next stream record gets */
    public nextSeq: number,
  ) {}

  private copy(): Model {
    const copy = new Model(this.nextSeq)
    copy.records = new Map(this.records)
    copy.stream = [...this.stream]
    return copy
  }

  private adopt(other: Model) {
    this.records = other.records
    this.stream = other.stream
    this.nextSeq = other.nextSeq
  }

  private append(action: ModelStreamRecord["action"], record: ModelRecord) {
    this.stream.push({ seq: this.nextSeq++, action, record })
  }

  /** The record of `key` if it is live at `now`. */
  live(key: string, now: number): ModelRecord | undefined {
    const record = this.records.get(key)
    return record === undefined || (record.expiresAt !== undefined && record.expiresAt <= now)
      ? undefined
      : record
  }

  /** The keys of the records live at `now`, in order. */
  sortedKeys(now: number): Array<string> {
    return [...this.records.keys()].filter((key) => this.live(key, now) !== undefined).sort(compareKeys)
  }

  private write(
    key: string,
    version: number,
    now: number,
    next: (current: ModelRecord | undefined) => {
      value: unknown
      type: string
      expiresAt: number | undefined
    },
  ): ModelRecord {
    const current = this.live(key, now)
    const fits = version === -1 || (version === 0 ? current === undefined : current?.version === version)
    if (!fits) throw new Refused({ error: "VersionMismatchError", key, expected: version })
    const expired = current === undefined ? this.records.get(key) : undefined
    if (expired !== undefined) this.append("delete", expired)
    const { expiresAt, type, value } = next(current)
    const record: ModelRecord = {
      key,
      version: (current?.version ?? 0) + 1,
      value,
      type,
      created: current?.created ?? now,
      ...(expiresAt === undefined ? {} : { expiresAt }),
    }
    this.records.set(key, record)
    this.append(current === undefined ? "create" : "update", record)
    return record
  }

  /** Deletes the live records of `keys`; their delete records do not keep an expiresAt. */
  private remove(keys: ReadonlyArray<string>, now: number): number {
    let deleted = 0
    for (const key of [...keys].sort(compareKeys)) {
      const record = this.live(key, now)
      if (record === undefined) continue
      this.records.delete(key)
      const { expiresAt: _, ...deletedRecord } = record
      this.append("delete", deletedRecord)
      deleted++
    }
    return deleted
  }

  /** The sweep: every record expired at `now`, in key order. */
  private sweep(now: number): number {
    const expired = [...this.records.values()]
      .filter((record) => record.expiresAt !== undefined && record.expiresAt <= now)
      .sort((a, b) => compareKeys(a.key, b.key))
    for (const record of expired) {
      this.records.delete(record.key)
      this.append("delete", record)
    }
    return expired.length
  }

  private withPrefix(prefix: string, now: number): Array<string> {
    return this.sortedKeys(now).filter((key) => key.startsWith(prefix))
  }

  private inRange(from: string, to: string, now: number): Array<string> {
    return this.sortedKeys(now).filter((key) => compareKeys(from, key) <= 0 && compareKeys(key, to) < 0)
  }

  /** A mutation whose arguments were checked: the rows it affected. */
  private apply(mutation: CheckedMutation, now: number): number {
    switch (mutation.op) {
      case "put":
        this.write(mutation.key, mutation.version, now, () => ({
          value: mutation.value,
          type: mutation.type,
          expiresAt: mutation.ttl === undefined ? undefined : now + mutation.ttl,
        }))
        return 1
      case "patch":
        this.write(mutation.key, mutation.version, now, (current) => ({
          value: mergePatch(current === undefined ? {} : current.value, mutation.patch),
          type: mutation.type ?? current?.type ?? "object",
          expiresAt: mutation.ttl === undefined ? current?.expiresAt : now + mutation.ttl,
        }))
        return 1
      case "delete":
        return this.remove([mutation.key], now)
      case "deletePrefix":
        return this.remove(
          pageOf(
            mutation.prefix === "*" ? this.sortedKeys(now) : this.withPrefix(mutation.prefix, now),
            mutation.page,
          ),
          now,
        )
      case "deleteRange":
        return this.remove(pageOf(this.inRange(mutation.from, mutation.to, now), mutation.page), now)
    }
  }

  /** Runs a command at time `now` and says what the store should answer. */
  run(command: Command, now: number): Outcome {
    try {
      return { ok: this.runUnchecked(command, now) }
    } catch (error) {
      if (error instanceof Refused) return error.outcome
      throw error
    }
  }

  private runUnchecked(command: Command, now: number): unknown {
    switch (command.op) {
      case "get":
        return this.live(checkName(command.key), now) ?? null
      case "getPrefix": {
        const prefix = checkBound(command.prefix)
        return pageOf(this.withPrefix(prefix, now), checkPage(command.page)).map(
          (key) => this.records.get(key)!,
        )
      }
      case "countPrefix":
        return this.withPrefix(checkBound(command.prefix), now).length
      case "getBatch": {
        const keys = [...new Set(command.keys.map(checkName))].sort(compareKeys)
        return keys.flatMap((key) => {
          const record = this.live(key, now)
          return record === undefined ? [] : [record]
        })
      }
      case "deleteKeys":
        return this.remove([...new Set(command.keys.map(checkName))], now)
      case "tick":
        return null
      case "expire":
        return this.sweep(now)
      case "streamTrim": {
        const seq = this.nextSeq - 1 - command.back
        if (seq < 0) return invalid()
        const kept = this.stream.filter((record) => record.seq > seq)
        const trimmed = this.stream.length - kept.length
        this.stream = kept
        return { seq, trimmed }
      }
      case "mutateAll": {
        // every argument is checked before anything is written; then all or nothing
        const checked = command.mutations.map(checkMutation)
        const scratch = this.copy()
        const counts = checked.map((mutation) => scratch.apply(mutation, now))
        this.adopt(scratch)
        return counts
      }
      default: {
        const mutation = checkMutation(command)
        if (mutation.op === "put" || mutation.op === "patch") {
          this.apply(mutation, now)
          return this.records.get(mutation.key)
        }
        return this.apply(mutation, now)
      }
    }
  }
}

type CheckedMutation =
  | {
      readonly op: "put"
      readonly key: string
      readonly version: number
      readonly value: unknown
      readonly type: string
      readonly ttl: number | undefined
    }
  | {
      readonly op: "patch"
      readonly key: string
      readonly version: number
      readonly patch: Record<string, unknown>
      readonly type: string | undefined
      readonly ttl: number | undefined
    }
  | { readonly op: "delete"; readonly key: string }
  | { readonly op: "deletePrefix"; readonly prefix: string; readonly page: { offset: number; limit: number } }
  | {
      readonly op: "deleteRange"
      readonly from: string
      readonly to: string
      readonly page: { offset: number; limit: number }
    }

const checkMutation = (mutation: MutationSpec): CheckedMutation => {
  switch (mutation.op) {
    case "put": {
      const key = checkName(mutation.key)
      const version = checkVersion(mutation.version)
      const value = checkValue(mutation.value)
      const type = checkType(mutation.type) ?? typeOf(value)
      return { op: "put", key, version, value, type, ttl: checkTtl(mutation.ttl) }
    }
    case "patch": {
      const key = checkName(mutation.key)
      const version = checkVersion(mutation.version)
      const patch = checkPatch(mutation.patch)
      return { op: "patch", key, version, patch, type: checkType(mutation.type), ttl: checkTtl(mutation.ttl) }
    }
    case "delete":
      return { op: "delete", key: checkName(mutation.key) }
    case "deletePrefix": {
      const prefix = checkBound(mutation.prefix)
      if (prefix === "") return invalid()
      return { op: "deletePrefix", prefix, page: checkPage(mutation.page) }
    }
    case "deleteRange": {
      const from = checkBound(mutation.from)
      const to = checkBound(mutation.to)
      return { op: "deleteRange", from, to, page: checkPage(mutation.page) }
    }
  }
}
