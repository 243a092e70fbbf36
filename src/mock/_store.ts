/**
 * Everything the GitLab mock remembers, and the job-state rules that are not tied to one
 * endpoint: the job queue and its `X-GitLab-Last-Update` value (PROTOCOL.md §5.1), job states
 * and cancellation (§6, §13 item 10), the stuck-job sweeper (§3.5.2, §13 item 19), and the
 * request log that tests inspect. The rule modules (`_rules_*.ts`) read and change it; the
 * router (`_router.ts`) hands it to them with each request.
 *
 * @module
 */

import type { MockGit } from "./_git_http.ts";
import { type Clock, systemClock } from "../clock.ts";
import {
  MAX_ARTIFACT_SIZE,
  STUCK_AFTER_MS,
  TRACE_SIZE_LIMIT,
  TRACE_UPDATE_INTERVAL,
} from "./_constants.ts";
import { Faults } from "./_faults.ts";
import { JobState, type ResolvedDependency } from "./_job_state.ts";
import { ObjectStorage } from "./_object_storage.ts";
import { abortError, hexFromSeed, mulberry32, randomAlphanumeric, utf8 } from "./_util.ts";
import { dependencyRef, type PayloadTransform } from "./job.ts";
import type {
  CancelOptions,
  CancelResponse,
  MockJobSpec,
  MockOptions,
  MockRequest,
  WaitForOptions,
} from "./types.ts";

/** {@linkcode MockOptions} with every default applied. */
export interface MockConfig {
  runnerToken: string;
  /** The runner token as bytes, for masking. */
  runnerTokenBytes: Uint8Array;
  clock: Clock;
  longPollMs: number;
  cancelResponse: CancelResponse;
  traceUpdateInterval: number;
  finalUpdateAccepts: number;
  traceSizeLimit: number;
  maxArtifactSize: number;
  downloadRedirect: boolean;
  uploadRedirect: "none" | "same-origin" | "other-origin";
  random: () => number;
  dependencyToken: "dependency" | "job";
  recordRequests: boolean;
  stuckAfterMs: number;
  firstJobId: number;
  /** Origin of the GitLab URL. */
  origin: string;
  /** Relative URL root (`""` or `/path`, no trailing slash). */
  basePath: string;
  /** Origin of the object storage for in-process use. */
  objectsOrigin: string;
}

/** Applies the defaults of {@linkcode MockOptions}. */
export function resolveConfig(options: MockOptions): MockConfig {
  const runnerToken = options.runnerToken ?? "glrt-mock-runner-token";
  const base = new URL(options.baseUrl ?? "http://gitlab.mock");
  return {
    runnerToken,
    runnerTokenBytes: utf8(runnerToken),
    clock: options.clock ?? systemClock,
    longPollMs: options.longPollMs ?? 0,
    cancelResponse: options.cancelResponse ?? "bare-forbidden",
    traceUpdateInterval: options.traceUpdateInterval ?? TRACE_UPDATE_INTERVAL,
    finalUpdateAccepts: options.finalUpdateAccepts ?? 0,
    traceSizeLimit: options.traceSizeLimit ?? TRACE_SIZE_LIMIT,
    maxArtifactSize: options.maxArtifactSize ?? MAX_ARTIFACT_SIZE,
    downloadRedirect: options.downloadRedirect ?? false,
    uploadRedirect: options.uploadRedirect ?? "none",
    random: options.random ?? mulberry32(0x5eed),
    dependencyToken: options.dependencyToken ?? "dependency",
    recordRequests: options.recordRequests ?? true,
    stuckAfterMs: options.stuckAfterMs ?? STUCK_AFTER_MS,
    firstJobId: options.firstJobId ?? 1,
    origin: base.origin,
    basePath: base.pathname.replace(/\/+$/, ""),
    objectsOrigin: new URL(options.objectsUrl ?? "http://objects.mock").origin,
  };
}

/** The mock's state: jobs and queue, faults, object storage, the request log. */
export class MockStore {
  readonly config: MockConfig;
  /** Whether the runner is paused (the façade's public `paused` field). */
  readonly isPaused: () => boolean;
  /** Injected faults. */
  readonly faults: Faults;
  /** Archives behind `direct_download` redirects. */
  readonly objects: ObjectStorage;

  /** `DELETE /runners` happened: the runner token is no longer valid. */
  runnerDeleted = false;
  readonly jobs: JobState[] = [];
  readonly byId: Map<number, JobState> = new Map();
  readonly byToken: Map<string, JobState> = new Map();
  /** The served git repositories (C11.4), asked before the routes (set by `GitLabMock`). */
  git?: MockGit;
  /** Pending jobs in queue order. */
  readonly pending: Set<JobState> = new Set();
  /** The queue's current `X-GitLab-Last-Update` value; changes whenever a job is queued. */
  queueValue: string;
  /** Releases of held long polls. */
  readonly holds: Set<() => void> = new Set();
  /** No running job can be stuck before this time (see {@linkcode MockStore.sweep}). */
  nextSweepAt = Infinity;

  readonly requests: MockRequest[] = [];
  readonly counts: Map<string, number> = new Map();
  readonly errors: unknown[] = [];
  onRequest?: (request: MockRequest) => void;

  #nextId: number;
  #queueTick = 0;
  #waiters = new Set<() => void>();

  constructor(config: MockConfig, isPaused: () => boolean) {
    this.config = config;
    this.isPaused = isPaused;
    this.faults = new Faults(config.clock, config.random);
    this.objects = new ObjectStorage(config.clock, (id) => this.byId.get(id)?.archive);
    this.#nextId = config.firstJobId;
    this.queueValue = hexFromSeed(0, 32);
  }

