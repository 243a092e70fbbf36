/**
 * One job's life, as phases (CONFORMANCE C2.2, C3, C5, C8):
 *
 * 1. **open**: the payload with its inputs applied, the job log (masking, pump) and the job's
 *    {@linkcode JobStops}: GitLab's cancel, a graceful cancel, the job timeout, a hard stop;
 * 2. **prepare**: the checks that fail a job before anything runs, the build directory, the
 *    dependencies, the `Job` and the factory's handler;
 * 3. **steps**: every step but `after_script`, by its `when`, under the main signal;
 * 4. **after_script** and 5. **artifacts**, under the after signal: a timeout or a graceful
 *    cancel does not stop them, GitLab's cancel and a hard stop skip or abort them;
 * 6. **cleanup**: the handler's `cleanup()`, the build directory;
 * 7. **end**: one {@linkcode JobEnd} from the stops and the failure, then the final update.
 *
 * @module
 */

import { join } from "node:path";
import { makeDir, removeDir } from "./_dirs.ts";
import type { Logger } from "./log/_logger.ts";
import type { Clock } from "./clock.ts";
import type { Client, RunnerMetadata } from "./api/client.ts";
import { mapFailureReason } from "./api/failure_reasons.ts";
import type { JobPayload, JobStep, JobVariable, ParseResult } from "./api/payload.ts";
import { JobFailure, ScriptFailure } from "./errors.ts";
import type { JobFactory, JobHandler } from "./handler.ts";
import { Job } from "./job.ts";
import { type FinalResult, type FinalState, JobLog } from "./log/job_log.ts";
import { Masker, type MaskerOptions } from "./log/masker.ts";
import { fallback, withJobLog } from "./output.ts";
import { createDependencies } from "./artifacts/download.ts";
import { filesUnder } from "./artifacts/files.ts";
import { uploadArtifacts } from "./artifacts/upload.ts";
import { type AppliedInputs, applyJobInputs, sensitiveInputValues } from "./inputs.ts";
import { whenMatches } from "./_when.ts";
import { startTimer as startClockTimer } from "./_timer.ts";

/** What the runner gives each job run. */
export interface RunContext {
  client: Client;
  clock: Clock;
  random: () => number;
  info: RunnerMetadata;
  features: Record<string, boolean>;
  buildDir: string;
  outputLimit: number;
  updateIntervalMs: number;
  keepAliveMs: number;
  abortGraceMs: number;
  factory: JobFactory;
  /** Aborts when the runner is stopped hard: running jobs are failed. */
  hardStop: AbortSignal;
  logger: Logger;
  version: string;
  systemId: string;
  /** Deadline of the final update (C8.4). */
  finalUpdateDeadlineMs?: number;
  /** How long the final flush may fail before the state goes without the log's end (C8.5). */
  flushDeadlineMs?: number;
  /** Where job logs spool their acknowledged bytes (C10.4; default: the OS temp directory). */
  spoolDir?: string;
}

/**
 * How a job ended, for the runner's bookkeeping and tests: the result of `runJob`, made once
 * per job after its final update (`Runner.outcomes`, `RunOptions.onJobEnd`).
 *
 * @example The outcome of a job whose step failed
 * ```ts
 * import { type JobOutcome, RunnerBuilder } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { ok, strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const job = mock.job().name("flash").enqueue();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .build();
 * await runner.requestJob(() => ({ step: () => Promise.reject(new Error("No board attached")) }));
 * await runner.drain();
 * const [outcome]: readonly JobOutcome[] = runner.outcomes;
 * strictEqual(outcome.id, job.id);
 * strictEqual(outcome.name, "flash");
 * strictEqual(outcome.state, "failed");
 * strictEqual(outcome.failureReason, "script_failure");
 * strictEqual(outcome.exitCode, undefined); // a ScriptFailure would carry its exit code
 * ok(outcome.durationMs >= 0);
 * ```
 */
export interface JobOutcome {
  /** The job id (0 when the payload had none). */
  id: number;
  /** The state reported, or `aborted` when GitLab stopped the job, or `lost` when the final update could not be delivered. */
  state: "success" | "failed" | "aborted" | "lost";
  /** The failure reason reported. */
  failureReason?: string;
  /** The exit code reported. */
  exitCode?: number;
  /** The job's name (`job_info.name`), when the payload could be read. */
  name?: string;
  /** Milliseconds from receiving the job to its final update. */
  durationMs: number;
}

