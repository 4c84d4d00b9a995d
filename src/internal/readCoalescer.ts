/**
 * Concurrent reads by key, coalesced (what a DataLoader does): reads of different fibers that
 * arrive while the database is busy with earlier ones share one query.
 *
 * A caller that finds fewer than `maxInFlight` reads in flight runs its own query at once, as
 * if there were no coalescer (alone, a caller pays one query as before). One that finds them
 * all busy waits; when a read in flight ends, everything that waits goes as one query over the
 * union of the keys (up to `maxKeys` of them), and each waiting caller gets the rows of its own
 * keys, or the failure of the query it was part of. A caller interrupted while it waits leaves
 * the query to the others.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

export interface Options<Row, E> {
  /**
   * One query: the rows of these (distinct) keys; a key without a row is absent. A key may have
   * several rows (a key may stand for a whole query), which its caller gets in the order fetched.
   */
  readonly fetch: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Row>, E>
  readonly keyOf: (row: Row) => string
  /** Reads in flight at most, before callers wait to share the next one. */
  readonly maxInFlight: number
  /** The keys of one shared query at most; a caller with more runs its own query. */
  readonly maxKeys: number
}

/** Reads the rows of `keys` (distinct), sharing the query with concurrent callers. */
export type Coalescer<Row, E> = (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Row>, E>

interface Waiting<Row, E> {
  readonly keys: ReadonlyArray<string>
  readonly deferred: Deferred.Deferred<ReadonlyArray<Row>, E>
}

export const make = <Row, E>(options: Options<Row, E>): Coalescer<Row, E> => {
  const { fetch, keyOf, maxInFlight, maxKeys } = options
  let inFlight = 0
  let waiting: Array<Waiting<Row, E>> = []

  /** One query for `batch`; each caller gets the rows of its keys, or the query's failure. */
  const runShared = (batch: ReadonlyArray<Waiting<Row, E>>) => {
    const keys = [...new Set(batch.flatMap((w) => w.keys))]
    return Effect.flatMap(Effect.exit(fetch(keys)), (exit) => {
      if (Exit.isFailure(exit)) {
        for (const w of batch) Deferred.unsafeDone(w.deferred, exit)
        return Effect.void
      }
      // a caller alone gets every row of its query; so do callers who all asked for the same
      // one key (a query of one key may return rows that do not name it: a range's page)
      if (batch.length === 1 || keys.length === 1) {
        for (const w of batch) Deferred.unsafeDone(w.deferred, w.keys.length === 0 ? Exit.succeed([]) : exit)
        return Effect.void
      }
      const byKey = new Map<string, Array<Row>>()
      for (const row of exit.value) {
        const key = keyOf(row)
        const rows = byKey.get(key)
        if (rows === undefined) byKey.set(key, [row])
        else rows.push(row)
      }
      for (const w of batch) {
        const rows: Array<Row> = []
        for (const key of w.keys) {
          const found = byKey.get(key)
          if (found !== undefined) rows.push(...found)
        }
        Deferred.unsafeDone(w.deferred, Exit.succeed(rows))
      }
      return Effect.void
    })
  }

  /** Starts shared queries for the callers waiting, as far as reads in flight allow. */
  const startWaiting: Effect.Effect<void> = Effect.suspend(() => {
    const started: Array<Effect.Effect<unknown>> = []
    while (waiting.length > 0 && inFlight < maxInFlight) {
      let taken = 0
      let keys = 0
      while (taken < waiting.length && (taken === 0 || keys + waiting[taken]!.keys.length <= maxKeys)) {
        keys += waiting[taken]!.keys.length
        taken++
      }
      const batch = waiting.slice(0, taken)
      waiting = waiting.slice(taken)
      inFlight++
      started.push(Effect.forkDaemon(Effect.ensuring(runShared(batch), finished)))
    }
    return started.length === 0 ? Effect.void : Effect.all(started, { discard: true })
  })

  const finished: Effect.Effect<void> = Effect.suspend(() => {
    inFlight--
    return startWaiting
  })

  return (keys) =>
    Effect.suspend(() => {
      if (keys.length > maxKeys) return fetch(keys)
      if (inFlight < maxInFlight && waiting.length === 0) {
        inFlight++
        return Effect.ensuring(fetch(keys), finished)
      }
      const deferred = Deferred.unsafeMake<ReadonlyArray<Row>, E>(FiberId.none)
      waiting.push({ keys, deferred })
      return Effect.zipRight(startWaiting, Deferred.await(deferred))
    })
}
