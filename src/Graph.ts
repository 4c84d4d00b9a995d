/**
 * A directed graph stored in the key space: typed edges between nodes (`{ type, id }`), each
 * with JSON data, as records under a prefix (default `graph/`).
 *
 * An edge is three records, written and deleted together in one `mutateAll` (so a reader never
 * sees part of an edge, and every change appears in the stream):
 *
 * ```text
 * <prefix>edge/<from-type>/<from-id>/<edge-type>/<to-type>/<to-id>   record type GraphEdge
 * <prefix>out/<from-type>/<from-id>/<edge-type>/<to-type>/<to-id>    record type GraphOutgoing
 * <prefix>in/<to-type>/<to-id>/<edge-type>/<from-type>/<from-id>     record type GraphIncoming
 * ```
 *
 * Each holds the whole edge (`{ fromType, fromId, edgeType, toType, toId, data }`), so that
 * `outgoing` and `incoming` are one prefix read each, a consistent snapshot, and a breadth-first
 * search costs one read per node it expands; the price is the data stored three times. Each
 * segment is escaped (`%` as `%25`, `/` as `%2F`), so a `/` inside a type or id can neither make
 * two edges share a key nor make one node's prefix cover another's. Keys sort by their bytes on
 * every backend, so every list (and the path `findPath` picks among equally short ones) is the
 * same on SQLite, PostgreSQL and rqlite.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Arg from "./Arguments.js"
import { InvalidArgumentError, type KvRecord, Mutation, Store, type StoreError } from "./Store.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** A node: the type and id of the thing an edge starts or ends at (often a record's key). */
export interface Node {
  readonly type: string
  readonly id: string
}

/** What names an edge: its two ends and its type. Between two nodes there is one edge per type. */
export const EdgeRef = Schema.Struct({
  fromType: Schema.String,
  fromId: Schema.String,
  edgeType: Schema.String,
  toType: Schema.String,
  toId: Schema.String,
}).annotations({ identifier: "GraphEdgeRef" })
export interface EdgeRef extends Schema.Schema.Type<typeof EdgeRef> {}

/** An edge as stored and printed: its ends, its type and its JSON data (`null` when none). */
export const Edge = Schema.Struct({ ...EdgeRef.fields, data: Schema.Unknown }).annotations({
  identifier: "GraphEdge",
})
export interface Edge extends Schema.Schema.Type<typeof Edge> {}

/** An edge to add: `data` absent is `null`. */
export interface EdgeInput extends EdgeRef {
  readonly data?: unknown
}

export type Direction = "outgoing" | "incoming" | "both"

export interface PathOptions {
  /** The longest path searched, in edges (absent: no limit). */
  readonly maxDepth?: number | undefined
  /** Follow only edges of these types (absent: every type). */
  readonly edgeTypes?: ReadonlyArray<string> | undefined
}

export interface NeighborOptions {
  /** Along outgoing edges, incoming edges or both (default both). */
  readonly direction?: Direction | undefined
  readonly edgeTypes?: ReadonlyArray<string> | undefined
}

export type ViewFormat = "dot" | "mermaid"

/** The record types of an edge's three records. */
export const recordTypes = {
  edge: "GraphEdge",
  outgoing: "GraphOutgoing",
  incoming: "GraphIncoming",
} as const

type Fails<A> = Effect.Effect<A, InvalidArgumentError | StoreError | ParseResult.ParseError>

