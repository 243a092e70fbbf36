/**
 * The GitLab mock: a `Request → Response` handler that behaves like real GitLab's runner API
 * (PROTOCOL.md §13), usable in-process through {@linkcode GitLabMock.fetch} or over a socket.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { type Clock, systemClock } from "../clock.ts";
import {
  ARTIFACT_FORMATS,
  ARTIFACT_TYPE_FORMATS,
  FAILURE_REASONS,
  MAX_ARTIFACT_SIZE,
  MAX_REGISTER_BODY_SIZE,
  STUCK_AFTER_MS,
  TRACE_SIZE_LIMIT,
  TRACE_UPDATE_INTERVAL,
  TRACE_UPDATE_INTERVAL_WATCHED,
} from "./_constants.ts";
import {
  abortError,
  anySignal,
  coerceBoolean,
  coerceInteger,
  errorResponse,
  hexFromSeed,
  jsonResponse,
  maskSecret,
  mulberry32,
  nullBodyStatus,
  randomAlphanumeric,
  randomHex,
  rubyToI,
  stalledResponse,
  statusText,
  textResponse,
} from "./_util.ts";
import {
  dependencyRef,
  JobState,
  missingFeatures,
  MockJobBuilder,
  type PayloadTransform,
  renderPayload,
  type ResolvedDependency,
  utf8,
} from "./job.ts";
import { ByteCollector, multipartBoundary, MultipartError, readMultipart } from "./_multipart.ts";
import { MockGit } from "./_git_http.ts";
import type {
  CancelOptions,
  CancelResponse,
  ListenOptions,
  MockFault,
  MockJob,
  MockJobSpec,
  MockOptions,
  MockRequest,
  MockRoute,
  MockServer,
  MockUpdate,
  WaitForOptions,
} from "./types.ts";

/** Where a request came from: in-process or one of the listeners. */
interface ServeContext {
  /** Origin that `direct_download` redirects point to. */
  objectsOrigin: string;
  /** Aborts when the listener closes. */
  signal?: AbortSignal;
}

interface ActiveFault {
  fault: MockFault;
  remaining: number;
}

interface SignedUrl {
  jobId: number;
  expiresAt: number;
}

/** The low-level handler the listener twins serve: `null` means "drop the connection". */
export type RawHandler = (request: Request) => Promise<Response | null>;

/** What a listener twin returns. */
export interface Listener {
  /** The bound port. */
  port: number;
  /** Stops the server (held requests must have been released). */
  close(): Promise<void>;
}

const HOLD_RELEASED = "released";
const HOLD_TIMEOUT = "timeout";
const HOLD_ABORTED = "aborted";
type HoldOutcome = typeof HOLD_RELEASED | typeof HOLD_TIMEOUT | typeof HOLD_ABORTED;

/** Query parameter that marks an upload the `uploadRedirect` option already redirected. */
const UPLOAD_REDIRECT_MARKER = "mock_redirected";
/** Largest total of an upload's text fields (Workhorse passes them to Rails in memory). */
const MAX_UPLOAD_FIELDS_SIZE = 1024 * 1024;

const JOB_PATH = /^jobs\/([^/]+)(\/trace|\/artifacts)?$/;
const OBJECT_PATH = /^\/objects\/artifacts\/([^/]+)\/([^/]+)$/;

/**
 * GitLab's `Ci::Runner::Backoff#to_seconds` for a pending final update started `elapsedMs` ago.
 */
function backoffSeconds(elapsedMs: number): number {
  const duration = elapsedMs / 1000;
  const slot = duration <= 1 ? 0 : Math.floor(Math.log2(duration)) - 1;
  return 2 ** Math.min(Math.max(slot, 0), 6);
}

