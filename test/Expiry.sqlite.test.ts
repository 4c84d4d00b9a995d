/** The expiry suite on sqlite: a fresh database. */
import { expirySuite } from "./Expiry.suite.js"
import { freshBackend } from "./support/backends.js"

expirySuite("Expiry on sqlite", (config) => freshBackend("sqlite", config))
