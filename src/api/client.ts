/**
 * The GitLab runner API (`/api/v4`) over an injectable `fetch`. One method per endpoint; each
 * answers with what the caller needs to decide (job or none, accepted or abort, server offset,
 * update interval) and throws {@linkcode ApiError} for statuses it cannot use and
 * {@linkcode RequestError} when no answer came. Tokens travel in headers and bodies only, never
 * in URLs, so they never appear in error messages.
 *
 * @module
 */

import { type Clock, systemClock } from "../clock.ts";
import { ApiError, RequestError } from "../errors.ts";
import { parseJobPayloadText, type ParseResult } from "./payload.ts";
import { fetchWithRetry } from "./retry.ts";

/** What the runner says about itself in `info` (PROTOCOL §3.3). */
export interface RunnerMetadata {
  /** Runner name. */
  name?: string;
  /** Runner version. */
  version?: string;
  /** Source revision of the runner. */
  revision?: string;
  /** Operating system, e.g. `linux`. */
  platform?: string;
  /** CPU architecture, e.g. `amd64`. */
  architecture?: string;
  /** Executor name, e.g. `custom`. */
  executor?: string;
  /** Shell name, e.g. `bash`. */
  shell?: string;
  /** Announced features: every key is sent, `false` ones too (like the official runner). */
  features?: Record<string, boolean>;
  /** Runner configuration GitLab keeps (only `gpus`). */
  config?: { gpus?: string };
  /** Runner labels (newer GitLab). */
  labels?: Record<string, string>;
}

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /** The `fetch` to use (proxies, custom TLS, the in-process mock). Default: global fetch. */
  fetch?: typeof fetch;
  /** Clock for retry waits and timeouts. Default: the system clock. */
  clock?: Clock;
  /** Random source for backoff jitter. Default: `Math.random`. */
  random?: () => number;
  /** `User-Agent` header. */
  userAgent?: string;
  /** Attempts of the generic retry policy (PROTOCOL §7). Default 5. */
  maxAttempts?: number;
  /**
   * How long a job request may wait for its answer before it is given up, in milliseconds.
   * GitLab holds long polls for up to ~50 s, so keep it well above that. Default 5 minutes.
   */
  requestTimeoutMs?: number;
}

/** Options shared by the calls. */
export interface CallOptions {
  /** Aborts the call. */
  signal?: AbortSignal;
}

/** What `POST /runners/verify` said about a runner token. */
export type VerifyResult =
  | {
    /** The token is valid. */
    valid: true;
    /** Runner id (newer GitLab). */
    id?: number;
    /** Token expiry (newer GitLab), ISO date. */
    tokenExpiresAt?: string;
  }
  | {
    /** The token is not valid (403) or the runner is orphaned (422). */
    valid: false;
    /** The status GitLab answered with. */
    status: number;
  };

/** Options of {@linkcode Client.requestJob} and {@linkcode Client.verify}. */
export interface JobRequestOptions extends CallOptions {
  /** System id of this runner manager (`s_…` or `r_…`). */
  systemId?: string;
  /** The `info` object. */
  info?: RunnerMetadata;
  /** The last non-empty `X-GitLab-Last-Update` seen, for long polling. */
  lastUpdate?: string;
}

/** The answer to `POST /jobs/request`. */
export type JobRequestResult =
  | {
    /** GitLab assigned a job (201). */
    type: "job";
    /** The parsed payload; `ok: false` when it could not be parsed (the job must still be failed). */
    job: ParseResult;
  }
  | {
    /** No job now (204). */
    type: "none";
    /** `X-GitLab-Last-Update`, when GitLab sent one. */
    lastUpdate?: string;
    /** The answer ended a long poll (Workhorse's `Gitlab-Ci-Builds-Polling: yes`). */
    longPolled: boolean;
  }
  | {
    /** 409: a concurrency conflict on GitLab's side; ask again at once. */
    type: "conflict";
  };

