/**
 * `examples/opentelemetry.ts` runs (with tsx) and prints effect-kv's spans and metrics with
 * their attributes through OpenTelemetry's console exporters, and no stored value.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))

const runExample = () =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "examples/opentelemetry.ts"], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once("error", reject)
    child.once("close", (code) => resolve({ code, stdout, stderr }))
  })

it("examples/opentelemetry.ts exports kv.store.* and kv.consumer.* spans and the lag metrics, no values", async () => {
  const { code, stderr, stdout } = await runExample()
  expect(stderr).toBe("")
  expect(code).toBe(0)
  const spanNames = new Set([...stdout.matchAll(/name: '(kv\.[a-zA-Z.]+)'/g)].map((match) => match[1]))
  for (const name of [
    "kv.store.put",
    "kv.store.patch",
    "kv.store.get",
    "kv.store.getPrefix",
    "kv.store.mutateAll",
    "kv.consumer.get",
    "kv.consumer.commit",
    "kv.consumer.unlock",
  ]) {
    expect(spanNames).toContain(name)
  }
  expect(stdout).toContain("'kv.key': 'users/ada'")
  expect(stdout).toContain("'kv.type': 'User'")
  expect(stdout).toContain("name: 'kv_consumer_lag_records'")
  expect(stdout).toContain("name: 'kv_consumer_lag_ms'")
  expect(stdout).toContain("consumer: 'example'")
  // the values written are in no span or metric
  for (const value of [
    "Ada Lovelace",
    "Alan Turing",
    "analytical engine",
    "computable numbers",
    "first program",
  ]) {
    expect(stdout).not.toContain(value)
  }
}, 60_000)
