/**
 * A graph: typed, directed edges with data, stored as keys under `graph/`; outgoing and
 * incoming edges, a shortest path, and the whole graph as a Mermaid flowchart.
 *
 *   npx tsx examples/graph.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Effect } from "effect"
import { Graph, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-graph-")), "example.db")

const user = (id: string) => ({ type: "User", id })

const program = Effect.gen(function* () {
  const graph = yield* Graph.make()

  const follows = (from: string, to: string, since: number) =>
    graph.addEdge({
      fromType: "User",
      fromId: from,
      edgeType: "follows",
      toType: "User",
      toId: to,
      data: { since },
    })
  yield* follows("alice", "bob", 2020)
  yield* follows("bob", "carol", 2021)
  yield* follows("carol", "dave", 2022)
  yield* follows("alice", "erin", 2023)
  yield* graph.addEdge({ fromType: "User", fromId: "erin", edgeType: "wrote", toType: "Post", toId: "p1" })

  const outgoing = yield* graph.outgoing("User", "alice")
  yield* Console.log(
    `alice follows: ${outgoing.map((edge) => `${edge.toId} (since ${(edge.data as { since: number }).since})`).join(", ")}`,
  )
  const incoming = yield* graph.incoming("User", "carol")
  yield* Console.log(`carol is followed by: ${incoming.map((edge) => edge.fromId).join(", ")}`)

  // breadth first along edge directions: the fewest edges
  const found = yield* graph.findPath(user("alice"), user("dave"), { maxDepth: 5, edgeTypes: ["follows"] })
  yield* Console.log(`path alice -> dave: ${["alice", ...found.map((edge) => edge.toId)].join(" -> ")}`)
  const tooFar = yield* graph.findPath(user("alice"), user("dave"), { maxDepth: 2 })
  yield* Console.log(`within 2 edges: ${tooFar.length === 0 ? "no path" : "found"}`)

  // each edge is three records (the edge and its two index keys), written in one mutateAll
  const store = yield* Store
  yield* Console.log(`records under graph/: ${yield* store.countPrefix("graph/")}`)

  yield* Console.log(yield* graph.view("mermaid"))
})

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
