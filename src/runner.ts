/**
 * The runner: asks GitLab for jobs (long polling, backoff), runs up to `maximum` at once, and
 * stops gracefully or hard (CONFORMANCE C1).
 *
 * @module
 */

import { getLogger, loadLogTapeIfUsed, type Logger } from "./log/_logger.ts";
import type { Clock } from "./clock.ts";
import type { CallOptions, Client, RunnerMetadata, VerifyResult } from "./api/client.ts";
import { backoffMs } from "./api/retry.ts";
import { ApiError } from "./errors.ts";
import type { JobFactory } from "./handler.ts";
import type { RunnerRecorder } from "./metrics/registry.ts";
import type { JobOutcome, RunContext } from "./run.ts";
import { runJob } from "./_run_loader.ts";

/**
 * Every feature flag the official runner sends (PROTOCOL §9). The runner sends all of them,
 * `false` for those not announced.
 */
export const ALL_FEATURES: readonly string[] = [
  "variables",
  "image",
  "services",
  "artifacts",
  "cache",
  "fallback_cache_keys",
  "shared",
  "upload_multiple_artifacts",
  "upload_raw_artifacts",
  "session",
  "terminal",
  "refspecs",
  "masking",
  "proxy",
  "raw_variables",
  "artifacts_exclude",
  "multi_build_steps",
  "trace_reset",
  "trace_checksum",
  "trace_size",
  "vault_secrets",
  "cancelable",
  "return_exit_code",
  "service_variables",
  "service_multiple_aliases",
  "image_executor_opts",
  "service_executor_opts",
  "cancel_gracefully",
  "native_steps_integration",
  "two_phase_job_commit",
  "job_inputs",
];

/**
 * The features this library implements itself, and so announces: variables reach the handler,
 * artifacts are uploaded (several per job, raw and gzip formats, `exclude`), logs are masked,
 * 412 resets the log, checksums and sizes are sent, cancel (hard and graceful) works, exit
 * codes are reported, `release` steps run, and `${{ job.inputs.NAME }}` is interpolated
 * (`job_inputs`: the official runner announces it always and interpolates by default).
 */
export const LIBRARY_FEATURES: readonly string[] = [
  "variables",
  "artifacts",
  "upload_multiple_artifacts",
  "upload_raw_artifacts",
  "artifacts_exclude",
  "masking",
  "trace_reset",
  "trace_checksum",
  "trace_size",
  "cancelable",
  "cancel_gracefully",
  "return_exit_code",
  "multi_build_steps",
  "job_inputs",
];

/** Options of {@linkcode Runner.run}. */
export interface RunOptions {
  /**
   * Graceful stop: no new job is asked for once it aborts; a request already in flight is
   * let finish (it may be assigning a job, which then runs); `run()` resolves when every
   * running job has finished.
   */
  signal?: AbortSignal;
  /**
   * Hard stop: running jobs are cancelled (their step signals abort) and reported failed as
   * `runner_system_failure`.
   */
  cancelSignal?: AbortSignal;
  /** Called when a job has ended (after its final update), e.g. to print a summary line. */
  onJobEnd?: (outcome: JobOutcome) => void;
  /**
   * Called when a job was received, before it runs, with its id and name (`job_info.name`;
   * absent when the payload could not be read).
   */
  onJobStart?: (job: { id: number; name?: string }) => void;
}

/** Settings of a {@linkcode Runner}, made by `RunnerBuilder.build()`. */
export interface RunnerSettings {
  client: Client;
  token: string;
  systemId: string;
  info: RunnerMetadata;
  features: Record<string, boolean>;
  clock: Clock;
  random: () => number;
  buildDir: string;
  outputLimit: number;
  checkIntervalMs: number;
  updateIntervalMs: number;
  keepAliveMs: number;
  abortGraceMs: number;
  unhealthyRequestsLimit: number;
  unhealthyIntervalMs: number;
  version: string;
  /** Deadline of each job's final update (C8.4). */
  finalUpdateDeadlineMs?: number;
  /** How long a job's final flush may fail before its state goes without the log's end (C8.5). */
  flushDeadlineMs?: number;
  /** Where jobs and `run()`'s concurrency are recorded (C13.1). */
  metrics?: RunnerRecorder;
}

