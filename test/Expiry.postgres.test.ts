/** The expiry suite on postgres: a fresh database. */
import { expirySuite } from "./Expiry.suite.js"
import { freshBackend } from "./support/backends.js"

expirySuite("Expiry on postgres", (config) => freshBackend("postgres", config))
