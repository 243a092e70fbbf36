/**
 * Public types of the GitLab mock.
 *
 * @module
 */

import type { Clock } from "../clock.ts";

/**
 * What a canceled job answers on its job-token calls (PUT, PATCH, artifact upload):
 *
 * - `"bare-forbidden"` (default): `403` without `Job-Status`, the harshest case a client must
 *   still treat as "abort".
 * - `"forbidden"`: `403` + `Job-Status: canceled` (newest Rails, `job_forbidden!`).
 * - `"job-status"`: older GitLab: PUT `200` / PATCH `202` with `Job-Status: canceled`.
 *
 * @example Pick the older GitLab behaviour
 * ```ts
 * import { GitLabMock, type CancelResponse } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const cancelResponse: CancelResponse = "job-status";
 * const mock = new GitLabMock({ cancelResponse });
 * const job = mock.job().enqueue();
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * mock.cancel(job.id); // the runner did not announce cancel_gracefully: canceled at once
 * const res = await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/trace`, {
 *   method: "PATCH",
 *   headers: { "job-token": job.token, "content-range": "0-2", "content-type": "text/plain" },
 *   body: "hi\n",
 * });
 * strictEqual(res.status, 202);
 * strictEqual(res.headers.get("job-status"), "canceled");
 * ```
 */
export type CancelResponse = "bare-forbidden" | "forbidden" | "job-status";

/**
 * The state of a job as GitLab stores it (`Job-Status` values the mock can produce).
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockJobState } from "@x/gitlab-runner/mock";
 * import { ok } from "node:assert";
 * const done: MockJobState[] = ["success", "failed", "canceled"];
 * const mock = new GitLabMock();
 * const job = mock.job().enqueue();
 * mock.cancel(job.id);
 * ok(done.includes(job.state));
 * ```
 */
export type MockJobState = "pending" | "running" | "canceling" | "canceled" | "success" | "failed";

/**
 * The endpoint a request was routed to. `object` is the object-storage origin a
 * `direct_download` redirect points to; `unknown` is anything else (answered 404/405).
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockRoute } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const route: MockRoute = "request";
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
 * strictEqual(mock.requestCount(route), 1);
 * strictEqual(mock.requests[0].route, route);
 * ```
 */
export type MockRoute =
  | "verify"
  | "unregister"
  | "request"
  | "update"
  | "trace"
  | "upload"
  | "download"
  | "object"
  | "unknown";

/**
 * Options of {@linkcode GitLabMock}.
 *
 * @example A mock with a fake clock, long polling and two 202s on the final update
 * ```ts
 * import { FakeClock } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const mock = new GitLabMock({ clock: new FakeClock(), longPollMs: 50_000, finalUpdateAccepts: 2 });
 * strictEqual(mock.runnerToken, "glrt-mock-runner-token");
 * ```
 */
