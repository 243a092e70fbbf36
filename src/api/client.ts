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
import { Masker } from "../log/masker.ts";
import { parseJobPayloadText, type ParseResult } from "./payload.ts";
import { fetchWithRetry, type RetryPolicy } from "./retry.ts";
import { startTimer } from "../_timer.ts";

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
   * How long a call may wait for GitLab's response headers, in milliseconds, redirects
   * included; then it is aborted and counts as a transient failure (retried like a 5xx).
   * GitLab holds long polls of `/jobs/request` for ~50 s, so keep it well above that.
   * Default 10 minutes, like the official runner's `ResponseHeaderTimeout` (CONFORMANCE C8.1).
   */
  headerTimeoutMs?: number;
  /**
   * How long reading a response body may wait for the next bytes, in milliseconds (a 201 job
   * payload, an artifact download, an error body). Default 2 minutes.
   */
  idleTimeoutMs?: number;
  /**
   * The largest job payload read, in bytes (default 64 MiB). A larger one is refused without
   * being read whole, and the job is failed with what its first bytes say (CONFORMANCE C10.3).
   */
  maxPayloadBytes?: number;
  /**
   * Called with every response GitLab sends (each attempt and redirect hop counts), for
   * request metrics: the endpoint's name as the official runner labels it (`request_job`,
   * `update_job`, `patch_trace`, `verify_runner`, `upload_artifacts`, `download_artifacts`),
   * the method, the status and the seconds until the headers came. Requests that got no answer
   * are not reported. Keep it cheap: it runs on the hot path (nothing is measured when unset).
   */
  onResponse?: ResponseObserver;
}

/**
 * Observer of {@linkcode ClientOptions.onResponse}: plain arguments, so that a call allocates
 * nothing for it.
 */
export type ResponseObserver = (
  endpoint: ApiEndpoint,
  method: string,
  status: number,
  seconds: number,
) => void;

/** The names of the API endpoints, as the official runner labels its request metrics. */
export type ApiEndpoint =
  | "verify_runner"
  | "request_job"
  | "update_job"
  | "patch_trace"
  | "upload_artifacts"
  | "download_artifacts";

/** Options shared by the calls. */
export interface CallOptions {
  /** Aborts the call, the attempt in flight included. */
  signal?: AbortSignal;
  /**
   * Ends the retries: no new attempt starts after it aborts and waits between attempts end
   * at once; the attempt in flight is let finish (e.g. a job request that may be assigning a
   * job).
   */
  stop?: AbortSignal;
  /** The retry policy of this call, instead of the client's generic one. */
  retry?: RetryPolicy;
  /** The response-header deadline of this call in milliseconds (default: the client's). */
  timeoutMs?: number;
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
  /** The log bytes: sent as they are, not copied, so unchanged until the call returned. */
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
/** Default response-header deadline (C8.1): the official runner's 10 minutes. */
export const DEFAULT_HEADER_TIMEOUT_MS = 10 * 60_000;
/** Default body idle deadline (C8.1). */
export const DEFAULT_IDLE_TIMEOUT_MS = 2 * 60_000;
/** Default job payload cap (C10.3). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
/** Decodes whole bodies (no streaming state: shared). */
const DECODER = new TextDecoder();
/** How much of an error body is read (it is kept to 1 KiB, masked). */
const ERROR_BODY_READ = 16 * 1024;
/**
 * PATCH bodies from this size on are handed to `fetch` as a one-chunk stream of the caller's
 * view: a `Uint8Array` body is copied by `fetch` (Deno, Node), a stream's chunk is not. With 16
 * chatty jobs each patch's 1 MiB copy was garbage the collector reclaimed late (bench 3g). Small
 * patches stay plain bytes (a stream costs more per request).
 */
const STREAMED_PATCH_BYTES = 64 * 1024;

/** A stream of the one chunk `data` (not copied: the caller keeps it unchanged until answered). */
function streamOf(data: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(data);
      controller.close();
    },
  });
}

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

/** The JSON of each `info` marked with {@linkcode constantInfo}, written once. */
const INFO_JSON = new WeakMap<RunnerMetadata, string>();

/**
 * Marks `info` as one that never changes (the runner's own, which nothing outside can reach):
 * the client then writes its JSON (~1 KB, every feature) once instead of with every request and
 * every update. Returns `info`.
 */
