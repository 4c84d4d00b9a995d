/**
 * A long-running `kv` process (the BUILT `dist/kv.js`), e.g. `kv task run`: its output as it
 * comes, signals by PID, its stdout closed as by `| head -1`, and its exit.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../../dist/kv.js", import.meta.url))

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface KvProcess {
  readonly child: ChildProcess
  /** Everything written so far. */
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<Exit>
  readonly kill: (signal: NodeJS.Signals) => void
  /** Resolves once stderr matches `pattern`; rejects when the process exits first or after `timeoutMs`. */
  readonly waitForStderr: (pattern: RegExp, timeoutMs?: number) => Promise<void>
  /** The same for stdout. */
  readonly waitForStdout: (pattern: RegExp, timeoutMs?: number) => Promise<void>
  /** Closes the reading end of stdout, as `head -1` does once it has its line: the next write fails (EPIPE). */
  readonly closeStdout: () => void
}

export const startKv = (
  args: ReadonlyArray<string>,
  options: { readonly keepStdout?: boolean } = {},
): KvProcess => {
  const env: Record<string, string | undefined> = { ...process.env }
  delete env.KV_TYPE
  delete env.KV_CONNECTION
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: os.tmpdir(),
    env,
    stdio: ["ignore", options.keepStdout === false ? "ignore" : "pipe", "pipe"],
  })
  let stdout = ""
  let stderr = ""
  const listeners = new Set<() => void>()
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    for (const listener of listeners) listener()
  })
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
    for (const listener of listeners) listener()
  })
  const exited = new Promise<Exit>((resolve) => {
    child.on("close", (code, signal) => {
      for (const listener of listeners) listener()
      resolve({ code, signal })
    })
  })
  // the test process killed without teardown: do not leave the runner behind
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
  process.once("exit", onExit)
  void exited.then(() => process.removeListener("exit", onExit))
  /** Resolves once `output()` matches `pattern`; rejects when the process exits first or after `timeoutMs`. */
  const waitFor = (name: string, output: () => string, pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pattern.test(output())) {
          done()
          resolve()
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`kv exited before ${name} matched ${pattern}:\n${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${name} did not match ${pattern} within ${timeoutMs} ms:\n${stderr}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        listeners.delete(check)
      }
      listeners.add(check)
      check()
    })
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    kill: (signal) => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, signal)
      }
    },
    waitForStderr: (pattern, timeoutMs) => waitFor("stderr", () => stderr, pattern, timeoutMs),
    waitForStdout: (pattern, timeoutMs) => waitFor("stdout", () => stdout, pattern, timeoutMs),
    closeStdout: () => {
      child.stdout?.destroy()
    },
  }
}