export interface MockOptions {
  /** The runner authentication token the mock accepts (default `glrt-mock-runner-token`). */
  runnerToken?: string;
  /** Time source for long-poll holds, delays, backoffs and timestamps (default: system clock). */
  clock?: Clock;
  /**
   * How long a `/jobs/request` whose `last_update` is current is held, Workhorse-style
   * (default 0: no hold, an immediate 204 with `X-GitLab-Last-Update`).
   */
  longPollMs?: number;
  /** What job-token calls on a canceled job answer (default `"bare-forbidden"`). */
  cancelResponse?: CancelResponse;
  /** `X-GitLab-Trace-Update-Interval` on PATCH 202s (default 60; 3 while watched). */
  traceUpdateInterval?: number;
  /**
   * How many 202s a final PUT carrying `output.checksum` gets before it is accepted with 200
   * (default 0). Each 202 carries the backoff of GitLab's `Ci::Runner::Backoff`.
   */
  finalUpdateAccepts?: number;
  /** Server log limit in bytes (default 100 MB): beyond it the job fails `trace_size_exceeded`. */
  traceSizeLimit?: number;
  /**
   * Largest artifact file accepted in bytes (default 100 MB). Uploads are read as a stream: as
   * soon as the file part passes this size the answer is 413 and the rest of the body is not
   * read.
   */
  maxArtifactSize?: number;
  /**
   * Answer `GET /jobs/:id/artifacts?direct_download=true` with a 302 to a presigned URL on a
   * second origin (default false: 200 with the bytes).
   */
  downloadRedirect?: boolean;
  /**
   * Answer a first `POST /jobs/:id/artifacts` with a `307 Temporary Redirect`, as a proxy in
   * front of GitLab may (the official runner follows it), before authentication (the body is
   * read and dropped). The redirect keeps the path and query and adds `mock_redirected=1`,
   * which marks the second request:
   *
   * - `"none"` (default): no redirect, every upload is served.
   * - `"same-origin"`: to GitLab's own origin; the marked request is served as usual, so a
   *   client that follows with a fresh body gets its artifact stored.
   * - `"other-origin"`: to the object-storage origin ({@linkcode MockOptions.objectsUrl}
   *   in-process, {@linkcode MockServer.objectsUrl} on a listener). That origin plays a
   *   careless endpoint: it reads the body, stores nothing and answers `201` `"201"`, which a
   *   client that follows the redirect takes for success. Its requests are in
   *   {@linkcode GitLabMock.requests} (route `upload`, `url` on the objects origin) with their
   *   headers, so a test can tell whether `JOB-TOKEN` went along. A runner must not follow.
   *
   * @example A GitLab behind a proxy that redirects uploads elsewhere
   * ```ts
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock({ uploadRedirect: "other-origin" });
   * const res = await mock.fetch(`${mock.url}/api/v4/jobs/1/artifacts`, {
   *   method: "POST",
   *   redirect: "manual",
   * });
   * strictEqual(res.status, 307);
   * strictEqual(
   *   res.headers.get("location"),
   *   "http://objects.mock/api/v4/jobs/1/artifacts?mock_redirected=1",
   * );
   * ```
   */
  uploadRedirect?: "none" | "same-origin" | "other-origin";
  /** Random source in [0, 1) for fault probabilities (default: seeded, deterministic). */
  random?: () => number;
  /** Base URL for in-process use (default `http://gitlab.mock`). */
  baseUrl?: string;
  /** Origin of the object storage for in-process use (default `http://objects.mock`). */
  objectsUrl?: string;
  /** Id of the first job (default 1). */
  firstJobId?: number;
  /**
   * Which token a payload's `dependencies[].token` carries: `"dependency"` (default, the
   * dependency job's own token) or `"job"` (the running job's token, newer GitLab).
   */
  dependencyToken?: "dependency" | "job";
  /** Keep every request in {@linkcode GitLabMock.requests} (default true; counts are always kept). */
  recordRequests?: boolean;
  /**
   * The stuck-job sweeper (GitLab's `DropRunningService`): a running job that no runner call
   * reached for this long is failed `stuck_or_timeout_failure`, and later calls with its token
   * get 403 + `Job-Status: failed` (default 1 h, like GitLab; 0 turns the sweeper off).
   */
  stuckAfterMs?: number;
}

/**
 * A CI/CD variable of a job spec. Rendered as `{key, value, public, masked}` plus `file: true` /
 * `raw: true` only when true.
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockVariable } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const v: MockVariable = { key: "API_PASSWORD", value: "s3cr3t", masked: true };
 * const mock = new GitLabMock();
 * const job = mock.addJob({ variables: [v] });
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * const sent = (job.payload?.variables as { key: string }[]).find((x) => x.key === v.key);
 * deepStrictEqual(sent, { key: "API_PASSWORD", value: "s3cr3t", public: false, masked: true });
 * ```
 */
export interface MockVariable {
  /** Variable name; keys may repeat (the last one wins on the runner). */
  key: string;
  /** Value; `null` is sent as JSON null. */
  value: string | null;
  /** Masked in logs (default false). */
  masked?: boolean;
  /** Public (default: true unless masked or file). */
  public?: boolean;
  /** A file-type variable (default false). */
  file?: boolean;
  /** Not expanded (default false). */
  raw?: boolean;
}

/**
 * An extra step of a job (beyond `script` and `after_script`), e.g. `release`.
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockStep } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const step: MockStep = { name: "release", script: ["release-cli create"] };
 * const mock = new GitLabMock();
 * const job = mock.addJob({ script: ["make"], steps: [step] });
 * deepStrictEqual(job.requires, ["multi_build_steps"]); // else the job fails runner_unsupported
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({
 *     token: mock.runnerToken,
 *     info: { features: { multi_build_steps: true } },
 *   }),
 * });
 * deepStrictEqual((job.payload?.steps as MockStep[]).map((s) => s.name), ["script", "release"]);
 * ```
 */