export function constantInfo<T extends RunnerMetadata>(info: T): T {
  INFO_JSON.set(info, JSON.stringify(featuresBody(info)));
  return info;
}

/**
 * The JSON text of `{ info, ...rest }`: `info` first, `undefined` members left out, as
 * `JSON.stringify` writes it.
 */
function jsonWithInfo(
  info: RunnerMetadata | undefined,
  rest: { token: string } & Record<string, unknown>,
): string {
  const tail = JSON.stringify(rest);
  if (!info) return tail;
  const json = INFO_JSON.get(info) ?? JSON.stringify(featuresBody(info));
  // `rest` has a token: `tail` is `{"token":…}`, never `{}`.
  return `{"info":${json},${tail.slice(1)}`;
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
 * The runtime's own `fetch`, as it was when this module was evaluated. With `redirect:
 * "manual"` it answers from the very URL asked, so its answers need no URL check.
 */
const RUNTIME_FETCH = globalThis.fetch;

/**
 * A client for GitLab's runner API.
 *
 * @example Ask the in-process mock for a job
 * ```ts
 * import { Client } from "@x/gitlab-runner/client";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const job = mock.job().script(["echo hi"]).enqueue();
 * const client = new Client(mock.url, { fetch: mock.fetch });
 * const result = await client.requestJob(mock.runnerToken);
 * if (result.type !== "job" || !result.job.ok) throw new Error("no job");
 * strictEqual(result.job.payload.id, job.id);
 * ```
 */
export class Client {
  #base: URL;
  #fetch: typeof fetch;
  /** `#fetch` is the runtime's own: its answers come from the URL asked (see `#once`). */
  #runtimeFetch: boolean;
  #clock: Clock;
  #random: () => number;
  #userAgent: string;
  #maxAttempts: number;
  #headerTimeoutMs: number;
  #idleTimeoutMs: number;
  #maxPayloadBytes: number;
  #onResponse: ResponseObserver | undefined;

  /** Creates a client for the GitLab at `server` (e.g. `https://gitlab.example.com`). */
  constructor(server: string | URL, options: ClientOptions = {}) {
    this.#base = apiBaseUrl(server);
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#runtimeFetch = options.fetch === undefined && globalThis.fetch === RUNTIME_FETCH;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#userAgent = options.userAgent ?? "@x/gitlab-runner";
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#headerTimeoutMs = positiveOr(options.headerTimeoutMs, DEFAULT_HEADER_TIMEOUT_MS);
    this.#idleTimeoutMs = positiveOr(options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS);
    this.#maxPayloadBytes = positiveOr(options.maxPayloadBytes, DEFAULT_MAX_PAYLOAD_BYTES);
    this.#onResponse = options.onResponse;
  }

  /** The API base URL, ending in `/api/v4/`. */
  get baseUrl(): URL {
    return new URL(this.#base);
  }

  /**
   * `POST /runners/verify`: whether the runner token is valid. Also registers this runner
   * manager's `info` (features) with GitLab. Only an answer from GitLab's own origin counts: a
   * redirect elsewhere is a {@linkcode RequestError} (CONFORMANCE C9.1).
   */
  async verify(token: string, options: JobRequestOptions = {}): Promise<VerifyResult> {
    const body = { token, system_id: options.systemId, info: featuresBody(options.info) };
    const endpoint = "POST /api/v4/runners/verify";
    const { response, abort } = await this.#call("POST", "runners/verify", {
      api: "verify_runner",
      json: body,
      headers: { "runner-token": token },
    }, options);
    if (response.status === 200) {
      const text = await this.#readText(response, abort, endpoint, 64 * 1024, [token]);
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
    throw await this.#apiError(response, endpoint, [token]);
  }

  /**
   * `POST /jobs/request`: asks for a job. 201 → a job (parsed leniently: a payload that cannot
   * be parsed, is larger than `maxPayloadBytes`, or stalls past the idle deadline still comes
   * back, with `ok: false` and the id and token its first bytes name, so it can be failed);
   * 204 → none; 409 → conflict. Any other status throws {@linkcode ApiError} (403: the token
   * is invalid).
   */
  async requestJob(token: string, options: JobRequestOptions = {}): Promise<JobRequestResult> {
    const body: { token: string } & Record<string, unknown> = {
      token,
      system_id: options.systemId,
    };
    if (options.lastUpdate) body.last_update = options.lastUpdate;
    const endpoint = "POST /api/v4/jobs/request";
    const { response, abort } = await this.#call("POST", "jobs/request", {
      api: "request_job",
      json: jsonWithInfo(options.info, body),
      jsonIsText: true,
      headers: { "runner-token": token },
    }, options);
    switch (response.status) {
      case 201:
        return { type: "job", job: await this.#readPayload(response, abort, endpoint) };
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
        throw await this.#apiError(response, endpoint, [token]);
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
    const body: { token: string } & Record<string, unknown> = { token, state: update.state };
    if (update.failureReason !== undefined) body.failure_reason = update.failureReason;
    if (update.exitCode !== undefined && update.exitCode !== 0) body.exit_code = update.exitCode;
    if (update.output) {
      body.checksum = update.output.checksum;
      body.output = { checksum: update.output.checksum, bytesize: update.output.bytesize };
    }
    const path = `jobs/${id}`;
    const { response } = await this.#call("PUT", path, {
      api: "update_job",
      json: jsonWithInfo(update.info, body),
      jsonIsText: true,
      headers: { "job-token": token },
      discardsBody: true,
    }, options);
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
    const { response } = await this.#call("PATCH", path, {
      api: "patch_trace",
      query: { debug_trace: options.debugTrace ? "true" : "false" },
      headers: {
        "job-token": token,
        "content-type": "text/plain",
        "content-range": `${offset}-${end}`,
        // A streamed body (below) carries its length where the runtime lets it (Node's fetch
        // sends it; Deno's drops it and sends the body chunked).
        "content-length": String(data.byteLength),
      },
      body: data.byteLength >= STREAMED_PATCH_BYTES
        ? () => Promise.resolve(streamOf(data))
        : data as Uint8Array<ArrayBuffer>,
      discardsBody: true,
    }, options);
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
   * string. A 307/308 to GitLab's own origin is followed with a fresh body; a redirect to
   * another origin is a {@linkcode RequestError} (the job token stays with GitLab). Resolves on
   * 201; any other status throws {@linkcode ApiError} (the caller's policy decides on further
   * tries).
   */
  async uploadArtifact(id: number, token: string, options: UploadOptions): Promise<void> {
    const path = `jobs/${id}/artifacts`;
    const query: Record<string, string> = {};
    if (options.artifactFormat) query.artifact_format = options.artifactFormat;
    if (options.artifactType) query.artifact_type = options.artifactType;
    if (options.expireIn) query.expire_in = options.expireIn;
    const boundary = `----gitlab-runner-ts-${crypto.randomUUID().replaceAll("-", "")}`;
    const endpoint = `POST /api/v4/${path}`;
    const { response } = await this.#call("POST", path, {
      api: "upload_artifacts",
      query,
      headers: {
        "job-token": token,
        "content-type": `multipart/form-data; boundary=${boundary}`,
      },
      body: async () => {
        const file = await options.open();
        const stream = file instanceof Blob ? file.stream() : file;
        return multipartStream(boundary, options.filename, stream);
      },
    }, options);
    if (response.status === 201) {
      await response.body?.cancel().catch(() => {});
      return;
    }
    throw await this.#apiError(response, endpoint, [token]);
  }

  /**
   * `GET /jobs/:id/artifacts`: downloads a dependency's artifact with the dependency's token.
   * Redirects are followed by hand: `JOB-TOKEN` goes only to GitLab's own origin, never to
   * object storage elsewhere, and only `http:`/`https:` targets are followed. Resolves to the
   * 200 response (stream its body: a body that stalls past the idle deadline errors), or
   * undefined on 404 (no artifact). Other statuses throw {@linkcode ApiError}.
   */
  async downloadArtifact(
    id: number,
    token: string,
    options: DownloadOptions = {},
  ): Promise<Response | undefined> {
    const path = `jobs/${id}/artifacts`;
    const endpoint = `GET /api/v4/${path}`;
    const { response, abort } = await this.#call("GET", path, {
      api: "download_artifacts",
      query: { direct_download: options.directDownload === false ? "false" : "true" },
      headers: { "job-token": token },
      // Object storage elsewhere gets the request, without the token.
      crossOrigin: "strip-credentials",
    }, options);
    if (response.status === 200) {
      const body = response.body ? this.#idleGuarded(response.body, abort, endpoint) : null;
      const guarded = new Response(body, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
      });
      Object.defineProperty(guarded, "url", { value: response.url });
      return guarded;
    }
    if (response.status === 404) {
      await response.body?.cancel().catch(() => {});
      return undefined;
    }
    if (isRedirect(response.status)) {
      await response.body?.cancel().catch(() => {});
      const location = response.headers.get("location");
      throw new ApiError({
        status: response.status,
        endpoint,
        message: location
          ? `Too many redirects downloading ${endpoint}`
          : `GitLab answered ${response.status} without Location to ${endpoint}`,
      });
    }
    throw await this.#apiError(response, endpoint, [token]);
  }

  /**
   * The URL of an endpoint, as a string. Paths and query values of plain characters (all the
   * runner's own calls) are appended to the base as they are, which is what `URL` and
   * `searchParams` would make of them, without parsing anything; others go through `URL`.
   */
  #url(path: string, query?: Record<string, string>): string {
    let plain = PLAIN_PATH.test(path);
    let search = "";
    if (query) {
      for (const k of Object.keys(query)) {
        const v = query[k];
        if (!PLAIN_QUERY.test(k) || !PLAIN_QUERY.test(v)) plain = false;
        search += `${search ? "&" : "?"}${k}=${v}`;
      }
    }
    if (plain) return this.#base.href + path + search;
    const url = new URL(path, this.#base);
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
    return url.href;
  }

  /**
   * One call under the request policy: each attempt has a response-header deadline and follows
   * redirects by hand (C9.1, C9.2); transport errors, missed deadlines and retryable statuses
   * are retried (C8.1). Resolves to the final response and the abort of its attempt (to stop
   * reading its body).
   */
  async #call(
    method: string,
    path: string,
    request: CallRequest,
    options: CallOptions,
  ): Promise<Attempt> {
    const endpoint = `${method} /api/v4/${path}`;
    const start = this.#url(path, request.query);
    let last: Attempt | undefined;
    const policy = options.retry ?? {};
    const response = await fetchWithRetry(async () => {
      last = await this.#attempt(method, start, endpoint, request, options);
      return last.response;
    }, {
      clock: this.#clock,
      random: this.#random,
      attempts: policy.attempts ?? this.#maxAttempts,
      deadlineMs: policy.deadlineMs,
      minBackoffMs: policy.minBackoffMs,
      maxBackoffMs: policy.maxBackoffMs,
      signal: options.signal,
      stop: options.stop,
      retryError: (error) => error instanceof RequestError && error.transient,
    });
    return last && last.response === response ? last : { response, abort: () => {} };
  }

  async #attempt(
    method: string,
    start: string,
    endpoint: string,
    request: CallRequest,
    options: CallOptions,
  ): Promise<Attempt> {
    const ctl = new AbortController();
    const outer = options.signal;
    // The call's signal reaches fetch through one signal with the header deadline's. Where the
    // body is read after the call, that is `AbortSignal.any` (it also aborts the body stream);
    // where the caller discards the body, a listener until the attempt ends does the same for
    // less (`AbortSignal.any` costs ~10 µs a call, and two such calls end every job).
    let forward: (() => void) | undefined;
    let signal = ctl.signal;
    if (outer && !request.discardsBody) signal = AbortSignal.any([outer, ctl.signal]);
    else if (outer) {
      forward = () => ctl.abort(outer.reason);
      if (outer.aborted) forward();
      else outer.addEventListener("abort", forward, { once: true });
    }
    const abort = (reason: unknown) => ctl.abort(reason);
    const timeoutMs = positiveOr(options.timeoutMs, this.#headerTimeoutMs);
    const stopTimer = startTimer(
      this.#clock,
      timeoutMs,
      () => ctl.abort(new DOMException(`No answer within ${timeoutMs} ms`, "TimeoutError")),
    );
    let url: string | URL = start;
    let credentials = true;
    try {
      for (let hops = 0;; hops++) {
        const response = await this.#once(method, url, request, credentials, signal, endpoint);
        if (!isRedirect(response.status)) return { response, abort };
        const location = response.headers.get("location");
        // 301/302/303 turn other methods into GET in fetch: such a redirect is not followed,
        // the caller sees the 3xx (C9.1).
        const follows = location !== null && hops < MAX_REDIRECTS &&
          (method === "GET" || method === "HEAD" || response.status === 307 ||
            response.status === 308);
        if (!follows) return { response, abort };
        await response.body?.cancel().catch(() => {});
        let target: URL;
        try {
          target = new URL(location, url);
        } catch (cause) {
          throw new RequestError(endpoint, cause, { message: "an invalid redirect Location" });
        }
        if (target.protocol !== "http:" && target.protocol !== "https:") {
          throw new RequestError(endpoint, undefined, {
            message: `a redirect to a ${target.protocol} URL: only http and https are followed`,
          });
        }
        if (target.origin !== this.#base.origin) {
          if (request.crossOrigin !== "strip-credentials") {
            throw new RequestError(endpoint, undefined, {
              message: `a redirect to another origin (${target.origin}), not followed: ` +
                "the token is only sent to GitLab",
            });
          }
          credentials = false;
        }
        url = target;
      }
    } catch (error) {
      if (error instanceof RequestError) throw error;
      const timedOut = ctl.signal.aborted && !options.signal?.aborted;
      throw new RequestError(endpoint, timedOut ? ctl.signal.reason : error, {
        transient: !options.signal?.aborted,
      });
    } finally {
      if (forward) outer?.removeEventListener("abort", forward);
      const released = stopTimer();
      if (released) await released;
    }
  }

  async #once(
    method: string,
    url: string | URL,
    request: CallRequest,
    credentials: boolean,
    signal: AbortSignal,
    endpoint: string,
  ): Promise<Response> {
    // A plain record (lower-case names): fetch builds its one Headers object from it.
    const headers: Record<string, string> = {
      "user-agent": this.#userAgent,
      "x-request-id": crypto.randomUUID().replaceAll("-", ""),
    };
    const extra = request.headers;
    if (extra) {
      for (const k of Object.keys(extra)) {
        if (credentials || !CREDENTIAL_HEADERS.has(k)) headers[k] = extra[k];
      }
    }
    let body: BodyInit | undefined;
    if (request.json !== undefined) {
      headers["content-type"] = "application/json";
      headers["accept"] = "application/json";
      body = request.jsonIsText ? request.json as string : JSON.stringify(request.json);
    } else if (typeof request.body === "function") {
      body = await request.body();
    } else {
      body = request.body;
    }
    const init: RequestInit & { duplex?: "half" } = {
      method,
      headers,
      body,
      signal,
      redirect: "manual",
    };
    if (body instanceof ReadableStream) init.duplex = "half";
    const observe = this.#onResponse;
    const sent = observe === undefined ? 0 : this.#clock.now();
    const response = await this.#fetch(url, init);
    if (observe !== undefined) {
      try {
        observe(request.api, method, response.status, (this.#clock.now() - sent) / 1000);
      } catch {
        // A metrics observer never breaks a call.
      }
    }
    // A custom fetch that follows redirects itself must not make another origin's answer count,
    // nor one from a URL that is not http(s) (C9.1, C9.2). An answer from the very URL asked
    // (the usual case) is neither; the runtime's own fetch (`redirect: "manual"`) only gives
    // those, so its answers are not looked at: `Response.url` is computed at each read (Deno
    // parses the URL and strips the fragment, ~8 µs), and read once where it is needed.
    if (this.#runtimeFetch) return response;
    const answered = response.url;
    if (answered && answered !== (typeof url === "string" ? url : url.href)) {
      let final: URL | undefined;
      try {
        final = new URL(answered);
      } catch {
        final = undefined;
      }
      const refused = final === undefined
        ? "an answer from a malformed URL"
        : final.protocol !== "http:" && final.protocol !== "https:"
        ? `an answer from a ${final.protocol} URL: only http and https are followed`
        : credentials && final.origin !== new URL(url).origin
        ? `an answer from another origin (${final.origin}), which is not GitLab's`
        : undefined;
      if (refused) {
        await response.body?.cancel().catch(() => {});
        throw new RequestError(endpoint, undefined, { message: refused });
      }
    }
    return response;
  }

  /** Reads a body as text: at most `limit` bytes, each read within the idle deadline. */
  async #readText(
    response: Response,
    abort: (reason: unknown) => void,
    endpoint: string,
    limit: number,
    secrets: readonly string[] = [],
  ): Promise<string> {
    const { bytes } = await this.#readBytes(response, abort, endpoint, limit, false);
    return maskSecrets(DECODER.decode(bytes), secrets);
  }

  /**
   * Reads up to `limit` bytes of a body. With `partial`, a read that fails (idle deadline,
   * dropped connection) or a body over the limit resolves with what came so far and why.
   */
  async #readBytes(
    response: Response,
    abort: (reason: unknown) => void,
    endpoint: string,
    limit: number,
    partial: boolean,
  ): Promise<{ bytes: Uint8Array; error?: RequestError; overLimit?: boolean }> {
    if (!response.body) return { bytes: new Uint8Array(0) };
    const reader = bodyReader(response.body, response.headers, limit);
    const chunks: Uint8Array[] = [];
    let size = 0;
    const done = (error?: RequestError, overLimit?: boolean) => {
      if (chunks.length === 1 && size <= limit) return { bytes: chunks[0], error, overLimit };
      const bytes = new Uint8Array(Math.min(size, limit));
      let at = 0;
      for (const c of chunks) {
        const n = Math.min(c.byteLength, bytes.byteLength - at);
        bytes.set(c.subarray(0, n), at);
        at += n;
      }
      return { bytes, error, overLimit };
    };
    // A body read to its end keeps its reader's lock: the stream is closed and nobody reads it
    // again, and releasing builds two `TypeError`s (closedness, pending reads) each time.
    let ended = false;
    try {
      for (;;) {
        const { done: end, value } = await this.#idleRead(reader, abort, endpoint);
        if (end) {
          ended = true;
          return done();
        }
        chunks.push(value);
        size += value.byteLength;
        if (size > limit) {
          await reader.cancel().catch(() => {});
          abort(TIMER_DONE);
          if (!partial) return done();
          return done(undefined, true);
        }
      }
    } catch (error) {
      const failure = error instanceof RequestError ? error : new RequestError(endpoint, error);
      if (!partial) throw failure;
      return done(failure);
    } finally {
      if (!ended) reader.releaseLock();
    }
  }

  /** One read of a body, failing with a {@linkcode RequestError} past the idle deadline. */
  async #idleRead(
    reader: ChunkReader,
    abort: (reason: unknown) => void,
    endpoint: string,
  ): Promise<ReadableStreamReadResult<Uint8Array>> {
    let timedOut = false;
    const idle = this.#idleTimeoutMs;
    const stopTimer = startTimer(this.#clock, idle, () => {
      timedOut = true;
      const reason = new DOMException(`No data for ${idle} ms`, "TimeoutError");
      abort(reason);
      reader.cancel(reason).catch(() => {});
    });
    try {
      const result = await reader.read();
      if (timedOut) throw new DOMException(`No data for ${idle} ms`, "TimeoutError");
      return result;
    } catch (error) {
      throw new RequestError(
        endpoint,
        timedOut ? new DOMException(`No data for ${idle} ms`, "TimeoutError") : error,
      );
    } finally {
      const released = stopTimer();
      if (released) await released;
    }
  }

  /** A body stream whose reads fail past the idle deadline. */
  #idleGuarded(
    body: ReadableStream<Uint8Array>,
    abort: (reason: unknown) => void,
    endpoint: string,
  ): ReadableStream<Uint8Array> {
    const reader = body.getReader();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { done, value } = await this.#idleRead(reader, abort, endpoint);
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /**
   * The 201 payload: at most `maxPayloadBytes`, each read within the idle deadline. A payload
   * that is too large or stalls is not lost: its first bytes name the job's id and token, so
   * the job can be failed with the reason.
   */
  async #readPayload(
    response: Response,
    abort: (reason: unknown) => void,
    endpoint: string,
  ): Promise<ParseResult> {
    const limit = this.#maxPayloadBytes;
    const declared = Number(response.headers.get("content-length"));
    let prefix: Uint8Array;
    let why: string | undefined;
    if (Number.isFinite(declared) && declared > limit) {
      // Only the head is read, for the id and token.
      ({ bytes: prefix } = await this.#readBytes(response, abort, endpoint, 64 * 1024, true));
      why = `the job payload of ${declared} bytes exceeds the limit of ${limit} bytes`;
    } else {
      const read = await this.#readBytes(response, abort, endpoint, limit, true);
      prefix = read.bytes;
      if (read.overLimit) why = `the job payload exceeds the limit of ${limit} bytes`;
      else if (read.error) why = `the job payload could not be read: ${read.error.message}`;
      else return parseJobPayloadText(DECODER.decode(prefix));
    }
    const head = DECODER.decode(prefix.subarray(0, 64 * 1024));
    const parsed = parseJobPayloadText(head);
    if (parsed.ok) {
      return { ok: false, error: why, id: parsed.payload.id, token: parsed.payload.token };
    }
    return { ...parsed, error: why };
  }

  /** An {@linkcode ApiError} with the start of the body, tokens masked (C9.4). */
  async #apiError(response: Response, endpoint: string, secrets: readonly string[]) {
    let body = "";
    try {
      body = await this.#readText(response, () => {}, endpoint, ERROR_BODY_READ, secrets);
    } catch {
      body = "";
    }
    return new ApiError({ status: response.status, endpoint, body });
  }
}

