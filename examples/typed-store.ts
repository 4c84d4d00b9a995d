/**
 * Typed records: `typed(schema)` binds a `Schema.Class` to the records of its type, values
 * encoded on write and decoded (to class instances) on read.
 *
 *   npx tsx examples/typed-store.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Effect, Option, Schema } from "effect"
import { Store, typed } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-typed-")), "example.db")

/** Stored as JSON under the type `User` (the class's identifier); `joined` as an ISO string. */
class User extends Schema.Class<User>("User")({
  name: Schema.String,
  email: Schema.String.pipe(Schema.pattern(/@/)),
  joined: Schema.Date,
}) {
  get greeting() {
    return `Hello, ${this.name}`
  }
}

const program = Effect.gen(function* () {
  const users = yield* typed(User)
  yield* Console.log(`records of type ${users.type}`)

  yield* users.put(
    "users/ada",
    0,
    new User({ name: "Ada", email: "ada@example.com", joined: new Date("1843-09-01") }),
  )
  yield* users.put(
    "users/alan",
    0,
    new User({ name: "Alan", email: "alan@example.com", joined: new Date("1936-05-28") }),
  )

  // decoded back into the class: methods work and `joined` is a Date again
  const ada = Option.getOrThrow(yield* users.get("users/ada"))
  yield* Console.log(
    `${ada.value.greeting} (User instance: ${ada.value instanceof User}, joined ${ada.value.joined.getUTCFullYear()})`,
  )

  // a patch whose result does not decode writes nothing
  yield* users
    .patch("users/ada", ada.version, { email: "not an address" })
    .pipe(Effect.catchTag("ParseError", () => Console.log("patch refused: the email would not decode")))
  const patched = yield* users.patch("users/ada", ada.version, { email: "countess@example.com" })
  yield* Console.log(`patched ${patched.key} v${patched.version}: ${patched.value.email}`)

  // reads see only records of the type; the untyped store sees everything
  const store = yield* Store
  yield* store.put("users/settings", -1, { theme: "dark" })
  const listed = yield* users.getPrefix("users/")
  yield* Console.log(`typed getPrefix users/: ${listed.map((user) => user.value.name).join(", ")}`)
  yield* Console.log(`untyped getPrefix users/: ${(yield* store.getPrefix("users/")).length} records`)

  // a User record written behind the Schema's back fails the read, naming its key
  yield* store.put("users/broken", -1, { name: 42 }, { type: "User" })
  yield* users
    .get("users/broken")
    .pipe(
      Effect.catchTag("ParseError", (error) => Console.log(`read failed: ${error.message.split("\n")[0]}`)),
    )
})

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