export interface MockStep {
  /** Step name: `script`, `after_script`, `release` (GitLab sends nothing else). */
  name: string;
  /** Script lines. */
  script: string[];
  /** `on_success` (default), `on_failure` or `always`. */
  when?: string;
  /** Step timeout in seconds (default: the job timeout). */
  timeout?: number;
  /** Allowed to fail (default false). */
  allowFailure?: boolean;
}

/**
 * An `artifacts:` entry of a job spec. `artifactType` other than `archive` makes it a report
 * (rendered without `untracked`, `when: "always"` unless set, and requiring the runner feature
 * `upload_multiple_artifacts`); a non-empty `exclude` requires `artifacts_exclude`.
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockArtifactSpec } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const archive: MockArtifactSpec = { name: "bin", paths: ["out/"], expireIn: "1 week" };
 * const junit: MockArtifactSpec = { artifactType: "junit", paths: ["junit.xml"] };
 * const mock = new GitLabMock();
 * const job = mock.addJob({ artifacts: [archive, junit] });
 * deepStrictEqual(job.requires, ["upload_multiple_artifacts"]);
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({
 *     token: mock.runnerToken,
 *     info: { features: { upload_multiple_artifacts: true } },
 *   }),
 * });
 * const sent = job.payload?.artifacts as Record<string, unknown>[];
 * deepStrictEqual(sent.map((a) => [a.name, a.artifact_type, a.artifact_format, a.when]), [
 *   ["bin", "archive", "zip", "on_success"],
 *   ["junit.xml.gz", "junit", "gzip", "always"], // GitLab's file name for the type
 * ]);
 * ```
 */
export interface MockArtifactSpec {
  /** `name` (archive default null; reports default GitLab's file name for the type). */
  name?: string | null;
  /** `paths` (may be null: an untracked-only archive). */
  paths?: string[] | null;
  /** `untracked` (archive only; the key is omitted when unset). */
  untracked?: boolean;
  /** `when`: `on_success` (archive default), `on_failure`, `always` (report default). */
  when?: string | null;
  /** `expire_in`, e.g. `"1 week"` (default null). */
  expireIn?: string | null;
  /** `artifact_type` (default `archive`). */
  artifactType?: string;
  /** `artifact_format` (default: GitLab's pair for the type, e.g. `zip` for archive). */
  artifactFormat?: string;
  /** `exclude` patterns (sent only when non-empty). */
  exclude?: string[];
}

/**
 * A dependency of a job spec: a job id, a job name (the latest job with that name added before
 * this one), or an object.
 * With `artifacts: false` the payload entry has no `artifacts_file` (as if expired).
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockDependencySpec } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const zip = "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="; // an empty zip archive
 * mock.addJob({ name: "build", state: "success", artifactsFile: zip }); // job 1
 * mock.addJob({ name: "lint", state: "success", artifactsFile: zip }); // job 2
 * mock.addJob({ name: "docs", state: "success", artifactsFile: zip }); // job 3
 * const deps: MockDependencySpec[] = [1, "lint", { job: 3, artifacts: false }];
 * const job = mock.addJob({ name: "test", dependencies: deps });
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * const sent = job.payload?.dependencies as Record<string, unknown>[];
 * deepStrictEqual(sent.map((d) => [d.id, d.name, "artifacts_file" in d]), [
 *   [1, "build", true],
 *   [2, "lint", true],
 *   [3, "docs", false],
 * ]);
 * ```
 */
export type MockDependencySpec = number | string | { job: number | string; artifacts?: boolean };

/**
 * A cache entry of a job spec (rendered as `{key, untracked, paths, policy, when, fallback_keys}`,
 * the key followed by `-` and the entry's position).
 * Non-empty `fallbackKeys` require the runner feature `fallback_cache_keys`.
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockCacheSpec } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const cache: MockCacheSpec = { key: "deps", paths: ["vendor/"] };
 * const mock = new GitLabMock();
 * const job = mock.addJob({ cache: [cache] });
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * deepStrictEqual(job.payload?.cache, [{
 *   key: "deps-0",
 *   untracked: false,
 *   paths: ["vendor/"],
 *   policy: "pull-push",
 *   when: "on_success",
 *   fallback_keys: [],
 * }]);
 * ```
 */