type Ended = Omit<JobOutcome, "durationMs" | "name">;

/** A payload that cannot be used (maybe with its id and token). */
type Unparsed = Extract<ParseResult, { ok: false }>;

/** Why a job failed: a reason (unmapped), the exit code if any, and the job log's words. */
interface Failure {
  reason: string;
  exitCode?: number;
  message: string;
}

/**
 * How a job ended, decided once by {@linkcode endOf} after cleanup: GitLab's cancel (no final
 * state of ours), success, or a failure. A stop outranks a step's failure: GitLab's cancel,
 * then a hard stop, the job timeout, a graceful cancel.
 */
type JobEnd = { kind: "canceled" } | { kind: "success" } | ({ kind: "failed" } & Failure);

/**
 * The variables the runner sets itself (gitlab-runner `common/build.go` `GetDefaultVariables`):
 * where the builds and this job's directory are (absolute), `CI_SERVER`, `CI_JOB_STATUS`,
 * `CI_JOB_TIMEOUT`. They come after GitLab's, so they win over a `CI_PROJECT_DIR` GitLab
 * describes for its own layout, and they are part of `job.variables` before any expansion, so
 * `$CI_PROJECT_DIR` in a job variable's value expands to the build dir.
 */
function runnerVariables(ctx: RunContext, buildDir: string, timeoutS: number): JobVariable[] {
  const v = (key: string, value: string) => ({
    key,
    value,
    public: true,
    masked: false,
    file: false,
    raw: true,
  });
  return [
    v("CI_BUILDS_DIR", ctx.buildDir),
    v("CI_PROJECT_DIR", buildDir),
    v("CI_SERVER", "yes"),
    v("CI_JOB_STATUS", "running"),
    ...(timeoutS > 0 ? [v("CI_JOB_TIMEOUT", String(timeoutS))] : []),
  ];
}

const GREEN = "\x1b[32;1m";
const RED = "\x1b[31;1m";
const YELLOW = "\x1b[33;1m";
const RESET = "\x1b[0;m";

type StopKind = "canceled" | "timeout" | "graceful" | "runner-stop";

class StopReason extends Error {
  constructor(readonly kind: StopKind, message: string) {
    super(message);
    this.name = "AbortError";
  }
}

/**
 * The one place a job's stop sources meet. Each records its kind (with the reason it aborted
 * with) and aborts the signals it stops: `main` ends the factory and the steps; `after` ends
 * after_script and the artifact upload, and only GitLab's cancel and a hard stop abort it.
 */
class JobStops {
  readonly #main = new AbortController();
  readonly #after = new AbortController();
  readonly #seen = new Map<StopKind, StopReason>();
  /** The factory's and the steps' signal (also `Job.signal`). */
  readonly main: AbortSignal = this.#main.signal;
  /** The signal of after_script and the artifact upload. */
  readonly after: AbortSignal = this.#after.signal;

  /** GitLab canceled the job or the runner stops hard: after_script and artifacts are skipped. */
  get hard(): boolean {
    return this.#seen.has("canceled") || this.#seen.has("runner-stop");
  }

  /** A stop that makes the job count as failed for `when:` (the timeout, a graceful cancel). */
  get failing(): boolean {
    return this.#seen.has("timeout") || this.#seen.has("graceful");
  }

  /** The recorded stop of this kind. */
  get(kind: StopKind): StopReason | undefined {
    return this.#seen.get(kind);
  }

