/**
 * What a one-shot `kv` command does when its stdout cannot take the data, on the BUILT
 * executable (SQLite; the long-running commands are tested on every backend in their suites):
 * a reader that went away ends it quietly, a stdout that fails otherwise is one error line.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ok, spawnKv } from "./Cli.suite.js"

const bin = fileURLToPath(new URL("../dist/kv.js", import.meta.url))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cli-stdout-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const globals = ["--connection", `file:${path.join(dir, "data.db")}?mode=rwc`]

/** Runs kv with `stdout` as its standard output; resolves with its exit code and stderr. */
const run = (args: ReadonlyArray<string>, stdout: "pipe" | number, closeAtOnce = false) =>
  new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args, ...globals], {
      cwd: dir,
      stdio: ["ignore", stdout, "pipe"],
    })
    if (closeAtOnce) child.stdout?.destroy()
    let stderr = ""
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stderr }))
  })

describe("kv with a stdout that cannot take the data", () => {
  beforeAll(async () => {
    ok(await spawnKv(["init", ...globals]))
    ok(await spawnKv(["put", "k", ...globals], { input: '{"big": "value"}' }))
  })

  it("a reader that is gone (kv list | true): exit 0, nothing on stderr", async () => {
    expect(await run(["list"], "pipe", true)).toEqual({ code: 0, stderr: "" })
  })

  it("a stdout that fails otherwise (> /dev/full): one error line, exit 1", async () => {
    const full = fs.openSync("/dev/full", "w")
    try {
      const result = await run(["list"], full)
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(/^kv: cannot write to stdout: ENOSPC[^\n]*\n$/)
    } finally {
      fs.closeSync(full)
    }
  })
})
