/** The Graph suite on sqlite: a fresh database. */
import { graphSuite } from "./Graph.suite.js"
import { freshBackend } from "./support/backends.js"

graphSuite("Graph on sqlite", freshBackend("sqlite"))
