/**
 * The command line as typed, before `@effect/cli` parses it.
 */
import { secretsOf as connectionSecrets } from "../internal/connection.js"
import { helpArgs, isHelpFlag } from "./help.js"

const globalFlags = new Set(["--type", "--connection"])

/**
 * Rewrites the arguments (without `node` and the script) before `@effect/cli` parses them:
 * - the global flags `--type`/`--connection` (`--flag value` or `--flag=value`), wherever they
 *   are, move to the front as `--flag=value` (so a value equal to a command word, e.g.
 *   `--connection list`, is not mistaken for a command); given twice, the last one wins;
 * - `--version N` becomes `--if-version=N` (`@effect/cli` reserves `--version`; `kv --version`
 *   alone still prints the program version);
 * - with `--help` or `--version` (the built-in one), the global flags are dropped;
 * - with `--help` (or `-h`), every word asks for help (`helpArgs`), so that the usage line
 *   names the whole command.
 * Everything after `--` is left alone.
 */
export const normalizeArgs = (args: ReadonlyArray<string>): Array<string> => {
  const globals = new Map<string, string>() // the last value of each global flag wins
  const rest: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      rest.push(...args.slice(i))
      break
    }
    const eq = arg.indexOf("=")
    const flag = (eq === -1 ? arg : arg.slice(0, eq)).toLowerCase()
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    const next = args[i + 1]
    if (globalFlags.has(flag)) {
      const value = inline ?? next
      if (value === undefined) {
        rest.push(arg)
      } else {
        globals.set(flag, value)
        if (inline === undefined) i++
      }
    } else if (
      flag === "--version" &&
      (inline !== undefined || (next !== undefined && !next.startsWith("--")))
    ) {
      rest.push(`--if-version=${inline ?? next}`)
      if (inline === undefined) i++
    } else {
      rest.push(arg)
    }
  }
  // `@effect/cli` cannot show the root's help after root options (`kv --type x --help` fails);
  // the global flags do not change any help or the version, so they are dropped then.
  const end = rest.indexOf("--")
  const words = end === -1 ? rest : rest.slice(0, end)
  if (words.some(isHelpFlag)) return [...helpArgs(words), ...rest.slice(words.length)]
  if (words.some((word) => word.toLowerCase() === "--version")) return rest
  // an empty value cannot be written as `--flag=` (the parser needs a value after `=`)
  const front = [...globals].flatMap(([flag, value]) => (value === "" ? [flag, value] : [`${flag}=${value}`]))
  return [...front, ...rest]
}

/**
 * The secrets in the connection strings given on the command line or in `KV_CONNECTION`:
 * error lines are redacted with them, whatever produced the message.
 */
export const secretsOf = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
): Array<string> => {
  const connections: Array<string> = []
  if (env.KV_CONNECTION !== undefined) connections.push(env.KV_CONNECTION)
  argv.forEach((arg, i) => {
    if (arg.toLowerCase() === "--connection" && argv[i + 1] !== undefined) connections.push(argv[i + 1]!)
    if (arg.toLowerCase().startsWith("--connection=")) connections.push(arg.slice("--connection=".length))
  })
  return connections.flatMap(connectionSecrets)
}
