/**
 * `kv graph ...` end to end on one backend: spawns the BUILT executable (run `npm run build`
 * first). The database behind `backend.connection` must be private to the suite; tests use
 * node types of their own, so their edges never meet.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { beforeAll, describe, expect, it } from "vitest"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import { Store } from "../src/Store.js"
import { fails, ok, spawnKv } from "./Cli.suite.js"

export interface GraphCliBackend {
  readonly type: BackendType
  readonly connection: string
}

interface PrintedEdge {
  readonly fromType: string
  readonly fromId: string
  readonly edgeType: string
  readonly toType: string
  readonly toId: string
  readonly data: unknown
}

const words = (edges: ReadonlyArray<PrintedEdge>) => edges.map((e) => `${e.fromId}-${e.edgeType}->${e.toId}`)

export const graphCliSuite = (backend: GraphCliBackend) =>
  describe(`kv graph on ${backend.type}`, () => {
    const globals = ["--type", backend.type, "--connection", backend.connection]
    const kv = (args: ReadonlyArray<string>, input?: string) =>
      spawnKv([...args, ...globals], input === undefined ? {} : { input })
    const json = async (args: ReadonlyArray<string>, input?: string) => JSON.parse(ok(await kv(args, input)))

    /** Through the library: how many records are under `prefix`, and the stream's end. */
    const snapshot = (prefix: string) =>
      Effect.runPromise(
        Effect.flatMap(Store, (store) => Effect.all([store.countPrefix(prefix), store.streamSeq()])).pipe(
          Effect.provide(layerFor(backend.type, Redacted.make(backend.connection))),
        ),
      )

    beforeAll(async () => {
      ok(await kv(["init"]))
    })

    it("add-edge reads the data from stdin (empty: null) and prints the edge; get-edge prints it", async () => {
      const added = await json(["graph", "add-edge", "A", "alice", "follows", "A", "bob"], '{"since":2020}')
      expect(added).toEqual({
        fromType: "A",
        fromId: "alice",
        edgeType: "follows",
        toType: "A",
        toId: "bob",
        data: { since: 2020 },
      })
      const stdout = ok(await kv(["graph", "get-edge", "A", "alice", "follows", "A", "bob"]))
      // 2-space JSON, in the documented field order
      expect(stdout).toBe(`${JSON.stringify(added, null, 2)}\n`)
      expect(Object.keys(JSON.parse(stdout))).toEqual([
        "fromType",
        "fromId",
        "edgeType",
        "toType",
        "toId",
        "data",
      ])

      const [empty, blank] = await Promise.all([
        json(["graph", "add-edge", "A", "bob", "follows", "A", "carol"], ""),
        json(["graph", "add-edge", "A", "bob", "likes", "A", "carol"], " \n"),
      ])
      expect([empty.data, blank.data]).toEqual([null, null])
      expect((await json(["graph", "get-edge", "A", "bob", "likes", "A", "carol"])).data).toBeNull()
      // again: the data is replaced
      expect((await json(["graph", "add-edge", "A", "bob", "likes", "A", "carol"], "[1,2]")).data).toEqual([
        1, 2,
      ])
      expect((await json(["graph", "get-edge", "A", "bob", "likes", "A", "carol"])).data).toEqual([1, 2])
    })

    it("get-edge of a missing edge is not found; remove-edge prints the number removed", async () => {
      ok(await kv(["graph", "add-edge", "B", "x", "e", "B", "y"], "1"))
      fails(
        await kv(["graph", "get-edge", "B", "x", "e", "B", "nobody"]),
        /^kv: edge "B\/x -\[e\]-> B\/nobody" not found\n$/,
      )
      fails(await kv(["graph", "get-edge", "B", "y", "e", "B", "x"]), /not found/) // the reverse is another edge
      expect(ok(await kv(["graph", "remove-edge", "B", "x", "e", "B", "y"]))).toBe("1\n")
      expect(ok(await kv(["graph", "remove-edge", "B", "x", "e", "B", "y"]))).toBe("0\n")
      fails(await kv(["graph", "get-edge", "B", "x", "e", "B", "y"]), /not found/)
      expect(await snapshot("graph/edge/B/")).toEqual([0, expect.any(Number)])
    })

    it("outgoing and incoming print JSON arrays, of one edge type when given", async () => {
      for (const [from, type, to] of [
        ["a", "road", "b"],
        ["a", "air", "c"],
        ["b", "road", "c"],
        ["d", "road", "c"],
      ] as const) {
        ok(await kv(["graph", "add-edge", "C", from, type, "C", to]))
      }
      const [out, outRoad, into, intoRoad, none] = await Promise.all([
        json(["graph", "outgoing", "C", "a"]),
        json(["graph", "outgoing", "C", "a", "road"]),
        json(["graph", "incoming", "C", "c"]),
        json(["graph", "incoming", "C", "c", "road"]),
        json(["graph", "outgoing", "C", "nobody"]),
      ])
      expect(words(out)).toEqual(["a-air->c", "a-road->b"])
      expect(words(outRoad)).toEqual(["a-road->b"])
      expect(words(into)).toEqual(["a-air->c", "b-road->c", "d-road->c"])
      expect(words(intoRoad)).toEqual(["b-road->c", "d-road->c"])
      expect(none).toEqual([])
      expect(out[0]).toEqual({
        fromType: "C",
        fromId: "a",
        edgeType: "air",
        toType: "C",
        toId: "c",
        data: null,
      })
    })

    it("find-path prints a shortest path, [] when none; --max-depth counts edges; --edge-types restricts", async () => {
      for (const [from, type, to] of [
        ["s", "walk", "m"],
        ["m", "walk", "t"],
        ["t", "walk", "u"],
        ["s", "fly", "u"],
      ] as const) {
        ok(await kv(["graph", "add-edge", "D", from, type, "D", to], `{"${from}":"${to}"}`))
      }
      const [direct, walking, short, tooShort, backwards, none] = await Promise.all([
        json(["graph", "find-path", "D", "s", "D", "u"]),
        json(["graph", "find-path", "D", "s", "D", "u", "--edge-types", "walk"]),
        json(["graph", "find-path", "D", "s", "D", "u", "--edge-types=walk,run", "--max-depth", "3"]),
        json(["graph", "find-path", "D", "s", "D", "u", "--edge-types", "walk", "--max-depth=2"]),
        json(["graph", "find-path", "D", "u", "D", "s"]),
        json(["graph", "find-path", "D", "s", "D", "nowhere"]),
      ])
      expect(words(direct)).toEqual(["s-fly->u"])
      expect(direct[0].data).toEqual({ s: "u" })
      expect(words(walking)).toEqual(["s-walk->m", "m-walk->t", "t-walk->u"])
      expect(words(short)).toEqual(["s-walk->m", "m-walk->t", "t-walk->u"])
      expect(tooShort).toEqual([])
      expect(backwards).toEqual([])
      expect(none).toEqual([])
    })

    it("view prints Graphviz dot by default and Mermaid with --format mermaid", async () => {
      // the whole graph: what the tests before this one added
      const [dot, mermaid] = await Promise.all([
        kv(["graph", "view"]),
        kv(["graph", "view", "--format", "mermaid"]),
      ])
      const dotText = ok(dot)
      const mermaidText = ok(mermaid)
      expect(dotText.startsWith("digraph {\n  rankdir=LR;\n")).toBe(true)
      expect(dotText.endsWith("}\n")).toBe(true)
      expect(dotText).toContain('  "A/alice" [label="A: alice"];\n')
      expect(dotText).toContain('  "A/alice" -> "A/bob" [label="follows {\\"since\\":2020}"];\n')
      expect(dotText).toContain('  "D/s" -> "D/u" [label="fly {\\"s\\":\\"u\\"}"];\n')
      expect(mermaidText.startsWith("flowchart LR\n")).toBe(true)
      expect(mermaidText).toContain('  n0["A: alice"]\n  n1["A: bob"]\n')
      expect(mermaidText).toContain('  n0 -->|"follows {#quot;since#quot;:2020}"| n1\n')
      // one line per node and per edge: every edge of the graph is there
      const edges = await snapshot("graph/edge/")
      expect(dotText.split("\n").filter((line) => line.includes(" -> ")).length).toBe(edges[0])
      expect(mermaidText.split("\n").filter((line) => line.includes(" -->")).length).toBe(edges[0])
    })

    it("types and ids with / and other characters work end to end", async () => {
      ok(await kv(["graph", "add-edge", "E/x", "a/b", "has/part", "E", "c d%2F"], '"one"'))
      ok(await kv(["graph", "add-edge", "E", "x/a", "b", "E", "c d%2F"], '"two"'))
      const [one, two, into] = await Promise.all([
        json(["graph", "get-edge", "E/x", "a/b", "has/part", "E", "c d%2F"]),
        json(["graph", "get-edge", "E", "x/a", "b", "E", "c d%2F"]),
        json(["graph", "incoming", "E", "c d%2F"]),
      ])
      expect([one.data, two.data]).toEqual(["one", "two"])
      expect(into.map((e: PrintedEdge) => e.data)).toEqual(["two", "one"])
      expect(await json(["graph", "outgoing", "E", "x"])).toEqual([])
    })

    it("writes are in the stream: an edge is three records of one write", async () => {
      const [, before] = await snapshot("graph/")
      ok(await kv(["graph", "add-edge", "F", "a", "e", "F", "b"], '{"w":1}'))
      const records = await json(["stream", "get", String(before + 1)])
      expect(
        records.map((r: { action: string; record: { key: string; type: string } }) => [
          r.action,
          r.record.key,
          r.record.type,
        ]),
      ).toEqual([
        ["create", "graph/edge/F/a/e/F/b", "GraphEdge"],
        ["create", "graph/out/F/a/e/F/b", "GraphOutgoing"],
        ["create", "graph/in/F/b/e/F/a", "GraphIncoming"],
      ])
      expect(records[0].record.value).toEqual({
        fromType: "F",
        fromId: "a",
        edgeType: "e",
        toType: "F",
        toId: "b",
        data: { w: 1 },
      })
    })

    it("bad input is one clear error and writes nothing", async () => {
      const before = await snapshot("graph/")
      const deep = `${"[".repeat(101)}${"]".repeat(101)}`
      const results = await Promise.all([
        kv(["graph", "add-edge", "G", "a", "e", "G", "b"], "not json"),
        kv(["graph", "add-edge", "G", "a", "e", "G", "b"], deep),
        kv(["graph", "add-edge", "G", "", "e", "G", "b"], "1"),
        kv(["graph", "add-edge", "G", "a", "e", "G"], "1"),
        kv(["graph", "add-edge", "G", "/".repeat(400), "e", "G", "b"], "1"),
        kv(["graph", "find-path", "G", "a", "G", "b", "--max-depth", "-1"]),
        kv(["graph", "find-path", "G", "a", "G", "b", "--edge-types", ""]),
        kv(["graph", "view", "--format", "png"]),
        kv(["graph", "outgoing", "G", ""]),
        kv(["graph"]),
      ])
      const messages = [
        /stdin is not valid JSON/,
        /nests arrays and objects more than 100 deep/,
        /from id must be a non-empty string/,
        /to-id/,
        /key would be \d+ bytes .* at most 1024/,
        /--max-depth must be a non-negative integer, got -1/,
        /--edge-types must/,
        /dot|mermaid/,
        /node id must be a non-empty string/,
        /missing command: "kv graph" expects one of add-edge, get-edge, remove-edge, outgoing, incoming, find-path, view/,
      ]
      results.forEach((result, i) => {
        fails(result, messages[i])
      })
      expect(await snapshot("graph/")).toEqual(before)
    })
  })
