/**
 * The BUILT bundle (`npm run build` first) loads the NATS client only for `kv nats`: it is a
 * chunk of its own, out of the static imports of `kv.js` and of every backend's chunk, and
 * `kv get key` runs without it.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"

const repo = fileURLToPath(new URL("..", import.meta.url))
const dist = path.join(repo, "dist")
const chunks = path.join(dist, "kv-chunks")

/** A string only the NATS client has (its message for a 503 "no responders" on a publish). */
const natsMarker = "jetstream is not enabled"

/** The files `file` imports statically, transitively (itself included). */
const staticClosure = (file: string, seen = new Set<string>()): Set<string> => {
  if (seen.has(file)) return seen
  seen.add(file)
  const text = fs.readFileSync(file, "utf8")
  // static imports: `import ... from "./x.js"` or `import "./x.js"`, never `import("./x.js")`
  for (const match of text.matchAll(/\bimport\s*(?:[\w*{}\s,$]+from\s*)?["'](\.{1,2}\/[^"']+)["']/g)) {
    staticClosure(path.resolve(path.dirname(file), match[1]!), seen)
  }
  return seen
}

const chunkNamed = (prefix: string) => {
  const name = fs.readdirSync(chunks).find((file) => file.startsWith(`${prefix}-`))
  if (name === undefined) throw new Error(`no ${prefix} chunk in ${chunks}: run \`npm run build\``)
  return path.join(chunks, name)
}

describe("the bundle", () => {
  it("the NATS client is one lazily loaded chunk, outside what kv.js and the backends import", () => {
    const withNats = fs
      .readdirSync(chunks)
      .filter((file) => fs.readFileSync(path.join(chunks, file), "utf8").includes(natsMarker))
    expect(withNats.map((file) => file.replace(/-\w+\.js$/, ""))).toEqual(["NatsPusher"])
    const loadedByGetKey = new Set([
      ...staticClosure(path.join(dist, "kv.js")),
      ...["Sqlite", "Postgres", "Rqlite"].flatMap((backend) => [...staticClosure(chunkNamed(backend))]),
    ])
    expect(loadedByGetKey.size).toBeGreaterThan(4) // the walk found the imports
    for (const file of loadedByGetKey) {
      expect(fs.readFileSync(file, "utf8"), path.basename(file)).not.toContain(natsMarker)
    }
    // kv.js reaches it only through import()
    expect(fs.readFileSync(path.join(dist, "kv.js"), "utf8")).toMatch(
      /import\(["']\.\/kv-chunks\/NatsPusher-\w+\.js["']\)/,
    )
  })

  describe("without the NATS chunk", () => {
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bundle-"))
    afterAll(() => fs.rmSync(copy, { recursive: true, force: true }))
    fs.cpSync(dist, path.join(copy, "dist"), { recursive: true })
    fs.rmSync(path.join(copy, "dist", "kv-chunks", path.basename(chunkNamed("NatsPusher"))))
    fs.symlinkSync(path.join(repo, "node_modules"), path.join(copy, "node_modules"))
    fs.copyFileSync(path.join(repo, "package.json"), path.join(copy, "package.json"))
    const kv = (args: ReadonlyArray<string>, input = "") => {
      const result = spawnSync(process.execPath, [path.join(copy, "dist", "kv.js"), ...args], {
        cwd: copy,
        input,
        encoding: "utf8",
      })
      return { code: result.status, stdout: result.stdout, stderr: result.stderr }
    }
    const connection = `file:${path.join(copy, "data.db")}?mode=rwc`

    it("kv put and kv get key still run; kv nats push does not", () => {
      expect(kv(["put", "k", "--connection", connection], "{}")).toMatchObject({ code: 0, stderr: "" })
      expect(kv(["get", "key", "k", "--connection", connection])).toMatchObject({
        code: 0,
        stdout: "{}\n",
        stderr: "",
      })
      expect(kv(["get", "key", "missing", "--connection", connection])).toMatchObject({
        code: 1,
        stderr: 'kv: key "missing" not found\n',
      })
      const push = kv(["nats", "push", "s", "c", "--connection", connection])
      expect(push.code).toBe(1)
      expect(push.stderr).toMatch(/NatsPusher/)
    })
  })
})
