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
}

/**
 * Artifact handling failed: an invalid or unsafe path, a `raw` artifact with zero or several
 * files, a corrupt archive, or a file that could not be read while archiving (then the read
 * error is the `cause`).
 *
 * @example Catching it
 * ```ts
 * import { ArtifactError } from "./errors.ts";
 * const err = new ArtifactError("Entry escapes the target directory", { path: "../x" });
 * console.log(err instanceof ArtifactError, err.name, err.path);
 * ```
 */
export class ArtifactError extends Error {
  /** The artifact entry or file path the error is about, if known. */
  readonly path?: string;

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
  }
}