  /** Records a stop (the first of each kind) and aborts the signals it stops. */
  stop(kind: StopKind, message: string): void {
    if (this.#seen.has(kind)) return;
    const reason = new StopReason(kind, message);
    this.#seen.set(kind, reason);
    this.#main.abort(reason);
    if (kind === "canceled" || kind === "runner-stop") this.#after.abort(reason);
  }

  /**
   * Starts the runner-side sources: the runner's hard stop and the job timeout (on the clock).
   * Returns the function that ends them.
   */
  arm(clock: Clock, timeoutS: number, hardStop: AbortSignal): () => void {
    const onHardStop = () => this.stop("runner-stop", "The runner is shutting down");
    if (hardStop.aborted) onHardStop();
    else hardStop.addEventListener("abort", onHardStop, { once: true });
    const stopTimer = startTimer(
      clock,
      timeoutS * 1000,
      () => this.stop("timeout", `execution took longer than ${timeoutS} seconds`),
    );
    return () => {
      stopTimer();
      hardStop.removeEventListener("abort", onHardStop);
    };
  }
}

/** Calls `fire` after `ms` on the clock (none unless `ms > 0`); returns what cancels it. */
function startTimer(clock: Clock, ms: number, fire: () => void): () => void {
  if (!(ms > 0)) return () => {};
  const cancel = startClockTimer(clock, ms, fire);
  return () => void cancel();
}

/** What every phase of one job shares; made by {@linkcode open}, never changed. */
interface Life {
  ctx: RunContext;
  /** The payload every phase sees (job inputs interpolated). */
  payload: JobPayload;
  logger: Logger;
  log: JobLog;
  stops: JobStops;
  /** `<build dir>/<job id>`. */
  buildDir: string;
  /** The variables the runner sets itself ({@linkcode runnerVariables}), after GitLab's. */
  runnerVariables: readonly JobVariable[];
}

/** What {@linkcode prepare} leaves for the later phases and for cleanup. */
interface Prepared {
  /** The job failed before any step ran. */
  failure?: Failure;
  /** The factory's handler: the steps run. */
  handler?: JobHandler;
  /** The build directory exists (cleanup removes it). */
  madeDir: boolean;
}

/** An error's message, or the thrown value as text; never throws, whatever was thrown. */
function describe(error: unknown): string {
  try {
    const text = error instanceof Error ? error.message : String(error);
    if (typeof text === "string") return text;
  } catch {
    // A value with no usable conversion (e.g. a null prototype), or a throwing getter.
  }
  return fallback(error);
}

/** Error text for the runner's own diagnostics, masked like the job log. */
function safe(log: JobLog, error: unknown): string {
  return log.mask(describe(error));
}

function classify(error: unknown): Failure {
  if (error instanceof StopReason && error.kind === "timeout") {
    return { reason: "job_execution_timeout", message: error.message };
  }
  if (error instanceof JobFailure) {
    return { reason: error.reason, exitCode: error.exitCode, message: error.message };
  }
  if (error instanceof ScriptFailure) {
    return {
      reason: "script_failure",
      exitCode: error.exitCode,
      message: `exit code ${error.exitCode}`,
    };
  }
  return { reason: "script_failure", message: describe(error) };
}

function maskProperties(
  properties: Record<string, unknown>,
  mask: (text: string) => string,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(properties)) out[k] = typeof v === "string" ? mask(v) : v;
  return out;
}

function stageName(step: JobStep): string {
  return step.name === "script" ? "step_script" : step.name;
}

function lineWriter(log: JobLog): (line: string) => void {
  return (line) => log.write(line + "\n");
}

/** The job's state as delivered: GitLab's view when the final update did not go through. */
function delivered(result: FinalResult, state: FinalState["state"]): JobOutcome["state"] {
  return result.outcome === "done" ? state : result.outcome === "aborted" ? "aborted" : "lost";
}

/**
 * What a job's log and the runner's diagnostics about the job mask (C4.8, C9.4): the job
 * token, the values of masked variables, the values of sensitive inputs, and the job's token
 * prefixes; of a payload that cannot be read, the token if it was recovered.
 */
function maskingOf(payload: JobPayload | Unparsed): MaskerOptions {
  if ("ok" in payload) return { secrets: payload.token ? [payload.token] : [] };
  const secrets = payload.variables.filter((v) => v.masked && v.value).map((v) => v.value);
  secrets.push(payload.token, ...sensitiveInputValues(payload.inputs));
  return { secrets, tokenPrefixes: payload.features.tokenMaskPrefixes };
}

/** Runs one job to its end. Never throws. */
export async function runJob(ctx: RunContext, parsed: ParseResult): Promise<JobOutcome> {
  const started = ctx.clock.now();
  const name = parsed.ok ? parsed.payload.jobInfo.name : undefined;
  let outcome: Ended;
  try {
    outcome = parsed.ok ? await runParsed(ctx, parsed.payload) : await failUnparsed(ctx, parsed);
  } catch (error) {
    // Masked like the job log: the error may quote the job's token, a masked variable's or a
    // sensitive input's value (C9.4).
    ctx.logger.error("Unexpected error while running a job: {error}", {
      error: new Masker(maskingOf(parsed.ok ? parsed.payload : parsed)).mask(describe(error)),
    });
    outcome = { id: parsed.ok ? parsed.payload.id : parsed.id ?? 0, state: "lost" };
  }
  return { ...outcome, name, durationMs: ctx.clock.now() - started };
}

