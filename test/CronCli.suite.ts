/**
 * `kv cron ...` end to end on one backend (the BUILT executable: `npm run build` first): set,
 * list, get and delete print what SPEC says; a bad expression, zone, duration or payload is one
 * `kv:` line, exit 1, and changes nothing.
 */
import { beforeAll, describe, expect, it } from "vitest"
import type { BackendType } from "../src/cli/backend.js"
import { fails, ok, spawnKv } from "./Cli.suite.js"

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

export interface CronCliBackend {
  readonly type: BackendType
  readonly connection: string
}

export const cronCliSuite = (backend: CronCliBackend) =>
  describe(`kv cron on ${backend.type}`, () => {
    const globals = ["--type", backend.type, "--connection", backend.connection]
    const kv = (args: ReadonlyArray<string>, input?: string) =>
      spawnKv([...args, ...globals], input === undefined ? {} : { input })
    const json = async (args: ReadonlyArray<string>) => JSON.parse(ok(await kv(args)))

    beforeAll(async () => {
      ok(await kv(["init"]))
    })

    it("set prints the schedule; get, list and delete", async () => {
      const set = JSON.parse(
        ok(
          await kv(
            [
              "cron",
              "set",
              "report",
              "0 8 * * 1-5",
              "send-report",
              "--timezone",
              "Europe/Berlin",
              "--backfill",
              "90m",
            ],
            '{"to": "ops"}',
          ),
        ),
      )
      expect(Object.keys(set)).toEqual(["id", "cron", "name", "payload", "timezone", "backfill", "nextTick"])
      expect(set).toMatchObject({
        id: "report",
        cron: "0 8 * * 1-5",
        name: "send-report",
        payload: { to: "ops" },
        timezone: "Europe/Berlin",
        backfill: "1h30m",
      })
      expect(set.nextTick).toMatch(RFC3339)
      // 08:00 in Berlin is 07:00 or 06:00 UTC, on a weekday
      const next = new Date(set.nextTick)
      expect([6, 7]).toContain(next.getUTCHours())
      expect([1, 2, 3, 4, 5]).toContain(next.getUTCDay())
      expect(next.getTime()).toBeGreaterThan(Date.now())

      // no stdin payload: {}
      const plain = await json(["cron", "set", "every-minute", "* * * * *", "log"])
      expect(plain).toMatchObject({ payload: {}, timezone: null, backfill: null })
      expect(await json(["cron", "get", "report"])).toEqual(set)
      const all = await json(["cron", "list"])
      expect(all.map((s: { id: string }) => s.id)).toEqual(["every-minute", "report"])
      expect(ok(await kv(["cron", "delete", "every-minute"]))).toBe("1\n")
      expect(ok(await kv(["cron", "delete", "every-minute"]))).toBe("0\n")
      fails(await kv(["cron", "get", "every-minute"]), /^kv: cron schedule "every-minute" not found\n$/)
      expect((await json(["cron", "list"])).map((s: { id: string }) => s.id)).toEqual(["report"])
    })

    it("a bad expression, zone, backfill or payload is a clear error and changes nothing", async () => {
      const before = ok(await kv(["cron", "list"]))
      fails(
        await kv(["cron", "set", "report", "61 * * * *", "x"]),
        /^kv: invalid cron expression "61 \* \* \* \*": /,
      )
      fails(
        await kv(["cron", "set", "report", "every day", "x"]),
        /^kv: invalid cron expression "every day": /,
      )
      fails(
        await kv(["cron", "set", "report", "0 * * * *", "x", "--timezone", "Mars/Olympus"]),
        /^kv: unknown time zone "Mars\/Olympus"\n$/,
      )
      fails(
        await kv(["cron", "set", "report", "0 * * * *", "x", "--backfill", "soon"]),
        /invalid duration "soon"/,
      )
      fails(
        await kv(["cron", "set", "report", "0 * * * *", "x"], "[1, 2]"),
        /^kv: the payload of a cron schedule must be a JSON object\n$/,
      )
      fails(await kv(["cron", "set", "report", "0 * * * *", "x"], "{oops"), /^kv: stdin is not valid JSON/)
      fails(await kv(["cron"]), /^kv: missing command: "kv cron" expects one of set, list, get, delete/)
      expect(ok(await kv(["cron", "list"]))).toBe(before)
    })
  })
