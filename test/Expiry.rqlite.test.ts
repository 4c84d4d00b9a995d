/** The expiry suite on rqlite: a fresh database. */
import { expirySuite } from "./Expiry.suite.js"
import { freshBackend } from "./support/backends.js"

expirySuite("Expiry on rqlite", (config) => freshBackend("rqlite", config))
