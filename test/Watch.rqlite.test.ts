/** The Watch suite on rqlite: a fresh database. */
import { freshBackend } from "./support/backends.js"
import { watchSuite } from "./Watch.suite.js"

watchSuite("Watch on rqlite", freshBackend("rqlite"))