/**
 * The longest `X-GitLab-Last-Update` echoed as `last_update` (C8.9): Workhorse refuses request
 * bodies over 32 KiB, so a huge value would make every later request fail.
 */
const MAX_LAST_UPDATE = 1024;

/** The logger of every job's diagnostics (each job adds its id). */
const JOB_LOGGER = getLogger(["gitlab-runner", "job"]);

/** An already aborted signal, for jobs that arrive after a hard stop (C8.7). */
function abortedSignal(): AbortSignal {
  const ctl = new AbortController();
  ctl.abort(new DOMException("The runner was stopped", "AbortError"));
  return ctl.signal;
}

/**
 * A GitLab runner. Made by `RunnerBuilder`; {@linkcode Runner.run} is the usual way to use it.
 *
 * @example Run jobs from the in-process mock until it has none left
 * ```ts
 * import { RunnerBuilder } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * mock.job().script(["echo hello"]).enqueue();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .build();
 * await runner.requestJob(() => ({ step: async () => {} }));
 * await runner.drain();
 * strictEqual(mock.jobs[0].state, "success");
 * ```
 */
export class Runner {
  #s: RunnerSettings;
  #logger: Logger = getLogger(["gitlab-runner", "runner"]);
  #running = new Set<Promise<JobOutcome>>();
  #spaceWaiters: (() => void)[] = [];
  #lastUpdate: string | undefined;
  #hardStop = new AbortController();
  #outcomes: JobOutcome[] = [];
  #verified = false;
  #phase: "idle" | "polling" | "stopping" = "idle";

  /** Made by `RunnerBuilder.build()`. */
  constructor(settings: RunnerSettings) {
    this.#s = settings;
  }

  /** The system id sent to GitLab. */
  get systemId(): string {
    return this.#s.systemId;
  }

  /** The announced features (all keys; `true` for the announced ones). */
  get features(): Record<string, boolean> {
    return { ...this.#s.features };
  }

  /** The `info` sent to GitLab. */
  get info(): RunnerMetadata {
    return structuredClone(this.#s.info);
  }

  /** Number of jobs running now. */
  get running(): number {
    return this.#running.size;
  }

  /**
   * Whether the runner is ready, for a readiness probe (`/health/ready`, C13.1): GitLab
   * accepted the token (`verify()` said valid, or a job request was answered) and `run()`
   * polls for jobs. False before, after a 403, and from the moment `run()`'s stop signal
   * aborts (the runner drains: it takes no more jobs).
   */
  get ready(): boolean {
    return this.#verified && this.#phase === "polling";
  }

  /** How the jobs run so far ended (the last 1000), for monitoring and tests. */
  get outcomes(): readonly JobOutcome[] {
    return this.#outcomes;
  }

  /**
   * Checks the runner token with GitLab (`POST /runners/verify`). Bounded like every call: the
   * header deadline (`options.timeoutMs`, default the runner's) and the retry policy
   * (`options.retry`) limit how long it may take; then it throws `RequestError`.
   */
  async verify(options: CallOptions = {}): Promise<VerifyResult> {
    const result = await this.#s.client.verify(this.#s.token, {
      ...options,
      systemId: this.#s.systemId,
      info: this.#s.info,
    });
    this.#verified = result.valid;
    return result;
  }

