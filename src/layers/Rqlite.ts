/**
 * The distributed backend: `Store` on rqlite, through the HTTP client in `RqliteClient.ts`.
 *
 * The store SQL is the SQLite one; what differs is how atomic batches run: rqlite has no
 * interactive transactions, so `mutateAll` and migrations go as one `transaction` request.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as StoreSql from "../internal/storeSql.js"
import { InvalidArgumentError, Store, StoreError } from "../Store.js"
import * as RqliteClient from "./RqliteClient.js"

export interface RqliteConfig {
  /**
   * `http://host:4001?user=admin&password=secret` or `http://admin:secret@host:4001`, with an
   * optional `level=none|weak|strong|linearizable` (default linearizable).
   */
  readonly url: string | Redacted.Redacted<string>
  readonly level?: RqliteClient.ReadConsistency | undefined
  /** Per-request timeout (default 10 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Run the migrations when the layer is built (default true). */
  readonly migrate?: boolean | undefined
}

/** `Store` on rqlite. */
export const layer = (config: RqliteConfig): Layer.Layer<Store, StoreError | InvalidArgumentError> => {
  const parsed = RqliteClient.parseUrl(config.url)
  if (Either.isLeft(parsed)) {
    return Layer.fail(new InvalidArgumentError({ message: parsed.left.message }))
  }
  const origin = new URL(parsed.right.url).origin
  const client = RqliteClient.layer({
    url: Redacted.isRedacted(config.url) ? config.url : Redacted.make(config.url),
    level: config.level,
    timeout: config.timeout,
  }).pipe(Layer.mapError((cause) => new StoreError({ operation: `connect to ${origin}`, cause })))
  return Layer.effect(
    Store,
    Effect.flatMap(RqliteClient.RqliteClient, (rqlite) =>
      StoreSql.make({ migrate: config.migrate, atomic: rqlite.executeAtomic, connection: rqlite.connection }),
    ),
  ).pipe(Layer.provide(client))
}
