/**
 * The GitLab mock's public class: a thin façade over the state (`_store.ts`), the router and
 * its rules (`_router.ts`, `_rules_*.ts`), fault injection (`_faults.ts`), redirects and the
 * in-process fetch (`_redirects.ts`), the object storage (`_object_storage.ts`) and the
 * listeners (`_listen.ts`). See PROTOCOL.md §13 for what it reproduces.
 *
 * @module
 */

import { TRACE_UPDATE_INTERVAL_WATCHED } from "./_constants.ts";
import { listen } from "./_listen.ts";
import { fetchInProcess } from "./_redirects.ts";
import { serve, type ServeContext } from "./_router.ts";
import { MockStore, resolveConfig } from "./_store.ts";
import { MockJobBuilder } from "./job.ts";
import { MockGit } from "./_git_http.ts";
import type {
  CancelOptions,
  ListenOptions,
  MockFault,
  MockJob,
  MockJobSpec,
  MockOptions,
  MockRequest,
  MockRoute,
  MockServer,
  WaitForOptions,
} from "./types.ts";

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
 * import { strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const job = mock.job().name("build").script(["make"]).enqueue();
 *
 * const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * const payload = await res.json();
 * strictEqual(res.status, 201);
 * strictEqual(payload.id, job.id);
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
 * strictEqual(job.state, "success");
 * strictEqual(job.logText, "hello\n");
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

  #store: MockStore;
  #servers = new Set<MockServer>();

  /**
   * Creates a mock with no jobs.
   *
   * @param options See {@linkcode MockOptions}.
   */
  constructor(options: MockOptions = {}) {
    const config = resolveConfig(options);
    this.#store = new MockStore(config, () => this.paused);
    this.runnerToken = config.runnerToken;
    this.url = `${config.origin}${config.basePath}`;
    this.objectsUrl = config.objectsOrigin;
    const origins = [config.origin, config.objectsOrigin];
    const clock = config.clock;
    this.git = new MockGit(
      config.basePath,
      (t) => this.#store.byToken.get(t)?.state === "running",
      (ms, signal) => clock.sleep(ms, signal).then(() => true, () => false),
    );
    this.#store.git = this.git;
    const ctx: ServeContext = { objectsOrigin: config.objectsOrigin };
    this.fetch = (input, init) =>
      fetchInProcess((request) => serve(this.#store, request, ctx), origins, input, init);
  }

  /**
   * Sets a callback run after every request (e.g. to log traffic).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { deepStrictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const seen: string[] = [];
   * mock.onRequest((r) => seen.push(`${r.method} ${r.path} ${r.status}`));
   * await mock.fetch(`${mock.url}/api/v4/runners/verify`, { method: "POST", body: "{}" });
   * deepStrictEqual(seen, ["POST /api/v4/runners/verify 400"]);
   * ```
   */
  onRequest(callback: ((request: MockRequest) => void) | undefined): void {
    this.#store.onRequest = callback;
  }

  // ---------------------------------------------------------------- jobs

  /**
   * Starts a job with a fluent builder; {@linkcode MockJobBuilder.enqueue} adds it.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job({ name: "lint" }).script(["npm run lint"]).enqueue();
   * strictEqual(job.name, "lint");
   * strictEqual(job.state, "pending");
   * ```
   */
  job(spec: Partial<MockJobSpec> = {}): MockJobBuilder {
    return new MockJobBuilder((s, transform) => this.#store.addJob(s, transform), spec);
  }

  /**
   * Adds a job from a plain JSON-able spec (what the command's `--jobs` file holds).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const dep = mock.addJob({ name: "build", state: "success", artifactsFile: "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==" });
   * const job = mock.addJob({ name: "test", dependencies: ["build"] });
   * strictEqual(dep.state, "success");
   * strictEqual(job.state, "pending");
   * ```
   */
  addJob(spec: MockJobSpec): MockJob {
    return this.#store.addJob(structuredClone(spec));
  }

  /**
   * All jobs, in id order.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { deepStrictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * mock.job().enqueue();
   * mock.job().enqueue();
   * deepStrictEqual(mock.jobs.map((j) => j.id), [1, 2]);
   * ```
   */
  get jobs(): readonly MockJob[] {
    this.#store.sweep();
    return this.#store.jobs;
  }

  /**
   * The job with this id.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * strictEqual(mock.getJob(job.id), job);
   * strictEqual(mock.getJob(99), undefined);
   * ```
   */
  getJob(id: number): MockJob | undefined {
    this.#store.sweep();
    return this.#store.byId.get(id);
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
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * mock.cancel(job.id);
   * strictEqual(job.state, "canceled"); // it was pending
   * ```
   */
  cancel(id: number, options: CancelOptions = {}): void {
    this.#store.cancel(id, options);
  }

  /**
   * Fails a job on the server side (like the stuck-job sweeper or a failed pipeline): later
   * job-token calls get 403 + `Job-Status: failed`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * mock.dropJob(job.id, "no_updates_running");
   * strictEqual(job.state, "failed");
   * strictEqual(job.failureReason, "no_updates_running");
   * ```
   */
  dropJob(id: number, reason = "unknown_failure"): void {
    this.#store.drop(id, reason);
  }

  /**
   * Marks a job's log as watched in the UI: PATCH answers carry
   * `X-GitLab-Trace-Update-Interval: 3` (or the number given) until unwatched.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
   *   method: "POST",
   *   headers: { "content-type": "application/json" },
   *   body: JSON.stringify({ token: mock.runnerToken }),
   * });
   * // Appends one byte to the log; resolves to the interval the answer asks for.
   * const patch = async () => {
   *   const at = job.logSize;
   *   const res = await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/trace`, {
   *     method: "PATCH",
   *     headers: {
   *       "job-token": job.token,
   *       "content-range": `${at}-${at}`,
   *       "content-type": "text/plain",
   *     },
   *     body: ".",
   *   });
   *   return res.headers.get("x-gitlab-trace-update-interval");
   * };
   * mock.watchTrace(job.id, true);
   * strictEqual(await patch(), "3");
   * mock.watchTrace(job.id, 10); // any value
   * strictEqual(await patch(), "10");
   * mock.watchTrace(job.id, false);
   * strictEqual(await patch(), "60");
   * ```
   */
  watchTrace(id: number, watched: boolean | number = true): void {
    const job = this.#store.job(id);
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
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
   *   method: "POST",
   *   headers: { "content-type": "application/json" },
   *   body: JSON.stringify({ token: mock.runnerToken }),
   * });
   * const patch = (range: string, body: string) =>
   *   mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/trace`, {
   *     method: "PATCH",
   *     headers: { "job-token": job.token, "content-range": range, "content-type": "text/plain" },
   *     body,
   *   });
   * strictEqual((await patch("0-5", "hello\n")).status, 202);
   * mock.loseTrace(job.id);
   * strictEqual(job.logSize, 0);
   * const res = await patch("6-11", "world\n");
   * strictEqual(res.status, 416);
   * strictEqual(res.headers.get("range"), "0-0"); // resend from the start
   * ```
   */
  loseTrace(id: number): void {
    this.#store.job(id).clearLog();
  }

  /**
   * Removes a job's archive (expired or erased): downloads get 404 and dependents' payloads no
   * longer carry `artifacts_file`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { deepStrictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const dep = mock.job().name("build").state("success").artifactsFile(new Uint8Array([1]))
   *   .enqueue();
   * const job = mock.job().dependency(dep).enqueue();
   * mock.eraseArtifacts(dep.id);
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
   *   method: "POST",
   *   headers: { "content-type": "application/json" },
   *   body: JSON.stringify({ token: mock.runnerToken }),
   * });
   * const [entry] = job.payload?.dependencies as Record<string, unknown>[];
   * deepStrictEqual([entry.name, "artifacts_file" in entry], ["build", false]);
   * ```
   */
  eraseArtifacts(id: number): void {
    this.#store.job(id).archiveErased = true;
  }

  // ---------------------------------------------------------------- faults and inspection

  /**
   * Injects a fault (see {@linkcode MockFault}); faults are tried in the order added.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * mock.fault({ route: "request", status: 409 });
   * const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST" });
   * strictEqual(res.status, 409);
   * ```
   */
  fault(fault: MockFault): void {
    this.#store.faults.add(fault);
  }

  /**
   * Removes all injected faults.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * mock.fault({ route: "*", status: 500, times: Infinity });
   * mock.clearFaults();
   * const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
   *   method: "POST",
   *   body: "{}",
   * });
   * strictEqual(res.status, 400); // handled again: the body has no token
   * ```
   */
  clearFaults(): void {
    this.#store.faults.clear();
  }

  /**
   * Every request received, in arrival order (empty with `recordRequests: false`).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { deepStrictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
   * deepStrictEqual(mock.requests.map((r) => `${r.route} ${r.status}`), ["request 400"]);
   * ```
   */
  get requests(): readonly MockRequest[] {
    return this.#store.requests;
  }

  /**
   * Number of requests received on a route (all routes when omitted).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
   * strictEqual(mock.requestCount("request"), 1);
   * strictEqual(mock.requestCount("trace"), 0);
   * strictEqual(mock.requestCount(), 1);
   * ```
   */
  requestCount(route?: MockRoute): number {
    if (route === undefined) {
      let n = 0;
      for (const c of this.#store.counts.values()) n += c;
      return n;
    }
    return this.#store.counts.get(route) ?? 0;
  }

  /**
   * Unexpected errors inside the mock (answered 500). Should stay empty; tests may assert it.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "not json" });
   * strictEqual(mock.errors.length, 0); // a bad request is answered 400, not an error
   * ```
   */
  get errors(): readonly unknown[] {
    return this.#store.errors;
  }

  /**
   * Resolves when `predicate` holds; it is checked now and after every request and job change.
   * Rejects after `timeoutMs` real milliseconds (default 10 s) or when `signal` aborts.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { rejects, strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const job = mock.job().enqueue();
   * const done = mock.waitFor(() => job.state === "canceled");
   * mock.cancel(job.id);
   * await done;
   * strictEqual(job.state, "canceled");
   * await rejects(mock.waitFor(() => false, { timeoutMs: 10 })); // never holds
   * ```
   */
  waitFor(predicate: (mock: GitLabMock) => boolean, options: WaitForOptions = {}): Promise<void> {
    return this.#store.waitFor(() => predicate(this), options);
  }

  // ---------------------------------------------------------------- serving

  /**
   * Handles one request as GitLab would. A dropped connection (fault) rejects with a `TypeError`.
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * const res = await mock.handle(new Request(`${mock.url}/api/v4/jobs/1/trace`, { method: "PATCH" }));
   * strictEqual(res.status, 403); // no job token
   * ```
   */
  async handle(request: Request): Promise<Response> {
    const response = await serve(this.#store, request, { objectsOrigin: this.objectsUrl });
    if (response === null) throw new TypeError("Connection dropped by the GitLab mock");
    return response;
  }

  /**
   * Serves the mock over HTTP (`Deno.serve` on Deno, `node:http` on Node).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { ok, strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * await using server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
   * const res = await fetch(`${server.url}/api/v4/jobs/request`, {
   *   method: "POST",
   *   headers: { "content-type": "application/json" },
   *   body: JSON.stringify({ token: mock.runnerToken }),
   * });
   * strictEqual(res.status, 204); // no job
   * ok(res.headers.has("x-gitlab-last-update"));
   * ```
   */
  async listen(options: ListenOptions = {}): Promise<MockServer> {
    const server = await listen(
      (request, ctx) => serve(this.#store, request, ctx),
      this.#store.config.basePath,
      options,
      (closed) => this.#servers.delete(closed),
    );
    this.#servers.add(server);
    return server;
  }

  /**
   * Closes every listener and releases held long polls (answered 204).
   *
   * @example
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { rejects } from "node:assert";
   * const mock = new GitLabMock();
   * const server = await mock.listen({ port: 0 });
   * await mock.close();
   * await rejects(fetch(`${server.url}/api/v4/jobs/request`, { method: "POST" }), TypeError);
   * ```
   */
  async close(): Promise<void> {
    this.#store.releaseHolds();
    await Promise.all([...this.#servers].map((s) => s.close()));
  }

  /** Same as {@linkcode GitLabMock.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