export interface MockCacheSpec {
  /** Cache key. */
  key: string;
  /** Paths. */
  paths?: string[];
  /** Untracked files (default false). */
  untracked?: boolean;
  /** `pull-push` (default), `pull`, `push`. */
  policy?: string;
  /** `on_success` (default), `on_failure`, `always`. */
  when?: string;
  /** Fallback keys. */
  fallbackKeys?: string[];
}

/**
 * A job input as GitLab sends it (`inputs[]`). Not validated: hostile shapes go out as given.
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockJobInput } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const input: MockJobInput = { key: "env", value: { type: "string", content: "prod", sensitive: false } };
 * const mock = new GitLabMock();
 * const job = mock.addJob({ inputs: [input], script: ["deploy ${{ job.inputs.env }}"] });
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * deepStrictEqual(job.payload?.inputs, [input]); // sent as given
 * ```
 */
export interface MockJobInput {
  /** The input's name. */
  key: string;
  /** Type, content and sensitivity. */
  value: {
    /** `string`, `number`, `boolean`, `array` or `struct`. */
    type: string;
    /** The content (of that type). */
    content: unknown;
    /** Masked in the job log. */
    sensitive?: boolean;
  };
}

/**
 * A job as plain JSON-able data (what the command's `--jobs` file holds). Every field is
 * optional; the rendered payload follows GitLab's shape (PROTOCOL §4).
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockJobSpec } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const spec: MockJobSpec = { name: "build", script: ["make"], timeout: 600 };
 * const mock = new GitLabMock();
 * const job = mock.addJob(spec);
 * strictEqual(job.state, "pending");
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * strictEqual((job.payload?.runner_info as { timeout: number }).timeout, 600);
 * ```
 */
export interface MockJobSpec {
  /** Job name (default `job-<id>`). */
  name?: string;
  /** Stage (default `test`). */
  stage?: string;
  /** Initial state (default `pending`); a finished job is never handed out (e.g. a dependency). */
  state?: "pending" | "success" | "failed" | "canceled";
  /** Git ref (default `main`); a `refs/merge-requests/…` ref requires the `refspecs` feature. */
  ref?: string;
  /** `branch` (default) or `tag`. */
  refType?: "branch" | "tag";
  /** Commit SHA (default: derived from the job id). */
  sha?: string;
  /** Before SHA. */
  beforeSha?: string;
  /** Refspecs (default: the pipeline ref and the branch). */
  refspecs?: string[];
  /** Git depth (default 20). */
  depth?: number;
  /** Protected ref (default false). */
  protected?: boolean;
  /** Project id (default 42). */
  projectId?: number;
  /** Project path `group/project` (default `mock/project`). */
  projectPath?: string;
  /** Pipeline id (default 1000 + job id). */
  pipelineId?: number;
  /** Job variables after GitLab's predefined `CI_*` ones. */
  variables?: MockVariable[];
  /** `before_script` lines (joined with `script` into the `script` step). */
  beforeScript?: string[];
  /** `script` lines (default `["echo hello from the mock"]`). */
  script?: string[];
  /** `after_script` lines (the `after_script` step is sent only when set). */
  afterScript?: string[];
  /** Extra steps, sent between `script` and `after_script`. */
  steps?: MockStep[];
  /** `hooks` (default `[]`). */
  hooks?: { name: string; script: string[] }[];
  /** Job timeout in seconds: `runner_info.timeout` and the steps' timeout (default 3600). */
  timeout?: number;
  /** Image name or full object (default null). */
  image?: string | Record<string, unknown> | null;
  /** Services (names or full objects). */
  services?: (string | Record<string, unknown>)[];
  /** `artifacts:` entries (none: `"artifacts": null`). */
  artifacts?: MockArtifactSpec[];
  /** Cache entries. */
  cache?: MockCacheSpec[];
  /** Dependencies (jobs whose artifacts this job downloads). */
  dependencies?: MockDependencySpec[];
  /** Runner features the job needs in addition to those inferred from the spec. */
  requires?: string[];
  /** EE `secrets` (requires `vault_secrets`). */
  secrets?: Record<string, unknown>;
  /** An archive this job already has (bytes or base64), e.g. for a dependency that never runs. */
  artifactsFile?: Uint8Array | string;
  /** File name of {@linkcode MockJobSpec.artifactsFile} (default `artifacts.zip`). */
  artifactsFilename?: string;
  /**
   * Job inputs, sent as `inputs` exactly as given (`[{key, value: {type, content,
   * sensitive}}]`, GitLab 18.x+); the key is left out when unset.
   */
  inputs?: MockJobInput[];
  /**
   * `features.failure_reasons` (default: every reason of current GitLab); set an older list to
   * play a GitLab that does not know the 2026 reasons.
   */
  failureReasons?: string[];
  /** `features.token_mask_prefixes` (left out when unset). */
  tokenMaskPrefixes?: string[];
  /** `git_info.repo_object_format` (default `sha1`; `sha256` for SHA-256 repositories). */
  repoObjectFormat?: string;
  /** Top-level payload keys to set (a value of `undefined` removes the key). */
  payload?: Record<string, unknown>;
  /** Top-level payload keys to remove (JSON-friendly form of a removal). */
  omit?: string[];
}

