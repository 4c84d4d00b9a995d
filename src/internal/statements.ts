/**
 * Statements compiled once, with named parameters: how the SQL modules (store, scheduler,
 * consumers) build every statement whose text does not change from call to call.
 *
 * Building and compiling a statement costs about as much as running a small one, so each is
 * compiled when the service is made: `build` receives a placeholder per parameter name
 * (`compiled(({ key, now }) => sql\`... ${key} ... ${now} ...\`)`), and each call fills the
 * compiled text's parameters by name, in whatever order the text binds them. Values that
 * `build` binds itself (constants) stay as they are. The executor prepares the text once
 * where its driver can (SQLite, rqlite).
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Statement } from "@effect/sql/Statement"
import type * as Effect from "effect/Effect"
import type { Service as Executor } from "./executor.js"

/** What `build` binds where parameter `name` goes. */
class Placeholder {
  constructor(readonly name: string) {}
}

/** The placeholders `build` receives: one per parameter name, to bind like any value. */
export type Placeholders<P> = { readonly [K in keyof P]-?: unknown }

/** A statement compiled once, made with named parameters. */
export interface Compiled<P, A extends object> {
  /** The statement with these parameters: to run with the executor, or to put in a batch. */
  (params: P): Statement<A>
  /** Runs it (prepared once) and returns its rows. */
  readonly rows: (params: P) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** Runs it (prepared once) and returns the number of rows it changed. */
  readonly affected: (params: P) => Effect.Effect<number, SqlError>
}

export interface Statements {
  readonly compiled: <P extends object = Record<never, never>, A extends object = never>(
    build: (placeholders: Placeholders<P>) => Statement<A>,
  ) => Compiled<P, A>
}

/** Placeholders made as `build` asks for them (by destructuring, or `p.name`). */
const placeholders = <P>(): Placeholders<P> => {
  const made = new Map<string, Placeholder>()
  return new Proxy({} as Placeholders<P>, {
    get: (_, name) => {
      if (typeof name !== "string") return undefined
      let placeholder = made.get(name)
      if (placeholder === undefined) {
        placeholder = new Placeholder(name)
        made.set(name, placeholder)
      }
      return placeholder
    },
  })
}

export const make = (sql: SqlClient, executor: Executor): Statements => ({
  compiled: <P extends object, A extends object>(build: (placeholders: Placeholders<P>) => Statement<A>) => {
    const [text, bound] = build(placeholders<P>()).compile()
    const names = bound.map((value) => (value instanceof Placeholder ? value.name : undefined))
    const bind = (params: P): Array<unknown> =>
      bound.map((value, i) => {
        const name = names[i]
        return name === undefined ? value : (params as Record<string, unknown>)[name]
      })
    const prepared = executor.prepare(sql.unsafe<A>(text))
    return Object.assign((params: P) => sql.unsafe<A>(text, bind(params)), {
      rows: (params: P) => prepared.rows(bind(params)),
      affected: (params: P) => prepared.affected(bind(params)),
    })
  },
})