/** The job state a runner sends (two-phase `pending` is not used by this library). */
export type JobState = "running" | "success" | "failed";

/** The body of `PUT /jobs/:id`, less the token. */
export interface JobUpdate {
  /** The state to report. */
  state: JobState;
  /** Failure reason, with `failed` (already mapped, see `mapFailureReason`). */
  failureReason?: string;
  /** Exit code of the script, with `failed` (omitted when 0, like the official runner). */
  exitCode?: number;
  /** Checksum and size of all log bytes written so far. */
  output?: { checksum: string; bytesize: number };
  /** The runner's `info`. */
  info?: RunnerMetadata;
}

/** How GitLab's answer to a job call is to be read (PROTOCOL §3.5.1, §3.6). */
export interface JobCallResult {
  /** HTTP status. */
  status: number;
  /** The `Job-Status` header. */
  jobStatus?: string;
  /** A valid `X-GitLab-Trace-Update-Interval` in seconds (positive, clamped to 15 min). */
  updateInterval?: number;
  /** The job must stop now: `Job-Status` canceled or failed, or a 403. */
  abort: boolean;
  /** A graceful cancel was requested (`Job-Status: canceling`). */
  cancelRequested: boolean;
}

/** The answer to `PUT /jobs/:id`. */
export interface UpdateResult extends JobCallResult {
  /**
   * `ok` (200), `accepted` (202: not done yet, repeat after `updateInterval`), `reset`
   * (412: resend the log from 0), `abort` (403, 404, or `Job-Status` canceled/failed).
   */
  outcome: "ok" | "accepted" | "reset" | "abort";
}

/** The answer to `PATCH /jobs/:id/trace`. */
export interface PatchResult extends JobCallResult {
  /**
   * `accepted` (202), `range` (416: the server holds `serverOffset` bytes; resend from there),
   * `abort` (403 or `Job-Status` canceled/failed), `not-found` (404).
   */
  outcome: "accepted" | "range" | "abort" | "not-found";
  /** Bytes the server holds (the exclusive end of its `Range: 0-N`), when it said. */
  serverOffset?: number;
}

/** Options of {@linkcode Client.patchTrace}. */
export interface PatchOptions extends CallOptions {
  /** The offset of the first byte in `data`. */
  offset: number;
  /** The log bytes. */
  data: Uint8Array;
  /** The `debug_trace` query parameter (default false). */
  debugTrace?: boolean;
}

/** Options of {@linkcode Client.uploadArtifact}. */
export interface UploadOptions extends CallOptions {
  /**
   * Opens the file's bytes. Called once per attempt, so a retry starts from a fresh stream.
   */
  open: () => ReadableStream<Uint8Array> | Blob | Promise<ReadableStream<Uint8Array> | Blob>;
  /** The file name of the multipart part. */
  filename: string;
  /** `artifact_type` (query string). */
  artifactType?: string;
  /** `artifact_format` (query string). */
  artifactFormat?: string;
  /** `expire_in` (query string). */
  expireIn?: string;
}

/** Options of {@linkcode Client.downloadArtifact}. */
export interface DownloadOptions extends CallOptions {
  /** Ask for a redirect to object storage (`direct_download=true`). Default true. */
  directDownload?: boolean;
}

const MAX_UPDATE_INTERVAL_S = 15 * 60;
/** The reason a request's timeout timer is stopped with (made once: aborts are hot). */
const TIMER_DONE = new Error("Answered in time");
const MAX_REDIRECTS = 5;

/** Parses `X-GitLab-Trace-Update-Interval`: positive whole seconds, at most 15 min. */
export function parseUpdateInterval(value: string | null): number | undefined {
  if (value === null || !/^\s*-?\d+\s*$/.test(value)) return undefined;
  const n = Number.parseInt(value, 10);
  if (!(n > 0)) return undefined;
  return Math.min(n, MAX_UPDATE_INTERVAL_S);
}

