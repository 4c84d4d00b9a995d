/**
 * Durations as people type them on a command line: `500ms`, `10s`, `5m`, `1h30m`, `1.5h`.
 *
 * A sequence of `<number><unit>` terms, summed; units `ns`, `us` (or `µs`), `ms`, `s`, `m`,
 * `h` and `d`. `0` alone is allowed; anything else needs a unit. Negative durations are
 * rejected.
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"

const nanosPerUnit: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
  d: 86400e9,
}

const term = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)/

/** Parses `1h30m`-style text; `Left` holds a message saying what was expected. */
export const parse = (input: string): Either.Either<Duration.Duration, string> => {
  const text = input.trim()
  const invalid = Either.left(`invalid duration "${input}": expected e.g. 500ms, 10s, 5m or 1h30m`)
  if (text === "0") return Either.right(Duration.zero)
  if (text.length === 0) return invalid
  let rest = text
  let nanos = 0
  while (rest.length > 0) {
    const match = term.exec(rest)
    if (match === null) return invalid
    nanos += Number(match[1]) * nanosPerUnit[match[2]!]!
    rest = rest.slice(match[0].length)
  }
  if (!Number.isFinite(nanos) || nanos > Number.MAX_SAFE_INTEGER * 1e6) return invalid
  return Either.right(Duration.nanos(BigInt(Math.round(nanos))))
}

/** Like {@link parse}, but the duration must be longer than zero. */
export const parsePositive = (input: string): Either.Either<Duration.Duration, string> =>
  Either.flatMap(parse(input), (duration) =>
    Duration.greaterThan(duration, Duration.zero)
      ? Either.right(duration)
      : Either.left(`invalid duration "${input}": must be longer than zero`),
  )
