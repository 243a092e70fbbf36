/**
 * @x/gitlab-runner: write custom GitLab runners in TypeScript, on Deno and Node.
 *
 * The library does all the talking to GitLab (asking for jobs, the job log with masking,
 * state, cancellation, the final update); the application implements one
 * {@linkcode JobHandler} that says what a job's steps do.
 *
 * @example A runner that echoes each job's script into its log
 * ```ts
 * import { type JobHandler, outputln, type Phase, RunnerBuilder } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { ok } from "node:assert";
 *
 * class Run implements JobHandler {
 *   async step(script: readonly string[], phase: Phase, _signal: AbortSignal): Promise<void> {
 *     outputln(`Running script for phase ${phase}`);
 *     for (const line of script) outputln(`Step: ${line}`);
 *   }
 * }
 *
 * // Against the in-process GitLab mock here; use your GitLab URL and runner token for real.
 * const mock = new GitLabMock();
 * mock.job().script(["make test"]).enqueue();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .build();
 * const stop = new AbortController();
 * const done = runner.run(() => new Run(), 16, { signal: stop.signal });
 * await mock.waitFor(() => mock.jobs[0].state === "success");
 * stop.abort();
 * await done;
 * ok(mock.jobs[0].logText.includes("\nRunning script for phase script\nStep: make test\n"));
 * ```
 *
 * @module
 */
export { type Clock, FakeClock, systemClock } from "./src/clock.ts";
export {
  ApiError,
  InputInterpolationError,
  JobFailure,
  RequestError,
  ScriptFailure,
} from "./src/errors.ts";
export type {
  ApiEndpoint,
  CallOptions,
  ResponseObserver,
  RunnerMetadata,
  VerifyResult,
} from "./src/api/client.ts";
export type { RetryPolicy } from "./src/api/retry.ts";
export type {
  ArtifactSpec,
  CacheSpec,
  Credential,
  DependencySpec,
  GitInfo,
  JobFeatures,
  JobHook,
  JobImage,
  JobInfo,
  JobInput,
  JobInputContent,
  JobInputType,
  JobPayload,
  JobService,
  JobStep,
  JobVariable,
  Port,
  RunnerInfo,
  ServiceVariable,
  StepWhen,
  UploadWhen,
} from "./src/api/payload.ts";
export { RUNNER_FAILURE_REASONS, type RunnerFailureReason } from "./src/api/failure_reasons.ts";
export { type Deadlines, RunnerBuilder, VERSION } from "./src/builder.ts";
export { ALL_FEATURES, LIBRARY_FEATURES, Runner, type RunOptions } from "./src/runner.ts";
export type { JobOutcome } from "./src/run.ts";
export type { JobFactory, JobHandler, Phase } from "./src/handler.ts";
export { Job, Variable, type VariableOptions } from "./src/job.ts";
export {
  getSources,
  type GitStrategy,
  SourcesError,
  type SourcesJob,
  type SourcesOptions,
  type SourcesResult,
  type SubmoduleStrategy,
} from "./src/sources/sources.ts";
export {
  expandVariables,
  type ExpandVariablesOptions,
  type VariableLike,
} from "./src/variables.ts";
export { interpolateInputs, MAX_INTERPOLATED_LENGTH } from "./src/inputs.ts";
export { currentJobLog, type LogSink, outputln } from "./src/output.ts";
export { DEFAULT_OUTPUT_LIMIT } from "./src/log/_defaults.ts";
export {
  DEFAULT_INHERITED_ENV,
  runScript,
  type RunScriptOptions,
} from "./src/script/run_script.ts";
export {
  filesUnder,
  readFileStream,
  type ReadFileStreamOptions,
  type UploadableFile,
} from "./src/artifacts/files.ts";
export {
  type Artifact,
  type ArtifactEntry,
  type ArtifactLimits,
  DEFAULT_MAX_DOWNLOAD_SIZE,
  DEFAULT_MAX_EXTRACT_SIZE,
  Dependency,
  type DependencyDownloadOptions,
  type DependencyOptions,
  type ExtractOptions,
} from "./src/artifacts/download.ts";
export {
  ArtifactError,
  type ArtifactErrorOptions,
  type ArtifactLimitExceeded,
} from "./src/artifacts/errors.ts";
export {
  API_REQUEST_DURATION_BUCKETS,
  type AttachedRunner,
  JOB_DURATION_BUCKETS,
  RunnerMetrics,
  type RunnerMetricsOptions,
  type RunnerRecorder,
  shortToken,
} from "./src/metrics/registry.ts";
export {
  ListenError,
  metricsHandler,
  type MetricsHandlerOptions,
  type MetricsServer,
  parseListenAddress,
  serveMetrics,
  type ServeMetricsOptions,
} from "./src/metrics/server.ts";