/** Parses a response `Range: 0-N` into N, the number of bytes the server holds. */
export function parseRangeEnd(value: string | null): number | undefined {
  const m = value?.match(/^\s*(?:bytes[ =])?\d+-(\d+)/i);
  return m ? Number.parseInt(m[1], 10) : undefined;
}

/**
 * Normalises a GitLab URL like the official runner (strip trailing `/` and `/ci`) and returns
 * the API base ending in `/api/v4/`. Only http and https are accepted.
 */
export function apiBaseUrl(server: string | URL): URL {
  let url: URL;
  try {
    url = new URL(server);
  } catch (cause) {
    throw new TypeError(`Invalid GitLab URL: ${String(server)}`, { cause });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`GitLab URL must use http or https, got ${url.protocol}`);
  }
  url.search = "";
  url.hash = "";
  let path = url.pathname.replace(/\/+$/, "");
  if (path.endsWith("/ci")) path = path.slice(0, -3);
  url.pathname = `${path}/api/v4/`;
  return url;
}

function jobCallResult(response: Response): JobCallResult {
  const jobStatus = response.headers.get("job-status") ?? undefined;
  return {
    status: response.status,
    jobStatus,
    updateInterval: parseUpdateInterval(response.headers.get("x-gitlab-trace-update-interval")),
    abort: response.status === 403 || jobStatus === "canceled" || jobStatus === "failed",
    cancelRequested: jobStatus === "canceling",
  };
}

function featuresBody(info: RunnerMetadata | undefined): Record<string, unknown> | undefined {
  if (!info) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) if (v !== undefined) out[k] = v;
  return out;
}

async function bodyText(response: Response): Promise<string> {
  try {
    return (await response.text()).slice(0, 1024);
  } catch {
    return "";
  }
}

