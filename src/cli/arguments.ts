/**
 * Arguments and options shared by the command groups, checked with the store's own Schemas
 * (`../Arguments.ts`): bad input is refused before any database is opened, in the same words
 * the store would use.
 */
import * as Args from "@effect/cli/Args"
import * as Options from "@effect/cli/Options"
import * as Arg from "../Arguments.js"

export const keyArg = Args.text({ name: "key" }).pipe(
  Args.withDescription("The key."),
  Args.withSchema(Arg.Key),
)

export const boundArg = (name: string, description: string) =>
  Args.text({ name }).pipe(Args.withDescription(description), Args.withSchema(Arg.bound(name)))

export const offsetArg = Args.integer({ name: "offset" }).pipe(
  Args.withDescription("How many records to skip (default 0)."),
  Args.withSchema(Arg.Offset),
  Args.withDefault(0),
)

export const limitArg = Args.integer({ name: "limit" }).pipe(
  Args.withDescription("At most this many records; -1: no limit (default 1000)."),
  Args.withSchema(Arg.Limit),
  Args.withDefault(1000),
)

export const seqArg = (description: string) =>
  Args.integer({ name: "seq" }).pipe(Args.withDescription(description), Args.withSchema(Arg.Seq))

/** A name of something (lock, holder, task, consumer): the store's rules for names. */
export const nameArg = (name: string, what: string, description: string) =>
  Args.text({ name }).pipe(Args.withDescription(description), Args.withSchema(Arg.name(what)))

/**
 * `--version N`. `@effect/cli` reserves `--version` (show the program version), so
 * `normalizeArgs` rewrites `--version N` to this option's alias `--if-version N`.
 */
export const versionOption = Options.integer("version").pipe(
  Options.withAlias("if-version"),
  Options.withDescription(
    "-1: write unconditionally (default); 0: only if the key is absent; N: only if the current version is N.",
  ),
  Options.withSchema(Arg.Version),
  Options.withDefault(-1),
)

export const recordTypeOption = Options.text("record-type").pipe(
  Options.withDescription("The record type (default: derived from the value, e.g. object, array, string)."),
  Options.withSchema(Arg.name("--record-type")),
  Options.optional,
)

/** `--ttl`: the record expires this long after the write. */
export const ttlOption = Options.text("ttl").pipe(
  Options.withPseudoName("duration"),
  Options.withDescription(
    "The record expires this long after the write, e.g. 30s, 5m, 1h30m (put without it clears an expiry; " +
      "patch and increment keep it).",
  ),
  Options.withSchema(Arg.DurationText),
  Options.optional,
)

/** A `1h30m`-style duration option; `description` says what it is, without the default. */
export const durationOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.withDescription(`${description}: e.g. 500ms, 10s, 5m, 1h30m (default ${fallback}).`),
    Options.withDefault(fallback),
    Options.withSchema(Arg.DurationText),
  )
