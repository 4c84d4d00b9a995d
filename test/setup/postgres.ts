/** Vitest global setup: a missing PostgreSQL server fails the run (it never skips tests). */
import { checkServer } from "../support/postgres.js"

export default async function setup() {
  await checkServer()
}