async function failUnparsed(
  ctx: RunContext,
  parsed: Unparsed,
): Promise<Ended> {
  ctx.logger.error("GitLab sent a job payload that cannot be read: {error}", {
    jobId: parsed.id,
    error: parsed.error,
  });
  if (parsed.id === undefined || parsed.token === undefined) {
    return { id: parsed.id ?? 0, state: "lost" };
  }
  const log = new JobLog({
    client: ctx.client,
    jobId: parsed.id,
    token: parsed.token,
    clock: ctx.clock,
    masking: maskingOf(parsed),
    info: ctx.info,
    random: ctx.random,
    finalUpdateDeadlineMs: ctx.finalUpdateDeadlineMs,
    flushDeadlineMs: ctx.flushDeadlineMs,
  });
  log.write(
    `${RED}ERROR: Job failed (system failure): the job payload could not be read: ${parsed.error}${RESET}\n`,
  );
  const result = await log.finish({ state: "failed", failureReason: "runner_system_failure" });
  return {
    id: parsed.id,
    state: delivered(result, "failed"),
    failureReason: "runner_system_failure",
  };
}

async function runParsed(ctx: RunContext, parsed: JobPayload): Promise<Ended> {
  // Job inputs (C12.1, src/inputs.ts): `${{ job.inputs.NAME }}` interpolated into the payload
  // when `job_inputs` is announced; sensitive inputs are masked (maskingOf); `inputs.error` fails
  // the job.
  const inputs = applyJobInputs(parsed, ctx.features.job_inputs === true);
  const life = open(ctx, inputs);
  const disarm = life.stops.arm(ctx.clock, life.payload.runnerInfo.timeout ?? 0, ctx.hardStop);
  let end: JobEnd;
  try {
    const done = await withJobLog(life.log, async (): Promise<Prepared> => {
      const prepared = await prepare(life, inputs);
      if (!prepared.handler) return prepared;
      const failure = await runSteps(life, prepared.handler);
      await runAfterScript(life, prepared.handler, failure);
      const uploadFailure = await uploadJobArtifacts(life, prepared.handler, failure);
      return { ...prepared, failure: failure ?? uploadFailure };
    });
    disarm();
    await cleanup(life, done);
    end = endOf(life.stops, done.failure);
  } catch (error) {
    // An error no phase expects (a handler whose `cleanup` getter throws, a rejection with a
    // revoked proxy, …): the job GitLab handed out still ends, as a system failure (C3.4), and
    // the diagnostic is masked like the job log (C9.4).
    disarm();
    life.logger.error("Unexpected error while running a job: {error}", {
      error: safe(life.log, error),
    });
    await removeBuildDirs(ctx, life.buildDir, () => {});
    end = endOf(life.stops, {
      reason: "runner_system_failure",
      message: `the runner failed unexpectedly: ${describe(error)}`,
    });
  }
  return await report(life, end);
}

/** The last build root {@linkcode jobDir} normalised, and what it made of it. */
let lastRoot: { root: string; prefix: string } | undefined;

/**
 * `join(root, String(id))`: the root is normalised once per root (`path.join` of the root and a
 * digit), since the id, a positive integer, is a plain segment that normalising leaves alone.
 */
function jobDir(root: string, id: number): string {
  if (lastRoot?.root !== root) {
    const joined = join(root, "0");
    lastRoot = { root, prefix: joined.slice(0, -1) };
  }
  return lastRoot.prefix + String(id);
}