/**
 * One parsed `PUT /jobs/:id` body the mock accepted past authentication.
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockUpdate } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual, strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const job = mock.job().enqueue();
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * const update: MockUpdate = {
 *   token: job.token,
 *   state: "success",
 *   output: { checksum: "crc32:00000000", bytesize: 0 },
 * };
 * await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}`, {
 *   method: "PUT",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify(update),
 * });
 * deepStrictEqual(job.finalUpdates, [update]);
 * strictEqual(job.state, "success");
 * ```
 */
export interface MockUpdate {
  /** The job token. */
  token?: string;
  /** The state sent. */
  state?: string;
  /** The failure reason sent. */
  failure_reason?: string;
  /** The exit code sent. */
  exit_code?: number;
  /** `{checksum, bytesize}` of the log as the runner sees it. */
  output?: { checksum?: string; bytesize?: number };
  /** Any other field. */
  [key: string]: unknown;
}

/**
 * An artifact the mock received (`POST /jobs/:id/artifacts`).
 *
 * @example
 * ```ts
 * import { GitLabMock, type MockArtifact } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual, strictEqual } from "node:assert";
 * function describe(a: MockArtifact): string {
 *   return `${a.type}/${a.format} ${a.filename} ${a.data.length} bytes`;
 * }
 * const mock = new GitLabMock();
 * const job = mock.job().enqueue();
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * const form = new FormData();
 * form.append("file", new Blob(["<testsuites/>"]), "junit.xml");
 * const res = await mock.fetch(
 *   `${mock.url}/api/v4/jobs/${job.id}/artifacts?artifact_type=junit&artifact_format=raw`,
 *   { method: "POST", headers: { "job-token": job.token }, body: form },
 * );
 * strictEqual(res.status, 201);
 * deepStrictEqual(job.artifacts.map(describe), ["junit/raw junit.xml 13 bytes"]);
 * ```
 */
export interface MockArtifact {
  /** File name of the `file` part. */
  filename: string;
  /** `artifact_type`. */
  type: string;
  /** `artifact_format`. */
  format: string;
  /** `expire_in`, when sent. */
  expireIn?: string;
  /** Content type of the `file` part. */
  contentType: string;
  /** The bytes. */
  data: Uint8Array;
  /** Where the parameters came from: the query string, form fields, or defaults. */
  paramsFrom: { type: "query" | "field" | "default"; format: "query" | "field" | "default" };
}

/**
 * A job of the mock, for inspection. Values are live: they change as the runner talks.
 *
 * @example
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const job = mock.job().name("build").enqueue();
 * deepStrictEqual([job.id, job.name, job.state, job.logSize], [1, "build", "pending", 0]);
 * ```
 */
