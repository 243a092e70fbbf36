/**
 * One job's life: build directory, factory, steps with their `when` and timeouts, cancel,
 * cleanup, the log pump and the final update (CONFORMANCE C2.2, C3, C5).
 *
 * @module
 */

import { join } from "node:path";
import { makeDir, removeDir } from "./_dirs.ts";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "./clock.ts";
import { type Client, maskSecrets, type RunnerMetadata } from "./api/client.ts";
import { mapFailureReason } from "./api/failure_reasons.ts";
import type { JobStep, JobVariable, ParseResult } from "./api/payload.ts";
import { JobFailure, ScriptFailure } from "./errors.ts";
import type { JobFactory, JobHandler } from "./handler.ts";
import { Job } from "./job.ts";
import { type FinalState, JobLog } from "./log/job_log.ts";
import { withJobLog } from "./output.ts";
import { createDependencies } from "./artifacts/download.ts";
import { filesUnder } from "./artifacts/files.ts";
import { uploadArtifacts } from "./artifacts/upload.ts";
import { applyJobInputs } from "./inputs.ts";

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

/** How a job ended, for the runner's bookkeeping and tests. */
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

interface Failure {
  reason: string;
  exitCode?: number;
  message: string;
}

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

/** The reason timers are stopped with (made once: an abort without one builds an error). */
const TIMER_DONE = new Error("Timer no longer needed");

const GREEN = "\x1b[32;1m";
const RED = "\x1b[31;1m";
const YELLOW = "\x1b[33;1m";
const RESET = "\x1b[0;m";

class StopReason extends Error {
  constructor(readonly kind: "canceled" | "timeout" | "graceful" | "runner-stop", message: string) {
    super(message);
    this.name = "AbortError";
  }
}

function shouldRun(when: string, failed: boolean): boolean {
  if (when === "always") return true;
  if (when === "on_failure") return failed;
  return !failed;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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

/** Runs one job to its end. Never throws. */
export async function runJob(ctx: RunContext, parsed: ParseResult): Promise<JobOutcome> {
  const started = ctx.clock.now();
  const name = parsed.ok ? parsed.payload.jobInfo.name : undefined;
  let outcome: Omit<JobOutcome, "durationMs" | "name">;
  try {
    outcome = parsed.ok ? await runParsed(ctx, parsed.payload) : await failUnparsed(ctx, parsed);
  } catch (error) {
    // Masked like the job log: the error may quote the job's token or a masked value (C9.4).
    const secrets = parsed.ok
      ? [
        parsed.payload.token,
        ...parsed.payload.variables.filter((v) => v.masked).map((v) => v.value),
      ]
      : parsed.token
      ? [parsed.token]
      : [];
    ctx.logger.error("Unexpected error while running a job: {error}", {
      error: maskSecrets(describe(error), secrets),
    });
    outcome = { id: parsed.ok ? parsed.payload.id : parsed.id ?? 0, state: "lost" };
  }
  return { ...outcome, name, durationMs: ctx.clock.now() - started };
}

type Ended = Omit<JobOutcome, "durationMs" | "name">;

async function failUnparsed(
  ctx: RunContext,
  parsed: Extract<ParseResult, { ok: false }>,
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
    masking: { secrets: [parsed.token] },
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
    state: result.outcome === "done" ? "failed" : result.outcome === "aborted" ? "aborted" : "lost",
    failureReason: "runner_system_failure",
  };
}