/** Phase 1: what every phase sees (payload, build directory), the stops, the log (started). */
function open(ctx: RunContext, inputs: AppliedInputs): Life {
  const payload = inputs.payload;
  const buildDir = jobDir(ctx.buildDir, payload.id);
  const logger = ctx.logger.with({ jobId: payload.id });
  const stops = new JobStops();
  const log: JobLog = new JobLog({
    client: ctx.client,
    jobId: payload.id,
    token: payload.token,
    clock: ctx.clock,
    masking: maskingOf(payload),
    outputLimit: ctx.outputLimit,
    updateIntervalMs: ctx.updateIntervalMs,
    keepAliveMs: ctx.keepAliveMs,
    info: ctx.info,
    random: ctx.random,
    finalUpdateDeadlineMs: ctx.finalUpdateDeadlineMs,
    flushDeadlineMs: ctx.flushDeadlineMs,
    spoolDir: ctx.spoolDir,
    onAbort: (result) => {
      logger.info("GitLab stopped job {jobId} (status {status}, Job-Status {jobStatus})", {
        status: result.status,
        jobStatus: result.jobStatus ?? "none",
      });
      stops.stop("canceled", "The job was canceled by GitLab");
    },
    onCancelRequested: () => {
      if (!ctx.features.cancel_gracefully || stops.get("graceful")) return;
      logger.info("GitLab asked to cancel job {jobId} gracefully");
      log.write(`${YELLOW}Job is being canceled${RESET}\n`);
      stops.stop("graceful", "The job is being canceled");
    },
    onDiagnostic: (message, properties) =>
      logger.warn(message, maskProperties(properties ?? {}, (t) => log.mask(t))),
  });
  log.start();
  const ours = runnerVariables(ctx, buildDir, payload.runnerInfo.timeout ?? 0);
  return { ctx, payload, logger, log, stops, buildDir, runnerVariables: ours };
}

/** Phase 2: the banner, the checks that fail a job early, the build directory, the factory. */
async function prepare(life: Life, inputs: AppliedInputs): Promise<Prepared> {
  const { ctx, payload, log, stops, buildDir } = life;
  log.write(
    `Running with @x/gitlab-runner ${ctx.version}\n  on ${
      ctx.info.name ?? "runner"
    } ${ctx.systemId}\n`,
  );
  if (inputs.error) {
    const message = `failed to interpolate job inputs: ${inputs.error.detail}`;
    return { madeDir: false, failure: { reason: inputs.error.reason, message } };
  }
  if (!payload.steps) {
    const message = "this job uses `run:` (native steps), which this runner does not support";
    return { madeDir: false, failure: { reason: "runner_unsupported", message } };
  }
  // Under the job's signal: a file system that hangs does not hold the job past its timeout, a
  // cancel or a hard stop (and the grace after it).
  const making = makeDir(buildDir);
  const made = await settleUnder(ctx, making, stops.main, "Creating the build directory");
  if (made === undefined || "error" in made) {
    if (made === undefined) making.then(() => removeDir(buildDir)).catch(() => {});
    const message = `cannot create the build directory: ${
      made === undefined ? "it did not finish after the job was stopped" : describe(made.error)
    }`;
    return { madeDir: false, failure: { reason: "runner_system_failure", message } };
  }
  const dependencies = createDependencies({
    client: ctx.client,
    dependencies: payload.dependencies,
    buildDir,
    clock: ctx.clock,
    log: lineWriter(log),
  });
  const job = new Job({
    payload,
    buildDir,
    log,
    dependencies,
    signal: stops.main,
    runnerVariables: life.runnerVariables,
  });
  try {
    // The factory runs under the job's signal: a timeout, cancel or hard stop reaches it,
    // and one that does not settle within the abort grace is left behind (C8.3).
    const made = await settleUnder(
      ctx,
      (async () => await ctx.factory(job))(),
      stops.main,
      "The job factory",
    );
    if (made === undefined) throw stops.main.reason;
    if ("error" in made) throw made.error;
    return { madeDir: true, handler: made.value };
  } catch (error) {
    life.logger.error("The job factory failed: {error}", { error: safe(log, error) });
    const failure = error instanceof JobFailure ? classify(error) : {
      reason: "runner_system_failure",
      message: `the runner could not prepare the job: ${describe(error)}`,
    };
    return { madeDir: true, failure };
  }
}

/** Phase 3: every step but after_script, by its `when`, under the main signal. */
async function runSteps(life: Life, handler: JobHandler): Promise<Failure | undefined> {
  const { ctx, payload, log, stops } = life;
  let failure: Failure | undefined;
  for (const step of payload.steps ?? []) {
    if (step.name === "after_script") continue;
    if (stops.main.aborted || !whenMatches(step.when, failure !== undefined)) continue;
    log.write(`${GREEN}Executing "${stageName(step)}" stage of the job script${RESET}\n`);
    const error = await runStep(ctx, handler, step, stops.main);
    if (error === undefined) continue;
    if (stops.main.aborted) break;
    if (step.allowFailure) {
      log.write(
        `${YELLOW}WARNING: step ${step.name} failed (allowed): ${describe(error)}${RESET}\n`,
      );
      continue;
    }
    failure = classify(error);
  }
  return failure;
}

