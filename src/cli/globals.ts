/**
 * The global flags (`--type`, `--connection`), the root command that holds them, and the
 * store they select, for the handlers of every command group.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { type InvalidArgumentError, Store, type StoreError, type StoreService } from "../Store.js"
import { backendTypes, layerFor } from "./backend.js"

export const defaultConnection = "file:data.db?mode=rwc"

const typeOption = Options.choice("type", backendTypes).pipe(
  Options.withDescription("The backend (env KV_TYPE; default sqlite)."),
  Options.withFallbackConfig(Config.literal(...backendTypes)("KV_TYPE")),
  Options.withDefault("sqlite" as const),
)

const connectionOption = Options.redacted("connection").pipe(
  Options.withPseudoName("string"),
  Options.withDescription(
    `Where the data lives (env KV_CONNECTION; default ${defaultConnection}): ` +
      "file:x.db?mode=rwc|rw|ro or :memory: (sqlite), " +
      "postgres://user:password@host:5432/db (postgres), " +
      "http://host:4001[,host:4001...]?user=u&password=p (rqlite).",
  ),
  Options.withFallbackConfig(Config.redacted("KV_CONNECTION")),
  Options.optional,
  Options.map(Option.getOrElse(() => Redacted.make(defaultConnection))),
)

/** The root command, holding the global flags; subcommands read them with `yield* kv`. */
export const kv = Command.make("kv", { type: typeOption, connection: connectionOption })

/** Runs `f` with the Store of the backend chosen by the global flags. */
export const withStore = <A, E>(
  f: (store: StoreService) => Effect.Effect<A, E>,
): Effect.Effect<A, E | StoreError | InvalidArgumentError, Command.Command.Context<"kv">> =>
  Effect.flatMap(kv, ({ connection, type }) =>
    Effect.provide(Effect.flatMap(Store, f), layerFor(type, connection)),
  )
