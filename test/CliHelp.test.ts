/**
 * `kv ... --help` and `kv --completions`, on the BUILT executable (`npm run build` first). The
 * command tree is walked through the help itself: each command's COMMANDS section names its
 * subcommands, and every command found is asked for its own help.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Command from "@effect/cli/Command"
import * as HashMap from "effect/HashMap"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Cli from "../src/Cli.js"
import * as Help from "../src/cli/help.js"
import { ok, spawnKv } from "./Cli.suite.js"

/** The lines under each heading (USAGE, DESCRIPTION, ARGUMENTS, OPTIONS, COMMANDS). */
const sections = (help: string): Map<string, Array<string>> => {
  const result = new Map<string, Array<string>>()
  let current: Array<string> | undefined
  for (const line of help.split("\n")) {
    if (/^[A-Z]+$/.test(line)) {
      current = []
      result.set(line, current)
    } else {
      current?.push(line)
    }
  }
  return result
}

/** The command words of each entry of COMMANDS (`  - get key [--print-version] <key>   Print ...`). */
const subcommandsOf = (help: string): Array<Array<string>> =>
  (sections(help).get("COMMANDS") ?? []).flatMap((line) => {
    const entry = /^ {2}- (.*)$/.exec(line)
    if (entry === null) return []
    const usage = entry[1]!.split(/ {2,}/)[0]!
    const words = usage.split(" ")
    const end = words.findIndex((word) => /^[[<(-]/.test(word))
    return [end === -1 ? words : words.slice(0, end)]
  })

/**
 * Each entry of ARGUMENTS and OPTIONS (an unindented line) with its paragraphs (indented lines):
 * `<name>` → ["The lock."].
 */
const entriesOf = (lines: ReadonlyArray<string>): Array<{ name: string; paragraphs: Array<string> }> => {
  const entries: Array<{ name: string; paragraphs: Array<string> }> = []
  for (const line of lines) {
    if (line.trim() === "") continue
    if (/^\S/.test(line)) entries.push({ name: line, paragraphs: [] })
    else entries.at(-1)?.paragraphs.push(line.trim())
  }
  return entries
}

/** What `@effect/cli` adds to every option or argument of a kind: it does not say what this one is. */
const generic = [
  /^A user-defined piece of text/,
  /^An integer\.$/,
  /^A true or false value\.$/,
  /^One of the following: /,
  /^This setting is optional\./,
  /^This option can be set from environment variables\.$/,
]

describe("kv --help, every command", () => {
  /** Every command's words (the root is []) and its help. */
  const helps = new Map<string, { path: Array<string>; help: string }>()

  beforeAll(async () => {
    let level: Array<Array<string>> = [[]]
    while (level.length > 0) {
      const found = await Promise.all(level.map(async (words) => ok(await spawnKv([...words, "--help"]))))
      const next: Array<Array<string>> = []
      level.forEach((words, i) => {
        helps.set(words.join(" "), { path: words, help: found[i]! })
        for (const sub of subcommandsOf(found[i]!)) {
          const child = [...words, ...sub]
          const key = child.join(" ")
          if (!helps.has(key) && !next.some((queued) => queued.join(" ") === key)) next.push(child)
        }
      })
      level = next
    }
  })

  it("the walk finds the whole tree", () => {
    const paths = [...helps.keys()]
    // the top level is the command tree's own
    const top = paths.filter((p) => p !== "" && !p.includes(" ")).sort()
    expect(top).toEqual([...HashMap.keys(Command.getSubcommands(Cli.command))].sort())
    for (const expected of [
      "get key",
      "get prefix",
      "count range",
      "stream trim",
      "consumer stream",
      "lock acquire",
      "lock release",
      "task new",
      "task retry",
      "task prune",
      "task stats",
      "task run",
      "benchmark patch",
      "cron set",
      "cron list",
      "cron get",
      "cron delete",
      "expire",
    ]) {
      expect(paths).toContain(expected)
    }
    expect(paths.length).toBe(65) // 50, task retry, prune and stats, watch with its four selectors, cron with set, list, get, delete, increment and expire
  })

  it("every usage line names the whole command, from kv", () => {
    for (const { path, help } of helps.values()) {
      const usage = (sections(help).get("USAGE") ?? []).filter((line) => line.startsWith("$ "))
      expect(usage.length, `kv ${path.join(" ")} --help`).toBeGreaterThan(0)
      for (const line of usage) expect(`${line} `).toMatch(new RegExp(`^\\$ ${["kv", ...path].join(" ")} `))
    }
    expect(sections(helps.get("lock acquire")!.help).get("USAGE")).toContain(
      "$ kv lock acquire [--duration duration] <name> <locked-by>",
    )
  })

  it("every command, argument and option says what it is", () => {
    let checked = 0
    for (const { path, help } of helps.values()) {
      const parts = sections(help)
      expect(
        (parts.get("DESCRIPTION") ?? []).some((line) => line.trim() !== ""),
        `kv ${path.join(" ")}`,
      ).toBe(true)
      for (const heading of ["ARGUMENTS", "OPTIONS"]) {
        for (const entry of entriesOf(parts.get(heading) ?? [])) {
          const own = entry.paragraphs.filter((p) => !generic.some((pattern) => pattern.test(p)))
          expect(own, `kv ${path.join(" ")}: ${entry.name}`).not.toEqual([])
          checked++
        }
      }
    }
    expect(checked).toBeGreaterThan(60) // the sections were found and read
  })

  it("no help repeats @effect/cli's generic sentence", () => {
    for (const { help } of helps.values()) expect(help).not.toContain("user-defined piece of text")
  })

  it("the root names what the store has", () => {
    const description = sections(helps.get("")!.help).get("DESCRIPTION")!.join(" ")
    for (const word of ["change stream", "consumers", "locks", "task"]) expect(description).toContain(word)
  })

  it("-h and --help anywhere on the line give the same help", async () => {
    const [short, before, withArgs] = await Promise.all([
      spawnKv(["lock", "acquire", "-h"]),
      spawnKv(["lock", "--help", "acquire"]),
      spawnKv(["lock", "acquire", "my-lock", "me", "--duration", "5m", "--help"]),
    ])
    const expected = helps.get("lock acquire")!.help
    for (const result of [short, before, withArgs]) expect(ok(result)).toBe(expected)
  })
})

describe("help rewriting", () => {
  it("asks every word for help, keeping options", () => {
    expect(Help.helpArgs(["lock", "acquire", "--help"])).toEqual([
      "--help",
      "lock",
      "--help",
      "acquire",
      "--help",
    ])
    expect(Cli.normalizeArgs(["task", "list", "--status", "pending", "-h", "--type", "rqlite"])).toEqual([
      "--help",
      "task",
      "--help",
      "list",
      "--help",
      "--status",
      "pending",
      "--help",
    ])
    expect(Cli.normalizeArgs(["get", "key", "--", "--help"])).toEqual(["get", "key", "--", "--help"])
  })
})

describe("kv --completions", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-completions-"))
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  /** What bash completes for `words` (the last one being completed), with the script `file` loaded. */
  const complete = (file: string, words: ReadonlyArray<string>) =>
    new Promise<Array<string>>((resolve, reject) => {
      const program = [
        `source ${JSON.stringify(file)}`,
        `COMP_WORDS=(${words.map((word) => JSON.stringify(word)).join(" ")})`,
        `COMP_CWORD=${words.length - 1}`,
        "_kv_bash_completions kv",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, not a template
        'printf "%s\\n" "${COMPREPLY[@]}"',
      ].join("\n")
      const bash = spawn("bash", ["--norc", "--noprofile", "-c", program], {
        stdio: ["ignore", "pipe", "pipe"],
      })
      let stdout = ""
      let stderr = ""
      bash.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString()
      })
      bash.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      bash.on("error", reject)
      bash.on("close", (code) =>
        code === 0 ? resolve(stdout.split("\n").filter((line) => line !== "")) : reject(new Error(stderr)),
      )
    })

  it("bash: a script that completes commands and their options at every level", async () => {
    const script = ok(await spawnKv(["--completions", "bash"]))
    expect(script).toMatch(/^function _kv_bash_completions\(\) \{/)
    expect(script).toContain("complete -F _kv_bash_completions")
    const file = path.join(dir, "kv.bash")
    fs.writeFileSync(file, script)
    const [top, group, option, nested] = await Promise.all([
      complete(file, ["kv", "lo"]),
      complete(file, ["kv", "lock", ""]),
      complete(file, ["kv", "lock", "acquire", "--d"]),
      complete(file, ["kv", "get", "key", "--print"]),
    ])
    expect(top).toEqual(["lock"])
    expect(group).toEqual(expect.arrayContaining(["acquire", "release", "status"]))
    expect(option).toEqual(["--duration"])
    expect(nested).toEqual(["--print-version"])
  })

  it("zsh and fish: their scripts", async () => {
    const [zsh, fish] = await Promise.all([
      spawnKv(["--completions", "zsh"]),
      spawnKv(["--completions", "fish"]),
    ])
    expect(ok(zsh)).toMatch(/^#compdef kv\n/)
    expect(ok(zsh)).toContain("'--duration[How long the lock lasts from now")
    expect(ok(fish)).toContain('complete -c kv -n "__fish_use_subcommand" -f -a "lock"')
    for (const script of [zsh.stdout, fish.stdout]) expect(script).not.toContain("user-defined piece of text")
  })
})