/** Phase 4: after_script, by its `when`, under the after signal; its failure is only a warning. */
async function runAfterScript(
  life: Life,
  handler: JobHandler,
  failure: Failure | undefined,
): Promise<void> {
  const { ctx, payload, log, stops } = life;
  if (stops.hard) return;
  const failed = failure !== undefined || stops.failing;
  for (const step of payload.steps ?? []) {
    if (step.name !== "after_script" || !whenMatches(step.when, failed)) continue;
    log.write(`${GREEN}Running after_script${RESET}\n`);
    const error = await runStep(ctx, handler, step, stops.after);
    if (error !== undefined && !stops.after.aborted) {
      log.write(`${YELLOW}WARNING: after_script failed: ${describe(error)}${RESET}\n`);
    }
  }
}

/**
 * Phase 5: the artifact upload, under the after signal. Resolves to its failure, which counts
 * only when the steps did not fail (the script's error comes first).
 */
async function uploadJobArtifacts(
  life: Life,
  handler: JobHandler,
  failure: Failure | undefined,
): Promise<Failure | undefined> {
  const { ctx, payload, stops, buildDir } = life;
  if (payload.artifacts.length === 0 || stops.hard) return undefined;
  try {
    const result = await uploadArtifacts({
      client: ctx.client,
      jobId: payload.id,
      token: payload.token,
      specs: payload.artifacts,
      files: () => handler.uploadableFiles?.() ?? filesUnder(buildDir),
      scriptFailed: failure !== undefined || stops.failing,
      // Expanded like the job sees them: `$CI_PROJECT_DIR` is this runner's build directory.
      variables: [...payload.variables, ...life.runnerVariables],
      log: lineWriter(life.log),
      clock: ctx.clock,
      signal: stops.after,
      projectDir: buildDir,
    });
    if (result.ok) return undefined;
    return {
      reason: result.failureReason ?? "script_failure",
      exitCode: result.exitCode,
      message: `uploading artifacts failed: ${
        result.failures.map((f) => describe(f.error)).join("; ")
      }`,
    };
  } catch (error) {
    if (stops.after.aborted) return undefined;
    return {
      reason: "runner_system_failure",
      message: `uploading artifacts failed: ${describe(error)}`,
    };
  }
}

/** Phase 6: the handler's cleanup (inside the job's log context), then the build directory. */
async function cleanup(life: Life, { handler, madeDir }: Prepared): Promise<void> {
  const { log, logger, buildDir } = life;
  if (handler?.cleanup) {
    try {
      await withJobLog(log, async () => await handler.cleanup?.());
    } catch (error) {
      logger.warn("Job cleanup failed: {error}", { error: safe(log, error) });
    }
  }
  if (madeDir) {
    await removeBuildDirs(
      life.ctx,
      buildDir,
      (error) =>
        logger.warn("Cannot remove the build directory: {error}", { error: safe(log, error) }),
    );
  }
}

/**
 * How long the end of a job waits for its build directories to be removed: past it, the job's
 * final state goes and the removal goes on without it (a file system that hangs cannot keep a
 * job from ending).
 */
export const REMOVE_DEADLINE_MS = 10 * 60 * 1000;

/** Removes the build directory and `<dir>.tmp` (downloads, C10.5), waiting at most the deadline. */
async function removeBuildDirs(
  ctx: RunContext,
  buildDir: string,
  onError: (error: unknown) => void,
): Promise<void> {
  const removing = (async () => {
    await removeDir(buildDir).catch(onError);
    await removeDir(`${buildDir}.tmp`).catch(() => {});
  })();
  if (!(await within(ctx.clock, REMOVE_DEADLINE_MS, removing))) {
    ctx.logger.warn(
      "Removing the build directory {dir} did not finish within {ms} ms; the job ends without it",
      { dir: buildDir, ms: REMOVE_DEADLINE_MS },
    );
  }
}

