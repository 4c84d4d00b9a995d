/**
 * Errors of the command line itself, and the one `kv: ...` line every failure ends as.
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { redact } from "../internal/connection.js"
import { LockStatus } from "../Store.js"

/** A key, lock, task, ... that does not exist. */
export class NotFoundError extends Schema.TaggedError<NotFoundError>()("NotFoundError", {
  what: Schema.String,
  name: Schema.String,
}) {
  override get message() {
    return `${this.what} "${this.name}" not found`
  }
}

/** `lock acquire` did not get the lock. */
export class LockHeldError extends Schema.TaggedError<LockHeldError>()("LockHeldError", {
  name: Schema.String,
  holder: Schema.Option(LockStatus),
}) {
  override get message() {
    return Option.match(this.holder, {
      onNone: () => `lock "${this.name}" is held by another holder`,
      onSome: (status) =>
        `lock "${this.name}" is held by ${status.lockedBy} until ${status.expiresAt.toISOString()}`,
    })
  }
}

/** A group command (`get`, `count`, ...) was given without its subcommand. */
export class MissingCommandError extends Schema.TaggedError<MissingCommandError>()("MissingCommandError", {
  path: Schema.String,
  expected: Schema.Array(Schema.String),
}) {
  override get message() {
    return `missing command: "${this.path}" expects one of ${this.expected.join(", ")} (see ${this.path} --help)`
  }
}

const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g")
export const stripAnsi = (text: unknown) => (typeof text === "string" ? text.replace(ansi, "") : text)

/** A readable one-line description of any failure. */
export const errorText = (error: unknown): string => {
  if (ValidationError.isValidationError(error)) {
    const text = String(stripAnsi(HelpDoc.toAnsiText(error.error))).trim()
    return text.length > 0 ? text : "invalid command line (see kv --help)"
  }
  if (typeof error === "object" && error !== null) {
    const message = (error as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) return message
    const tag = (error as { _tag?: unknown })._tag
    if (typeof tag === "string") return tag
  }
  return String(error)
}

/** The one stderr line for a failed run: `kv: <message>`, on one line, secrets redacted. */
export const formatError = (cause: Cause.Cause<unknown>, secrets: ReadonlyArray<string> = []): string => {
  const message = Option.match(Cause.failureOption(cause), {
    onSome: errorText,
    onNone: () =>
      Option.match(Cause.dieOption(cause), {
        onSome: (defect) => `unexpected error: ${errorText(defect)}`,
        onNone: () => (Cause.isInterrupted(cause) ? "interrupted" : "unexpected error"),
      }),
  })
  const line = redact(message.replace(/\s*\n\s*/g, " ").trim(), secrets)
  return `kv: ${line.replace(/^kv: /, "")}`
}
