/**
 * `getSources`: gets a job's sources with the machine's `git`, the way the official runner's
 * get_sources stage does (CONFORMANCE C11). Used through `Job.sources()`. The implementation
 * (`_get_sources.ts`) is loaded on the first call.
 *
 * @module
 */

import type { JobPayload, JobVariable } from "../api/payload.ts";
import { JobFailure } from "../errors.ts";
import type { Variable } from "../job.ts";
import { lazy } from "../_lazy.ts";
import type { GitStrategy, SubmoduleStrategy } from "./_script.ts";

export type { GitStrategy, SubmoduleStrategy };

/**
 * Options of `Job.sources()` ({@linkcode getSources}).
 *
 * @example Get the sources with a step's signal, inheriting a proxy setting
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { DEFAULT_INHERITED_ENV, type SourcesOptions } from "@x/gitlab-runner";
 * const options: SourcesOptions = {
 *   signal: AbortSignal.timeout(10 * 60_000),
 *   inheritEnv: [...DEFAULT_INHERITED_ENV, "HTTPS_PROXY", "NO_PROXY"],
 * };
 * strictEqual(options.signal?.aborted, false);
 * ```
 */
export interface SourcesOptions {
  /**
   * Aborting it stops git and everything it started (the process tree, like `runScript`), and
   * the call rejects with the signal's reason. Default: the job's signal (its timeout, a cancel).
   */
  signal?: AbortSignal;
  /**
   * Where git's output and the notices go. Default: the job's log (masked, so the job token and
   * masked variables never show).
   */
  output?: WritableStream<Uint8Array>;
  /**
   * Which variables of the runner's environment git inherits (see `RunScriptOptions.inheritEnv`).
   * Default: `DEFAULT_INHERITED_ENV`.
   */
  inheritEnv?: boolean | readonly string[];
  /** Milliseconds between SIGTERM and SIGKILL on abort. Default: 10 000. */
  killGraceMs?: number;
  /** The `http.userAgent` git sends. Default: `@x/gitlab-runner`. */
  userAgent?: string;
}

/**
 * What {@linkcode getSources} did.
 *
 * @example
 * ```ts
 * import type { SourcesResult } from "@x/gitlab-runner";
 * const result: SourcesResult = { strategy: "fetch", dir: "/builds/1", sha: "1a2b3c4d", attempts: 1 };
 * console.log(`${result.strategy} ${result.sha} in ${result.dir}`);
 * ```
 */
export interface SourcesResult {
  /** The strategy used (`GIT_STRATEGY`, or its default from `allow_git_fetch`). */
  strategy: GitStrategy;
  /** The (absolute) directory of the sources. */
  dir: string;
  /** The commit checked out; `undefined` when nothing was checked out. */
  sha?: string;
  /** How many attempts it took (`GET_SOURCES_ATTEMPTS`). */
  attempts: number;
}

/**
 * Getting the sources failed: git (or a hook) exited non-zero in every attempt, or the job's
 * variables ask for something impossible. A {@linkcode JobFailure}: thrown from a factory or a
 * step, it fails the job (`script_failure` with git's exit code, or
 * `runner_configuration_error` for a bad setting), and the log above says why.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { SourcesError } from "@x/gitlab-runner";
 * const error = new SourcesError("Getting the sources failed with exit code 128", { exitCode: 128 });
 * strictEqual(error.reason, "script_failure");
 * strictEqual(error.exitCode, 128);
 * ```
 */
export class SourcesError extends JobFailure {
  /** Creates the error; `reason` defaults to `script_failure`. */
  constructor(
    message: string,
    options: { exitCode?: number; reason?: string; cause?: unknown } = {},
  ) {
    super(options.reason ?? "script_failure", {
      message,
      exitCode: options.exitCode,
      cause: options.cause,
    });
    this.name = "SourcesError";
  }
}

