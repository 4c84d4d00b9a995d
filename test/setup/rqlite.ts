/**
 * Vitest global setup: one rqlited shared by the tests that only need a server (they use
 * their own table names). Suites that need an empty database start their own with
 * `startRqlite()`. `KV_RQLITE_URL` points the shared tests at an existing server instead.
 */
import type { TestProject } from "vitest/node"
import { startRqlite } from "../support/rqlite.js"

export default async function setup({ provide }: TestProject) {
  const external = process.env.KV_RQLITE_URL
  if (external !== undefined && external !== "") {
    provide("rqliteUrl", external)
    return
  }
  const server = await startRqlite()
  provide("rqliteUrl", server.url)
  return server.stop
}
