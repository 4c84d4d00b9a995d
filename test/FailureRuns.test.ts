/**
 * `tryOfRepeated`, the one way repeated work (SQLite's change check, the expiry sweep) logs its
 * failures: once per run of failures, and the first success after one is told apart.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { tryOfRepeated } from "../src/internal/failureRuns.js"

describe("tryOfRepeated", () => {
  it.effect("a run of failures is told once, and so is the success that ends it", () =>
    Effect.gen(function* () {
      // fail, fail, ok, ok, fail, ok
      const outcomes = [false, false, true, true, false, true]
      const seen: Array<string> = []
      let i = 0
      const attempt = Effect.suspend(() => (outcomes[i++] ? Effect.succeed(i) : Effect.fail(`failure ${i}`)))
      const once = tryOfRepeated(attempt, {
        onFirstFailure: () => Effect.sync(() => seen.push("failed")),
        onSuccess: (value, recovered) =>
          Effect.sync(() => seen.push(`${value}${recovered ? " recovered" : ""}`)),
      })
      yield* Effect.repeatN(once, outcomes.length - 1)
      assert.deepStrictEqual(seen, ["failed", "3 recovered", "4", "failed", "6 recovered"])
    }),
  )

  it.effect("interruption is passed on, not counted as a failure", () =>
    Effect.gen(function* () {
      let failures = 0
      const exit = yield* Effect.exit(
        tryOfRepeated(Effect.interrupt, {
          onFirstFailure: () => Effect.sync(() => failures++),
          onSuccess: () => Effect.void,
        }),
      )
      assert.isTrue(Exit.isInterrupted(exit))
      assert.strictEqual(failures, 0)
    }),
  )
})
