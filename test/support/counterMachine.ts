/**
 * A small state machine for the StateMachine tests and the racing processes: a counter that
 * `Increment`s by a positive amount (each change sent out as `Changed`) and `Reset`s (sending
 * nothing); an increment above 100 is refused with `TooMuch`.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as StateMachine from "../../src/StateMachine.js"

export class Counter extends Schema.Class<Counter>("Counter")({ count: Schema.Number }) {}

export const Increment = Schema.TaggedStruct("Increment", { by: Schema.Number.pipe(Schema.positive()) })
export const Reset = Schema.TaggedStruct("Reset", {})
export const CounterEvent = Schema.Union(Increment, Reset)
export type CounterEvent = typeof CounterEvent.Type

export const Changed = Schema.TaggedStruct("Changed", { from: Schema.Number, to: Schema.Number })
export type Changed = typeof Changed.Type

export class TooMuch extends Schema.TaggedError<TooMuch>()("TooMuch", { by: Schema.Number }) {
  override get message() {
    return `cannot increment by ${this.by}: at most 100`
  }
}

export const increment = (by: number): CounterEvent => Increment.make({ by })
export const reset: CounterEvent = Reset.make({})

/** One step of the counter. */
export const step = (state: Counter, event: CounterEvent) => {
  switch (event._tag) {
    case "Increment":
      return event.by > 100
        ? Effect.fail(new TooMuch({ by: event.by }))
        : Effect.succeed({
            state: new Counter({ count: state.count + event.by }),
            outbound: [Changed.make({ from: state.count, to: state.count + event.by })],
          })
    case "Reset":
      return Effect.succeed({ state: new Counter({ count: 0 }), outbound: [] as Array<Changed> })
  }
}

export const counterMachine = StateMachine.make({
  initial: new Counter({ count: 0 }),
  schema: { state: Counter, event: CounterEvent, outbound: Changed },
  process: step,
})
