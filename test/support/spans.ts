/**
 * A tracer that records the spans it makes, for tests that read span names and attributes:
 * `recording(effect)` runs `effect` with it and returns what it returned and the spans.
 */
import * as Effect from "effect/Effect"
import * as Tracer from "effect/Tracer"

export interface RecordedSpan {
  readonly name: string
  readonly attributes: ReadonlyMap<string, unknown>
}

/** Runs `effect` under a tracer that records every span (wrapping the current tracer's). */
export const recording = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const current = yield* Effect.tracer
    const spans: Array<Tracer.Span> = []
    const tracer = Tracer.make({
      span: (name, parent, context, links, startTime, kind, options) => {
        const span = current.span(name, parent, context, links, startTime, kind, options)
        spans.push(span)
        return span
      },
      context: current.context,
    })
    const result = yield* Effect.withTracer(effect, tracer)
    const recorded: ReadonlyArray<RecordedSpan> = spans.map((span) => ({
      name: span.name,
      attributes: span.attributes,
    }))
    return { result, spans: recorded }
  })

/** The names of effect-kv's spans (`kv.*`; not the SQL client's own), in the order they started. */
export const namesOf = (spans: ReadonlyArray<RecordedSpan>) =>
  spans.map((span) => span.name).filter((name) => name.startsWith("kv."))

/** The first span named `name` (fails the test when there is none). */
export const spanNamed = (spans: ReadonlyArray<RecordedSpan>, name: string): RecordedSpan => {
  const span = spans.find((s) => s.name === name)
  if (span === undefined) throw new Error(`no span ${name} among ${namesOf(spans).join(", ")}`)
  return span
}

/** Every attribute value of every span, as text: to check that no value or payload is in one. */
export const attributeText = (spans: ReadonlyArray<RecordedSpan>) =>
  spans.flatMap((span) => [...span.attributes.values()].map((value) => JSON.stringify(value))).join("\n")
