/** The error of `build-local` that a person acts on: one line, no stack. */
import { Schema } from "effect"

/** A local build cannot start: a path, the repo, the hub's answer or the image is not usable (one line for the user). */
export class LocalBuildError extends Schema.TaggedError<LocalBuildError>()("LocalBuildError", {
  message: Schema.String
}) {}