/** What {@linkcode Client} reads a body through: its chunks, a cancel, the lock's release. */
interface ChunkReader {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
  releaseLock(): void;
}

/** The buffer a body is read into when it does not say its length. */
const BYOB_READ_BYTES = 16 * 1024;
/** The largest buffer a body is read into (what Deno's default reader takes for each read). */
const BYOB_MAX_READ_BYTES = 64 * 1024;

/**
 * A reader of a body's chunks. A byte stream (the body of a response from the network) is read
 * into a buffer of this reader's, sized by the declared length (at most `limit` + 1 and 64 KiB),
 * where Deno's default reader allocates 64 KiB for each read. A read that fills at least 7/8 of
 * its buffer hands the buffer out as it is (what is held stays within 8/7 of what was read), and
 * the next read gets a new one, sized by what the declared length leaves (one byte, to see the
 * end, when all came): a payload that comes in one read is never copied. A smaller read is
 * copied out and its buffer read into again. Either way, what was read stays whole if a later
 * read fails. Other streams (a `fetch` of the
 * application's, a mock's) are read as they are.
 */
function bodyReader(
  body: ReadableStream<Uint8Array>,
  headers: Headers,
  limit: number,
): ChunkReader {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    return body.getReader();
  }
  const declared = Number(headers.get("content-length"));
  const known = Number.isSafeInteger(declared) && declared > 0;
  const size = Math.min(known ? declared + 1 : BYOB_READ_BYTES, limit + 1, BYOB_MAX_READ_BYTES);
  let buffer = new ArrayBuffer(size);
  let received = 0;
  return {
    async read() {
      const result = await byob.read(new Uint8Array(buffer));
      if (result.done) return { done: true, value: undefined };
      const value = result.value;
      const filled = value.buffer as ArrayBuffer;
      received += value.byteLength;
      if (value.byteLength * 8 < filled.byteLength * 7) {
        buffer = filled;
        return { done: false, value: value.slice() };
      }
      buffer = new ArrayBuffer(
        known && received <= declared ? Math.min(declared - received + 1, size) : size,
      );
      return { done: false, value };
    },
    cancel: (reason) => byob.cancel(reason),
    releaseLock: () => byob.releaseLock(),
  };
}