async function runParsed(
  ctx: RunContext,
  parsed: Extract<ParseResult, { ok: true }>["payload"],
): Promise<Ended> {
  // Job inputs (C12.1, src/inputs.ts): `${{ job.inputs.NAME }}` interpolated into the payload
  // when `job_inputs` is announced; `inputs.secrets` are masked; `inputs.error` fails the job.
  const inputs = applyJobInputs(parsed, ctx.features.job_inputs === true);
  const payload = inputs.payload;
  const id = payload.id;
  const logger = ctx.logger.with({ jobId: id });
  const mainCtl = new AbortController();
  const afterCtl = new AbortController();
  let gitlabAbort = false;
  let graceful = false;
  let timedOut = false;
  let runnerStopped = false;

  const secrets = payload.variables.filter((v) => v.masked && v.value).map((v) => v.value);
  secrets.push(payload.token, ...inputs.secrets);
  const log = new JobLog({
    client: ctx.client,
    jobId: id,
    token: payload.token,
    clock: ctx.clock,
    masking: { secrets, tokenPrefixes: payload.features.tokenMaskPrefixes },
    outputLimit: ctx.outputLimit,
    updateIntervalMs: ctx.updateIntervalMs,
    keepAliveMs: ctx.keepAliveMs,
    info: ctx.info,
    random: ctx.random,
    finalUpdateDeadlineMs: ctx.finalUpdateDeadlineMs,
    flushDeadlineMs: ctx.flushDeadlineMs,
    spoolDir: ctx.spoolDir,
    onAbort: (result) => {
      gitlabAbort = true;
      logger.info("GitLab stopped job {jobId} (status {status}, Job-Status {jobStatus})", {
        status: result.status,
        jobStatus: result.jobStatus ?? "none",
      });
      const reason = new StopReason("canceled", "The job was canceled by GitLab");
      mainCtl.abort(reason);
      afterCtl.abort(reason);
    },
    onCancelRequested: () => {
      if (!ctx.features.cancel_gracefully || graceful) return;
      graceful = true;
      logger.info("GitLab asked to cancel job {jobId} gracefully");
      log.write(`${YELLOW}Job is being canceled${RESET}\n`);
      mainCtl.abort(new StopReason("graceful", "The job is being canceled"));
    },
    onDiagnostic: (message, properties) =>
      logger.warn(message, maskProperties(properties ?? {}, (t) => log.mask(t))),
  });
  /** Error text for the runner's own diagnostics, masked like the job log. */
  const safe = (error: unknown) => log.mask(describe(error));
  log.start();

  const onHardStop = () => {
    runnerStopped = true;
    const reason = new StopReason("runner-stop", "The runner is shutting down");
    mainCtl.abort(reason);
    afterCtl.abort(reason);
  };
  if (ctx.hardStop.aborted) onHardStop();
  else ctx.hardStop.addEventListener("abort", onHardStop, { once: true });

  const timeoutS = payload.runnerInfo.timeout ?? 0;
  const timerStop = new AbortController();
  if (timeoutS > 0) {
    ctx.clock.sleep(timeoutS * 1000, timerStop.signal).then(() => {
      timedOut = true;
      mainCtl.abort(
        new StopReason("timeout", `execution took longer than ${timeoutS} seconds`),
      );
    }, () => {});
  }

  const buildDir = join(ctx.buildDir, String(id));
  let failure: Failure | undefined;
  let handler: JobHandler | undefined;
  let madeDir = false;

  await withJobLog(log, async () => {
    log.write(
      `Running with @x/gitlab-runner ${ctx.version}\n  on ${
        ctx.info.name ?? "runner"
      } ${ctx.systemId}\n`,
    );
    if (inputs.error) {
      const message = `failed to interpolate job inputs: ${inputs.error.detail}`;
      failure = { reason: inputs.error.reason, message };
      return;
    }
    const steps = payload.steps;
    if (!steps) {
      failure = {
        reason: "runner_unsupported",
        message: "this job uses `run:` (native steps), which this runner does not support",
      };
      return;
    }
    try {
      await makeDir(buildDir);
      madeDir = true;
    } catch (error) {
      failure = {
        reason: "runner_system_failure",
        message: `cannot create the build directory: ${describe(error)}`,
      };
      return;
    }
    const logLine = (line: string) => log.write(line + "\n");
    const dependencies = createDependencies({
      client: ctx.client,
      dependencies: payload.dependencies,
      buildDir,
      clock: ctx.clock,
      random: ctx.random,
      log: logLine,
    });
    const job = new Job({
      payload,
      buildDir,
      log,
      dependencies,
      signal: mainCtl.signal,
      runnerVariables: runnerVariables(ctx, buildDir, timeoutS),
    });
    try {
      // The factory runs under the job's signal: a timeout, cancel or hard stop reaches it,
      // and one that does not settle within the abort grace is left behind (C8.3).
      const made = await settleUnder(
        ctx,
        (async () => await ctx.factory(job))(),
        mainCtl.signal,
        "The job factory",
      );
      if (!made.settled) throw mainCtl.signal.reason;
      if ("error" in made) throw made.error;
      handler = made.value;
    } catch (error) {
      logger.error("The job factory failed: {error}", { error: safe(error) });
      failure = error instanceof JobFailure ? classify(error) : {
        reason: "runner_system_failure",
        message: `the runner could not prepare the job: ${describe(error)}`,
      };
      return;
    }
    for (const step of steps) {
      if (step.name === "after_script") continue;
      if (mainCtl.signal.aborted || !shouldRun(step.when, failure !== undefined)) continue;
      log.write(`${GREEN}Executing "${stageName(step)}" stage of the job script${RESET}\n`);
      const error = await runStep(ctx, handler, step, mainCtl.signal);
      if (error === undefined) continue;
      if (mainCtl.signal.aborted) break;
      if (step.allowFailure) {
        log.write(
          `${YELLOW}WARNING: step ${step.name} failed (allowed): ${describe(error)}${RESET}\n`,
        );
        continue;
      }
      failure = classify(error);
    }
    if (!gitlabAbort && !runnerStopped) {
      const failed = failure !== undefined || timedOut || graceful;
      for (const step of steps) {
        if (step.name !== "after_script" || !shouldRun(step.when, failed)) continue;
        log.write(`${GREEN}Running after_script${RESET}\n`);
        const error = await runStep(ctx, handler, step, afterCtl.signal);
        if (error !== undefined && !afterCtl.signal.aborted) {
          log.write(`${YELLOW}WARNING: after_script failed: ${describe(error)}${RESET}\n`);
        }
      }
    }
    if (payload.artifacts.length > 0 && !gitlabAbort && !runnerStopped) {
      const h = handler;
      try {
        const result = await uploadArtifacts({
          client: ctx.client,
          jobId: id,
          token: payload.token,
          specs: payload.artifacts,
          files: () => h.uploadableFiles?.() ?? filesUnder(buildDir),
          scriptFailed: failure !== undefined || timedOut || graceful,
          variables: payload.variables,
          log: logLine,
          clock: ctx.clock,
          random: ctx.random,
          signal: afterCtl.signal,
          projectDir: buildDir,
        });
        if (!result.ok && failure === undefined) {
          failure = {
            reason: result.failureReason ?? "script_failure",
            exitCode: result.exitCode,
            message: `uploading artifacts failed: ${
              result.failures.map((f) => describe(f.error)).join("; ")
            }`,
          };
        }
      } catch (error) {
        if (!afterCtl.signal.aborted && failure === undefined) {
          failure = {
            reason: "runner_system_failure",
            message: `uploading artifacts failed: ${describe(error)}`,
          };
        }
      }
    }
  });

  timerStop.abort(TIMER_DONE);
  ctx.hardStop.removeEventListener("abort", onHardStop);

  if (handler?.cleanup) {
    try {
      await withJobLog(log, async () => await handler!.cleanup!());
    } catch (error) {
      logger.warn("Job cleanup failed: {error}", { error: safe(error) });
    }
  }
  if (madeDir) {
    await removeDir(buildDir).catch((error) =>
      logger.warn("Cannot remove the build directory: {error}", { error: safe(error) })
    );
    await removeDir(`${buildDir}.tmp`).catch(() => {}); // downloads (C10.5)
  }

  if (gitlabAbort) {
    await log.stop();
    return { id, state: "aborted" };
  }

  if (runnerStopped) {
    failure = { reason: "runner_system_failure", message: "the runner was stopped" };
  } else if (timedOut) {
    failure = {
      reason: "job_execution_timeout",
      message: `execution took longer than ${timeoutS} seconds`,
    };
  } else if (graceful) {
    failure = { reason: "job_canceled", message: "the job was canceled" };
  }

  let final: FinalState;
  if (failure) {
    const reason = mapFailureReason(failure.reason, payload.features.failureReasons);
    log.write(`${RED}ERROR: Job failed: ${failure.message}${RESET}\n`);
    final = { state: "failed", failureReason: reason, exitCode: failure.exitCode };
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
    state: result.outcome === "done"
      ? final.state
      : result.outcome === "aborted"
      ? "aborted"
      : "lost",
    failureReason: final.failureReason,
    exitCode: final.exitCode,
  };
}