export interface Graph {
  /** The prefix every key of this graph starts with. */
  readonly prefix: string
  /** Adds the edge, or replaces the data of the edge with these ends and type; the edge as stored. */
  readonly addEdge: (edge: EdgeInput) => Fails<Edge>
  readonly getEdge: (ref: EdgeRef) => Fails<Option.Option<Edge>>
  /** The number of edges removed: 1, or 0 when there was none. */
  readonly removeEdge: (ref: EdgeRef) => Fails<number>
  /** The edges from the node (of one type, when given), ordered by edge type, then target. */
  readonly outgoing: (type: string, id: string, edgeType?: string) => Fails<ReadonlyArray<Edge>>
  /** The edges to the node (of one type, when given), ordered by edge type, then source. */
  readonly incoming: (type: string, id: string, edgeType?: string) => Fails<ReadonlyArray<Edge>>
  /** The nodes one edge away, each once: targets of outgoing edges first, then sources of incoming ones. */
  readonly neighbors: (type: string, id: string, options?: NeighborOptions) => Fails<ReadonlyArray<Node>>
  /**
   * A shortest path along edge directions, breadth first, as its edges in order; `[]` when there
   * is none within `maxDepth` edges (and from a node to itself). Among equally short paths, the
   * first in key order.
   */
  readonly findPath: (from: Node, to: Node, options?: PathOptions) => Fails<ReadonlyArray<Edge>>
  /** Every edge, ordered by source, edge type, then target. */
  readonly edges: () => Fails<ReadonlyArray<Edge>>
  /** Every edge as Graphviz dot or Mermaid flowchart text. */
  readonly view: (format?: ViewFormat) => Fails<string>
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/** A type or id as one key segment: `%` and `/` escaped, so segments never run into each other. */
export const escapeSegment = (text: string): string =>
  text.replace(/[%/]/g, (c) => (c === "%" ? "%25" : "%2F"))

const nodePath = (type: string, id: string) => `${escapeSegment(type)}/${escapeSegment(id)}`

const edgePath = (ref: EdgeRef) =>
  `${nodePath(ref.fromType, ref.fromId)}/${escapeSegment(ref.edgeType)}/${nodePath(ref.toType, ref.toId)}`

const reversePath = (ref: EdgeRef) =>
  `${nodePath(ref.toType, ref.toId)}/${escapeSegment(ref.edgeType)}/${nodePath(ref.fromType, ref.fromId)}`

/** The three keys of an edge under `prefix`. */
export const edgeKeys = (prefix: string, ref: EdgeRef) => ({
  edge: `${prefix}edge/${edgePath(ref)}`,
  outgoing: `${prefix}out/${edgePath(ref)}`,
  incoming: `${prefix}in/${reversePath(ref)}`,
})

/** The prefix of a node's edges in one direction's index, of one edge type when given. */
const indexPrefix = (prefix: string, index: "out" | "in", type: string, id: string, edgeType?: string) =>
  `${prefix}${index}/${nodePath(type, id)}/${edgeType === undefined ? "" : `${escapeSegment(edgeType)}/`}`

const nodeKey = (node: Node) => nodePath(node.type, node.id)

/** Edge types, each once, in the order of the keys they lead (UTF-8 bytes of `<escaped>/`). */
const inKeyOrder = (edgeTypes: ReadonlyArray<string>): Array<string> =>
  [...new Set(edgeTypes)]
    .map((edgeType) => ({ edgeType, bytes: Buffer.from(`${escapeSegment(edgeType)}/`) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map(({ edgeType }) => edgeType)

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/** A node type, node id or edge type: the store's rules for names. */
export const NodeType = Arg.name("node type")
export const NodeId = Arg.name("node id")
export const EdgeType = Arg.name("edge type")

const decodePrefix = Arg.decoder(Arg.bound("graph prefix"))
const decodeRef = Arg.args({
  fromType: Arg.name("from type"),
  fromId: Arg.name("from id"),
  edgeType: EdgeType,
  toType: Arg.name("to type"),
  toId: Arg.name("to id"),
})
const decodeNode = Arg.args({ type: NodeType, id: NodeId, edgeType: Arg.optional(EdgeType) })
const decodeEdgeTypes = Arg.decoder(Schema.Array(EdgeType))
const decodeMaxDepth = Arg.decoder(Arg.nonNegative("maxDepth"))
const decodeData = Arg.decoder(Arg.Value)
const decodeDirection = Arg.decoder(Schema.Literal("outgoing", "incoming", "both"))
const decodeFormat = Arg.decoder(Schema.Literal("dot", "mermaid"))

/** The edge's keys, refused when the longest would exceed what every backend can store. */
const checkedKeys = (prefix: string, ref: EdgeRef) => {
  const keys = edgeKeys(prefix, ref)
  const bytes = Buffer.byteLength(keys.edge)
  return bytes <= Arg.maxNameBytes
    ? Effect.succeed(keys)
    : Effect.fail(
        new InvalidArgumentError({
          message:
            `the edge's key would be ${bytes} bytes of UTF-8 (the prefix, types and ids, escaped), ` +
            `at most ${Arg.maxNameBytes}: use shorter types and ids`,
        }),
      )
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

/** The nodes of `edges`, each once, in the order they first appear. */
const nodesOf = (edges: ReadonlyArray<Edge>): Array<Node> => {
  const nodes = new Map<string, Node>()
  for (const edge of edges) {
    for (const node of [
      { type: edge.fromType, id: edge.fromId },
      { type: edge.toType, id: edge.toId },
    ]) {
      const key = nodeKey(node)
      if (!nodes.has(key)) nodes.set(key, node)
    }
  }
  return [...nodes.values()]
}

const nodeLabel = (node: Node) => `${node.type}: ${node.id}`
const edgeLabel = (edge: Edge) =>
  edge.data === null ? edge.edgeType : `${edge.edgeType} ${JSON.stringify(edge.data)}`

/** A DOT quoted string (an ID or a label): `\`, `"` and line breaks escaped. */
const dotString = (text: string) =>
  `"${text
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\r\n|\r|\n/g, "\\n")}"`

/** Graphviz dot: each node once (its ID the escaped `type/id`, labelled `type: id`), then each edge. */
export const toDot = (edges: ReadonlyArray<Edge>): string => {
  const lines = ["digraph {", "  rankdir=LR;"]
  for (const node of nodesOf(edges)) {
    lines.push(`  ${dotString(nodeKey(node))} [label=${dotString(nodeLabel(node))}];`)
  }
  for (const edge of edges) {
    const from = nodeKey({ type: edge.fromType, id: edge.fromId })
    const to = nodeKey({ type: edge.toType, id: edge.toId })
    lines.push(`  ${dotString(from)} -> ${dotString(to)} [label=${dotString(edgeLabel(edge))}];`)
  }
  lines.push("}")
  return lines.join("\n")
}

/** Mermaid quoted text: what would end the string or start markup as entity codes. */
const mermaidString = (text: string) =>
  `"${text
    .replace(/#/g, "#35;")
    .replace(/"/g, "#quot;")
    .replace(/</g, "#lt;")
    .replace(/>/g, "#gt;")
    .replace(/\r\n|\r|\n/g, "<br>")}"`

/** A Mermaid flowchart: nodes `n0`, `n1`, ... in order of appearance, labelled `type: id`. */
export const toMermaid = (edges: ReadonlyArray<Edge>): string => {
  const ids = new Map<string, string>()
  const lines = ["flowchart LR"]
  for (const node of nodesOf(edges)) {
    const id = `n${ids.size}`
    ids.set(nodeKey(node), id)
    lines.push(`  ${id}[${mermaidString(nodeLabel(node))}]`)
  }
  for (const edge of edges) {
    const from = ids.get(nodeKey({ type: edge.fromType, id: edge.fromId }))
    const to = ids.get(nodeKey({ type: edge.toType, id: edge.toId }))
    lines.push(`  ${from} -->|${mermaidString(edgeLabel(edge))}| ${to}`)
  }
  return lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// The graph
// ---------------------------------------------------------------------------------------------

const decodeEdgeValue = ParseResult.decodeUnknown(Edge)

/** A stored edge; a value that is not one fails with a `ParseError` naming the key. */
const edgeOf = (record: KvRecord) =>
  Effect.mapError(
    decodeEdgeValue(record.value),
    (issue) =>
      new ParseResult.ParseError({ issue: new ParseResult.Pointer(record.key, record.value, issue) }),
  )

const edgesOf = (records: ReadonlyArray<KvRecord>) => Effect.forEach(records, edgeOf)

/** How many nodes of one level a search expands at once. */
const searchConcurrency = 8

/** A graph on the store, its keys under `prefix` (default `graph/`). */
export const make = (
  options: { readonly prefix?: string | undefined } = {},
): Effect.Effect<Graph, InvalidArgumentError, Store> =>
  Effect.gen(function* () {
    const store = yield* Store
    const prefix = yield* decodePrefix(options.prefix ?? "graph/")

    const adjacent = (index: "out" | "in", type: string, id: string, edgeType?: string) =>
      Effect.flatMap(store.getPrefix(indexPrefix(prefix, index, type, id, edgeType)), edgesOf)

    /** A node's edges in one direction, of the given types (absent: all), in key order. */
    const adjacentOfTypes = (
      index: "out" | "in",
      node: Node,
      edgeTypes: ReadonlyArray<string> | undefined,
    ) =>
      edgeTypes === undefined
        ? adjacent(index, node.type, node.id)
        : Effect.map(
            Effect.forEach(inKeyOrder(edgeTypes), (edgeType) =>
              adjacent(index, node.type, node.id, edgeType),
            ),
            (lists) => lists.flat(),
          )

    const listOf = (index: "out" | "in", name: string) => (type: string, id: string, edgeType?: string) =>
      decodeNode({ type, id, edgeType }).pipe(
        Effect.flatMap((node) => adjacent(index, node.type, node.id, node.edgeType)),
        Effect.withSpan(`Graph.${name}`, { attributes: { type, id } }),
      )

    const addEdge = (input: EdgeInput) =>
      Effect.gen(function* () {
        const ref = yield* decodeRef(input)
        const data = input.data === undefined ? null : input.data
        yield* decodeData(data)
        const keys = yield* checkedKeys(prefix, ref)
        const edge: Edge = { ...ref, data }
        yield* store
          .mutateAll([
            Mutation.put(keys.edge, -1, edge, { type: recordTypes.edge }),
            Mutation.put(keys.outgoing, -1, edge, { type: recordTypes.outgoing }),
            Mutation.put(keys.incoming, -1, edge, { type: recordTypes.incoming }),
          ])
          .pipe(Effect.catchTag("VersionMismatchError", Effect.die)) // unconditional writes: cannot mismatch
        return edge
      }).pipe(Effect.withSpan("Graph.addEdge"))

    const getEdge = (input: EdgeRef) =>
      Effect.gen(function* () {
        const keys = yield* Effect.flatMap(decodeRef(input), (ref) => checkedKeys(prefix, ref))
        const record = yield* store.get(keys.edge)
        return Option.isNone(record) ? Option.none() : Option.some(yield* edgeOf(record.value))
      }).pipe(Effect.withSpan("Graph.getEdge"))

    const removeEdge = (input: EdgeRef) =>
      Effect.gen(function* () {
        const keys = yield* Effect.flatMap(decodeRef(input), (ref) => checkedKeys(prefix, ref))
        const [removed = 0] = yield* store
          .mutateAll([
            Mutation.delete(keys.edge),
            Mutation.delete(keys.outgoing),
            Mutation.delete(keys.incoming),
          ])
          .pipe(Effect.catchTag("VersionMismatchError", Effect.die)) // deletes check no version
        return removed
      }).pipe(Effect.withSpan("Graph.removeEdge"))

    const neighbors = (type: string, id: string, neighborOptions: NeighborOptions = {}) =>
      Effect.gen(function* () {
        const node = yield* decodeNode({ type, id })
        const direction = yield* decodeDirection(neighborOptions.direction ?? "both")
        const edgeTypes =
          neighborOptions.edgeTypes === undefined
            ? undefined
            : yield* decodeEdgeTypes(neighborOptions.edgeTypes)
        const found = new Map<string, Node>()
        const add = (neighbor: Node) => {
          const key = nodeKey(neighbor)
          if (!found.has(key)) found.set(key, neighbor)
        }
        if (direction !== "incoming") {
          for (const edge of yield* adjacentOfTypes("out", node, edgeTypes))
            add({ type: edge.toType, id: edge.toId })
        }
        if (direction !== "outgoing") {
          for (const edge of yield* adjacentOfTypes("in", node, edgeTypes))
            add({ type: edge.fromType, id: edge.fromId })
        }
        return [...found.values()]
      }).pipe(Effect.withSpan("Graph.neighbors", { attributes: { type, id } }))

    const findPath = (from: Node, to: Node, pathOptions: PathOptions = {}) =>
      Effect.gen(function* () {
        const start = yield* decodeNode(from)
        const target = nodeKey(yield* decodeNode(to))
        const maxDepth =
          pathOptions.maxDepth === undefined
            ? Number.POSITIVE_INFINITY
            : yield* decodeMaxDepth(pathOptions.maxDepth)
        const edgeTypes =
          pathOptions.edgeTypes === undefined ? undefined : yield* decodeEdgeTypes(pathOptions.edgeTypes)
        if (nodeKey(start) === target) return []
        // the edge each reached node was first reached by: the way back to the start
        const reachedBy = new Map<string, Edge | null>([[nodeKey(start), null]])
        const pathTo = (key: string): Array<Edge> => {
          const path: Array<Edge> = []
          for (
            let edge = reachedBy.get(key);
            edge != null;
            edge = reachedBy.get(nodeKey({ type: edge.fromType, id: edge.fromId }))
          ) {
            path.push(edge)
          }
          return path.reverse()
        }
        let frontier: Array<Node> = [start]
        for (let depth = 0; depth < maxDepth && frontier.length > 0; depth++) {
          const expanded = yield* Effect.forEach(
            frontier,
            (node) => adjacentOfTypes("out", node, edgeTypes),
            {
              concurrency: searchConcurrency,
            },
          )
          const next: Array<Node> = []
          for (const edge of expanded.flat()) {
            const reached = { type: edge.toType, id: edge.toId }
            const key = nodeKey(reached)
            if (reachedBy.has(key)) continue
            reachedBy.set(key, edge)
            if (key === target) return pathTo(key)
            next.push(reached)
          }
          frontier = next
        }
        return []
      }).pipe(Effect.withSpan("Graph.findPath"))

    const edges = () =>
      Effect.flatMap(store.getPrefix(`${prefix}edge/`), edgesOf).pipe(Effect.withSpan("Graph.edges"))

    const view = (format: ViewFormat = "dot") =>
      Effect.flatMap(decodeFormat(format), (checked) =>
        Effect.map(edges(), checked === "dot" ? toDot : toMermaid),
      ).pipe(Effect.withSpan("Graph.view"))

    return {
      prefix,
      addEdge,
      getEdge,
      removeEdge,
      outgoing: listOf("out", "outgoing"),
      incoming: listOf("in", "incoming"),
      neighbors,
      findPath,
      edges,
      view,
    }
  })
