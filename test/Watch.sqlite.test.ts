/** The Watch suite on sqlite: a fresh database. */
import { freshBackend } from "./support/backends.js"
import { watchSuite } from "./Watch.suite.js"

watchSuite("Watch on sqlite", freshBackend("sqlite"))
