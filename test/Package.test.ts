/**
 * The package as a new Effect user meets it: packed, installed into an empty project with the
 * install line of README's "As a library", then README's example typechecked (strict) and run
 * twice. One copy of `effect` must be installed, and no run may warn about mixed versions.
 *
 * Needs the built `dist/` (`npm test` builds first) and the npm registry (or npm's cache).
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { afterAll, describe, expect, it } from "vitest"

const run = promisify(execFile)
const repo = fileURLToPath(new URL("..", import.meta.url))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-package-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** The section "As a library" of README.md: its first `sh` line and its first `ts` program. */
const readmeExample = () => {
  const readme = fs.readFileSync(path.join(repo, "README.md"), "utf8")
  const section = readme.slice(readme.indexOf("## As a library"))
  const block = (lang: string) => {
    const start = section.indexOf(`\`\`\`${lang}\n`) + lang.length + 4
    return section.slice(start, section.indexOf("```", start))
  }
  const install = block("sh").split("\n")[0]!.replace(/#.*$/, "").trim().split(/\s+/)
  return { install, program: block("ts") }
}

const npm = (args: ReadonlyArray<string>, cwd: string) =>
  run("npm", [...args], { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, npm_config_yes: "true" } })

describe("the packed package in a new project", () => {
  it("installs with README's line, typechecks and runs README's example twice, with one copy of effect", async () => {
    const { install, program } = readmeExample()
    expect(install.slice(0, 3)).toEqual(["npm", "i", "effect-kv"])

    const { stdout: packed } = await npm(["pack", "--ignore-scripts", "--pack-destination", dir], repo)
    const tarball = path.join(dir, packed.trim().split("\n").pop()!)
    const app = path.join(dir, "app")
    fs.mkdirSync(app)
    fs.writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify({ name: "app", private: true, type: "module" }, null, 2),
    )
    // README's install line with the packed tarball. Install scripts are skipped and
    // better-sqlite3's addon is taken from this repository when it is the same version (the
    // compile takes a minute and is better-sqlite3's business, not this package's).
    await npm(
      [
        "install",
        "--ignore-scripts",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        tarball,
        ...install.slice(3),
      ],
      app,
    )
    const version = (at: string) =>
      (
        JSON.parse(fs.readFileSync(path.join(at, "node_modules/better-sqlite3/package.json"), "utf8")) as {
          version: string
        }
      ).version
    if (version(app) === version(repo)) {
      fs.cpSync(
        path.join(repo, "node_modules/better-sqlite3/build"),
        path.join(app, "node_modules/better-sqlite3/build"),
        {
          recursive: true,
        },
      )
    } else {
      await npm(["rebuild", "better-sqlite3"], app)
    }

    // one copy of effect, shared by effect-kv and the @effect packages
    const { stdout: copies } = await npm(["ls", "effect", "--all", "--parseable"], app)
    expect(new Set(copies.trim().split("\n")).size).toBe(1)

    // strict typecheck of README's example against the installed declarations
    fs.writeFileSync(path.join(app, "program.ts"), program)
    fs.writeFileSync(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          types: [],
          outDir: "out",
        },
        files: ["program.ts"],
      }),
    )
    await run(process.execPath, [path.join(repo, "node_modules/typescript/bin/tsc"), "-p", "."], { cwd: app })

    // twice in a row, in the same folder
    for (const _ of [1, 2]) {
      const { stderr, stdout } = await run(process.execPath, ["out/program.js"], { cwd: app })
      expect(stderr).toBe("")
      expect(stdout).toMatch(/changes so far/)
    }
    const { stdout: second } = await run(process.execPath, ["out/program.js"], { cwd: app })
    expect(second).toMatch(/already there/)
    expect(second).toMatch(/visits: 3/)
  }, 600_000)
})
