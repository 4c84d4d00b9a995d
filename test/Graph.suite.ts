/**
 * The Graph conformance suite: the same expectations (the same lists, paths and views, byte for
 * byte) on every backend.
 *
 * `graphSuite(name, backend)` registers the tests; `backend` must give a fresh, empty database.
 * Tests share it and run in order, so each works in a graph of its own (`Graph.make({ prefix })`).
 */
import { assert, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { maxDepth, maxNameBytes } from "../src/Arguments.js"
import * as Graph from "../src/Graph.js"
import { Store } from "../src/Store.js"

/** `from -[type]-> to` for edges between nodes of type N. */
const link = (from: string, edgeType: string, to: string, data?: unknown): Graph.EdgeInput => ({
  fromType: "N",
  fromId: from,
  edgeType,
  toType: "N",
  toId: to,
  ...(data === undefined ? {} : { data }),
})

/** Paths and lists as `a-type->b` words, easy to compare. */
const words = (edges: ReadonlyArray<Graph.Edge>) => edges.map((e) => `${e.fromId}-${e.edgeType}->${e.toId}`)

const addAll = (graph: Graph.Graph, edges: ReadonlyArray<Graph.EdgeInput>) =>
  Effect.forEach(edges, (edge) => graph.addEdge(edge), { discard: true })

export const graphSuite = (name: string, backend: Layer.Layer<Store, unknown>) =>
  layer(backend, { timeout: Duration.minutes(1) })(name, (it) => {
    it.effect("addEdge and getEdge: the edge with its data; null without; a missing edge is None", () =>
      Effect.gen(function* () {
        const graph = yield* Graph.make({ prefix: "g1/" })
        const added = yield* graph.addEdge({
          fromType: "User",
          fromId: "alice",
          edgeType: "follows",
          toType: "User",
          toId: "bob",
          data: { since: 2020 },
        })
        assert.deepStrictEqual(added, {
          fromType: "User",
          fromId: "alice",
          edgeType: "follows",
          toType: "User",
          toId: "bob",
          data: { since: 2020 },
        })
        const ref = { fromType: "User", fromId: "alice", edgeType: "follows", toType: "User", toId: "bob" }
        const found = Option.getOrThrow(yield* graph.getEdge(ref))
        assert.deepStrictEqual(found, added)
        // printed as stored, in this order
        assert.deepStrictEqual(Object.keys(found), [
          "fromType",
          "fromId",
          "edgeType",
          "toType",
          "toId",
          "data",
        ])

        const plain = yield* graph.addEdge({ ...ref, edgeType: "blocks" })
        assert.strictEqual(plain.data, null)
        assert.strictEqual(Option.getOrThrow(yield* graph.getEdge({ ...ref, edgeType: "blocks" })).data, null)

        assert.isTrue(Option.isNone(yield* graph.getEdge({ ...ref, toId: "carol" })))
        assert.isTrue(Option.isNone(yield* graph.getEdge({ ...ref, edgeType: "likes" })))
        // the reverse direction is another edge
        assert.isTrue(Option.isNone(yield* graph.getEdge({ ...ref, fromId: "bob", toId: "alice" })))
      }),
    )

    it.effect("an edge is three records written in one mutateAll, and the writes are in the stream", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const graph = yield* Graph.make({ prefix: "g2/" })
        const before = yield* store.streamSeq()
        yield* graph.addEdge(link("a", "knows", "b", { w: 1 }))
        const added = yield* store.stream("all", before + 1)
        assert.deepStrictEqual(
          added.map((r) => [r.action, r.record.key, r.record.type]),
          [
            ["create", "g2/edge/N/a/knows/N/b", "GraphEdge"],
            ["create", "g2/out/N/a/knows/N/b", "GraphOutgoing"],
            ["create", "g2/in/N/b/knows/N/a", "GraphIncoming"],
          ],
        )
        // one transaction: consecutive seqs, every record holding the whole edge
        assert.deepStrictEqual(
          added.map((r) => r.seq),
          [before + 1, before + 2, before + 3],
        )
        for (const r of added)
          assert.deepStrictEqual(r.record.value, { ...link("a", "knows", "b"), data: { w: 1 } })

        // adding it again replaces its data in all three
        const replaced = yield* graph.addEdge(link("a", "knows", "b", { w: 2 }))
        assert.deepStrictEqual(replaced.data, { w: 2 })
        const records = yield* store.getPrefix("g2/")
        assert.deepStrictEqual(
          records.map((r) => [r.key, r.version, (r.value as Graph.Edge).data]),
          [
            ["g2/edge/N/a/knows/N/b", 2, { w: 2 }],
            ["g2/in/N/b/knows/N/a", 2, { w: 2 }],
            ["g2/out/N/a/knows/N/b", 2, { w: 2 }],
          ],
        )
        assert.deepStrictEqual(words(yield* graph.incoming("N", "b")), ["a-knows->b"])
        assert.deepStrictEqual((yield* graph.outgoing("N", "a"))[0]?.data, { w: 2 })

        const seq = yield* store.streamSeq()
        assert.strictEqual(yield* graph.removeEdge(link("a", "knows", "b")), 1)
        const removed = yield* store.stream("all", seq + 1)
        assert.deepStrictEqual(
          removed.map((r) => [r.action, r.record.key]),
          [
            ["delete", "g2/edge/N/a/knows/N/b"],
            ["delete", "g2/out/N/a/knows/N/b"],
            ["delete", "g2/in/N/b/knows/N/a"],
          ],
        )
        assert.strictEqual(yield* store.countPrefix("g2/"), 0)
        assert.strictEqual(yield* graph.removeEdge(link("a", "knows", "b")), 0)
        assert.strictEqual(yield* store.streamSeq(), seq + 3) // removing nothing writes nothing
      }),
    )

    it.effect("outgoing and incoming: all edges or one type, ordered by edge type then the other end", () =>
      Effect.gen(function* () {
        const graph = yield* Graph.make({ prefix: "g3/" })
        yield* addAll(graph, [
          link("a", "likes", "c"),
          link("a", "follows", "d"),
          link("a", "follows", "b"),
          link("b", "follows", "a"),
          link("c", "follows", "a"),
          link("a", "likes", "a"),
          // another type of node with the same id is another node
          { fromType: "M", fromId: "a", edgeType: "follows", toType: "N", toId: "b" },
        ])
        assert.deepStrictEqual(words(yield* graph.outgoing("N", "a")), [
          "a-follows->b",
          "a-follows->d",
          "a-likes->a",
          "a-likes->c",
        ])
        assert.deepStrictEqual(words(yield* graph.outgoing("N", "a", "follows")), [
          "a-follows->b",
          "a-follows->d",
        ])
        assert.deepStrictEqual(words(yield* graph.outgoing("N", "a", "none")), [])
        assert.deepStrictEqual(words(yield* graph.incoming("N", "a")), [
          "b-follows->a",
          "c-follows->a",
          "a-likes->a",
        ])
        assert.deepStrictEqual(words(yield* graph.incoming("N", "a", "likes")), ["a-likes->a"])
        assert.deepStrictEqual(
          (yield* graph.incoming("N", "b")).map((e) => `${e.fromType}:${e.fromId}`),
          ["M:a", "N:a"],
        )
        assert.deepStrictEqual(words(yield* graph.outgoing("N", "nobody")), [])
        assert.deepStrictEqual(words(yield* graph.outgoing("M", "a")), ["a-follows->b"])
      }),
    )

    it.effect(
      "a / or % inside a type or id never makes two edges share a key or one node's list hold another's",
      () =>
        Effect.gen(function* () {
          const store = yield* Store
          const graph = yield* Graph.make({ prefix: "g4/" })
          const edges: Array<Graph.EdgeInput> = [
            { fromType: "a/b", fromId: "c", edgeType: "e", toType: "x", toId: "y", data: 1 },
            { fromType: "a", fromId: "b/c", edgeType: "e", toType: "x", toId: "y", data: 2 },
            { fromType: "a", fromId: "b", edgeType: "c/e", toType: "x", toId: "y", data: 3 },
            { fromType: "a", fromId: "b%2Fc", edgeType: "e", toType: "x", toId: "y", data: 4 },
            { fromType: "a", fromId: "b", edgeType: "c", toType: "e/x", toId: "y", data: 5 },
            { fromType: "a", fromId: "b", edgeType: "c", toType: "e", toId: "x/y", data: 6 },
            { fromType: "a", fromId: "b/", edgeType: "e", toType: "x", toId: "y", data: 7 },
            { fromType: "a", fromId: "%_\\", edgeType: "e", toType: "x", toId: "y", data: 8 },
          ]
          yield* addAll(graph, edges)
          // 8 edges, 3 records each: no key was shared
          assert.strictEqual(yield* store.countPrefix("g4/"), 24)
          for (const edge of edges) {
            assert.deepStrictEqual(Option.getOrThrow(yield* graph.getEdge(edge)).data, edge.data)
          }
          // "b" is not "b/c", "b/" or "b%2Fc", and its list does not run into theirs
          assert.deepStrictEqual(
            (yield* graph.outgoing("a", "b")).map((e) => e.data),
            [3, 5, 6],
          )
          assert.deepStrictEqual(
            (yield* graph.outgoing("a", "b/c")).map((e) => e.data),
            [2],
          )
          assert.deepStrictEqual(
            (yield* graph.outgoing("a", "b/")).map((e) => e.data),
            [7],
          )
          assert.deepStrictEqual(
            (yield* graph.outgoing("a/b", "c")).map((e) => e.data),
            [1],
          )
          assert.deepStrictEqual(
            (yield* graph.outgoing("a", "b", "c")).map((e) => e.data),
            [5, 6],
          )
          assert.deepStrictEqual(
            (yield* graph.outgoing("a", "%_\\")).map((e) => e.data),
            [8],
          )
          assert.deepStrictEqual(
            (yield* graph.incoming("x", "y")).map((e) => e.data),
            [3, 1, 8, 4, 7, 2],
          )
          assert.deepStrictEqual(
            (yield* graph.incoming("e", "x/y")).map((e) => e.data),
            [6],
          )
          assert.deepStrictEqual(
            (yield* graph.incoming("e", "x")).map((e) => e.data),
            [],
          )
          assert.strictEqual(yield* graph.removeEdge(edges[1]!), 1)
          assert.isTrue(Option.isSome(yield* graph.getEdge(edges[0]!)))
          assert.isTrue(Option.isSome(yield* graph.getEdge(edges[3]!)))
        }),
    )

    it.effect("neighbors: each node once, along the direction and edge types asked for", () =>
      Effect.gen(function* () {
        const graph = yield* Graph.make({ prefix: "g5/" })
        yield* addAll(graph, [
          link("a", "follows", "b"),
          link("a", "likes", "b"),
          link("a", "likes", "c"),
          link("d", "follows", "a"),
          link("b", "follows", "a"),
        ])
        const ids = (nodes: ReadonlyArray<Graph.Node>) => nodes.map((n) => `${n.type}:${n.id}`)
        assert.deepStrictEqual(ids(yield* graph.neighbors("N", "a")), ["N:b", "N:c", "N:d"])
        assert.deepStrictEqual(ids(yield* graph.neighbors("N", "a", { direction: "outgoing" })), [
          "N:b",
          "N:c",
        ])
        assert.deepStrictEqual(ids(yield* graph.neighbors("N", "a", { direction: "incoming" })), [
          "N:b",
          "N:d",
        ])
        assert.deepStrictEqual(ids(yield* graph.neighbors("N", "a", { edgeTypes: ["likes"] })), [
          "N:b",
          "N:c",
        ])
        assert.deepStrictEqual(
          ids(yield* graph.neighbors("N", "a", { edgeTypes: ["follows"], direction: "incoming" })),
          ["N:b", "N:d"],
        )
        assert.deepStrictEqual(ids(yield* graph.neighbors("N", "z")), [])

        // with edge types given, the same order as without: that of the keys (UTF-8 bytes, escaped)
        const types = ["a", "a!", "a/b", "a%", "\u{1F600}", "\uFF01", "Z"]
        yield* addAll(
          graph,
          types.map((type, i) => link("k", type, `t${i}`)),
        )
        const all = yield* graph.neighbors("N", "k", { direction: "outgoing" })
        assert.deepStrictEqual(ids(all), ["N:t6", "N:t1", "N:t3", "N:t2", "N:t0", "N:t5", "N:t4"])
        assert.deepStrictEqual(
          ids(yield* graph.neighbors("N", "k", { direction: "outgoing", edgeTypes: [...types, "a"] })),
          ids(all),
        )
      }),
    )

    it.effect(
      "findPath: a shortest path along edge directions, within maxDepth edges, of the edge types asked for",
      () =>
        Effect.gen(function* () {
          const graph = yield* Graph.make({ prefix: "g6/" })
          // a -> b -> c -> d -> e, a shortcut a -> x -> d of another type, and a cycle c -> a
          yield* addAll(graph, [
            link("a", "road", "b"),
            link("b", "road", "c"),
            link("c", "road", "d"),
            link("d", "road", "e", { km: 4 }),
            link("c", "road", "a"),
            link("a", "air", "x"),
            link("x", "air", "d"),
          ])
          const n = (id: string) => ({ type: "N", id })
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("e"))), [
            "a-air->x",
            "x-air->d",
            "d-road->e",
          ])
          // the edges carry their data
          assert.deepStrictEqual((yield* graph.findPath(n("a"), n("e"))).at(-1)?.data, { km: 4 })
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("e"), { edgeTypes: ["road"] })), [
            "a-road->b",
            "b-road->c",
            "c-road->d",
            "d-road->e",
          ])
          // maxDepth counts edges
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("e"), { maxDepth: 3 })), [
            "a-air->x",
            "x-air->d",
            "d-road->e",
          ])
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("e"), { maxDepth: 2 })), [])
          assert.deepStrictEqual(
            words(yield* graph.findPath(n("a"), n("e"), { edgeTypes: ["road"], maxDepth: 3 })),
            [],
          )
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("b"), { maxDepth: 1 })), ["a-road->b"])
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("b"), { maxDepth: 0 })), [])
          // directions count: e reaches nothing; the cycle leads back
          assert.deepStrictEqual(words(yield* graph.findPath(n("e"), n("a"))), [])
          assert.deepStrictEqual(words(yield* graph.findPath(n("c"), n("x"))), ["c-road->a", "a-air->x"])
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("nowhere"))), [])
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("a"))), [])
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), n("e"), { edgeTypes: ["ship"] })), [])
          // another node type with the same id is not the target
          assert.deepStrictEqual(words(yield* graph.findPath(n("a"), { type: "M", id: "e" })), [])
        }),
    )

    it.effect("findPath: among equally short paths the first in key order, on every backend", () =>
      Effect.gen(function* () {
        const graph = yield* Graph.make({ prefix: "g7/" })
        yield* addAll(graph, [
          link("s", "r", "m2"),
          link("s", "r", "m1"),
          link("m2", "r", "t"),
          link("m1", "r", "t"),
          link("s", "q", "m3"),
          link("m3", "r", "t"),
        ])
        assert.deepStrictEqual(words(yield* graph.findPath({ type: "N", id: "s" }, { type: "N", id: "t" })), [
          "s-q->m3",
          "m3-r->t",
        ])
        assert.deepStrictEqual(
          words(yield* graph.findPath({ type: "N", id: "s" }, { type: "N", id: "t" }, { edgeTypes: ["r"] })),
          ["s-r->m1", "m1-r->t"],
        )
      }),
    )

    it.effect("findPath across a larger graph: a 200-node chain with branches", () =>
      Effect.gen(function* () {
        const graph = yield* Graph.make({ prefix: "g8/" })
        const chain = Array.from({ length: 200 }, (_, i) => link(`c${i}`, "next", `c${i + 1}`))
        const branches = Array.from({ length: 50 }, (_, i) => link(`c${i * 4}`, "side", `s${i}`))
        yield* Effect.forEach([...chain, ...branches], (edge) => graph.addEdge(edge), {
          concurrency: 4,
          discard: true,
        })
        const path = yield* graph.findPath({ type: "N", id: "c0" }, { type: "N", id: "c200" })
        assert.strictEqual(path.length, 200)
        assert.deepStrictEqual(words(path).slice(0, 2), ["c0-next->c1", "c1-next->c2"])
        assert.deepStrictEqual(
          words(yield* graph.findPath({ type: "N", id: "c0" }, { type: "N", id: "s10" })),
          [...Array.from({ length: 40 }, (_, i) => `c${i}-next->c${i + 1}`), "c40-side->s10"],
        )
        assert.strictEqual(
          (yield* graph.findPath({ type: "N", id: "c0" }, { type: "N", id: "c200" }, { maxDepth: 199 }))
            .length,
          0,
        )
      }),
    )

    it.effect("view: Graphviz dot and Mermaid, every node once, text escaped", () =>
      Effect.gen(function* () {
        const graph = yield* Graph.make({ prefix: "g9/" })
        assert.strictEqual(yield* graph.view(), "digraph {\n  rankdir=LR;\n}")
        assert.strictEqual(yield* graph.view("mermaid"), "flowchart LR")
        yield* graph.addEdge({
          fromType: "User",
          fromId: "alice",
          edgeType: "follows",
          toType: "User",
          toId: "bob",
          data: { since: 2020 },
        })
        yield* graph.addEdge({
          fromType: "User",
          fromId: "bob",
          edgeType: "wrote",
          toType: "Post",
          toId: 'say "hi"/#1',
        })
        assert.strictEqual(
          yield* graph.view("dot"),
          [
            "digraph {",
            "  rankdir=LR;",
            '  "User/alice" [label="User: alice"];',
            '  "User/bob" [label="User: bob"];',
            '  "Post/say \\"hi\\"%2F#1" [label="Post: say \\"hi\\"/#1"];',
            '  "User/alice" -> "User/bob" [label="follows {\\"since\\":2020}"];',
            '  "User/bob" -> "Post/say \\"hi\\"%2F#1" [label="wrote"];',
            "}",
          ].join("\n"),
        )
        assert.strictEqual(
          yield* graph.view("mermaid"),
          [
            "flowchart LR",
            '  n0["User: alice"]',
            '  n1["User: bob"]',
            '  n2["Post: say #quot;hi#quot;/#35;1"]',
            '  n0 -->|"follows {#quot;since#quot;:2020}"| n1',
            '  n1 -->|"wrote"| n2',
          ].join("\n"),
        )
        assert.deepStrictEqual(words(yield* graph.edges()), ["alice-follows->bob", 'bob-wrote->say "hi"/#1'])
      }),
    )

    it.effect("graphs under different prefixes are separate; the default prefix is graph/", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const one = yield* Graph.make({ prefix: "g10/one/" })
        const two = yield* Graph.make({ prefix: "g10/two/" })
        yield* one.addEdge(link("a", "e", "b"))
        assert.deepStrictEqual(words(yield* one.outgoing("N", "a")), ["a-e->b"])
        assert.deepStrictEqual(words(yield* two.outgoing("N", "a")), [])
        assert.strictEqual(yield* two.view("mermaid"), "flowchart LR")

        const standard = yield* Graph.make()
        assert.strictEqual(standard.prefix, "graph/")
        yield* standard.addEdge(link("a", "e", "b"))
        assert.deepStrictEqual(
          (yield* store.getPrefix("graph/")).map((r) => r.key),
          ["graph/edge/N/a/e/N/b", "graph/in/N/b/e/N/a", "graph/out/N/a/e/N/b"],
        )
        assert.strictEqual(yield* standard.removeEdge(link("a", "e", "b")), 1)
      }),
    )

    it.effect("bad arguments are refused before anything is written", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const graph = yield* Graph.make({ prefix: "g11/" })
        const seq = yield* store.streamSeq()
        let deep: unknown = 1
        for (let i = 0; i <= maxDepth; i++) deep = [deep]
        const attempts: Array<
          [Effect.Effect<unknown, { readonly _tag: string; readonly message: string }, Store>, RegExp]
        > = [
          [graph.addEdge({ ...link("a", "e", "b"), fromType: "" }), /from type must be a non-empty string/],
          [graph.addEdge({ ...link("a", "e", "b"), toId: "x\u0000y" }), /to id must not contain NUL/],
          [graph.addEdge({ ...link("a", "e", "b"), edgeType: "" }), /edge type must be a non-empty string/],
          [graph.addEdge(link("a", "e", "b", deep)), /nests arrays and objects more than 100 deep/],
          [graph.addEdge(link("a", "e", "b", () => 1)), /cannot be represented as JSON/],
          // each part fits, the escaped key does not
          [graph.addEdge(link("/".repeat(400), "e", "b")), /key would be \d+ bytes .* at most 1024/],
          [graph.getEdge(link("x".repeat(maxNameBytes), "e", "b")), /at most 1024/],
          [graph.outgoing("N", ""), /node id must be a non-empty string/],
          [graph.incoming("N", "a", ""), /edge type must be a non-empty string/],
          [graph.findPath({ type: "N", id: "a" }, { type: "N", id: "b" }, { maxDepth: -1 }), /maxDepth/],
          [graph.findPath({ type: "N", id: "a" }, { type: "N", id: "b" }, { edgeTypes: [""] }), /edge type/],
          [graph.view("png" as Graph.ViewFormat), /dot|mermaid/],
          [Graph.make({ prefix: "a\u0000" }), /graph prefix must not contain NUL/],
        ]
        for (const [attempt, message] of attempts) {
          const error = yield* Effect.flip(attempt)
          assert.strictEqual(error._tag, "InvalidArgumentError")
          assert.match(error.message, message)
        }
        assert.strictEqual(yield* store.streamSeq(), seq)
        assert.strictEqual(yield* store.countPrefix("g11/"), 0)
      }),
    )

    it.effect("concurrent adds and removes of one edge leave all three records or none, alike", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const graph = yield* Graph.make({ prefix: "g13/" })
        const edge = link("a", "e", "b")
        yield* Effect.forEach(
          Array.from({ length: 30 }, (_, i) => i),
          (i): Effect.Effect<unknown, unknown> =>
            i % 3 === 2 ? graph.removeEdge(edge) : graph.addEdge({ ...edge, data: { i } }),
          { concurrency: 6, discard: true },
        )
        const records = yield* store.getPrefix("g13/")
        assert.include([0, 3], records.length)
        if (records.length === 3) {
          const [first, ...others] = records.map((r) => r.value)
          for (const other of others) assert.deepStrictEqual(other, first)
        }
        yield* graph.addEdge({ ...edge, data: "last" })
        assert.deepStrictEqual(
          (yield* store.getPrefix("g13/")).map((r) => r.value),
          Array.from({ length: 3 }, () => ({ ...edge, data: "last" })),
        )
      }),
    )

    it.effect("a stored value that is not an edge fails the read with a ParseError naming the key", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const graph = yield* Graph.make({ prefix: "g12/" })
        yield* store.put("g12/edge/N/a/e/N/b", -1, { fromType: "N" })
        yield* store.put("g12/out/N/a/e/N/b", -1, "not an edge")
        const get = yield* Effect.flip(graph.getEdge(link("a", "e", "b")))
        assert.strictEqual(get._tag, "ParseError")
        assert.include(get.message, "g12/edge/N/a/e/N/b")
        const out = yield* Effect.flip(graph.outgoing("N", "a"))
        assert.strictEqual(out._tag, "ParseError")
        assert.include(out.message, "g12/out/N/a/e/N/b")
        assert.strictEqual((yield* Effect.flip(graph.view()))._tag, "ParseError")
      }),
    )
  })
