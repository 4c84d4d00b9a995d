/**
 * The package's entry points: every subpath of `exports` has its `typesVersions` line and is
 * built (tsconfig.build.json); and the main entry does not reach the interop modules or the
 * optional peers they need (`@effect/platform`'s KeyValueStore, `@effect/experimental`'s
 * Persistence), which only `effect-kv/interop` loads.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"
import { describe, expect, it } from "vitest"

const repo = fileURLToPath(new URL("..", import.meta.url))
const json = (file: string) => JSON.parse(fs.readFileSync(path.join(repo, file), "utf8"))

/** The files of this package `entry` imports statically, and the packages they import. */
const importsOf = async (entry: string) => {
  const result = await build({
    entryPoints: [path.join(repo, entry)],
    bundle: true,
    write: false,
    metafile: true,
    platform: "node",
    format: "esm",
    packages: "external",
    logLevel: "silent",
  })
  const inputs = Object.entries(result.metafile.inputs)
  return {
    files: inputs.map(([file]) => file),
    packages: new Set(
      inputs.flatMap(([, input]) => input.imports.filter((i) => i.external).map((i) => i.path)),
    ),
  }
}

describe("entry points", () => {
  it("each export has its typesVersions entry and its source in the build", () => {
    const pkg = json("package.json")
    const built: ReadonlyArray<string> = json("tsconfig.build.json").files
    const subpaths = Object.keys(pkg.exports).filter((key) => key !== ".")
    expect(subpaths).toContain("./interop")
    for (const subpath of subpaths) {
      const name = subpath.slice(2)
      expect(pkg.exports[subpath]).toEqual({ types: `./dist/${name}.d.ts`, default: `./dist/${name}.js` })
      expect(pkg.typesVersions["*"][name]).toEqual([`./dist/${name}.d.ts`])
      expect(built).toContain(`src/${name}.ts`)
    }
    expect(pkg.peerDependenciesMeta["@effect/platform"]).toEqual({ optional: true })
    expect(pkg.peerDependenciesMeta["@effect/experimental"]).toEqual({ optional: true })
  })

  it("the main entry imports neither the interop modules nor KeyValueStore or Persistence; interop does", async () => {
    const main = await importsOf("src/index.ts")
    expect(main.files.length).toBeGreaterThan(10) // the walk found the modules
    expect(main.files.filter((file) => file.includes("interop"))).toEqual([])
    const peers = [...main.packages].filter(
      (name) => name.startsWith("@effect/experimental") || name.startsWith("@effect/platform"),
    )
    expect(peers).toEqual([])
    const interop = await importsOf("src/interop.ts")
    expect([...interop.packages]).toEqual(
      expect.arrayContaining(["@effect/platform/KeyValueStore", "@effect/experimental/Persistence"]),
    )
  })
})
