/** Helper processes for tests: TypeScript scripts under test/support run with `node --import tsx`. */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Spawns `test/support/<script>` with `args`; stdout and stderr are piped. */
export const spawnScript = (script: string, args: ReadonlyArray<string>): ChildProcess =>
  spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL(script, import.meta.url)), ...args], {
    cwd: root,
    stdio: ["pipe", "pipe", "pipe"],
  })

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Collects a child's output; `lines` gets each stdout line as it arrives. */
export const watch = (child: ChildProcess, lines: (line: string) => void = () => {}) => {
  let stdout = ""
  let stderr = ""
  let pending = ""
  child.stdout?.on("data", (chunk: Buffer) => {
    const text = chunk.toString()
    stdout += text
    pending += text
    const parts = pending.split("\n")
    pending = parts.pop() ?? ""
    for (const line of parts) lines(line)
  })
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const finished = new Promise<Finished>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr })),
  )
  return { finished }
}

/** Resolves when `child` prints `line` on stdout (rejects if it exits first). */
export const waitForLine = (child: ChildProcess, line: string): Promise<void> =>
  new Promise((resolve, reject) => {
    let pending = ""
    const onData = (chunk: Buffer) => {
      pending += chunk.toString()
      if (pending.split("\n").includes(line)) {
        child.stdout?.off("data", onData)
        resolve()
      }
    }
    child.stdout?.on("data", onData)
    child.once("exit", (code) => reject(new Error(`the process exited (${code}) before printing "${line}"`)))
  })

/** Kills every child still running, by PID (a failed test must not leave them behind). */
export const killAll = (children: ReadonlyArray<ChildProcess>) => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGKILL")
    }
  }
}