function multipartStream(
  boundary: string,
  filename: string,
  file: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  const safeName = filename.replace(/["\r\n\\]/g, "_");
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${safeName}"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  const reader = file.getReader();
  let stage = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (stage === 0) {
        stage = 1;
        controller.enqueue(head);
        return;
      }
      if (stage === 1) {
        const { done, value } = await reader.read();
        if (!done) {
          if (value.byteLength > 0) controller.enqueue(value);
          return;
        }
        stage = 2;
        controller.enqueue(tail);
        controller.close();
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/**
 * A client for GitLab's runner API.
 *
 * @example Ask the in-process mock for a job
 * ```ts
 * import { Client } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * const mock = new GitLabMock();
 * mock.job().script(["echo hi"]).enqueue();
 * const client = new Client(mock.url, { fetch: mock.fetch });
 * const result = await client.requestJob(mock.runnerToken);
 * if (result.type === "job" && result.job.ok) console.log(result.job.payload.id);
 * ```
 */
export class Client {
  #base: URL;
  #fetch: typeof fetch;
  #clock: Clock;
  #random: () => number;
  #userAgent: string;
  #maxAttempts: number;
  #requestTimeoutMs: number;

  /** Creates a client for the GitLab at `server` (e.g. `https://gitlab.example.com`). */
  constructor(server: string | URL, options: ClientOptions = {}) {
    this.#base = apiBaseUrl(server);
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#userAgent = options.userAgent ?? "@x/gitlab-runner";
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 5 * 60_000;
  }

  /** The API base URL, ending in `/api/v4/`. */
  get baseUrl(): URL {
    return new URL(this.#base);
  }

  /**
   * `POST /runners/verify`: whether the runner token is valid. Also registers this runner
   * manager's `info` (features) with GitLab.
   */
  async verify(token: string, options: JobRequestOptions = {}): Promise<VerifyResult> {
    const body = { token, system_id: options.systemId, info: featuresBody(options.info) };
    const response = await this.#call("POST", "runners/verify", {
      json: body,
      headers: { "runner-token": token },
      signal: options.signal,
    });
    if (response.status === 200) {
      const text = await bodyText(response);
      try {
        const data = JSON.parse(text);
        if (data && typeof data === "object") {
          return {
            valid: true,
            id: typeof data.id === "number" ? data.id : undefined,
            tokenExpiresAt: typeof data.token_expires_at === "string"
              ? data.token_expires_at
              : undefined,
          };
        }
      } catch {
        // Older GitLab answers the text "200".
      }
      return { valid: true };
    }
    if (response.status === 403 || response.status === 422) {
      await response.body?.cancel().catch(() => {});
      return { valid: false, status: response.status };
    }
    throw new ApiError({
      status: response.status,
      endpoint: "POST /api/v4/runners/verify",
      body: await bodyText(response),
    });
  }

  /**
   * `POST /jobs/request`: asks for a job. 201 → a job (parsed leniently: a payload that cannot
   * be parsed still comes back, with `ok: false`, so it can be failed); 204 → none; 409 →
   * conflict. Any other status throws {@linkcode ApiError} (403: the token is invalid).
   */
  async requestJob(token: string, options: JobRequestOptions = {}): Promise<JobRequestResult> {
    const body: Record<string, unknown> = {
      info: featuresBody(options.info),
      token,
      system_id: options.systemId,
    };
    if (options.lastUpdate) body.last_update = options.lastUpdate;
    const response = await this.#call("POST", "jobs/request", {
      json: body,
      headers: { "runner-token": token },
      signal: options.signal,
      timeoutMs: this.#requestTimeoutMs,
    });
    const endpoint = "POST /api/v4/jobs/request";
    switch (response.status) {
      case 201: {
        let text: string;
        try {
          text = await response.text();
        } catch (cause) {
          // GitLab assigned a job whose payload never arrived: nothing can be done about it
          // here (no id, no token); the stuck-job sweeper will fail it.
          throw new RequestError(endpoint, cause);
        }
        return { type: "job", job: parseJobPayloadText(text) };
      }
      case 204: {
        await response.body?.cancel().catch(() => {});
        const lastUpdate = response.headers.get("x-gitlab-last-update") || undefined;
        return {
          type: "none",
          lastUpdate,
          longPolled: response.headers.get("gitlab-ci-builds-polling") === "yes",
        };
      }
      case 409:
        await response.body?.cancel().catch(() => {});
        return { type: "conflict" };
      default:
        throw new ApiError({ status: response.status, endpoint, body: await bodyText(response) });
    }
  }

  /**
   * `PUT /jobs/:id`: reports the job's state (keep-alive with `running`, or the final state).
   * Statuses other than 200/202/403/404/412 throw {@linkcode ApiError}, which the caller
   * retries.
   */
  async updateJob(
    id: number,
    token: string,
    update: JobUpdate,
    options: CallOptions = {},
  ): Promise<UpdateResult> {
    const body: Record<string, unknown> = {
      info: featuresBody(update.info),
      token,
      state: update.state,
    };
    if (update.failureReason !== undefined) body.failure_reason = update.failureReason;
    if (update.exitCode !== undefined && update.exitCode !== 0) body.exit_code = update.exitCode;
    if (update.output) {
      body.checksum = update.output.checksum;
      body.output = { checksum: update.output.checksum, bytesize: update.output.bytesize };
    }
    const path = `jobs/${id}`;
    const response = await this.#call("PUT", path, {
      json: body,
      headers: { "job-token": token },
      signal: options.signal,
    });
    const result = jobCallResult(response);
    await response.body?.cancel().catch(() => {});
    if (result.abort || response.status === 404) {
      return { ...result, abort: true, outcome: "abort" };
    }
    if (response.status === 200) return { ...result, outcome: "ok" };
    if (response.status === 202) return { ...result, outcome: "accepted" };
    if (response.status === 412) return { ...result, outcome: "reset" };
    throw new ApiError({ status: response.status, endpoint: `PUT /api/v4/${path}` });
  }

  /**
   * `PATCH /jobs/:id/trace`: appends log bytes at `offset`. A 416 comes back as
   * `outcome: "range"` with the server's offset. Statuses other than 202/403/404/416 (409, 5xx
   * after retries) throw {@linkcode ApiError}; the bytes are to be sent again later.
   */
  async patchTrace(id: number, token: string, options: PatchOptions): Promise<PatchResult> {
    const { offset, data } = options;
    const path = `jobs/${id}/trace`;
    const end = offset + data.byteLength - 1;
    const response = await this.#call("PATCH", path, {
      query: { debug_trace: options.debugTrace ? "true" : "false" },
      headers: {
        "job-token": token,
        "content-type": "text/plain",
        "content-range": `${offset}-${end}`,
      },
      body: data as Uint8Array<ArrayBuffer>,
      signal: options.signal,
    });
    const result = jobCallResult(response);
    const serverOffset = parseRangeEnd(response.headers.get("range"));
    await response.body?.cancel().catch(() => {});
    if (result.abort) return { ...result, outcome: "abort", serverOffset };
    if (response.status === 202) {
      return { ...result, outcome: "accepted", serverOffset: serverOffset ?? end + 1 };
    }
    if (response.status === 416) return { ...result, outcome: "range", serverOffset };
    if (response.status === 404) return { ...result, outcome: "not-found" };
    throw new ApiError({ status: response.status, endpoint: `PATCH /api/v4/${path}` });
  }

  /**
   * `POST /jobs/:id/artifacts`: uploads one artifact as a streamed multipart body with a single
   * part named `file`; `artifact_type`, `artifact_format` and `expire_in` go in the query
   * string. A 307/308 is followed with a fresh body (`JOB-TOKEN` only to GitLab's own origin).
   * Resolves on 201; any other status throws {@linkcode ApiError} (the caller's policy decides
   * on further tries).
   */
  async uploadArtifact(id: number, token: string, options: UploadOptions): Promise<void> {
    const path = `jobs/${id}/artifacts`;
    const query: Record<string, string> = {};
    if (options.artifactFormat) query.artifact_format = options.artifactFormat;
    if (options.artifactType) query.artifact_type = options.artifactType;
    if (options.expireIn) query.expire_in = options.expireIn;
    const boundary = `----gitlab-runner-ts-${crypto.randomUUID().replaceAll("-", "")}`;
    const endpoint = `POST /api/v4/${path}`;
    const request = (sendToken: boolean): CallRequest => ({
      headers: {
        ...(sendToken ? { "job-token": token } : {}),
        "content-type": `multipart/form-data; boundary=${boundary}`,
      },
      body: async () => {
        const file = await options.open();
        const stream = file instanceof Blob ? file.stream() : file;
        return multipartStream(boundary, options.filename, stream);
      },
      signal: options.signal,
      // A streamed body cannot be replayed by fetch: redirects are followed here.
      redirect: "manual",
    });
    let url = this.#url(path, query);
    let response = await this.#send("POST", () => url, endpoint, request(true));
    // 307/308 (e.g. a proxy in front of GitLab): send the upload again to the new location,
    // with a fresh body; JOB-TOKEN only goes along to GitLab's own origin.
    for (let hops = 0; response.status === 307 || response.status === 308; hops++) {
      const location = response.headers.get("location");
      await response.body?.cancel().catch(() => {});
      if (!location || hops >= MAX_REDIRECTS) break;
      url = new URL(location, url);
      const target = url;
      response = await this.#send(
        "POST",
        () => target,
        endpoint,
        request(target.origin === this.#base.origin),
      );
    }
    if (response.status === 201) {
      await response.body?.cancel().catch(() => {});
      return;
    }
    throw new ApiError({ status: response.status, endpoint, body: await bodyText(response) });
  }

  /**
   * `GET /jobs/:id/artifacts`: downloads a dependency's artifact with the dependency's token.
   * Redirects are followed by hand: `JOB-TOKEN` goes only to GitLab's own origin, never to
   * object storage elsewhere. Resolves to the 200 response (stream its body), or undefined on
   * 404 (no artifact). Other statuses throw {@linkcode ApiError}.
   */
  async downloadArtifact(
    id: number,
    token: string,
    options: DownloadOptions = {},
  ): Promise<Response | undefined> {
    const path = `jobs/${id}/artifacts`;
    const endpoint = `GET /api/v4/${path}`;
    let response = await this.#call("GET", path, {
      query: { direct_download: options.directDownload === false ? "false" : "true" },
      headers: { "job-token": token },
      signal: options.signal,
      redirect: "manual",
    });
    let url = this.#url(path);
    for (let hops = 0; isRedirect(response.status); hops++) {
      const location = response.headers.get("location");
      await response.body?.cancel().catch(() => {});
      if (!location || hops >= MAX_REDIRECTS) {
        throw new ApiError({
          status: response.status,
          endpoint,
          message: location
            ? `Too many redirects downloading ${endpoint}`
            : `GitLab answered ${response.status} without Location to ${endpoint}`,
        });
      }
      url = new URL(location, url);
      const sameOrigin = url.origin === this.#base.origin;
      const target = url;
      response = await this.#send(
        "GET",
        () => target,
        endpoint,
        {
          headers: sameOrigin ? { "job-token": token } : {},
          signal: options.signal,
          redirect: "manual",
        },
      );
    }
    if (response.status === 200) return response;
    if (response.status === 404) {
      await response.body?.cancel().catch(() => {});
      return undefined;
    }
    throw new ApiError({ status: response.status, endpoint, body: await bodyText(response) });
  }

  #url(path: string, query?: Record<string, string>): URL {
    const url = new URL(path, this.#base);
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
    return url;
  }

  #call(
    method: string,
    path: string,
    options: CallRequest,
  ): Promise<Response> {
    return this.#send(
      method,
      () => this.#url(path, options.query),
      `${method} /api/v4/${path}`,
      options,
    );
  }

  async #send(
    method: string,
    url: () => URL,
    endpoint: string,
    options: CallRequest,
  ): Promise<Response> {
    const attempt = async (): Promise<Response> => {
      const headers = new Headers({
        "user-agent": this.#userAgent,
        "x-request-id": crypto.randomUUID().replaceAll("-", ""),
      });
      for (const [k, v] of Object.entries(options.headers ?? {})) headers.set(k, v);
      let body: BodyInit | undefined;
      if (options.json !== undefined) {
        headers.set("content-type", "application/json");
        headers.set("accept", "application/json");
        body = JSON.stringify(options.json);
      } else if (typeof options.body === "function") {
        body = await options.body();
      } else {
        body = options.body;
      }
      const timeout = options.timeoutMs ? new AbortController() : undefined;
      const signals = [options.signal, timeout?.signal].filter((s): s is AbortSignal => !!s);
      const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
      const init: RequestInit & { duplex?: "half" } = {
        method,
        headers,
        body,
        signal,
        redirect: options.redirect ?? "follow",
      };
      if (body instanceof ReadableStream) init.duplex = "half";
      let timer: Promise<void> | undefined;
      // Only calls with a timeout pay for a controller (an abort builds an error object).
      const stopTimer = timeout ? new AbortController() : undefined;
      if (timeout && stopTimer && options.timeoutMs) {
        timer = this.#clock.sleep(options.timeoutMs, stopTimer.signal).then(
          () => timeout.abort(new DOMException("GitLab did not answer in time", "TimeoutError")),
          () => {},
        );
      }
      try {
        return await this.#fetch(url(), init);
      } catch (cause) {
        throw new RequestError(endpoint, cause);
      } finally {
        stopTimer?.abort(TIMER_DONE);
        await timer;
      }
    };
    return await fetchWithRetry(attempt, {
      clock: this.#clock,
      random: this.#random,
      maxAttempts: this.#maxAttempts,
      signal: options.signal,
    });
  }
}

interface CallRequest {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  json?: unknown;
  body?: BodyInit | (() => Promise<BodyInit>);
  signal?: AbortSignal;
  timeoutMs?: number;
  redirect?: RequestRedirect;
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}
