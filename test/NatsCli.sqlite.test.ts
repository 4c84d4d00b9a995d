/**
 * `kv nats push` on SQLite files (one per test): the kill test, NATS unreachable behind a proxy,
 * a subject no stream captures, the filters, and bad arguments.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it, onTestFinished } from "vitest"
import { fails, spawnKv } from "./Cli.suite.js"
import {
  eventually,
  expectDeliveredOnce,
  libraryOn,
  type NatsBackend,
  natsKillSuite,
  startPush,
} from "./NatsCli.suite.js"
import { closeConnections, createTestStream, natsPort, natsUrl, uniqueId } from "./support/jetstream.js"
import { startSwitchableProxy } from "./support/switchableProxy.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-nats-cli-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
afterAll(() => closeConnections())

let files = 0
const newBackend = (): NatsBackend => ({
  type: "sqlite",
  connection: `file:${path.join(dir, `data-${files++}.db`)}?mode=rwc`,
})

natsKillSuite(newBackend())

describe("kv nats push on sqlite", () => {
  it("NATS unreachable for a while: nothing is committed meanwhile, then everything arrives once", async () => {
    const backend = newBackend()
    const library = libraryOn(backend)
    const stream = await createTestStream()
    onTestFinished(() => stream.remove())
    const proxy = await startSwitchableProxy(natsPort)
    onTestFinished(() => proxy.close())
    const streamName = `outage-${uniqueId()}`
    const position = async () => (await library.status(streamName))?.position
    const push = startPush(backend, streamName, "p", [
      "--nats-url",
      `nats://127.0.0.1:${proxy.port}`,
      "--subject-prefix",
      stream.subjectPrefix,
    ])
    await library.write(0, 100)
    await eventually(async () => (await position()) === 100, "the first commit")

    proxy.cut()
    await push.waitForStderr(/NATS: disconnected from/)
    await library.write(100, 100)
    // the pusher read them and could not get them acknowledged (it says so and goes on trying)
    await push.waitForStderr(/JetStream did not acknowledge 100 messages from seq 101: .*; retrying/)
    expect(await position()).toBe(100)
    expect(await stream.count()).toBe(100)

    proxy.restore()
    await eventually(async () => (await position()) === 200, "the commit after the outage")
    expect(push.stderr()).toMatch(/NATS: reconnected to/)
    push.kill("SIGTERM")
    expect(await push.exited).toEqual({ code: 0, signal: null })
    expect(push.stdout()).toBe("")
    expect(await library.status(streamName)).toMatchObject({ lockedBy: null })
    await expectDeliveredOnce(stream, streamName, await library.changes())
  })

  it("a subject no stream captures is one kv: line, exit 1; nothing committed, the lock released", async () => {
    const backend = newBackend()
    const library = libraryOn(backend)
    await library.write(0, 3)
    const streamName = `nostream-${uniqueId()}`
    const subjectPrefix = `kvtest.none.${uniqueId()}`
    const result = await spawnKv([
      "nats",
      "push",
      streamName,
      "p",
      "--subject-prefix",
      subjectPrefix,
      "--nats-url",
      natsUrl,
      "--type",
      "sqlite",
      "--connection",
      backend.connection,
    ])
    fails(
      result,
      new RegExp(
        `^kv: no JetStream stream captures subject "${subjectPrefix.replaceAll(".", "\\.")}\\.k\\.0\\.Order" ` +
          `\\(record seq 1, key "k/0"\\): NATS answered "no responders"; create a stream`,
      ),
    )
    expect(await library.status(streamName)).toMatchObject({ position: 0, lockedBy: null })
  })

  it("--of-type and --prefix: only those records are published; the position moves over the others", async () => {
    const backend = newBackend()
    const library = libraryOn(backend)
    const stream = await createTestStream()
    onTestFinished(() => stream.remove())
    await library.write(0, 400)
    const streamName = `filtered-${uniqueId()}`
    const push = startPush(backend, streamName, "p", [
      "--nats-url",
      natsUrl,
      "--subject-prefix",
      stream.subjectPrefix,
      "--of-type",
      "Order",
      "--prefix",
      "k/1",
    ])
    const latest = await library.latestSeq()
    await eventually(
      async () => (await library.status(streamName))?.position === latest,
      "the end of the stream",
    )
    push.kill("SIGINT")
    expect(await push.exited).toEqual({ code: 0, signal: null })
    const expected = (await library.changes()).filter(
      (change) => change.record.type === "Order" && change.record.key.startsWith("k/1"),
    )
    expect(expected.length).toBeGreaterThan(20)
    expect(expected.length).toBeLessThan(latest / 3)
    await expectDeliveredOnce(stream, streamName, expected)
  })

  it("bad arguments and an unreachable server are one kv: line, exit 1, and change nothing", async () => {
    const backend = newBackend()
    const library = libraryOn(backend)
    await library.write(0, 3)
    const closedPort = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => resolve(port))
      })
    })
    const push = (streamName: string, ...flags: Array<string>) =>
      spawnKv([
        "nats",
        "push",
        streamName,
        "p",
        ...flags,
        "--type",
        "sqlite",
        "--connection",
        backend.connection,
      ])
    const password = "N4ts-secret-pw"
    const [prefix, wildcard, url, lineBreak, unreachable, noCommand] = await Promise.all([
      push("s1", "--subject-prefix", "a..b"),
      push("s2", "--subject-prefix", "kv.>"),
      push("s3", "--nats-url", "nats://"),
      push("two\nlines"),
      push("s4", "--nats-url", `nats://kvuser:${password}@127.0.0.1:${closedPort}`),
      spawnKv(["nats"]),
    ])
    fails(prefix, /subject prefix must be NATS subject tokens separated by dots/)
    fails(wildcard, /subject prefix must be NATS subject tokens/)
    fails(url, /--nats-url: not a NATS URL/)
    fails(lineBreak, /cannot be a NATS message id/)
    fails(unreachable, new RegExp(`^kv: cannot connect to NATS at nats://127\\.0\\.0\\.1:${closedPort}: `))
    expect(unreachable.stderr).not.toContain(password)
    fails(noCommand, /missing command: "kv nats" expects one of push/)
    for (const name of ["s1", "s2", "s3", "s4", "two\nlines"])
      expect(await library.status(name)).toBeUndefined()
  })
})
