/**
 * What `@effect/cli` requires of its environment (a file system, paths, a terminal), as small
 * as `kv` needs it: `kv` reads no file arguments and never prompts, so the file system is a
 * no-op and the terminal only writes. The Node implementations would load `readline`,
 * `crypto`, `os` and more at every start.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Terminal from "@effect/platform/Terminal"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

const noInput = Effect.dieMessage("kv does not read from the terminal")

const terminal = Layer.succeed(
  Terminal.Terminal,
  Terminal.Terminal.of({
    columns: Effect.sync(() => process.stdout.columns ?? 80),
    rows: Effect.sync(() => process.stdout.rows ?? 24),
    isTTY: Effect.sync(() => process.stdout.isTTY === true),
    readInput: noInput,
    readLine: noInput,
    display: (text) => Effect.sync(() => void process.stdout.write(text)),
  }),
)

export const layer = Layer.mergeAll(FileSystem.layerNoop({}), Path.layer, terminal)