/** A path the runner builds (`jobs/7/trace`): appended to the base as it is. */
const PLAIN_PATH = /^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*$/;
/** A query key or value that `searchParams` would write as it is. */
const PLAIN_QUERY = /^[A-Za-z0-9_.-]*$/;

/** The token headers a cross-origin hop of a download never carries. */
const CREDENTIAL_HEADERS = new Set(["job-token", "runner-token", "private-token", "authorization"]);

/** Masks the given secrets and every GitLab token-shaped string (C9.4). */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  if (text === "") return text;
  return new Masker({ secrets: secrets.filter((s) => s.length > 0) }).mask(text);
}

function positiveOr(value: number | undefined, fallback: number): number {
  return value !== undefined && value > 0 ? value : fallback;
}

interface Attempt {
  response: Response;
  /** Aborts the attempt's request (its body). */
  abort: (reason: unknown) => void;
}

interface CallRequest {
  /** The endpoint's name for {@linkcode ClientOptions.onResponse}. */
  api: ApiEndpoint;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  json?: unknown;
  /** `json` is already the JSON text to send. */
  jsonIsText?: boolean;
  body?: BodyInit | (() => Promise<BodyInit>);
  /**
   * A redirect to another origin: an error (default), or followed without the token headers
   * (artifact downloads from object storage).
   */
  crossOrigin?: "error" | "strip-credentials";
  /**
   * The caller cancels the answer's body as soon as the call returns (PATCH trace, PUT job):
   * the call's signal only has to reach the attempt, not a body read after it.
   */
  discardsBody?: boolean;
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}
