// Bundles the `kv` executable into one file: loading hundreds of ESM modules of Effect
// costs more than half a second per command; one bundle starts in about a quarter.
import { chmodSync } from "node:fs"
import { build } from "esbuild"

const outfile = "dist/kv.js"
await build({
  entryPoints: ["src/bin.ts"],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // native addon and pg's optional native binding stay ordinary dependencies
  external: ["better-sqlite3", "pg-native"],
  // bundled CommonJS dependencies (pg) call require()
  banner: {
    js: "import { createRequire as __kvCreateRequire } from 'node:module'; const require = __kvCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
})
chmodSync(outfile, 0o755)