/**
 * The value of `work`, or undefined when `ms` pass on the clock first (a deadline of the shared
 * timer on the system clock, let go of once the race is decided). `work` must not reject.
 */
async function within<T>(
  clock: Clock,
  ms: number,
  work: Promise<T>,
): Promise<{ value: T } | undefined> {
  let late!: () => void;
  const deadline = new Promise<undefined>((resolve) => (late = () => resolve(undefined)));
  const cancel = startClockTimer(clock, ms, late);
  const first = await Promise.race([work.then((value) => ({ value })), deadline]);
  const released = cancel();
  if (released) await released;
  return first;
}

/** How the job ended: the one place the stops and the failure are weighed. */
function endOf(stops: JobStops, failure: Failure | undefined): JobEnd {
  if (stops.get("canceled")) return { kind: "canceled" };
  const timeout = stops.get("timeout");
  const stopped: Failure | undefined = stops.get("runner-stop")
    ? { reason: "runner_system_failure", message: "the runner was stopped" }
    : timeout
    ? { reason: "job_execution_timeout", message: timeout.message }
    : stops.get("graceful")
    ? { reason: "job_canceled", message: "the job was canceled" }
    : failure;
  return stopped ? { kind: "failed", ...stopped } : { kind: "success" };
}

/** Phase 7: the last log line and the final update (or, after GitLab's cancel, the log's end). */
async function report(life: Life, end: JobEnd): Promise<Ended> {
  const { payload, log, logger } = life;
  const id = payload.id;
  if (end.kind === "canceled") {
    await log.stop();
    return { id, state: "aborted" };
  }
  let final: FinalState;
  if (end.kind === "failed") {
    const reason = mapFailureReason(end.reason, payload.features.failureReasons);
    log.write(`${RED}ERROR: Job failed: ${end.message}${RESET}\n`);
    final = { state: "failed", failureReason: reason, exitCode: end.exitCode };
  } else {
    log.write(`${GREEN}Job succeeded${RESET}\n`);
    final = { state: "success" };
  }
  const result = await log.finish(final);
  if (result.outcome === "failed") {
    logger.error("Could not deliver the final state of job {jobId} to GitLab");
  }
  return {
    id,
    state: delivered(result, final.state),
    failureReason: final.failureReason,
    exitCode: final.exitCode,
  };
}

/** How a piece of work settled: its value or its error. */
type Settled<T> = { value: T } | { error: unknown };

/**
 * Waits for `work`; once `signal` aborts, for at most the abort grace more. Resolves to how it
 * settled, or to undefined when it was left behind.
 */
async function settleUnder<T>(
  ctx: RunContext,
  work: Promise<T>,
  signal: AbortSignal,
  what: string,
): Promise<Settled<T> | undefined> {
  const outcome: Promise<Settled<T>> = work.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  const aborted = new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
  const first = await Promise.race([outcome, aborted.then(() => undefined)]);
  if (first) return first;
  // Aborted: give the work a grace period to settle, then move on without it.
  const settled = await within(ctx.clock, ctx.abortGraceMs, outcome);
  if (settled) return settled.value;
  ctx.logger.warn("{what} did not stop within {ms} ms of being aborted", {
    what,
    ms: ctx.abortGraceMs,
  });
  return undefined;
}

/** Runs a step; resolves to undefined on success or to the error. */
async function runStep(
  ctx: RunContext,
  handler: JobHandler,
  step: JobStep,
  parent: AbortSignal,
): Promise<unknown> {
  if (parent.aborted) return parent.reason;
  const ctl = new AbortController();
  const onParent = () => ctl.abort(parent.reason);
  parent.addEventListener("abort", onParent, { once: true });
  const timeout = step.timeout ?? 0;
  const stopTimer = startTimer(
    ctx.clock,
    timeout * 1000,
    () =>
      ctl.abort(new StopReason("timeout", `step ${step.name} took longer than ${timeout} seconds`)),
  );
  try {
    const run = (async () => await handler.step(step.script, step.name, ctl.signal))();
    const settled = await settleUnder(ctx, run, ctl.signal, "A step");
    if (!settled) return ctl.signal.reason;
    if (ctl.signal.aborted) return "error" in settled ? ctl.signal.reason : undefined;
    return "error" in settled ? settled.error ?? new Error("The step failed") : undefined;
  } finally {
    stopTimer();
    parent.removeEventListener("abort", onParent);
  }
}
