/**
 * `kv ... --help` and `kv --completions ...`, where what `@effect/cli` prints is not what `kv`
 * means to say:
 * - the usage line names the whole command (`$ kv lock acquire [...] <name> <locked-by>`).
 *   `@effect/cli` puts a parent's name before a subcommand's usage only when the parent itself
 *   was given `--help` (a child's help directive is prefixed on its way up through a parent that
 *   asked for help, and passed up unchanged through one that did not); so `helpArgs` gives
 *   `--help` after every word of the command line;
 * - the generic first sentence of every text option and argument ("A user-defined piece of
 *   text.", and "... that is confidential." for `--connection`) is dropped: each one says what
 *   it is in its own description;
 * - the bash completion script completes the options of second-level commands (`kv lock
 *   acquire --d<TAB>`): `@effect/cli` labels their cases `kv,lock,acquire)` while the script
 *   walks the words as `kv__lock,acquire`, so they never matched.
 */

const helpFlags = new Set(["--help", "-h"])

/** Whether `word` asks for help. */
export const isHelpFlag = (word: string) => helpFlags.has(word.toLowerCase())

/**
 * The words of a command line that asks for help (before any `--`), rewritten so that every
 * command on the way down asks for it: `lock acquire --help` becomes
 * `--help lock --help acquire --help`. Words that are not commands (an option's value, an
 * argument) get one too: a command ignores the arguments it is given with `--help`.
 */
export const helpArgs = (words: ReadonlyArray<string>): Array<string> => [
  "--help",
  ...words.flatMap((word) => (isHelpFlag(word) ? [] : word.startsWith("-") ? [word] : [word, "--help"])),
]

/** The paragraph `@effect/cli` gives every text option and argument, with the blank line after it. */
const genericSentence =
  /^[ \t]*A user-defined piece of text(?: that is confidential)?\.[ \t]*\r?\n(?:[ \t]*\r?\n)?/gm

/** Help text without the generic sentence (anything else is passed through). */
export const withoutGenericSentences = (text: unknown): unknown =>
  typeof text === "string" ? text.replace(genericSentence, "") : text

/** A case label of a nested command in the bash script: `kv,lock,acquire)`. */
const nestedCaseLabel = /^([ \t]+)((?:[\w-]+,){2,}[\w-]+)\)$/gm

/** The bash completion script with its nested case labels as the script matches them (`kv__lock,acquire)`). */
export const withBashCaseLabels = (text: unknown): unknown =>
  typeof text === "string" && text.includes("_bash_completions()")
    ? text.replace(nestedCaseLabel, (_, indent: string, label: string) => {
        const words = label.split(",")
        return `${indent}${words.slice(0, -1).join("__")},${words.at(-1)})`
      })
    : text

/** What `@effect/cli` prints while parsing (help, completion scripts), as `kv` shows it. */
export const asKvShowsIt = (text: unknown): unknown => withBashCaseLabels(withoutGenericSentences(text))
