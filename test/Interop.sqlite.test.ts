/** The interop suite (KeyValueStore, Persistence, PersistedCache) on sqlite: a fresh database. */

import { interopSuite } from "./Interop.suite.js"
import { freshBackend } from "./support/backends.js"

interopSuite("Interop on sqlite", freshBackend("sqlite"))
