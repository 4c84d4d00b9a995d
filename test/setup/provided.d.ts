// Values the global setups hand to tests (`inject("...")`).
import "vitest"

declare module "vitest" {
  export interface ProvidedContext {
    /** A shared rqlite server, `http://admin:secret@127.0.0.1:PORT`, from test/setup/rqlite.ts. */
    rqliteUrl: string
  }
}
