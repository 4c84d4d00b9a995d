/** The Watch suite on postgres: a fresh database. */
import { freshBackend } from "./support/backends.js"
import { watchSuite } from "./Watch.suite.js"

watchSuite("Watch on postgres", freshBackend("postgres"))