export interface MockJob {
  /** Job id. */
  readonly id: number;
  /** Job token (`glcbt-64_…`). */
  readonly token: string;
  /** Job name. */
  readonly name: string;
  /** Current state. */
  readonly state: MockJobState;
  /** Failure reason as stored (unknown reasons become `unknown_failure`). */
  readonly failureReason?: string;
  /** Exit code stored by a `failed` update. */
  readonly exitCode?: number;
  /** The stored log (server-side masking applied). */
  readonly log: Uint8Array;
  /** The stored log decoded as UTF-8. */
  readonly logText: string;
  /** Size of the stored log in bytes (the offset the next PATCH must start at). */
  readonly logSize: number;
  /** `crc32:%08x` of the stored log, as the runner's `output.checksum` should be. */
  readonly logChecksum: string;
  /** Number of accepted (202) PATCHes. */
  readonly patches: number;
  /** Number of PATCH requests that reached this job (any answer). */
  readonly traceRequests: number;
  /** PUT bodies accepted past authentication, in order. */
  readonly updates: readonly MockUpdate[];
  /** The `success`/`failed` PUT bodies among {@linkcode MockJob.updates}. */
  readonly finalUpdates: readonly MockUpdate[];
  /** Uploaded artifacts, in order. */
  readonly artifacts: readonly MockArtifact[];
  /** The payload handed out (undefined until a runner took the job). */
  readonly payload?: Readonly<Record<string, unknown>>;
  /** The exact 201 body handed out (undefined until a runner took the job). */
  readonly payloadText?: string;
  /** `info.features` of the `/jobs/request` that took the job. */
  readonly runnerFeatures?: Readonly<Record<string, unknown>>;
  /** Runner features the job needs (from the spec and inferred). */
  readonly requires: readonly string[];
  /** Whether the runner sent `?debug_trace=true` on a PATCH. */
  readonly debugTrace: boolean;
  /** When the job was enqueued (clock ms). */
  readonly enqueuedAt: number;
  /** When a runner took the job (clock ms). */
  readonly pickedAt?: number;
  /** When the job reached a final state (clock ms). */
  readonly finishedAt?: number;
  /** The spec the job was created from. */
  readonly spec: Readonly<MockJobSpec>;
}

/**
 * A fault to inject on a route. The first matching fault with turns left is applied to a request
 * before the mock handles it: `delayMs` waits (on the clock) first; `drop` loses the connection
 * (`"before"`/`true`: the request never reaches the mock; `"after"`: it is handled, the answer is
 * lost); `status` answers that status with `headers`/`body` instead of handling the request.
 *
 * @example Three 502s, then a 429 with Retry-After, then a random 10 % of dropped PATCHes
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * mock.fault({ route: "request", status: 502, times: 3 });
 * mock.fault({ route: "update", status: 429, headers: { "Retry-After": "60" } });
 * mock.fault({ route: "trace", drop: true, probability: 0.1, times: Infinity });
 * const statuses: number[] = [];
 * for (let i = 0; i < 4; i++) {
 *   const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *     method: "POST",
 *     body: "{}",
 *   });
 *   statuses.push(res.status);
 * }
 * deepStrictEqual(statuses, [502, 502, 502, 400]); // then handled: the body has no token
 * ```
 */
export interface MockFault {
  /** Route to affect, or `"*"` for every route. */
  route: MockRoute | "*";
  /** Only requests for this job id. */
  jobId?: number;
  /** Answer this status instead of handling the request. */
  status?: number;
  /** Headers of the fault answer. */
  headers?: Record<string, string>;
  /** Body of the fault answer (objects are sent as JSON; default a Rails-style message). */
  body?: string | Record<string, unknown> | null;
  /** How many requests the fault applies to (default 1; `Infinity` for always). */
  times?: number;
  /** Chance in [0, 1] that a matching request is affected (default 1). */
  probability?: number;
  /** Lose the connection (`true` = `"before"`). */
  drop?: boolean | "before" | "after";
  /** Wait this long (on the mock's clock) before answering. */
  delayMs?: number;
  /**
   * Accept the request and never answer (until the client gives up or the mock closes): a
   * GitLab or proxy that hangs.
   */
  hang?: boolean;
  /**
   * Handle the request, send the answer's headers and this many bytes of its body (`true`:
   * half of it), then stall: the body never ends until the client gives up.
   */
  stallBody?: boolean | number;
}

