/** The interop suite (KeyValueStore, Persistence, PersistedCache) on postgres: a fresh database. */

import { interopSuite } from "./Interop.suite.js"
import { freshBackend } from "./support/backends.js"

interopSuite("Interop on postgres", freshBackend("postgres"))