type Settled<T> = { settled: true; value: T } | { settled: true; error: unknown } | {
  settled: false;
};

/**
 * Waits for `work`; once `signal` aborts, for at most the abort grace more. Resolves to how it
 * settled, or `settled: false` when it was left behind.
 */
async function settleUnder<T>(
  ctx: RunContext,
  work: Promise<T>,
  signal: AbortSignal,
  what: string,
): Promise<Settled<T>> {
  const outcome: Promise<Settled<T>> = work.then(
    (value) => ({ settled: true, value }),
    (error: unknown) => ({ settled: true, error }),
  );
  const aborted = new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
  const first = await Promise.race([outcome, aborted.then(() => undefined)]);
  if (first) return first;
  // Aborted: give the work a grace period to settle, then move on without it.
  const graceStop = new AbortController();
  const settled = await Promise.race([
    outcome,
    ctx.clock.sleep(ctx.abortGraceMs, graceStop.signal).then(() => undefined, () => undefined),
  ]);
  graceStop.abort(TIMER_DONE);
  if (settled) return settled;
  ctx.logger.warn("{what} did not stop within {ms} ms of being aborted", {
    what,
    ms: ctx.abortGraceMs,
  });
  return { settled: false };
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
  const timerStop = new AbortController();
  const timeout = step.timeout ?? 0;
  if (timeout > 0) {
    ctx.clock.sleep(timeout * 1000, timerStop.signal).then(
      () =>
        ctl.abort(
          new StopReason("timeout", `step ${step.name} took longer than ${timeout} seconds`),
        ),
      () => {},
    );
  }
  try {
    const run = (async () => await handler.step(step.script, step.name, ctl.signal))();
    const settled = await settleUnder(ctx, run, ctl.signal, "A step");
    if (!settled.settled) return ctl.signal.reason;
    if (ctl.signal.aborted) return "error" in settled ? ctl.signal.reason : undefined;
    return "error" in settled ? settled.error ?? new Error("The step failed") : undefined;
  } finally {
    timerStop.abort(TIMER_DONE);
    parent.removeEventListener("abort", onParent);
  }
}
