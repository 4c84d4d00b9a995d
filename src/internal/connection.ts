/**
 * Connection strings of the three backends, in one place: parsing, the form that may be shown
 * in messages (never with a password), and the credentials, kept `Redacted`.
 *
 * A connection string may hold a password, so it travels as `Redacted` from the command line
 * (or the layer options) to the client, and no error message here repeats the input.
 */
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"

export type Secret = string | Redacted.Redacted<string>

const reveal = (input: Secret): string => (Redacted.isRedacted(input) ? Redacted.value(input) : input)

const decode = (component: string): string => {
  try {
    return decodeURIComponent(component)
  } catch {
    return component // not valid percent-encoding: take it as written
  }
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

export interface SqliteLocation {
  /** A path or `:memory:`. */
  readonly filename: string
  readonly readonly: boolean
  readonly mustExist: boolean
}

/** A path, `:memory:` or a `file:` URI with `mode=rwc` (the default), `rw`, `ro` or `memory`. */
export const parseSqlite = (input: string): Either.Either<SqliteLocation, string> => {
  if (input.length === 0) return Either.left("the SQLite connection string is empty")
  if (!input.startsWith("file:")) return Either.right({ filename: input, readonly: false, mustExist: false })
  const [rawPath = "", query = ""] = input.slice("file:".length).split("?", 2)
  // file:///abs/path and file:/abs/path are both absolute paths
  const path = decode(rawPath.startsWith("//") ? rawPath.slice(2) : rawPath)
  const mode = new URLSearchParams(query).get("mode") ?? "rwc"
  if (path.length === 0) return Either.left(`no file name in "${input}"`)
  switch (mode) {
    case "rwc":
      return Either.right({ filename: path, readonly: false, mustExist: false })
    case "rw":
      return Either.right({ filename: path, readonly: false, mustExist: true })
    case "ro":
      return Either.right({ filename: path, readonly: true, mustExist: true })
    case "memory":
      return Either.right({ filename: ":memory:", readonly: false, mustExist: false })
    default:
      return Either.left(`unknown SQLite mode "${mode}" (expected ro, rw, rwc or memory)`)
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

export interface PostgresTarget {
  readonly url: Redacted.Redacted<string>
  /** The URL without its password. */
  readonly display: string
}

/** `postgres://user:password@host:5432/database?sslmode=disable` */
export const parsePostgres = (input: Secret): Either.Either<PostgresTarget, string> => {
  const text = reveal(input)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Either.left(
      "not a PostgreSQL connection string (expected postgres://user:password@host:port/database)",
    )
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    return Either.left(
      `not a PostgreSQL connection string: the scheme must be postgres or postgresql, not "${url.protocol}"`,
    )
  }
  const shown = new URL(text)
  shown.password = ""
  for (const name of [...shown.searchParams.keys()]) {
    if (isSecretParameter(name)) shown.searchParams.set(name, "***")
  }
  return Either.right({ url: Redacted.make(text), display: shown.toString() })
}

// ---------------------------------------------------------------------------------------------
// rqlite
// ---------------------------------------------------------------------------------------------

export type ReadConsistency = "none" | "weak" | "strong" | "linearizable"

export const readConsistencyLevels: ReadonlyArray<ReadConsistency> = [
  "none",
  "weak",
  "strong",
  "linearizable",
]

export const isReadConsistency = (value: string): value is ReadConsistency =>
  (readConsistencyLevels as ReadonlyArray<string>).includes(value)

export interface RqliteTarget {
  /** One base URL per node (`http://host:port` plus any path), without credentials or query. */
  readonly nodes: ReadonlyArray<string>
  /** Query parameters passed on to rqlite (not `user`, `password` or `level`), e.g. `freshness=1s`. */
  readonly params: URLSearchParams
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  readonly level?: ReadConsistency | undefined
}

/**
 * `http://host:4001?user=admin&password=secret`, `http://admin:secret@host:4001`, or a cluster as
 * a host list `http://h1:4001,h2:4001,h3:4001?...`; an optional `level`.
 */
export const parseRqlite = (input: Secret): Either.Either<RqliteTarget, string> => {
  const text = reveal(input).trim()
  const invalid = Either.left(
    "invalid rqlite URL: expected http://[user:password@]host:port[,host:port...][?level=...]",
  )
  const scheme = /^(https?):\/\//i.exec(text)
  if (scheme === null) {
    return /^[a-z][a-z0-9+.-]*:/i.test(text)
      ? Either.left(`invalid rqlite URL: the scheme must be http or https, not "${text.split(":")[0]}:"`)
      : invalid
  }
  const rest = text.slice(scheme[0].length)
  const end = rest.search(/[/?#]/)
  const authority = end === -1 ? rest : rest.slice(0, end)
  const tail = end === -1 ? "" : rest.slice(end)
  const at = authority.lastIndexOf("@")
  const userinfo = at === -1 ? undefined : authority.slice(0, at)
  const hosts = (at === -1 ? authority : authority.slice(at + 1)).split(",").map((host) => host.trim())
  let path = ""
  let params = new URLSearchParams()
  const nodes: Array<string> = []
  for (const host of hosts) {
    if (host.length === 0) return invalid
    let url: URL
    try {
      url = new URL(`${scheme[1]!.toLowerCase()}://${host}${tail}`)
    } catch {
      return invalid
    }
    if (url.username !== "" || url.password !== "") return invalid // credentials belong before the first host
    path = url.pathname.replace(/\/+$/, "")
    params = url.searchParams
    nodes.push(`${url.origin}${path}`)
  }
  const colon = userinfo?.indexOf(":") ?? -1
  const username =
    userinfo === undefined ? params.get("user") : decode(colon === -1 ? userinfo : userinfo.slice(0, colon))
  const password =
    userinfo !== undefined && colon !== -1 ? decode(userinfo.slice(colon + 1)) : params.get("password")
  const level = params.get("level")
  if (level !== null && !isReadConsistency(level)) {
    return Either.left(
      `invalid rqlite read consistency level "${level}": expected ${readConsistencyLevels.join(", ")}`,
    )
  }
  const passed = new URLSearchParams(params)
  for (const name of ["user", "password", "level"]) passed.delete(name)
  return Either.right({
    nodes,
    params: passed,
    username: username ?? undefined,
    password: password === null || password === undefined ? undefined : Redacted.make(password),
    level: level ?? undefined,
  })
}

/**
 * The target of rqlite options: `url` (one node or a host list), or `urls`, one node each
 * (`["http://admin:secret@h1:4001", "http://h2:4001"]`), whose credentials, level and
 * parameters must agree where more than one gives them.
 */
export const parseRqliteConfig = (options: {
  readonly url?: Secret | undefined
  readonly urls?: ReadonlyArray<Secret> | undefined
}): Either.Either<RqliteTarget, string> => {
  const { url, urls } = options
  if (url !== undefined && urls !== undefined) return Either.left("give rqlite either url or urls, not both")
  if (url !== undefined) return parseRqlite(url)
  if (urls === undefined || urls.length === 0) return Either.left("no rqlite URL: give url or urls")
  const targets: Array<RqliteTarget> = []
  for (const each of urls) {
    const target = parseRqlite(each)
    if (Either.isLeft(target)) return target
    targets.push(target.right)
  }
  const agreed = <A>(what: string, values: ReadonlyArray<A | undefined>, same: (a: A, b: A) => boolean) => {
    const given = values.filter((value): value is A => value !== undefined)
    return given.every((value) => same(value, given[0]!))
      ? Either.right(given[0])
      : Either.left(`the rqlite urls disagree on the ${what}`)
  }
  return Either.gen(function* () {
    const username = yield* agreed(
      "user",
      targets.map((t) => t.username),
      (a, b) => a === b,
    )
    const password = yield* agreed(
      "password",
      targets.map((t) => t.password),
      (a, b) => Redacted.value(a) === Redacted.value(b),
    )
    const level = yield* agreed(
      "level",
      targets.map((t) => t.level),
      (a, b) => a === b,
    )
    const params = yield* agreed(
      "query parameters",
      targets.map((t) => (t.params.size > 0 ? t.params : undefined)),
      (a, b) => a.toString() === b.toString(),
    )
    return {
      nodes: targets.flatMap((t) => t.nodes),
      params: params ?? new URLSearchParams(),
      username,
      password,
      level,
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

const isSecretParameter = (name: string) => /^(password|passwd|pwd|pass|secret|token)$/i.test(name)

/**
 * The secrets a connection string holds (URL passwords, `password=` parameters), as written
 * and decoded: a last line of defence for text that must never show them.
 */
export const secretsOf = (input: Secret): ReadonlyArray<string> => {
  const text = reveal(input)
  const secrets: Array<string> = []
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/([^/?#@]*)@/i.exec(text)?.[1]
  const colon = userinfo?.indexOf(":") ?? -1
  if (userinfo !== undefined && colon !== -1) {
    const password = userinfo.slice(colon + 1)
    secrets.push(password, decode(password))
  }
  const query = text.indexOf("?")
  if (query !== -1) {
    for (const [name, value] of new URLSearchParams(text.slice(query + 1))) {
      if (isSecretParameter(name)) secrets.push(value, encodeURIComponent(value))
    }
  }
  return secrets.filter((secret) => secret.length >= 3)
}

/** Hides passwords in text: URL user info, `password=` parameters and the given secrets. */
export const redact = (text: string, secrets: ReadonlyArray<string> = []): string => {
  let out = text
    .replace(/(\/\/[^/?#@\s:]*:)[^@\s/]*@/g, "$1***@")
    .replace(/\b(password|passwd|pwd|pass|secret|token)=[^&\s"']*/gi, "$1=***")
  for (const secret of secrets) out = out.split(secret).join("***")
  return out
}
