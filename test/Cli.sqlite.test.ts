/**
 * `kv` on SQLite, and the parts of the CLI that do not depend on a backend.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import { afterAll, describe, expect, it } from "vitest"
import * as Cli from "../src/Cli.js"
import { redact } from "../src/internal/connection.js"
import * as DurationText from "../src/internal/duration.js"
import { cliSuite, fails, spawnKv } from "./Cli.suite.js"

// ---------------------------------------------------------------------------
// Independent of the backend under test
// ---------------------------------------------------------------------------

describe("durations", () => {
  it.each([
    ["500ms", 500],
    ["10s", 10_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["1.5h", 5_400_000],
    ["2d", 172_800_000],
    ["1m30s250ms", 90_250],
    ["0", 0],
  ])("%s is %d ms", (text, millis) => {
    expect(Duration.toMillis(Either.getOrThrow(DurationText.parse(text)))).toBe(millis)
  })

  it.each(["", "10", "5x", "m", "-5m", "1h 30m", "1h30", "ms"])("%j is invalid", (text) => {
    expect(Either.isLeft(DurationText.parse(text))).toBe(true)
  })

  it("parsePositive rejects zero", () => {
    expect(Either.isLeft(DurationText.parsePositive("0s"))).toBe(true)
    expect(Either.isRight(DurationText.parsePositive("1ms"))).toBe(true)
  })
})

describe("command-line rewriting", () => {
  it("moves the global flags in front of the command words; the last one wins", () => {
    expect(
      Cli.normalizeArgs(["get", "key", "--type", "x", "k", "--connection=list", "--type=postgres"]),
    ).toEqual(["--type=postgres", "--connection=list", "get", "key", "k"])
  })

  it("leaves everything after -- alone", () => {
    expect(Cli.normalizeArgs(["get", "key", "--", "--type", "x"])).toEqual([
      "get",
      "key",
      "--",
      "--type",
      "x",
    ])
  })

  it("turns --version N into --if-version=N, but keeps the bare built-in --version", () => {
    expect(Cli.normalizeArgs(["put", "k", "--version", "-1"])).toEqual(["put", "k", "--if-version=-1"])
    expect(Cli.normalizeArgs(["put", "k", "--version=3"])).toEqual(["put", "k", "--if-version=3"])
    expect(Cli.normalizeArgs(["--version", "--type", "sqlite"])).toEqual(["--version"])
  })

  it("redacts passwords", () => {
    const line = redact("cannot reach postgres://u:pw1@h:5432/db or http://h:4001?user=a&password=pw2")
    expect(line).toBe("cannot reach postgres://u:***@h:5432/db or http://h:4001?user=a&password=***")
    const secrets = Cli.secretsOf(["node", "kv", "--connection", "http://h?password=hunter22"], {})
    expect(redact("auth failed for hunter22", secrets)).toBe("auth failed for ***")
  })
})

describe("kv never prints a password", () => {
  const secret = "Sup3r-S3cret-pw"
  it.each([
    ["postgres", `postgres://kvuser:${secret}@127.0.0.1:1/db?sslmode=disable`],
    ["rqlite", `http://admin:${secret}@127.0.0.1:1`],
    ["rqlite", `http://127.0.0.1:1?user=admin&password=${secret}`],
  ])("--type %s --connection %s", async (type, connection) => {
    const [flag, env] = await Promise.all([
      spawnKv(["count", "all", "--type", type, "--connection", connection]),
      spawnKv(["count", "all"], { env: { KV_TYPE: type, KV_CONNECTION: connection } }),
    ])
    for (const result of [flag, env]) {
      fails(result)
      expect(result.stderr).not.toContain(secret)
    }
  })
})

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

const sqliteDir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cli-"))
afterAll(() => fs.rmSync(sqliteDir, { recursive: true, force: true }))
// a regular file where a directory should be: no process (not even root) can create a database there
fs.writeFileSync(path.join(sqliteDir, "not-a-directory"), "")

cliSuite({
  type: "sqlite",
  connection: `file:${path.join(sqliteDir, "data.db")}?mode=rwc`,
  readOnlyConnection: `file:${path.join(sqliteDir, "data.db")}?mode=ro`,
  unusableConnection: `file:${path.join(sqliteDir, "not-a-directory", "data.db")}?mode=rwc`,
})