/** What {@linkcode getSources} reads of a job (a `Job` has all of it). */
export interface SourcesJob {
  /** The payload (`git_info`, `allow_git_fetch`, `hooks`, `token`). */
  readonly payload: JobPayload;
  /** The job's variables (`GIT_STRATEGY`, `GIT_DEPTH`, …). */
  readonly variables: readonly (Variable | JobVariable)[];
  /** The job's signal. */
  readonly signal: AbortSignal;
  /** The job's log. */
  readonly log: WritableStream<Uint8Array>;
}

/** The implementation, loaded with the first call (an idle runner does not hold it). */
const implementation = lazy(() => import("./_get_sources.ts"));

/**
 * Gets a job's sources into `dir` with the machine's `git` (and `git lfs` where installed),
 * as the official runner's get_sources stage does (CONFORMANCE C11.1), and writes its notices
 * and git's output into the job log in the official runner's words (`Fetching changes with git
 * depth set to 20...`, `Checking out 1a2b3c4d as detached HEAD (ref is main)...`, `Skipping
 * Git submodules setup`, …):
 *
 * - `GIT_STRATEGY`: `fetch` (default when the project allows it, `allow_git_fetch`) reuses
 *   the repository already in `dir`; `clone` (the other default) deletes `dir` first; `none`
 *   only makes `dir` (keeping what is there); `empty` deletes and recreates it. `none` and
 *   `empty` check nothing out.
 * - fetch: `git init` (`--object-format sha256` for such repositories), remote `origin`
 *   without credentials, `git fetch origin --no-recurse-submodules <git_info.refspecs>
 *   [--depth git_info.depth]` plus `GIT_FETCH_EXTRA_FLAGS` (default `--prune --quiet`), and
 *   `--unshallow` for a full fetch into a shallow repository. Stale lock files of a killed
 *   git are removed first.
 * - `GIT_CHECKOUT` (default true): `git checkout -f -q <sha>`, `git clean <GIT_CLEAN_FLAGS>`
 *   (default `-ffdx`), `git lfs pull`.
 * - `GIT_SUBMODULE_STRATEGY` `normal`/`recursive` with `GIT_SUBMODULE_DEPTH`,
 *   `GIT_SUBMODULE_PATHS`, `GIT_SUBMODULE_UPDATE_FLAGS`, `GIT_SUBMODULE_FORCE_HTTPS`.
 * - the payload's `pre_get_sources_script` and `post_get_sources_script` hooks around it, the
 *   whole of it tried `GET_SOURCES_ATTEMPTS` times (1 to 10, default 1).
 * - `GIT_TERMINAL_PROMPT=0`, `GCM_INTERACTIVE=Never`: git never waits for a password.
 *
 * The job token never lands in `.git/config`, in a command line or in the log (C11.2): git
 * gets it from a credential helper that reads a private file outside the work tree, removed
 * afterwards. Git runs through `runScript`'s machinery: abort (the signal, by default the
 * job's: timeout, cancel) terminates git and every process it started (C11.3).
 *
 * A runner that uses it should announce the `refspecs` feature
 * (`RunnerBuilder.features(["refspecs"])`, C11.5): without it GitLab fails merge-request
 * pipelines with `runner_unsupported`.
 *
 * @param job The job (a `Job`).
 * @param dir Where the sources go; relative paths are resolved against the current directory.
 * @param options Signal, output, environment.
 * @returns What was done.
 * @throws {SourcesError} When every attempt failed, or the job's settings are invalid.
 *
 * @example Check out the sources before running the script
 * ```ts ignore
 * import type { Job, JobHandler } from "@x/gitlab-runner";
 * async function factory(job: Job): Promise<JobHandler> {
 *   await job.sources(); // into job.buildDir; a failure fails the job
 *   return { step: async () => {} };
 * }
 * ```
 */
export async function getSources(
  job: SourcesJob,
  dir: string,
  options: SourcesOptions = {},
): Promise<SourcesResult> {
  return (await implementation()).getSources(job, dir, options);
}
