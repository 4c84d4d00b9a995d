/** The Graph suite on rqlite: a fresh database. */
import { graphSuite } from "./Graph.suite.js"
import { freshBackend } from "./support/backends.js"

graphSuite("Graph on rqlite", freshBackend("rqlite"))
