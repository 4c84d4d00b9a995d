import { cronSuite } from "./Cron.suite.js"
import { freshBackend } from "./support/backends.js"

cronSuite("recurring schedules on postgres", freshBackend("postgres"))
