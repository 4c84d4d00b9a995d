/** The Graph suite on postgres: a fresh database. */
import { graphSuite } from "./Graph.suite.js"
import { freshBackend } from "./support/backends.js"

graphSuite("Graph on postgres", freshBackend("postgres"))