/**
 * One request the mock received.
 *
 * @example
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { deepStrictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
 * const [req] = mock.requests;
 * deepStrictEqual([req.route, req.method, req.path, req.status, req.done], [
 *   "request",
 *   "POST",
 *   "/api/v4/jobs/request",
 *   400,
 *   true,
 * ]);
 * ```
 */
export interface MockRequest {
  /** The route. */
  route: MockRoute;
  /** HTTP method. */
  method: string;
  /** URL path. */
  path: string;
  /** Full URL. */
  url: string;
  /** Status answered; 0 while in flight, or when the connection was dropped or the client went away. */
  status: number;
  /** Whether the request was answered (or dropped) already; false while in flight (e.g. a held long poll). */
  done: boolean;
  /** Job id in the path. */
  jobId?: number;
  /** Copy of the request headers. */
  headers: Headers;
  /** Parsed JSON/form body of `verify`, `request`, `update` and `unregister` calls. */
  body?: unknown;
  /** Whether an injected fault answered (or dropped) the request. */
  faulted: boolean;
  /** Clock time of arrival (ms). */
  at: number;
}

/**
 * Options of {@linkcode GitLabMock.listen}.
 *
 * @example
 * ```ts
 * import { GitLabMock, type ListenOptions } from "@x/gitlab-runner/mock";
 * import { ok, strictEqual } from "node:assert";
 * const options: ListenOptions = { hostname: "127.0.0.1", port: 0 };
 * await using server = await new GitLabMock().listen(options);
 * ok(server.port > 0); // port 0: any free port
 * strictEqual(server.url, `http://127.0.0.1:${server.port}`);
 * strictEqual(server.objectsUrl, `http://localhost:${server.port}`);
 * ```
 */
export interface ListenOptions {
  /** Port (default 0: any free port). */
  port?: number;
  /** Interface (default `127.0.0.1`). */
  hostname?: string;
  /**
   * Host name of the object-storage origin redirects point to: the same port under another name
   * (default: `localhost` when serving on `127.0.0.1`, else `127.0.0.1`).
   */
  objectsHostname?: string;
  /**
   * HTTP server to use: `"deno"` (`Deno.serve`) or `"node"` (`node:http`, which also runs on
   * Deno). Default: `Deno.serve` when available. Only `node:http` can drop a connection before
   * the status line; `Deno.serve` drops it while sending the body (status 502).
   */
  server?: "deno" | "node";
}

/**
 * A listening mock (from {@linkcode GitLabMock.listen}).
 *
 * @example
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { ok, strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const server = await mock.listen();
 * strictEqual(server.hostname, "127.0.0.1");
 * ok(server.url.startsWith("http://127.0.0.1:"));
 * await server.close();
 * ```
 */
export interface MockServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** Port. */
  readonly port: number;
  /** Hostname served on. */
  readonly hostname: string;
  /** Origin of the object storage redirects point to. */
  readonly objectsUrl: string;
  /** Stops listening, releases held requests and waits until the server is closed. */
  close(): Promise<void>;
  /** Same as {@linkcode MockServer.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Options of {@linkcode GitLabMock.cancel}.
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
 *   body: JSON.stringify({
 *     token: mock.runnerToken,
 *     info: { features: { cancel_gracefully: true } },
 *   }),
 * });
 * mock.cancel(job.id, { graceful: false }); // the runner announced cancel_gracefully: skip it
 * strictEqual(job.state, "canceled");
 * ```
 */
export interface CancelOptions {
  /**
   * Go through `canceling` (default: true when the runner that took the job announced
   * `cancel_gracefully`); ignored for a job no runner took.
   */
  graceful?: boolean;
}

/**
 * Options of {@linkcode GitLabMock.waitFor}.
 *
 * @example
 * ```ts
 * import { GitLabMock, type WaitForOptions } from "@x/gitlab-runner/mock";
 * import { rejects } from "node:assert";
 * const options: WaitForOptions = { timeoutMs: 20 };
 * const mock = new GitLabMock();
 * await rejects(mock.waitFor((m) => m.jobs.length > 0, options)); // no job is added
 * ```
 */
export interface WaitForOptions {
  /** Give up after this many real milliseconds (default 10 000; `Infinity` for never). */
  timeoutMs?: number;
  /** Give up when this signal aborts. */
  signal?: AbortSignal;
}
