/**
 * A NATS server of the test's own (`nats-server` with JetStream, on a free loopback port, its
 * store in a temp directory), that the test may stop and start again on the same port: the
 * shared server on 4222 is never restarted.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export interface NatsServer {
  readonly port: number
  readonly url: string
  /** Stops the server (SIGTERM, by PID) and waits for it to exit. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port with the same store. */
  readonly start: () => Promise<void>
  /** Stops it and removes its store. */
  readonly remove: () => Promise<void>
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

export const startNatsServer = async (): Promise<NatsServer> => {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-nats-"))
  let child: ChildProcess | undefined
  let log = ""
  const onExit = () => child?.kill("SIGKILL")
  process.once("exit", onExit)

  const start = async () => {
    log = ""
    const started = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
      stdio: ["ignore", "ignore", "pipe"],
    })
    child = started
    started.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      log += chunk
    })
    const deadline = Date.now() + 20_000
    while (!(await accepts(port))) {
      if (started.exitCode !== null) throw new Error(`nats-server exited (${started.exitCode}):\n${log}`)
      if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port}:\n${log}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
  const stop = async () => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()))
    process.kill(running.pid!, "SIGTERM")
    await exited
  }
  await start()
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    stop,
    start,
    remove: async () => {
      await stop()
      process.removeListener("exit", onExit)
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