  // ---------------------------------------------------------------- jobs

  /** Adds a job: dependencies resolved (by id, or the latest job of that name), queued. */
  addJob(spec: MockJobSpec, transform?: PayloadTransform): JobState {
    const id = this.#nextId++;
    const deps: ResolvedDependency[] = [];
    for (const d of spec.dependencies ?? []) {
      const ref = dependencyRef(d);
      let depId: number | undefined;
      if (typeof ref.job === "number") depId = ref.job;
      else {
        for (let i = this.jobs.length - 1; i >= 0 && depId === undefined; i--) {
          if (this.jobs[i].name === ref.job) depId = this.jobs[i].id;
        }
      }
      if (depId === undefined) throw new Error(`Unknown dependency ${JSON.stringify(ref.job)}`);
      deps.push({ id: depId, artifacts: ref.artifacts });
    }
    const job = new JobState({
      id,
      token: `glcbt-64_${randomAlphanumeric(20)}`,
      spec,
      now: this.config.clock.now(),
      dependencies: deps,
      transform,
    });
    this.jobs.push(job);
    this.byId.set(id, job);
    this.byToken.set(job.token, job);
    if (job.state === "pending") {
      this.pending.add(job);
      this.#tickQueue();
    }
    this.notify();
    return job;
  }

  /** The job with this id; throws when there is none (a test's mistake). */
  job(id: number): JobState {
    const job = this.byId.get(id);
    if (!job) throw new Error(`No job ${id} in the mock`);
    return job;
  }

  /** Ends a job; a canceling job always ends `canceled` (PROTOCOL §6). */
  finish(job: JobState, state: "success" | "failed" | "canceled", reason?: string, code?: number) {
    this.pending.delete(job);
    job.assigned = false;
    if (job.state === "canceling" && state !== "canceled") {
      job.state = "canceled";
    } else {
      job.state = state;
      if (state === "failed") {
        job.failureReason = reason ?? "unknown_failure";
        if (code !== undefined) job.exitCode = code;
      }
    }
    job.finishedAt = this.config.clock.now();
  }

  /**
   * A user cancels (PROTOCOL §6, §13 item 10): pending → `canceled`; running → `canceling`
   * when graceful (default: the runner announced `cancel_gracefully`), else `canceled`;
   * canceling again non-gracefully forces `canceled`.
   */
  cancel(id: number, options: CancelOptions): void {
    const job = this.job(id);
    if (job.finished) return;
    const graceful = options.graceful ?? (job.runnerFeatures?.cancel_gracefully === true);
    if (job.state === "running" && graceful) {
      job.state = "canceling";
    } else if (job.state === "canceling" && options.graceful !== false) {
      return;
    } else {
      this.finish(job, "canceled");
    }
    this.notify();
  }

  /** The server fails a job (sweeper, failed pipeline). */
  drop(id: number, reason: string): void {
    const job = this.job(id);
    if (job.finished) return;
    this.finish(job, "failed", reason);
    this.notify();
  }

  /** A job was queued: a new `X-GitLab-Last-Update` value, held long polls released. */
  #tickQueue(): void {
    this.#queueTick++;
    this.queueValue = hexFromSeed(this.#queueTick, 32);
    this.releaseHolds();
  }

  /** Releases every held long poll (answered 204). */
  releaseHolds(): void {
    for (const release of [...this.holds]) release();
  }

  /**
   * The stuck-job sweeper (M11): fails running jobs that no call reached for `stuckAfterMs`.
   * Run lazily, whenever the mock is asked or inspected, so it needs no timer of its own.
   */
  sweep(): void {
    const { stuckAfterMs } = this.config;
    if (!(stuckAfterMs > 0)) return;
    const now = this.config.clock.now();
    // Most calls find nothing due: only scan once the earliest possible deadline has come.
    if (now < this.nextSweepAt) return;
    let swept = false;
    let next = Infinity;
    for (const job of this.jobs) {
      if (!job.executing) continue;
      const since = job.contactAt ?? job.pickedAt ?? job.enqueuedAt;
      if (now - since < stuckAfterMs) {
        next = Math.min(next, since + stuckAfterMs);
        continue;
      }
      this.finish(job, "failed", "stuck_or_timeout_failure");
      swept = true;
    }
    this.nextSweepAt = next;
    if (swept) this.notify();
  }

  // ---------------------------------------------------------------- waiting

  /** Re-checks every pending {@linkcode MockStore.waitFor}. */
  notify(): void {
    for (const check of [...this.#waiters]) check();
  }

  /** Resolves when `predicate` holds, checked now and on every {@linkcode MockStore.notify}. */
  waitFor(predicate: () => boolean, options: WaitForOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted) return reject(abortError(signal));
      try {
        if (predicate()) return resolve();
      } catch (e) {
        return reject(e);
      }
      const timeoutMs = options.timeoutMs ?? 10_000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = () => {
        this.#waiters.delete(check);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const check = () => {
        let ok = false;
        try {
          ok = predicate();
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        if (ok) {
          cleanup();
          resolve();
        }
      };
      const onAbort = () => {
        cleanup();
        reject(abortError(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          cleanup();
          reject(new Error(`Timed out after ${timeoutMs} ms waiting for the mock`));
        }, timeoutMs);
      }
      this.#waiters.add(check);
    });
  }
}
