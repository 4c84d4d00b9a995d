/**
 * Argument checks shared by every backend: bad input is rejected with an
 * `InvalidArgumentError` before the database is touched.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { InvalidArgumentError, type Page } from "../Store.js"

export const invalid = (message: string): Effect.Effect<never, InvalidArgumentError> =>
  Effect.fail(new InvalidArgumentError({ message }))

const isInteger = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n)

/** A non-empty string without NUL (PostgreSQL text cannot hold NUL; keys must behave the same everywhere). */
export const name = (what: string, value: unknown): Effect.Effect<string, InvalidArgumentError> => {
  if (typeof value !== "string" || value.length === 0) return invalid(`${what} must be a non-empty string`)
  if (value.includes("\u0000")) return invalid(`${what} must not contain NUL characters`)
  return Effect.succeed(value)
}

export const key = (value: unknown) => name("key", value)

export const keys = (values: Iterable<string>): Effect.Effect<ReadonlyArray<string>, InvalidArgumentError> =>
  Effect.forEach(new Set(values), key)

/** A string that may be empty (prefixes, range bounds) but must not contain NUL. */
export const bound = (what: string, value: unknown): Effect.Effect<string, InvalidArgumentError> => {
  if (typeof value !== "string") return invalid(`${what} must be a string`)
  if (value.includes("\u0000")) return invalid(`${what} must not contain NUL characters`)
  return Effect.succeed(value)
}

/** `-1` (unconditional), `0` (insert only) or the current version. */
export const version = (value: unknown): Effect.Effect<number, InvalidArgumentError> =>
  isInteger(value) && value >= -1
    ? Effect.succeed(value)
    : invalid(`version must be -1, 0 or a positive integer, got ${String(value)}`)

export interface CheckedPage {
  readonly offset: number
  /** -1: no limit */
  readonly limit: number
}

export const limit = (value: unknown): Effect.Effect<number, InvalidArgumentError> =>
  value === undefined
    ? Effect.succeed(-1)
    : isInteger(value) && value >= -1
      ? Effect.succeed(value)
      : invalid(`limit must be -1 (no limit) or a non-negative integer, got ${String(value)}`)

export const page = (value: Page | undefined): Effect.Effect<CheckedPage, InvalidArgumentError> => {
  const offset = value?.offset ?? 0
  if (!isInteger(offset) || offset < 0) {
    return invalid(`offset must be a non-negative integer, got ${String(offset)}`)
  }
  return Effect.map(limit(value?.limit), (limit) => ({ offset, limit }))
}

export const seq = (value: unknown): Effect.Effect<number, InvalidArgumentError> =>
  isInteger(value) && value >= 0
    ? Effect.succeed(value)
    : invalid(`seq must be a non-negative integer, got ${String(value)}`)

export const positiveDuration = (
  value: Duration.DurationInput,
): Effect.Effect<number, InvalidArgumentError> => {
  const decoded = Duration.decodeUnknown(value)
  if (decoded._tag === "None" || !Duration.isFinite(decoded.value)) {
    return invalid(`duration must be a finite duration, got ${String(value)}`)
  }
  const millis = Math.ceil(Duration.toMillis(decoded.value))
  return millis > 0 ? Effect.succeed(millis) : invalid("duration must be positive")
}

/** The value as JSON text; values JSON cannot represent are rejected. */
export const json = (value: unknown): Effect.Effect<string, InvalidArgumentError> =>
  Effect.suspend(() => {
    try {
      const text = JSON.stringify(value)
      return text === undefined ? invalid("the value cannot be represented as JSON") : Effect.succeed(text)
    } catch (error) {
      return invalid(`the value cannot be represented as JSON: ${(error as Error).message}`)
    }
  })

/** A merge patch must be a JSON object. */
export const patch = (value: unknown): Effect.Effect<string, InvalidArgumentError> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
    ? json(value)
    : invalid("a patch must be a JSON object")
