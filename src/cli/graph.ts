/**
 * The graph commands: `graph add-edge|get-edge|remove-edge|outgoing|incoming|find-path|view`.
 *
 * The graph module is loaded when one of them runs (its own chunk in the bundle), not at
 * every start of `kv`.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import type * as Graph from "../Graph.js"
import { Store } from "../Store.js"
import { MissingCommandError, NotFoundError } from "./errors.js"
import { withStore } from "./globals.js"
import { printInteger, printJson, readOptionalStdinJson } from "./output.js"
import * as Stdout from "./stdout.js"

/** Runs `f` on the graph (under `graph/`) of the store chosen by the global flags. */
const withGraph = <A, E>(f: (graph: Graph.Graph) => Effect.Effect<A, E>) =>
  withStore((store) =>
    Effect.promise(() => import("../Graph.js")).pipe(
      Effect.flatMap((module) => module.make()),
      Effect.flatMap(f),
      Effect.provideService(Store, store),
    ),
  )

const text = (name: string, what: string, description: string) =>
  Args.text({ name }).pipe(Args.withDescription(description), Args.withSchema(Arg.name(what)))

const edgeArgs = {
  fromType: text("from-type", "from type", "The type of the node the edge starts at."),
  fromId: text("from-id", "from id", "The id of the node the edge starts at."),
  edgeType: text("edge-type", "edge type", "The type of the edge (e.g. follows)."),
  toType: text("to-type", "to type", "The type of the node the edge ends at."),
  toId: text("to-id", "to id", "The id of the node the edge ends at."),
}

const describe = (ref: Graph.EdgeRef) =>
  `${ref.fromType}/${ref.fromId} -[${ref.edgeType}]-> ${ref.toType}/${ref.toId}`

/** stdin as JSON, `null` when it is empty (or a terminal: nothing to read). */
const readStdinData = readOptionalStdinJson(null)

const decodeData = Arg.decoder(Arg.Value)

const addEdge = Command.make("add-edge", edgeArgs, (ref) =>
  Effect.gen(function* () {
    const data = yield* readStdinData
    yield* decodeData(data) // checked before the database is opened
    yield* Effect.flatMap(
      withGraph((graph) => graph.addEdge({ ...ref, data })),
      printJson,
    )
  }),
).pipe(
  Command.withDescription(
    "Add the edge (or replace its data) with the JSON data read from stdin (empty: null); prints the edge.",
  ),
)

const getEdge = Command.make("get-edge", edgeArgs, (ref) =>
  Effect.gen(function* () {
    const edge = yield* withGraph((graph) => graph.getEdge(ref))
    if (Option.isNone(edge)) return yield* new NotFoundError({ what: "edge", name: describe(ref) })
    yield* printJson(edge.value)
  }),
).pipe(Command.withDescription("Print the edge as a JSON object."))

const removeEdge = Command.make("remove-edge", edgeArgs, (ref) =>
  Effect.flatMap(
    withGraph((graph) => graph.removeEdge(ref)),
    printInteger,
  ),
).pipe(Command.withDescription("Remove the edge; prints the number of edges removed (0 or 1)."))

const nodeArgs = {
  type: text("type", "node type", "The node's type."),
  id: text("id", "node id", "The node's id."),
  edgeType: text("edge-type", "edge type", "Only edges of this type (default all).").pipe(Args.optional),
}

const listCommand = (name: "outgoing" | "incoming", description: string) =>
  Command.make(name, nodeArgs, ({ edgeType, id, type }) =>
    Effect.flatMap(
      withGraph((graph) => graph[name](type, id, Option.getOrUndefined(edgeType))),
      printJson,
    ),
  ).pipe(Command.withDescription(description))

const outgoing = listCommand(
  "outgoing",
  "Print the edges from the node as a JSON array, ordered by edge type, then target.",
)
const incoming = listCommand(
  "incoming",
  "Print the edges to the node as a JSON array, ordered by edge type, then source.",
)

const findPath = Command.make(
  "find-path",
  {
    fromType: text("from-type", "from type", "The type of the node to start at."),
    fromId: text("from-id", "from id", "The id of the node to start at."),
    toType: text("to-type", "to type", "The type of the node to reach."),
    toId: text("to-id", "to id", "The id of the node to reach."),
    maxDepth: Options.integer("max-depth").pipe(
      Options.withDescription("The longest path searched, in edges (default no limit)."),
      Options.withSchema(Arg.nonNegative("--max-depth")),
      Options.optional,
    ),
    edgeTypes: Options.text("edge-types").pipe(
      Options.withPseudoName("a,b"),
      Options.withDescription("Follow only edges of these types (default all)."),
      Options.withSchema(Arg.nameList("--edge-types")),
      Options.optional,
    ),
  },
  ({ edgeTypes, fromId, fromType, maxDepth, toId, toType }) =>
    Effect.flatMap(
      withGraph((graph) =>
        graph.findPath(
          { type: fromType, id: fromId },
          { type: toType, id: toId },
          { maxDepth: Option.getOrUndefined(maxDepth), edgeTypes: Option.getOrUndefined(edgeTypes) },
        ),
      ),
      printJson,
    ),
).pipe(
  Command.withDescription(
    "Print a shortest path along edge directions (breadth first) as a JSON array of edges; [] when there is none.",
  ),
)

const view = Command.make(
  "view",
  {
    format: Options.choice("format", ["dot", "mermaid"]).pipe(
      Options.withDescription("Graphviz dot (default) or a Mermaid flowchart."),
      Options.withDefault("dot" as const),
    ),
  },
  ({ format }) =>
    Effect.flatMap(
      withGraph((graph) => graph.view(format)),
      Stdout.writeLine,
    ),
).pipe(Command.withDescription("Print every edge of the graph as Graphviz dot or Mermaid text."))

export const graph = Command.make("graph", {}, () =>
  Effect.fail(
    new MissingCommandError({
      path: "kv graph",
      expected: ["add-edge", "get-edge", "remove-edge", "outgoing", "incoming", "find-path", "view"],
    }),
  ),
).pipe(
  Command.withDescription(
    "Typed, directed edges between nodes, stored as records under graph/; paths and views.",
  ),
  Command.withSubcommands([addEdge, getEdge, removeEdge, outgoing, incoming, findPath, view]),
)
