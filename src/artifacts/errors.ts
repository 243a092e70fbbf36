/**
 * The typed error of artifact handling.
 *
 * @module
 */

/** Options of {@link ArtifactError}. */
export interface ArtifactErrorOptions {
  /** The underlying error, if any (a failed read, a corrupt archive…). */
  cause?: unknown;
  /** The artifact entry or file path the error is about, if any. */
  path?: string;
  /** The limit that was exceeded, if any (see {@link ArtifactError.limit}). */
  limit?: ArtifactLimitExceeded;
}

/** A size or count limit an artifact went beyond (C10.2). */
export interface ArtifactLimitExceeded {
  /**
   * The option naming the limit: `maxDownloadSize` (or `artifacts_file.size`, the size GitLab
   * stated), `maxEntries`, `maxExtractSize`.
   */
  name: string;
  /** The limit's value (bytes or entries). */
  value: number;
}

/**
 * Artifact handling failed: an invalid or unsafe path, a `raw` artifact with zero or several
 * files, a corrupt archive, a file that could not be read while archiving (then the read
 * error is the `cause`), or an artifact beyond a size or entry limit (then `limit` says which).
 *
 * @example Catching it
 * ```ts
 * import { ArtifactError } from "./errors.ts";
 * import { strictEqual } from "node:assert";
 * const err: unknown = new ArtifactError("Entry escapes the target directory", { path: "../x" });
 * if (!(err instanceof ArtifactError)) throw new Error("not an ArtifactError");
 * strictEqual(err.name, "ArtifactError");
 * strictEqual(err.path, "../x");
 * ```
 */
export class ArtifactError extends Error {
  /** The artifact entry or file path the error is about, if known. */
  readonly path?: string;
  /** The limit that was exceeded, when that is the error. */
  readonly limit?: ArtifactLimitExceeded;

  /**
   * Creates the error.
   *
   * @param message What went wrong, capitalised, without a trailing period.
   * @param options The `cause` and the `path` concerned.
   */
  constructor(message: string, options: ArtifactErrorOptions = {}) {
    super(message, "cause" in options ? { cause: options.cause } : undefined);
    this.name = "ArtifactError";
    if (options.path !== undefined) this.path = options.path;
    if (options.limit !== undefined) this.limit = { ...options.limit };
  }
}
