/**
 * PostgreSQL for tests: the server from `KV_POSTGRES_URL` (default: the local one), and a
 * scratch database per test file, created on demand and dropped at the end.
 */
import { randomBytes } from "node:crypto"
import pg from "pg"

export const serverUrl = process.env.KV_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const withAdmin = <A>(f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 5000 })
  return client.connect().then(() => f(client).finally(() => client.end()))
}

/** Fails with a message that says how to start the server. */
export const checkServer = (): Promise<void> =>
  withAdmin((client) => client.query("SELECT 1")).then(
    () => undefined,
    (error: Error) => {
      throw new Error(
        `PostgreSQL is not reachable at ${new URL(serverUrl).host} (${error.message || String(error)}). ` +
          "Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` " +
          "or point KV_POSTGRES_URL at a server.",
      )
    },
  )

export interface ScratchDatabase {
  readonly url: string
  readonly drop: () => Promise<void>
}

/** A new empty database on the server. */
export const createScratchDatabase = async (): Promise<ScratchDatabase> => {
  const name = `effectkv_test_${randomBytes(6).toString("hex")}`
  await withAdmin((client) => client.query(`CREATE DATABASE ${name}`))
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: () =>
      withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => undefined,
      ),
  }
}