  /**
   * Asks GitLab for one job and, if one comes, starts it (it runs in the background: see
   * {@linkcode Runner.drain}). Resolves to whether a job came. Throws `ApiError` or
   * `RequestError` when the request fails.
   */
  async requestJob(factory: JobFactory): Promise<boolean> {
    await loadLogTapeIfUsed();
    const result = await this.#s.client.requestJob(this.#s.token, {
      systemId: this.#s.systemId,
      info: this.#s.info,
      lastUpdate: this.#lastUpdate,
    });
    this.#verified = true;
    if (result.type === "none") {
      this.#adoptLastUpdate(result.lastUpdate);
      return false;
    }
    if (result.type === "conflict") return false;
    this.#start(factory, result.job);
    return true;
  }

  /** Resolves once fewer than `maximum` jobs run. */
  async waitForSpace(maximum: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    while (this.#running.size >= maximum) {
      options.signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(options.signal!.reason);
        this.#spaceWaiters.push(() => {
          options.signal?.removeEventListener("abort", onAbort);
          resolve();
        });
        options.signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  /** Resolves when no job runs. */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  /**
   * Asks for jobs and runs at most `maximum` at once, until `options.signal` aborts; then
   * waits for the running jobs (see {@linkcode RunOptions}). Never throws for GitLab's or the
   * network's faults: it waits and asks again (409 at once; 429 as GitLab asks; 5xx and
   * network errors with exponential backoff; 403, an invalid token, loudly and after
   * `unhealthyRequestsLimit` in a row with a long pause).
   */
  async run(factory: JobFactory, maximum: number, options: RunOptions = {}): Promise<void> {
    if (!(maximum >= 1)) throw new RangeError(`maximum must be at least 1, got ${maximum}`);
    const { signal, cancelSignal } = options;
    // After a hard stop, jobs that requests in flight still return start already aborted and
    // are failed (C8.7).
    let stoppedHard = false;
    const onCancel = () => {
      stoppedHard = true;
      this.cancelAll();
    };
    if (cancelSignal?.aborted) onCancel();
    else cancelSignal?.addEventListener("abort", onCancel, { once: true });
    const onStop = () => (this.#phase = "stopping");
    this.#phase = signal?.aborted ? "stopping" : "polling";
    signal?.addEventListener("abort", onStop, { once: true });
    this.#s.metrics?.concurrent(maximum);
    let errors = 0;
    let forbidden = 0;
    let conflicts = 0;
    let reasked = false;
    try {
      await loadLogTapeIfUsed();
      while (!signal?.aborted) {
        try {
          await this.waitForSpace(maximum, { signal });
        } catch {
          break;
        }
        let wait = 0;
        try {
          const result = await this.#s.client.requestJob(this.#s.token, {
            systemId: this.#s.systemId,
            info: this.#s.info,
            lastUpdate: this.#lastUpdate,
            // A stop ends the retries; the attempt in flight may be assigning a job (C8.7).
            stop: signal,
          });
          errors = 0;
          forbidden = 0;
          this.#verified = true;
          if (result.type === "conflict") {
            // 409: GitLab had a conflict. Once at once, then back off up to the check
            // interval: never a hot loop (C1.6, C8.6).
            wait = conflicts++ === 0 ? 0 : backoffMs(conflicts - 2, {
              min: 100,
              max: this.#s.checkIntervalMs,
              random: this.#s.random,
            });
          } else {
            conflicts = 0;
          }
          if (result.type !== "none") reasked = false;
          if (result.type === "job") {
            this.#start(factory, result.job, options, stoppedHard);
          } else if (result.type === "none") {
            const changed: boolean = this.#adoptLastUpdate(result.lastUpdate) && !reasked;
            // Ask again at once when GitLab ended a long poll (a job may have arrived) or
            // handed out a new queue value (asking with it is held by a long-polling GitLab);
            // else wait the check interval. A new value right after such a re-ask waits: a
            // GitLab that changes it on every answer gets no hot loop (C8.6).
            if (!result.longPolled && !changed) wait = this.#s.checkIntervalMs;
            reasked = changed;
          }
        } catch (error) {
          conflicts = 0;
          reasked = false;
          wait = this.#errorWait(error, ++errors, () => ++forbidden);
        }
        if (wait > 0) {
          try {
            await this.#s.clock.sleep(wait, signal);
          } catch {
            break;
          }
        }
      }
      await this.drain();
    } finally {
      cancelSignal?.removeEventListener("abort", onCancel);
      signal?.removeEventListener("abort", onStop);
      this.#phase = "idle";
    }
  }

  /** Keeps GitLab's queue value for long polling; true when it changed (C1.4, C8.9). */
  #adoptLastUpdate(value: string | undefined): boolean {
    if (!value || value.length > MAX_LAST_UPDATE || value === this.#lastUpdate) return false;
    this.#lastUpdate = value;
    return true;
  }

  /** Cancels every running job now; they are reported failed (`runner_system_failure`). */
  cancelAll(): void {
    this.#hardStop.abort();
    this.#hardStop = new AbortController();
  }

  /** Runs an application hook; its errors are logged, never thrown into the runner. */
  #hook(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#logger.warn("A runner hook threw: {error}", {
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }

  #errorWait(error: unknown, errors: number, countForbidden: () => number): number {
    if (error instanceof ApiError && error.status === 403) {
      this.#verified = false;
      const n = countForbidden();
      const pause = n >= this.#s.unhealthyRequestsLimit;
      this.#logger.error(
        "GitLab rejected the runner token (403): check the token; {action}",
        {
          action: pause
            ? `pausing for ${Math.round(this.#s.unhealthyIntervalMs / 1000)} s`
            : "retrying",
        },
      );
      return pause ? this.#s.unhealthyIntervalMs : this.#s.checkIntervalMs;
    }
    const wait = backoffMs(errors - 1, {
      min: 1000,
      max: 60_000,
      random: this.#s.random,
    });
    this.#logger.warn("Asking GitLab for a job failed: {error}; retrying in {wait} ms", {
      error: error instanceof Error ? error.message : String(error),
      wait,
    });
    return wait;
  }

  #start(
    factory: JobFactory,
    job: Parameters<typeof runJob>[1],
    hooks: Pick<RunOptions, "onJobStart" | "onJobEnd"> = {},
    stoppedHard = false,
  ): void {
    const info = job.ok
      ? { id: job.payload.id, name: job.payload.jobInfo.name }
      : { id: job.id ?? 0, name: undefined };
    this.#hook(() => hooks.onJobStart?.(info));
    this.#s.metrics?.jobStarted();
    const ctx: RunContext = {
      client: this.#s.client,
      clock: this.#s.clock,
      random: this.#s.random,
      info: this.#s.info,
      features: this.#s.features,
      buildDir: this.#s.buildDir,
      outputLimit: this.#s.outputLimit,
      updateIntervalMs: this.#s.updateIntervalMs,
      keepAliveMs: this.#s.keepAliveMs,
      abortGraceMs: this.#s.abortGraceMs,
      factory,
      hardStop: stoppedHard ? abortedSignal() : this.#hardStop.signal,
      logger: JOB_LOGGER,
      version: this.#s.version,
      systemId: this.#s.systemId,
      finalUpdateDeadlineMs: this.#s.finalUpdateDeadlineMs,
      flushDeadlineMs: this.#s.flushDeadlineMs,
    };
    const promise: Promise<JobOutcome> = runJob(ctx, job).then((outcome) => {
      this.#s.metrics?.jobEnded(outcome);
      this.#outcomes.push(outcome);
      if (this.#outcomes.length > 1000) this.#outcomes.shift();
      this.#hook(() => hooks.onJobEnd?.(outcome));
      return outcome;
    }).finally(() => {
      this.#running.delete(promise);
      const waiters = this.#spaceWaiters;
      this.#spaceWaiters = [];
      for (const w of waiters) w();
    });
    this.#running.add(promise);
  }
}