function formatHost(hostname: string): string {
  return hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Reads a request body to its end and drops it (bounded memory); errors end it quietly. */
async function discardBody(request: Request): Promise<void> {
  if (!request.body) return;
  const reader = request.body.getReader();
  try {
    while (!(await reader.read()).done) {
      // dropped
    }
  } catch {
    // The client went away: whatever is answered is lost anyway.
  } finally {
    reader.releaseLock();
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function s3Error(status: number, code: string, message: string): Response {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message></Error>`;
  return new Response(xml, {
    status,
    statusText: statusText(status),
    headers: { "content-type": "application/xml" },
  });
}

function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/**
 * A fake GitLab that behaves like the real one towards a runner: tokens checked everywhere
 * (403, never 404), `X-GitLab-Last-Update` and Workhorse long polling, feature gating
 * (`runner_unsupported`), job-state headers and cancellation, trace offsets (416 + `Range`),
 * server-side token masking, final-update 202 backoff, artifact upload rules and download
 * redirects, fault injection on every route, and a request log (PROTOCOL.md §13).
 *
 * Use it in-process with {@linkcode GitLabMock.fetch} (no socket), over HTTP with
 * {@linkcode GitLabMock.listen}, or as a command:
 * `deno run -A src/mock/mod.ts --jobs jobs.json --port 0`.
 *
 * @example Hand out a job and finish it, in-process
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * const mock = new GitLabMock();
 * const job = mock.job().name("build").script(["make"]).enqueue();
 *
 * const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * const payload = await res.json();
 * console.log(res.status, payload.id === job.id); // 201 true
 *
 * await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/trace`, {
 *   method: "PATCH",
 *   headers: { "job-token": payload.token, "content-range": "0-5", "content-type": "text/plain" },
 *   body: "hello\n",
 * });
 * await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}`, {
 *   method: "PUT",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: payload.token, state: "success" }),
 * });
 * console.log(job.state, job.logText); // success hello
 * ```
 */
export class GitLabMock {
  /** The runner authentication token the mock accepts. */
  readonly runnerToken: string;
  /** Base URL for in-process use (default `http://gitlab.mock`). */
  readonly url: string;
  /** Origin of the object storage for in-process use (default `http://objects.mock`). */
  readonly objectsUrl: string;
  /**
   * An in-process `fetch` bound to this mock: no socket, same semantics as the global `fetch`
   * for the mock's two origins (redirects followed unless `redirect: "manual"`, `init.signal`
   * honoured, streamed bodies accepted). Other origins reject with a `TypeError`, as a failed
   * DNS lookup would; a dropped connection (fault) rejects with a `TypeError`.
   */
  readonly fetch: (input: Request | string | URL, init?: RequestInit) => Promise<Response>;
  /** A paused runner gets 204 (with `X-GitLab-Last-Update`) and no job. */
  paused = false;
  /** Git repositories served over smart HTTP to jobs (C11.4); see {@linkcode MockGit}. */
  readonly git: MockGit;

  #clock: Clock;
  #longPollMs: number;
  #cancelResponse: CancelResponse;
  #traceUpdateInterval: number;
  #finalUpdateAccepts: number;
  #traceSizeLimit: number;
  #maxArtifactSize: number;
  #downloadRedirect: boolean;
  #uploadRedirect: "none" | "same-origin" | "other-origin";
  #random: () => number;
  #dependencyToken: "dependency" | "job";
  #recordRequests: boolean;
  #onRequest?: (request: MockRequest) => void;
  #origin: string;
  #objectsOrigin: string;
  #basePath: string;
  #runnerTokenBytes: Uint8Array;
  #runnerDeleted = false;

  #jobs: JobState[] = [];
  #byId = new Map<number, JobState>();
  #byToken = new Map<string, JobState>();
  #pending = new Set<JobState>();
  #nextId: number;
  #queueTick = 0;
  #queueValue: string;
  #holds = new Set<() => void>();
  #faults: ActiveFault[] = [];
  #stuckAfterMs: number;
  /** No running job can be stuck before this time (see #sweep). */
  #nextSweepAt = Infinity;
  #requests: MockRequest[] = [];
  #counts = new Map<string, number>();
  #waiters = new Set<() => void>();
  #servers = new Set<MockServer>();
  #signed = new Map<string, SignedUrl>();
  #errors: unknown[] = [];

  /**
   * Creates a mock with no jobs.
   *
   * @param options See {@linkcode MockOptions}.
   */
  constructor(options: MockOptions = {}) {
    this.runnerToken = options.runnerToken ?? "glrt-mock-runner-token";
    this.#clock = options.clock ?? systemClock;
    this.#longPollMs = options.longPollMs ?? 0;
    this.#cancelResponse = options.cancelResponse ?? "bare-forbidden";
    this.#traceUpdateInterval = options.traceUpdateInterval ?? TRACE_UPDATE_INTERVAL;
    this.#finalUpdateAccepts = options.finalUpdateAccepts ?? 0;
    this.#traceSizeLimit = options.traceSizeLimit ?? TRACE_SIZE_LIMIT;
    this.#maxArtifactSize = options.maxArtifactSize ?? MAX_ARTIFACT_SIZE;
    this.#downloadRedirect = options.downloadRedirect ?? false;
    this.#uploadRedirect = options.uploadRedirect ?? "none";
    this.#random = options.random ?? mulberry32(0x5eed);
    this.#dependencyToken = options.dependencyToken ?? "dependency";
    this.#recordRequests = options.recordRequests ?? true;
    this.#stuckAfterMs = options.stuckAfterMs ?? STUCK_AFTER_MS;
    this.#nextId = options.firstJobId ?? 1;
    const base = new URL(options.baseUrl ?? "http://gitlab.mock");
    this.#origin = base.origin;
    this.#basePath = base.pathname.replace(/\/+$/, "");
    this.url = `${base.origin}${this.#basePath}`;
    this.#objectsOrigin = new URL(options.objectsUrl ?? "http://objects.mock").origin;
    this.objectsUrl = this.#objectsOrigin;
    this.#runnerTokenBytes = utf8(this.runnerToken);
    this.#queueValue = hexFromSeed(0, 32);
    this.fetch = (input, init) => this.#fetch(input, init);
    this.git = new MockGit(
      this.#basePath,
      (t) => this.#byToken.get(t)?.state === "running",
      (ms, s) => this.#delay(ms, s),
    );
  }

  /**
   * Sets a callback run after every request (e.g. to log traffic).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const seen: string[] = [];
   * mock.onRequest((r) => seen.push(`${r.method} ${r.path} ${r.status}`));
   * await mock.fetch(`${mock.url}/api/v4/runners/verify`, { method: "POST", body: "{}" });
   * console.log(seen); // ["POST /api/v4/runners/verify 400"]
   * ```
   */
  onRequest(callback: ((request: MockRequest) => void) | undefined): void {
    this.#onRequest = callback;
  }

  // ---------------------------------------------------------------- jobs

  /**
   * Starts a job with a fluent builder; {@linkcode MockJobBuilder.enqueue} adds it.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job({ name: "lint" }).script(["npm run lint"]).enqueue();
   * console.log(job.name, job.state); // lint pending
   * ```
   */
  job(spec: Partial<MockJobSpec> = {}): MockJobBuilder {
    return new MockJobBuilder((s, transform) => this.#addJob(s, transform), spec);
  }

  /**
   * Adds a job from a plain JSON-able spec (what the command's `--jobs` file holds).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const dep = mock.addJob({ name: "build", state: "success", artifactsFile: "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==" });
   * const job = mock.addJob({ name: "test", dependencies: ["build"] });
   * console.log(dep.state, job.state); // success pending
   * ```
   */
  addJob(spec: MockJobSpec): MockJob {
    return this.#addJob(structuredClone(spec));
  }

  #addJob(spec: MockJobSpec, transform?: PayloadTransform): MockJob {
    const id = this.#nextId++;
    const deps: ResolvedDependency[] = [];
    for (const d of spec.dependencies ?? []) {
      const ref = dependencyRef(d);
      let depId: number | undefined;
      if (typeof ref.job === "number") depId = ref.job;
      else {
        for (let i = this.#jobs.length - 1; i >= 0 && depId === undefined; i--) {
          if (this.#jobs[i].name === ref.job) depId = this.#jobs[i].id;
        }
      }
      if (depId === undefined) throw new Error(`Unknown dependency ${JSON.stringify(ref.job)}`);
      deps.push({ id: depId, artifacts: ref.artifacts });
    }
    const job = new JobState({
      id,
      token: `glcbt-64_${randomAlphanumeric(20)}`,
      spec,
      now: this.#clock.now(),
      dependencies: deps,
      transform,
    });
    this.#jobs.push(job);
    this.#byId.set(id, job);
    this.#byToken.set(job.token, job);
    if (job.state === "pending") {
      this.#pending.add(job);
      this.#tickQueue();
    }
    this.#notify();
    return job;
  }

  /**
   * All jobs, in id order.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * mock.job().enqueue();
   * mock.job().enqueue();
   * console.log(mock.jobs.map((j) => j.id)); // [1, 2]
   * ```
   */
  get jobs(): readonly MockJob[] {
    this.#sweep();
    return this.#jobs;
  }

  /**
   * The job with this id.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * console.log(mock.getJob(job.id) === job, mock.getJob(99)); // true undefined
   * ```
   */
  getJob(id: number): MockJob | undefined {
    this.#sweep();
    return this.#byId.get(id);
  }

  #job(id: number): JobState {
    const job = this.#byId.get(id);
    if (!job) throw new Error(`No job ${id} in the mock`);
    return job;
  }

  /**
   * Cancels a job like a user would. A pending job becomes `canceled`. A running job becomes
   * `canceling` when the cancel is graceful (default: when the runner that took it announced
   * `cancel_gracefully`), else `canceled` at once; canceling it again non-gracefully forces
   * `canceled`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * mock.cancel(job.id);
   * console.log(job.state); // canceled
   * ```
   */
  cancel(id: number, options: CancelOptions = {}): void {
    const job = this.#job(id);
    if (job.finished) return;
    const graceful = options.graceful ?? (job.runnerFeatures?.cancel_gracefully === true);
    if (job.state === "running" && graceful) {
      job.state = "canceling";
    } else if (job.state === "canceling" && options.graceful !== false) {
      return;
    } else {
      this.#finish(job, "canceled");
    }
    this.#notify();
  }

  /**
   * Fails a job on the server side (like the stuck-job sweeper or a failed pipeline): later
   * job-token calls get 403 + `Job-Status: failed`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * mock.dropJob(job.id, "no_updates_running");
   * console.log(job.state, job.failureReason); // failed no_updates_running
   * ```
   */
  dropJob(id: number, reason = "unknown_failure"): void {
    const job = this.#job(id);
    if (job.finished) return;
    this.#finish(job, "failed", reason);
    this.#notify();
  }

  /**
   * Marks a job's log as watched in the UI: PATCH answers carry
   * `X-GitLab-Trace-Update-Interval: 3` (or the number given) until unwatched.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * mock.watchTrace(job.id, true);   // 3 s
   * mock.watchTrace(job.id, 10);     // any value
   * mock.watchTrace(job.id, false);  // back to 60 s
   * ```
   */
  watchTrace(id: number, watched: boolean | number = true): void {
    const job = this.#job(id);
    job.watchedInterval = watched === false
      ? undefined
      : watched === true
      ? TRACE_UPDATE_INTERVAL_WATCHED
      : watched;
  }

  /**
   * The server loses a job's stored log (lost Redis chunks): the next PATCH at a non-zero offset
   * gets 416 with `Range: 0-0`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * mock.loseTrace(job.id);
   * console.log(job.log.length); // 0
   * ```
   */
  loseTrace(id: number): void {
    this.#job(id).clearLog();
  }

  /**
   * Removes a job's archive (expired or erased): downloads get 404 and dependents' payloads no
   * longer carry `artifacts_file`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const dep = mock.job().state("success").artifactsFile(new Uint8Array([1])).enqueue();
   * mock.eraseArtifacts(dep.id);
   * ```
   */
  eraseArtifacts(id: number): void {
    this.#job(id).archiveErased = true;
  }

  // ---------------------------------------------------------------- faults and inspection

  /**
   * Injects a fault (see {@linkcode MockFault}); faults are tried in the order added.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * mock.fault({ route: "request", status: 409 });
   * const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST" });
   * console.log(res.status); // 409
   * ```
   */
  fault(fault: MockFault): void {
    if (
      fault.status !== undefined &&
      (!Number.isInteger(fault.status) || fault.status < 200 || fault.status > 599)
    ) {
      throw new RangeError(`Fault status must be an integer in 200..599, got ${fault.status}`);
    }
    if (
      fault.status === undefined && !fault.drop && fault.delayMs === undefined && !fault.hang &&
      fault.stallBody === undefined
    ) {
      throw new TypeError("A fault needs a status, drop, delayMs, hang or stallBody");
    }
    const times = fault.times ?? 1;
    if (!(times > 0)) throw new RangeError(`Fault times must be positive, got ${times}`);
    this.#faults.push({ fault: { ...fault }, remaining: times });
  }

  /**
   * Removes all injected faults.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * mock.fault({ route: "*", status: 500, times: Infinity });
   * mock.clearFaults();
   * ```
   */
  clearFaults(): void {
    this.#faults = [];
  }

  /**
   * Every request received, in arrival order (empty with `recordRequests: false`).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
   * console.log(mock.requests.map((r) => `${r.route} ${r.status}`)); // ["request 400"]
   * ```
   */
  get requests(): readonly MockRequest[] {
    return this.#requests;
  }

  /**
   * Number of requests received on a route (all routes when omitted).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
   * console.log(mock.requestCount("request"), mock.requestCount()); // 1 1
   * ```
   */
  requestCount(route?: MockRoute): number {
    if (route === undefined) {
      let n = 0;
      for (const c of this.#counts.values()) n += c;
      return n;
    }
    return this.#counts.get(route) ?? 0;
  }

  /**
   * Unexpected errors inside the mock (answered 500). Should stay empty; tests may assert it.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * console.log(mock.errors.length); // 0
   * ```
   */
  get errors(): readonly unknown[] {
    return this.#errors;
  }

  /**
   * Resolves when `predicate` holds; it is checked now and after every request and job change.
   * Rejects after `timeoutMs` real milliseconds (default 10 s) or when `signal` aborts.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * const done = mock.waitFor(() => job.state === "canceled");
   * mock.cancel(job.id);
   * await done;
   * ```
   */
  waitFor(predicate: (mock: GitLabMock) => boolean, options: WaitForOptions = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted) return reject(abortError(signal));
      try {
        if (predicate(this)) return resolve();
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
          ok = predicate(this);
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

  #notify(): void {
    for (const check of [...this.#waiters]) check();
  }

  // ---------------------------------------------------------------- serving

  /**
   * Handles one request as GitLab would. A dropped connection (fault) rejects with a `TypeError`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * const res = await mock.handle(new Request(`${mock.url}/api/v4/jobs/1/trace`, { method: "PATCH" }));
   * console.log(res.status); // 403
   * ```
   */
  async handle(request: Request): Promise<Response> {
    const response = await this.#serve(request, { objectsOrigin: this.#objectsOrigin });
    if (response === null) throw new TypeError("Connection dropped by the GitLab mock");
    return response;
  }

  /**
   * Serves the mock over HTTP (`Deno.serve` on Deno, `node:http` on Node).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * await using server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
   * const res = await fetch(`${server.url}/api/v4/jobs/request`, {
   *   method: "POST",
   *   headers: { "content-type": "application/json" },
   *   body: JSON.stringify({ token: mock.runnerToken }),
   * });
   * console.log(res.status, res.headers.has("x-gitlab-last-update")); // 204 true
   * ```
   */
  async listen(options: ListenOptions = {}): Promise<MockServer> {
    const hostname = options.hostname ?? "127.0.0.1";
    const deno = (globalThis as { Deno?: { serve?: unknown } }).Deno;
    const useDeno = options.server ? options.server === "deno" : typeof deno?.serve === "function";
    const mod: {
      serve(handler: RawHandler, o: { port: number; hostname: string }): Promise<Listener>;
    } = useDeno ? await import("./_server.deno.ts") : await import("./_server.node.ts");
    const closing = new AbortController();
    const ctx: ServeContext = { objectsOrigin: "", signal: closing.signal };
    const listener = await mod.serve((req) => this.#serve(req, ctx), {
      port: options.port ?? 0,
      hostname,
    });
    const urlHost = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
    const objectsHostname = options.objectsHostname ??
      (urlHost === "127.0.0.1" ? "localhost" : "127.0.0.1");
    ctx.objectsOrigin = `http://${formatHost(objectsHostname)}:${listener.port}`;
    let closed: Promise<void> | undefined;
    const server: MockServer = {
      url: `http://${formatHost(urlHost)}:${listener.port}${this.#basePath}`,
      port: listener.port,
      hostname,
      objectsUrl: ctx.objectsOrigin,
      close: () => {
        closed ??= (async () => {
          closing.abort();
          await listener.close();
          this.#servers.delete(server);
        })();
        return closed;
      },
      [Symbol.asyncDispose]: () => server.close(),
    };
    this.#servers.add(server);
    return server;
  }

  /**
   * Closes every listener and releases held long polls (answered 204).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * const mock = new GitLabMock();
   * await mock.listen();
   * await mock.close();
   * ```
   */
  async close(): Promise<void> {
    for (const release of [...this.#holds]) release();
    await Promise.all([...this.#servers].map((s) => s.close()));
  }

  /** Same as {@linkcode GitLabMock.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #fetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
    // Like a socket, every call yields to the event loop first: a client's hot loop shows up as
    // a failing test, not as a hung one (M12).
    await new Promise<void>((resolve) => setImmediate(resolve));
    let request = new Request(input, init);
    const signal = request.signal;
    const bodySource = init?.body !== undefined && init.body !== null &&
        !(init.body instanceof ReadableStream)
      ? init.body
      : undefined;
    for (let redirects = 0;; redirects++) {
      if (signal.aborted) throw abortError(signal);
      const url = new URL(request.url);
      if (url.origin !== this.#origin && url.origin !== this.#objectsOrigin) {
        throw new TypeError(
          `error sending request for url (${url.href}): dns error: no such host (GitLab mock)`,
        );
      }
      const response = await raceAbort(
        this.#serve(request, { objectsOrigin: this.#objectsOrigin }),
        signal,
      );
      if (response === null) {
        throw new TypeError(
          `error sending request for url (${url.href}): connection closed before message completed`,
        );
      }
      const location = response.headers.get("location");
      if (isRedirect(response.status) && location !== null && request.redirect !== "manual") {
        if (request.redirect === "error") throw new TypeError("Redirect was not allowed");
        if (redirects >= 20) throw new TypeError("Too many redirects");
        await response.body?.cancel();
        const next = new URL(location, url);
        const headers = new Headers(request.headers);
        let method = request.method;
        let body: BodyInit | undefined;
        if (
          (response.status === 303 && method !== "GET" && method !== "HEAD") ||
          ((response.status === 301 || response.status === 302) && method === "POST")
        ) {
          method = "GET";
          for (
            const h of ["content-type", "content-length", "content-encoding", "content-language"]
          ) {
            headers.delete(h);
          }
        } else if (method !== "GET" && method !== "HEAD") {
          if (bodySource === undefined && init?.body != null) {
            throw new TypeError("Cannot follow a redirect with a streamed request body");
          }
          body = bodySource;
        }
        // Fetch drops only Authorization on a cross-origin redirect: custom headers such as
        // JOB-TOKEN go along unless the client strips them itself.
        if (next.origin !== url.origin) headers.delete("authorization");
        request = new Request(next, {
          method,
          headers,
          body,
          redirect: request.redirect,
          signal,
        });
        continue;
      }
      Object.defineProperty(response, "url", { value: url.href });
      if (redirects > 0) Object.defineProperty(response, "redirected", { value: true });
      return response;
    }
  }

  #takeFault(route: MockRoute, jobId: number | undefined): MockFault | undefined {
    for (let i = 0; i < this.#faults.length; i++) {
      const active = this.#faults[i];
      const f = active.fault;
      if (f.route !== "*" && f.route !== route) continue;
      if (f.jobId !== undefined && f.jobId !== jobId) continue;
      if (f.probability !== undefined && f.probability < 1 && !(this.#random() < f.probability)) {
        continue;
      }
      active.remaining--;
      if (active.remaining <= 0) this.#faults.splice(i, 1);
      return f;
    }
    return undefined;
  }

  /** Sleeps on the clock; false when aborted first. */
  async #delay(ms: number, signal: AbortSignal): Promise<boolean> {
    try {
      await this.#clock.sleep(ms, signal);
      return true;
    } catch {
      return false;
    }
  }

  #classify(method: string, path: string): {
    route: MockRoute;
    jobId?: number;
    badId?: boolean;
    badMethod?: boolean;
  } {
    const obj = OBJECT_PATH.exec(path);
    if (obj) {
      const id = /^\d+$/.test(obj[1]) ? Number(obj[1]) : undefined;
      return { route: "object", jobId: id };
    }
    const prefix = `${this.#basePath}/api/v4/`;
    if (!path.startsWith(prefix)) return { route: "unknown" };
    const rest = path.slice(prefix.length).replace(/\/+$/, "");
    if (rest === "runners/verify") {
      return method === "POST" ? { route: "verify" } : { route: "unknown", badMethod: true };
    }
    if (rest === "runners") {
      return method === "DELETE" ? { route: "unregister" } : { route: "unknown", badMethod: true };
    }
    if (rest === "jobs/request") {
      return method === "POST" ? { route: "request" } : { route: "unknown", badMethod: true };
    }
    const m = JOB_PATH.exec(rest);
    if (!m) return { route: "unknown" };
    const badId = !/^\d+$/.test(m[1]);
    const jobId = badId ? undefined : Number(m[1]);
    let route: MockRoute | undefined;
    if (m[2] === undefined && method === "PUT") route = "update";
    else if (m[2] === "/trace" && method === "PATCH") route = "trace";
    else if (m[2] === "/artifacts" && method === "POST") route = "upload";
    else if (m[2] === "/artifacts" && (method === "GET" || method === "HEAD")) route = "download";
    if (!route) return { route: "unknown", badMethod: true };
    return { route, jobId, badId };
  }

  async #serve(request: Request, ctx: ServeContext): Promise<Response | null> {
    const git = this.git.handle(request); // C11.4: /<project>.git/… of a served repository
    if (git) return await git;
    this.#sweep();
    const url = new URL(request.url);
    const { route, jobId, badId, badMethod } = this.#classify(request.method, url.pathname);
    const record: MockRequest = {
      route,
      method: request.method,
      path: url.pathname,
      url: url.href,
      status: 0,
      done: false,
      jobId,
      headers: this.#recordRequests ? new Headers(request.headers) : new Headers(),
      faulted: false,
      at: this.#clock.now(),
    };
    this.#counts.set(route, (this.#counts.get(route) ?? 0) + 1);
    if (this.#recordRequests) this.#requests.push(record);
    this.#notify();
    let response: Response | null = null;
    try {
      response = await this.#serveWithFaults(request, url, ctx, record, {
        route,
        jobId,
        badId,
        badMethod,
      });
    } catch (error) {
      this.#errors.push(error);
      response = errorResponse(500);
    }
    record.status = response?.status ?? 0;
    record.done = true;
    this.#onRequest?.(record);
    this.#notify();
    return response;
  }

  async #serveWithFaults(
    request: Request,
    url: URL,
    ctx: ServeContext,
    record: MockRequest,
    r: { route: MockRoute; jobId?: number; badId?: boolean; badMethod?: boolean },
  ): Promise<Response | null> {
    const fault = this.#takeFault(r.route, r.jobId);
    if (fault) {
      record.faulted = true;
      if (fault.delayMs !== undefined && fault.delayMs > 0) {
        // request.signal is only touched when needed: Deno.serve warns about its legacy
        // "abort on success" behaviour as soon as it is read.
        const signal = anySignal([request.signal, ctx.signal]);
        if (!(await this.#delay(fault.delayMs, signal))) return null;
      }
      if (fault.hang) {
        await request.body?.cancel().catch(() => {});
        await new Promise<void>((resolve) => {
          const signal = anySignal([request.signal, ctx.signal]);
          if (signal.aborted) resolve();
          else signal.addEventListener("abort", () => resolve(), { once: true });
        });
        return null;
      }
      if (fault.drop === true || fault.drop === "before") {
        await request.body?.cancel().catch(() => {});
        return null;
      }
      if (fault.status !== undefined) {
        await request.body?.cancel().catch(() => {});
        return this.#faultResponse(fault);
      }
    }
    const response = await this.#route(request, url, ctx, record, r);
    if (fault?.drop === "after") {
      await response?.body?.cancel().catch(() => {});
      return null;
    }
    if (fault?.stallBody !== undefined && fault.stallBody !== false && response) {
      return await stalledResponse(response, fault.stallBody);
    }
    return response;
  }

  #faultResponse(fault: MockFault): Response {
    const status = fault.status!;
    const headers = new Headers(fault.headers);
    if (nullBodyStatus(status)) return new Response(null, { status, headers });
    if (fault.body === null) return new Response(null, { status, headers });
    if (typeof fault.body === "string") {
      if (!headers.has("content-type")) headers.set("content-type", "text/plain");
      return new Response(fault.body, { status, statusText: statusText(status), headers });
    }
    if (fault.body !== undefined) return jsonResponse(status, fault.body, headers);
    if (status === 429) {
      return jsonResponse(status, {
        message: { error: "This endpoint has been requested too many times. Try again later." },
      }, headers);
    }
    return errorResponse(status, undefined, headers);
  }

  #route(
    request: Request,
    url: URL,
    ctx: ServeContext,
    record: MockRequest,
    r: { route: MockRoute; jobId?: number; badId?: boolean; badMethod?: boolean },
  ): Promise<Response | null> | Response {
    if (r.badMethod) return errorResponse(405, "405 Method Not Allowed");
    if (r.badId) return jsonResponse(400, { error: "id is invalid" });
    switch (r.route) {
      case "verify":
        return this.#verify(request, url, record);
      case "unregister":
        return this.#unregister(request, url, record);
      case "request":
        return this.#request(request, url, ctx, record);
      case "update":
        return this.#update(request, url, r.jobId!, record);
      case "trace":
        return this.#trace(request, url, r.jobId!);
      case "upload":
        return this.#upload(request, url, r.jobId!, ctx);
      case "download":
        return this.#download(request, url, r.jobId!, ctx);
      case "object":
        return this.#object(request, url, r.jobId);
      default:
        return jsonResponse(404, { error: "404 Not Found" });
    }
  }

  // ---------------------------------------------------------------- helpers

  /** Query + JSON/form body params, Grape-style; a Response for a body that cannot be parsed. */
  async #readParams(
    request: Request,
    url: URL,
    maxBytes?: number,
  ): Promise<Record<string, unknown> | Response> {
    const bytes = new Uint8Array(await request.arrayBuffer());
    if (maxBytes !== undefined && bytes.length > maxBytes) {
      return errorResponse(413, "413 Request Entity Too Large");
    }
    const params: Record<string, unknown> = Object.fromEntries(url.searchParams);
    if (bytes.length === 0) return params;
    const contentType = (request.headers.get("content-type") ?? "").toLowerCase();
    const text = new TextDecoder().decode(bytes);
    if (contentType.includes("application/x-www-form-urlencoded")) {
      for (const [k, v] of new URLSearchParams(text)) params[k] = v;
      return params;
    }
    if (contentType === "" || contentType.includes("json")) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return jsonResponse(400, { error: "There was a problem with the JSON you submitted" });
      }
      if (!isRecord(parsed)) return jsonResponse(400, { error: "The JSON body must be an object" });
      Object.assign(params, parsed);
    }
    return params;
  }

  #validRunnerToken(token: unknown): boolean {
    return !this.#runnerDeleted && typeof token === "string" && token === this.runnerToken;
  }

  #tickQueue(): void {
    this.#queueTick++;
    this.#queueValue = hexFromSeed(this.#queueTick, 32);
    for (const release of [...this.#holds]) release();
  }

  #finish(job: JobState, state: "success" | "failed" | "canceled", reason?: string, code?: number) {
    this.#pending.delete(job);
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
    job.finishedAt = this.#clock.now();
  }

  /** Holds a long poll until the queue changes, the hold ends, or the client goes away. */
  #hold(requestSignal: AbortSignal, closing?: AbortSignal): Promise<HoldOutcome> {
    return new Promise<HoldOutcome>((resolve) => {
      const timer = new AbortController();
      let done = false;
      const finish = (outcome: HoldOutcome) => {
        if (done) return;
        done = true;
        this.#holds.delete(release);
        timer.abort();
        requestSignal.removeEventListener("abort", onAbort);
        closing?.removeEventListener("abort", release);
        resolve(outcome);
      };
      const release = () => finish(HOLD_RELEASED);
      const onAbort = () => finish(HOLD_ABORTED);
      if (requestSignal.aborted) return finish(HOLD_ABORTED);
      if (closing?.aborted) return finish(HOLD_RELEASED);
      requestSignal.addEventListener("abort", onAbort, { once: true });
      closing?.addEventListener("abort", release, { once: true });
      this.#holds.add(release);
      this.#clock.sleep(this.#longPollMs, timer.signal).then(() => finish(HOLD_TIMEOUT), () => {});
      this.#notify();
    });
  }

  /**
   * The stuck-job sweeper (M11): fails running jobs that no call reached for `stuckAfterMs`.
   * Run lazily, whenever the mock is asked or inspected, so it needs no timer of its own.
   */
  #sweep(): void {
    if (!(this.#stuckAfterMs > 0)) return;
    const now = this.#clock.now();
    // Most calls find nothing due: only scan once the earliest possible deadline has come.
    if (now < this.#nextSweepAt) return;
    let swept = false;
    let next = Infinity;
    for (const job of this.#jobs) {
      if (!job.executing) continue;
      const since = job.contactAt ?? job.pickedAt ?? job.enqueuedAt;
      if (now - since < this.#stuckAfterMs) {
        next = Math.min(next, since + this.#stuckAfterMs);
        continue;
      }
      this.#finish(job, "failed", "stuck_or_timeout_failure");
      swept = true;
    }
    this.#nextSweepAt = next;
    if (swept) this.#notify();
  }

  /** Job-token authentication (`authenticate_job!`): the job, or the 403 to answer. */
  #authJob(id: number, token: string | null | undefined, route: MockRoute): JobState | Response {
    const job = this.#byId.get(id);
    if (!job || !token || token !== job.token) return errorResponse(403, "403 Forbidden");
    if (job.executing) {
      job.contactAt = this.#clock.now();
      return job;
    }
    if (job.state === "pending" && job.assigned && route === "update") return job;
    if (job.state === "canceled") {
      if (this.#cancelResponse === "bare-forbidden") return errorResponse(403, "403 Forbidden");
      if (this.#cancelResponse === "job-status" && route !== "upload") return job;
    }
    return errorResponse(403, "403 Forbidden - Job is not processing on runner", {
      "Job-Status": job.state,
    });
  }

  #serverUrl(url: URL): string {
    return `${url.origin}${this.#basePath}`;
  }

  // ---------------------------------------------------------------- routes

  async #verify(request: Request, url: URL, record: MockRequest): Promise<Response> {
    const params = await this.#readParams(request, url);
    if (params instanceof Response) return params;
    record.body = params;
    if (params.token === undefined || params.token === null) {
      return jsonResponse(400, { error: "token is missing" });
    }
    if (!this.#validRunnerToken(params.token)) return errorResponse(403);
    return jsonResponse(200, { id: 1, token: this.runnerToken, token_expires_at: null });
  }

  async #unregister(request: Request, url: URL, record: MockRequest): Promise<Response> {
    const params = await this.#readParams(request, url);
    if (params instanceof Response) return params;
    record.body = params;
    if (params.token === undefined || params.token === null) {
      return jsonResponse(400, { error: "token is missing" });
    }
    if (!this.#validRunnerToken(params.token)) return errorResponse(403);
    this.#runnerDeleted = true;
    return new Response(null, { status: 204 });
  }

  async #request(
    request: Request,
    url: URL,
    ctx: ServeContext,
    record: MockRequest,
  ): Promise<Response | null> {
    const params = await this.#readParams(request, url, MAX_REGISTER_BODY_SIZE);
    if (params instanceof Response) return params;
    record.body = params;

    // Workhorse: with long polling on, a JSON body with the runner's token and a current
    // last_update is held until the queue changes or the hold ends; either way a bare 204.
    const contentType = (request.headers.get("content-type") ?? "").toLowerCase();
    if (
      this.#longPollMs > 0 && contentType.includes("application/json") &&
      this.#validRunnerToken(params.token) && typeof params.last_update === "string" &&
      params.last_update !== "" && params.last_update === this.#queueValue
    ) {
      const outcome = await this.#hold(request.signal, ctx.signal);
      if (outcome === HOLD_ABORTED) return null;
      return new Response(null, {
        status: 204,
        statusText: "No Content",
        headers: { "Gitlab-Ci-Builds-Polling": "yes" },
      });
    }

    // Rails
    if (params.token === undefined || params.token === null) {
      return jsonResponse(400, { error: "token is missing" });
    }
    if (!this.#validRunnerToken(params.token)) return errorResponse(403);
    const info = isRecord(params.info) ? params.info : {};
    const features = isRecord(info.features) ? info.features : {};
    const noJob = (value: string) =>
      new Response(null, {
        status: 204,
        statusText: "No Content",
        headers: { "X-GitLab-Last-Update": value },
      });
    if (this.paused) return noJob(this.#queueValue);
    if (typeof params.last_update === "string" && params.last_update === this.#queueValue) {
      return noJob(params.last_update);
    }
    const queueValue = this.#queueValue;
    let depth = 0;
    for (const job of this.#pending) {
      if (missingFeatures(job.requires, features).length > 0) {
        this.#finish(job, "failed", "runner_unsupported");
        depth++;
        continue;
      }
      this.#pending.delete(job);
      job.pickedAt = this.#clock.now();
      this.#nextSweepAt = Math.min(this.#nextSweepAt, job.pickedAt + this.#stuckAfterMs);
      job.runnerFeatures = { ...features };
      if (features.two_phase_job_commit === true) job.assigned = true;
      else job.state = "running";
      const { payload, text } = renderPayload(job, {
        serverUrl: this.#serverUrl(url),
        getJob: (id) => this.#byId.get(id),
        dependencyToken: this.#dependencyToken,
        queueSize: this.#pending.size,
        queueDepth: depth,
      }, this.#clock.now());
      job.payload = payload;
      job.payloadText = text;
      return new Response(text, {
        status: 201,
        statusText: "Created",
        headers: { "content-type": "application/json" },
      });
    }
    return noJob(queueValue);
  }

  async #update(request: Request, url: URL, id: number, record: MockRequest): Promise<Response> {
    const params = await this.#readParams(request, url);
    if (params instanceof Response) return params;
    record.body = params;
    if (params.token === undefined || params.token === null) {
      return jsonResponse(400, { error: "token is missing" });
    }
    const exitCode = coerceInteger(params.exit_code);
    if (Number.isNaN(exitCode)) return jsonResponse(400, { error: "exit_code is invalid" });
    const auth = this.#authJob(id, String(params.token), "update");
    if (auth instanceof Response) return auth;
    const job = auth;
    const update = params as MockUpdate;
    job.updates.push(update);
    const answer = (status: number, extra?: Record<string, string>) =>
      textResponse(status, String(status), { "Job-Status": job.state, ...extra });

    if (job.state === "canceled") return answer(200); // cancelResponse "job-status" (older GitLab)
    const state = params.state;
    const output = isRecord(params.output) ? params.output : {};
    const checksum = output.checksum ?? params.checksum;

    if (job.state === "pending") {
      // Two-phase commit: the runner took the job but has not started it yet.
      if (state === "pending") return answer(200);
      if (state === "running") {
        job.state = "running";
        job.assigned = false;
        this.#notify();
        return answer(200);
      }
    } else if (state === "pending") {
      return answer(400);
    }

    if (state === "success" || state === "failed") {
      job.finalUpdates.push(update);
      if (
        typeof checksum === "string" && checksum !== "" &&
        job.finalAccepts < this.#finalUpdateAccepts
      ) {
        const now = this.#clock.now();
        job.firstFinalAt ??= now;
        job.finalAccepts++;
        return answer(202, {
          "X-GitLab-Trace-Update-Interval": String(backoffSeconds(now - job.firstFinalAt)),
        });
      }
      if (state === "success") {
        this.#finish(job, "success");
      } else {
        const reason = typeof params.failure_reason === "string" &&
            FAILURE_REASONS.includes(params.failure_reason)
          ? params.failure_reason
          : "unknown_failure";
        const code = exitCode === undefined
          ? undefined
          : Math.max(-32768, Math.min(32767, exitCode));
        this.#finish(job, "failed", reason, code);
      }
      return answer(200);
    }
    if (state === "running") return answer(200);
    return answer(400);
  }

  async #trace(request: Request, url: URL, id: number): Promise<Response> {
    const body = new Uint8Array(await request.arrayBuffer());
    const job = this.#byId.get(id);
    if (job) job.traceRequests++;
    const token = request.headers.get("job-token") ?? url.searchParams.get("token");
    const auth = this.#authJob(id, token, "trace");
    if (auth instanceof Response) return auth;
    const contentRange = request.headers.get("content-range");
    if (contentRange === null) return errorResponse(400, "400 Missing header Content-Range");
    if (url.searchParams.get("debug_trace") === "true") auth.debugTrace = true;
    // Rails: only the number before the first "-" counts; the end comes from the body length.
    const start = rubyToI(contentRange.split("-")[0]);
    const end = start + body.length;
    if (end > this.#traceSizeLimit) {
      this.#finish(auth, "failed", "trace_size_exceeded");
      return errorResponse(403, "403 Forbidden");
    }
    if (auth.logSize !== start) {
      return errorResponse(416, "416 Range Not Satisfiable", { Range: `0-${auth.logSize}` });
    }
    maskSecret(body, utf8(auth.token));
    maskSecret(body, this.#runnerTokenBytes);
    auth.appendLog(body);
    auth.patches++;
    return new Response(null, {
      status: 202,
      statusText: "Accepted",
      headers: {
        "Job-Status": auth.state,
        Range: `0-${auth.logSize}`,
        "X-GitLab-Trace-Update-Interval": String(
          auth.watchedInterval ?? this.#traceUpdateInterval,
        ),
      },
    });
  }

  async #upload(request: Request, url: URL, id: number, ctx: ServeContext): Promise<Response> {
    const redirected = this.#uploadRedirectAnswer(request, url, ctx);
    if (redirected) return await redirected;
    // Workhorse authorizes with the request's headers and query only (before reading the body).
    const token = request.headers.get("job-token") ?? url.searchParams.get("token");
    const auth = this.#authJob(id, token, "upload");
    if (auth instanceof Response) {
      await request.body?.cancel().catch(() => {});
      return auth;
    }
    const job = auth;
    const contentType = request.headers.get("content-type") ?? "";
    if (!contentType.toLowerCase().startsWith("multipart/form-data")) {
      await request.body?.cancel().catch(() => {});
      return jsonResponse(400, { error: "file is missing" });
    }
    const declared = Number(request.headers.get("content-length") ?? NaN);
    if (declared > this.#maxArtifactSize + 1024 * 1024) {
      await request.body?.cancel().catch(() => {});
      return errorResponse(413, "file size has reached maximum size limit");
    }
    const boundary = multipartBoundary(contentType);
    if (boundary === undefined) {
      await request.body?.cancel().catch(() => {});
      return errorResponse(400, "400 Bad Request - invalid multipart body");
    }
    // Streamed (M13): the file's bytes are collected as they arrive and the body is never held
    // whole; past maxArtifactSize the answer is 413 at once and the rest of the body is
    // cancelled (leaving the loop cancels it), as Workhorse does.
    let file: { filename: string; contentType: string; bytes: ByteCollector } | undefined;
    let field: { name: string; chunks: Uint8Array[]; size: number } | undefined;
    let fieldBytes = 0;
    const fields = new Map<string, string>();
    try {
      let inFile = false;
      for await (const event of readMultipart(request.body, boundary)) {
        if (event.type === "part") {
          const { name, filename } = event.part;
          inFile = filename !== undefined;
          field = undefined;
          if (filename !== undefined) {
            // Workhorse accepts exactly one file, in the field "file".
            if (name !== "file") {
              return errorResponse(400, `400 Bad Request - unexpected file "${name ?? ""}"`);
            }
            if (file) {
              return errorResponse(
                400,
                "400 Bad Request - upload request contains more than 1 file",
              );
            }
            file = {
              filename,
              contentType: event.part.contentType,
              bytes: new ByteCollector(this.#maxArtifactSize),
            };
          } else if (name !== undefined) {
            field = { name, chunks: [], size: 0 };
          }
        } else if (event.type === "data") {
          if (inFile) {
            if (file!.bytes.length + event.bytes.length > this.#maxArtifactSize) {
              return errorResponse(413, "file size has reached maximum size limit");
            }
            file!.bytes.push(event.bytes);
          } else if (field) {
            fieldBytes += event.bytes.length;
            if (fieldBytes > MAX_UPLOAD_FIELDS_SIZE) {
              return errorResponse(413, "413 Request Entity Too Large");
            }
            field.chunks.push(event.bytes.slice());
            field.size += event.bytes.length;
          }
        } else {
          if (field) {
            const joined = new Uint8Array(field.size);
            let at = 0;
            for (const chunk of field.chunks) {
              joined.set(chunk, at);
              at += chunk.length;
            }
            fields.set(field.name, new TextDecoder().decode(joined));
          }
          field = undefined;
          inFile = false;
        }
      }
    } catch (error) {
      if (error instanceof MultipartError) {
        return errorResponse(400, "400 Bad Request - invalid multipart body");
      }
      throw error;
    }
    if (!file) return jsonResponse(400, { error: "file is missing" });
    const pick = (name: string, fallback: string) => {
      const field = fields.get(name);
      if (field !== undefined) return { value: field, from: "field" as const };
      const query = url.searchParams.get(name);
      if (query !== null) return { value: query, from: "query" as const };
      return { value: fallback, from: "default" as const };
    };
    const type = pick("artifact_type", "archive");
    const format = pick("artifact_format", "zip");
    if (!Object.hasOwn(ARTIFACT_TYPE_FORMATS, type.value)) {
      return jsonResponse(400, { error: "artifact_type does not have a valid value" });
    }
    if (!ARTIFACT_FORMATS.includes(format.value)) {
      return jsonResponse(400, { error: "artifact_format does not have a valid value" });
    }
    const data = file.bytes.bytes();
    const existing = job.artifacts.find((a) => a.type === type.value);
    if (existing) {
      const same = existing.data.length === data.length &&
        existing.data.every((b, i) => b === data[i]);
      if (!same) return errorResponse(400, "another artifact of the same type already exists");
      return textResponse(201, "201");
    }
    const expireIn = fields.get("expire_in") ?? url.searchParams.get("expire_in") ?? undefined;
    job.artifacts.push({
      filename: file.filename,
      type: type.value,
      format: format.value,
      ...(expireIn !== undefined ? { expireIn } : {}),
      contentType: file.contentType,
      data,
      paramsFrom: { type: type.from, format: format.from },
    });
    return textResponse(201, "201");
  }

  /**
   * The `uploadRedirect` option (M13): a first upload (no marker in the query) gets a 307 like
   * a proxy in front of GitLab would send, before any authentication; on the object-storage
   * origin, the redirected upload is recorded and answered 201 without being stored. Either
   * way the body is read and dropped.
   * Undefined when the upload is GitLab's to serve.
   */
  #uploadRedirectAnswer(
    request: Request,
    url: URL,
    ctx: ServeContext,
  ): Promise<Response> | undefined {
    if (this.#uploadRedirect === "none") return undefined;
    if (this.#uploadRedirect === "other-origin" && url.origin === ctx.objectsOrigin) {
      // What a careless client takes for success; the request and its headers are in
      // `requests`. Nothing is stored.
      return discardBody(request).then(() => textResponse(201, "201"));
    }
    if (url.searchParams.has(UPLOAD_REDIRECT_MARKER)) return undefined;
    const target = new URL(url);
    target.searchParams.set(UPLOAD_REDIRECT_MARKER, "1");
    if (this.#uploadRedirect === "other-origin") {
      const objects = new URL(ctx.objectsOrigin);
      target.protocol = objects.protocol;
      target.host = objects.host;
    }
    // The body is read and dropped before answering: cutting it short would reset the
    // connection under a client still sending (node:http), and it might miss the 307.
    return discardBody(request).then(() =>
      new Response(null, {
        status: 307,
        statusText: "Temporary Redirect",
        headers: { Location: target.href },
      })
    );
  }

  #download(request: Request, url: URL, id: number, ctx: ServeContext): Response {
    const token = request.headers.get("job-token") ?? url.searchParams.get("token");
    const direct = coerceBoolean(url.searchParams.get("direct_download"));
    if (direct === null) return jsonResponse(400, { error: "direct_download is invalid" });
    const target = this.#byId.get(id);
    const holder = token ? this.#byToken.get(token) : undefined;
    const allowed = target !== undefined && holder !== undefined &&
      (holder === target ||
        (holder.executing && holder.dependencies.some((d) => d.id === target.id)));
    if (!allowed) return errorResponse(403, "403 Forbidden");
    const archive = target.archive;
    if (!archive) return errorResponse(404, "404 Not Found");
    if (direct && this.#downloadRedirect) {
      const signature = randomHex(64);
      const now = this.#clock.now();
      this.#signed.set(signature, { jobId: target.id, expiresAt: now + 3600_000 });
      const query = new URLSearchParams({
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": `MOCKACCESSKEY/${amzDate(now).slice(0, 8)}/us-east-1/s3/aws4_request`,
        "X-Amz-Date": amzDate(now),
        "X-Amz-Expires": "3600",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": signature,
      });
      const location = `${ctx.objectsOrigin}/objects/artifacts/${target.id}/${
        encodeURIComponent(archive.filename)
      }?${query}`;
      return new Response(null, {
        status: 302,
        statusText: "Found",
        headers: { Location: location },
      });
    }
    return new Response(request.method === "HEAD" ? null : archive.data.slice(), {
      status: 200,
      statusText: "OK",
      headers: {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="${archive.filename}"`,
        "content-length": String(archive.data.length),
      },
    });
  }

  #object(request: Request, url: URL, id: number | undefined): Response {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return s3Error(405, "MethodNotAllowed", "The specified method is not allowed");
    }
    const signature = url.searchParams.get("X-Amz-Signature") ?? "";
    const signed = this.#signed.get(signature);
    if (!signed || signed.jobId !== id) {
      return s3Error(403, "SignatureDoesNotMatch", "The request signature does not match");
    }
    if (this.#clock.now() > signed.expiresAt) {
      return s3Error(403, "AccessDenied", "Request has expired");
    }
    const archive = this.#byId.get(signed.jobId)?.archive;
    if (!archive) return s3Error(404, "NoSuchKey", "The specified key does not exist");
    return new Response(request.method === "HEAD" ? null : archive.data.slice(), {
      status: 200,
      statusText: "OK",
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(archive.data.length),
      },
    });
  }
}
