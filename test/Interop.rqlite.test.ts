/** The interop suite (KeyValueStore, Persistence, PersistedCache) on rqlite: a fresh database. */

import { interopSuite } from "./Interop.suite.js"
import { freshBackend } from "./support/backends.js"

interopSuite("Interop on rqlite", freshBackend("rqlite"))
