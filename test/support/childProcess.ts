/**
 * What the processes that multi-process tests start have in common: their arguments, their
 * store's layer, the start signal and how they end.
 *
 * Each such script builds its store (running the migrations, like every other process starting
 * at the same time), prints `ready`, waits for a line on stdin (so that every process starts
 * together), does its work and prints one JSON line. Any failure is one `<name>: ...` line on
 * stderr and exit code 1: what a caller would have seen.
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as KvPostgres from "../../src/layers/Postgres.js"
import * as KvRqlite from "../../src/layers/Rqlite.js"
import type * as KvSql from "../../src/layers/Sql.js"
import * as KvSqlite from "../../src/layers/Sqlite.js"

/** The script's arguments after `<backend> <connection>`, or exit code 2 with its usage line. */
export const argumentsOf = <const Names extends ReadonlyArray<string>>(
  script: string,
  names: Names,
): {
  readonly type: string
  readonly connection: string
  readonly args: { [K in Names[number]]: string }
} => {
  const [type, connection, ...rest] = process.argv.slice(2)
  if (type === undefined || connection === undefined || rest.length < names.length) {
    console.error(
      `usage: ${script}.ts <sqlite|postgres|rqlite> <connection> ${names.map((n) => `<${n}>`).join(" ")}`,
    )
    process.exit(2)
  }
  const args = Object.fromEntries(names.map((name, i) => [name, rest[i]!])) as {
    [K in Names[number]]: string
  }
  return { type, connection, args }
}

/** The store of `type` on `connection`, with `config` (e.g. `expirySweep: false`). */
export const backendLayer = (
  type: string,
  connection: string,
  config: Pick<KvSql.SqlConfig, "expirySweep"> = {},
): Layer.Layer<KvSql.Services, unknown> =>
  type === "postgres"
    ? KvPostgres.layer({ url: connection, ...config })
    : type === "rqlite"
      ? KvRqlite.layer({ url: connection, ...config })
      : KvSqlite.layer({ filename: connection, ...config })

/** Completes at the first line on stdin. */
export const startSignal = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
})

/** Runs the script's program; a failure is one `<name>: ...` line on stderr and exit code 1. */
export const runMain = <A, E>(name: string, program: Effect.Effect<A, E>): void => {
  Effect.runPromise(program).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(`${name}: ${error instanceof Error ? error.message : String(error)}`)
      process.exit(1)
    },
  )
}
