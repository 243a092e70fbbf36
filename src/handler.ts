/**
 * What a runner application implements: a {@linkcode JobHandler} per job, made by a
 * {@linkcode JobFactory}.
 *
 * @module
 */

import type { UploadableFile } from "./artifacts/files.ts";
import type { Job } from "./job.ts";

/**
 * The step a script belongs to: `script` (before_script + script), `after_script`, `release`,
 * or another step name GitLab sends.
 */
export type Phase = "script" | "after_script" | "release" | (string & Record<never, never>);

/**
 * Says what a job's steps do. One handler is made per job by the {@linkcode JobFactory}.
 *
 * @example A handler that echoes the script into the job log
 * ```ts
 * import { type JobHandler, outputln, type Phase, RunnerBuilder } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { ok, strictEqual } from "node:assert";
 * class Echo implements JobHandler {
 *   async step(script: readonly string[], phase: Phase, signal: AbortSignal): Promise<void> {
 *     for (const line of script) {
 *       signal.throwIfAborted();
 *       outputln(`${phase}: ${line}`);
 *     }
 *   }
 * }
 * const mock = new GitLabMock();
 * const job = mock.job().script(["make", "make test"]).enqueue();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .build();
 * await runner.requestJob(() => new Echo());
 * await runner.drain();
 * strictEqual(job.state, "success");
 * ok(job.logText.includes("\nscript: make\nscript: make test\n"));
 * ```
 */
export interface JobHandler {
  /**
   * Runs one step's script lines. Resolve for success; reject for failure (with a
   * `ScriptFailure` to report an exit code, or a `JobFailure` for another reason). The
   * signal aborts on cancel, timeout or runner shutdown: stop the work and settle soon.
   */
  step(script: readonly string[], phase: Phase, signal: AbortSignal): Promise<void>;
  /**
   * The files the job's artifacts are picked from (paths relative to the project directory),
   * after the steps. Called once per artifact entry of the job. Default: every file under
   * the job's build directory (`filesUnder(job.buildDir)`).
   */
  uploadableFiles?(): AsyncIterable<UploadableFile> | Iterable<UploadableFile>;
  /**
   * Always called last, after success, failure, cancel or timeout, before the build directory
   * is removed.
   */
  cleanup?(): Promise<void> | void;
}

/**
 * Makes the handler for a job; called once the build directory exists, under `job.signal`. A
 * factory that throws a `JobFailure` fails the job with its reason; any other error fails it
 * as `runner_system_failure`.
 */
export type JobFactory = (job: Job) => JobHandler | Promise<JobHandler>;
