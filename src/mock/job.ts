/**
 * Jobs of the GitLab mock: the stored state, the payload renderer and the fluent builder.
 *
 * @module
 */

import {
  ARTIFACT_TYPE_FORMATS,
  FAILURE_REASONS,
  GATED_FEATURES,
  REPORT_DEFAULT_NAMES,
} from "./_constants.ts";
import { base64Decode, concatBytes, crc32, hexFromSeed } from "./_util.ts";
import { predefinedVariables } from "./_predefined_variables.ts";
import type {
  MockArtifact,
  MockArtifactSpec,
  MockCacheSpec,
  MockDependencySpec,
  MockJob,
  MockJobInput,
  MockJobSpec,
  MockJobState,
  MockStep,
  MockUpdate,
  MockVariable,
} from "./types.ts";

/**
 * Edits a job payload before it is handed out. Return the (new) payload object, or a string to
 * send as the 201 body verbatim (duplicate JSON keys, broken JSON, …).
 *
 * @example Turn a job into a `run:` job (no `steps` key)
 * ```ts
 * import { GitLabMock, type PayloadTransform } from "@x/gitlab-runner/mock";
 * const toRunJob: PayloadTransform = (p) => {
 *   const { steps: _steps, ...rest } = p;
 *   return { ...rest, run: JSON.stringify([{ name: "hello", script: "echo hi" }]) };
 * };
 * const mock = new GitLabMock();
 * mock.job().payload(toRunJob).enqueue();
 * ```
 */
export type PayloadTransform = (
  payload: Record<string, unknown>,
) => Record<string, unknown> | string;

/** What the renderer needs from the mock. */
export interface RenderContext {
  /** Server URL as the runner reaches it (origin + relative URL root). */
  serverUrl: string;
  /** Look up a job by id. */
  getJob(id: number): JobState | undefined;
  /** Which token dependency entries carry. */
  dependencyToken: "dependency" | "job";
  /** Pending jobs left in the queue. */
  queueSize: number;
  /** Candidates scanned before this one. */
  queueDepth: number;
}

/** A resolved dependency. */
export interface ResolvedDependency {
  /** Dependency job id. */
  id: number;
  /** Whether the entry may carry `artifacts_file`. */
  artifacts: boolean;
}

/** Stored archive of a job. */
interface Archive {
  filename: string;
  data: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The mock's record of one job; implements the public, read-only {@linkcode MockJob} view. */
export class JobState implements MockJob {
  readonly id: number;
  readonly token: string;
  readonly name: string;
  state: MockJobState;
  failureReason?: string;
  exitCode?: number;
  patches = 0;
  traceRequests = 0;
  updates: MockUpdate[] = [];
  finalUpdates: MockUpdate[] = [];
  artifacts: MockArtifact[] = [];
  payload?: Record<string, unknown>;
  payloadText?: string;
  runnerFeatures?: Record<string, unknown>;
  readonly requires: readonly string[];
  debugTrace = false;
  readonly enqueuedAt: number;
  pickedAt?: number;
  finishedAt?: number;
  /** Time of the last job-token call the job accepted (the sweeper's `updated_at`). */
  contactAt?: number;
  readonly spec: Readonly<MockJobSpec>;

  /** Payload editor from the builder. */
  readonly transform?: PayloadTransform;
  /** Dependencies, resolved to ids. */
  readonly dependencies: readonly ResolvedDependency[];
  /** Two-phase commit: taken by a runner but still pending. */
  assigned = false;
  /** 202s given to final updates so far. */
  finalAccepts = 0;
  /** Time of the first final update carrying a checksum (backoff start). */
  firstFinalAt?: number;
  /** Update interval override while watched. */
  watchedInterval?: number;
  /** Archive set by the spec. */
  specArchive?: Archive;
  /** Archive removed (expired/erased). */
  archiveErased = false;

  #chunks: Uint8Array[] = [];
  #logSize = 0;
  #logCache?: Uint8Array;
  #crc = 0;

  constructor(options: {
    id: number;
    token: string;
    spec: MockJobSpec;
    now: number;
    dependencies: ResolvedDependency[];
    transform?: PayloadTransform;
  }) {
    const { id, token, spec } = options;
    this.id = id;
    this.token = token;
    this.spec = spec;
    this.name = spec.name ?? `job-${id}`;
    this.state = spec.state ?? "pending";
    this.enqueuedAt = options.now;
    this.dependencies = options.dependencies;
    this.transform = options.transform;
    this.requires = inferRequirements(spec);
    if (spec.artifactsFile !== undefined) {
      const data = typeof spec.artifactsFile === "string"
        ? base64Decode(spec.artifactsFile)
        : spec.artifactsFile;
      this.specArchive = { filename: spec.artifactsFilename ?? "artifacts.zip", data };
    }
    if (this.state !== "pending") this.finishedAt = options.now;
  }

  get log(): Uint8Array {
    if (!this.#logCache) {
      this.#logCache = concatBytes(this.#chunks, this.#logSize);
      this.#chunks = this.#logCache.length ? [this.#logCache] : [];
    }
    return this.#logCache;
  }

  get logText(): string {
    return decoder.decode(this.log);
  }

  get logSize(): number {
    return this.#logSize;
  }

  get logChecksum(): string {
    return `crc32:${this.#crc.toString(16).padStart(8, "0")}`;
  }

  /** Appends (already masked) bytes to the stored log. */
  appendLog(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#chunks.push(bytes);
    this.#logSize += bytes.length;
    this.#crc = crc32(bytes, this.#crc);
    this.#logCache = undefined;
  }

  /** Forgets the stored log (the server lost its trace chunks). */
  clearLog(): void {
    this.#chunks = [];
    this.#logSize = 0;
    this.#crc = 0;
    this.#logCache = undefined;
  }

  /** The archive a download would serve, if any. */
  get archive(): Archive | undefined {
    if (this.archiveErased) return undefined;
    const uploaded = this.artifacts.find((a) => a.type === "archive");
    if (uploaded) return { filename: uploaded.filename, data: uploaded.data };
    return this.specArchive;
  }

  /** Whether job-token calls are allowed (`EXECUTING_STATUSES`). */
  get executing(): boolean {
    return this.state === "running" || this.state === "canceling";
  }

  /** Whether the job reached a final state. */
  get finished(): boolean {
    return this.state === "success" || this.state === "failed" || this.state === "canceled";
  }
}

/** Features a spec requires: explicit ones plus those GitLab infers from the job definition. */
export function inferRequirements(spec: MockJobSpec): string[] {
  const req = new Set(spec.requires ?? []);
  for (const a of spec.artifacts ?? []) {
    if ((a.artifactType ?? "archive") !== "archive") req.add("upload_multiple_artifacts");
    if (a.exclude && a.exclude.length > 0) req.add("artifacts_exclude");
  }
  if ((spec.steps ?? []).some((s) => s.name === "release")) req.add("multi_build_steps");
  if ((spec.cache ?? []).some((c) => (c.fallbackKeys ?? []).length > 0)) {
    req.add("fallback_cache_keys");
  }
  if (spec.secrets && Object.keys(spec.secrets).length > 0) req.add("vault_secrets");
  if ((spec.ref ?? "").startsWith("refs/merge-requests/")) req.add("refspecs");
  return [...req];
}

/** The gated features of `requires` that `features` does not announce as `true`. */
export function missingFeatures(
  requires: readonly string[],
  features: Record<string, unknown>,
): string[] {
  return requires.filter((f) => GATED_FEATURES.includes(f) && features[f] !== true);
}

function slug(ref: string): string {
  return ref.toLowerCase().replace(/[^a-z0-9]/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
}

function variable(v: MockVariable): Record<string, unknown> {
  const masked = v.masked ?? false;
  const out: Record<string, unknown> = {
    key: v.key,
    value: v.value,
    public: v.public ?? !(masked || v.file),
    masked,
  };
  if (v.file) out.file = true;
  if (v.raw) out.raw = true;
  return out;
}

function step(s: MockStep, timeout: number): Record<string, unknown> {
  return {
    name: s.name,
    script: [...s.script],
    timeout: s.timeout ?? timeout,
    when: s.when ?? "on_success",
    allow_failure: s.allowFailure ?? false,
  };
}

function artifactEntry(a: MockArtifactSpec): Record<string, unknown> {
  const type = a.artifactType ?? "archive";
  const format = a.artifactFormat ?? ARTIFACT_TYPE_FORMATS[type] ?? "raw";
  let out: Record<string, unknown>;
  if (type === "archive") {
    out = { name: a.name ?? null };
    if (a.untracked !== undefined) out.untracked = a.untracked;
    out.paths = a.paths === undefined ? [] : a.paths;
    out.when = a.when === undefined ? "on_success" : a.when;
  } else {
    out = {
      name: a.name ?? REPORT_DEFAULT_NAMES[type] ?? type,
      paths: a.paths === undefined ? [] : a.paths,
      when: a.when === undefined ? "always" : a.when,
    };
  }
  out.expire_in = a.expireIn ?? null;
  out.artifact_type = type;
  out.artifact_format = format;
  if (a.exclude && a.exclude.length > 0) out.exclude = [...a.exclude];
  return out;
}

function cacheEntry(c: MockCacheSpec, index: number): Record<string, unknown> {
  return {
    key: `${c.key}-${index}`,
    untracked: c.untracked ?? false,
    paths: c.paths ?? [],
    policy: c.policy ?? "pull-push",
    when: c.when ?? "on_success",
    fallback_keys: c.fallbackKeys ?? [],
  };
}

function image(img: string | Record<string, unknown>): Record<string, unknown> {
  if (typeof img !== "string") return { ...img };
  return { name: img, entrypoint: null, ports: [], executor_opts: {}, pull_policy: null };
}

function service(s: string | Record<string, unknown>): Record<string, unknown> {
  if (typeof s !== "string") return { ...s };
  return {
    name: s,
    entrypoint: null,
    ports: [],
    executor_opts: {},
    pull_policy: null,
    alias: null,
    command: null,
    variables: null,
  };
}

/**
 * Renders the 201 payload of `/jobs/request` in GitLab's key order (PROTOCOL §4, §12.2), then
 * applies the spec's `payload`/`omit` and the builder's transform. Returns the object and the
 * exact body text.
 */
export function renderPayload(
  job: JobState,
  ctx: RenderContext,
  now: number,
): { payload: Record<string, unknown>; text: string } {
  const spec = job.spec;
  const server = new URL(ctx.serverUrl);
  const serverUrl = ctx.serverUrl.replace(/\/+$/, "");
  const projectPath = spec.projectPath ?? "mock/project";
  const projectName = projectPath.split("/").pop() ?? projectPath;
  const namespace = projectPath.split("/").slice(0, -1).join("/") || projectPath;
  const projectId = spec.projectId ?? 42;
  const pipelineId = spec.pipelineId ?? 1000 + job.id;
  const ref = spec.ref ?? "main";
  const refType = spec.refType ?? "branch";
  const shortRef = ref.replace(/^refs\/(heads|tags)\//, "");
  const sha = spec.sha ?? hexFromSeed(job.id, 40);
  const beforeSha = spec.beforeSha ?? "0000000000000000000000000000000000000000";
  const timeout = spec.timeout ?? 3600;
  const token = job.token;
  const projectUrl = `${serverUrl}/${projectPath}`;
  const repoUrl = `${server.protocol}//gitlab-ci-token:${token}@${server.host}${
    server.pathname.replace(/\/+$/, "")
  }/${projectPath}.git`;

  const predefined: MockVariable[] = [
    { key: "CI", value: "true", public: true },
    { key: "GITLAB_CI", value: "true", public: true },
    { key: "CI_SERVER_URL", value: serverUrl, public: true },
    { key: "CI_SERVER_HOST", value: server.hostname, public: true },
    {
      key: "CI_SERVER_PORT",
      value: server.port || (server.protocol === "https:" ? "443" : "80"),
      public: true,
    },
    { key: "CI_SERVER_PROTOCOL", value: server.protocol.replace(":", ""), public: true },
    { key: "CI_SERVER_NAME", value: "GitLab", public: true },
    { key: "CI_JOB_ID", value: String(job.id), public: true },
    { key: "CI_JOB_URL", value: `${projectUrl}/-/jobs/${job.id}`, public: true },
    { key: "CI_JOB_TOKEN", value: token, public: false, masked: true },
    { key: "CI_JOB_NAME", value: job.name, public: true },
    { key: "CI_JOB_STAGE", value: spec.stage ?? "test", public: true },
    { key: "CI_REGISTRY_USER", value: "gitlab-ci-token", public: true },
    { key: "CI_REGISTRY_PASSWORD", value: token, public: false, masked: true },
    { key: "CI_REPOSITORY_URL", value: repoUrl, public: false },
    { key: "CI_PROJECT_ID", value: String(projectId), public: true },
    { key: "CI_PROJECT_NAME", value: projectName, public: true },
    { key: "CI_PROJECT_PATH", value: projectPath, public: true },
    { key: "CI_PROJECT_NAMESPACE", value: namespace, public: true },
    { key: "CI_PROJECT_URL", value: projectUrl, public: true },
    { key: "CI_PROJECT_DIR", value: `/builds/${projectPath}`, public: true },
    { key: "CI_PIPELINE_ID", value: String(pipelineId), public: true },
    { key: "CI_PIPELINE_URL", value: `${projectUrl}/-/pipelines/${pipelineId}`, public: true },
    { key: "CI_COMMIT_SHA", value: sha, public: true },
    { key: "CI_COMMIT_SHORT_SHA", value: sha.slice(0, 8), public: true },
    { key: "CI_COMMIT_BEFORE_SHA", value: beforeSha, public: true },
    { key: "CI_COMMIT_REF_NAME", value: shortRef, public: true },
    { key: "CI_COMMIT_REF_SLUG", value: slug(shortRef), public: true },
    refType === "tag"
      ? { key: "CI_COMMIT_TAG", value: shortRef, public: true }
      : { key: "CI_COMMIT_BRANCH", value: shortRef, public: true },
    { key: "CI_DEFAULT_BRANCH", value: "main", public: true },
    { key: "GITLAB_USER_ID", value: "1", public: true },
    { key: "GITLAB_USER_LOGIN", value: "mock-user", public: true },
  ];
  predefined.push(...predefinedVariables(predefined, now, timeout, spec.protected ?? false));

  const steps: Record<string, unknown>[] = [
    step({
      name: "script",
      script: [...(spec.beforeScript ?? []), ...(spec.script ?? ["echo hello from the mock"])],
      when: "on_success",
      allowFailure: false,
    }, timeout),
    ...(spec.steps ?? []).map((s) => step(s, timeout)),
  ];
  if (spec.afterScript) {
    steps.push(step({
      name: "after_script",
      script: spec.afterScript,
      when: "always",
      allowFailure: true,
    }, timeout));
  }

  const dependencies: Record<string, unknown>[] = [];
  for (const dep of job.dependencies) {
    const d = ctx.getJob(dep.id);
    if (!d) continue;
    const entry: Record<string, unknown> = {
      id: d.id,
      name: d.name,
      token: ctx.dependencyToken === "job" ? token : d.token,
    };
    const archive = d.archive;
    if (dep.artifacts && archive) {
      entry.artifacts_file = { filename: archive.filename, size: archive.data.length };
    }
    dependencies.push(entry);
  }

  let payload: Record<string, unknown> = {
    id: job.id,
    token,
    allow_git_fetch: true,
    job_info: {
      id: job.id,
      name: job.name,
      stage: spec.stage ?? "test",
      pipeline_id: pipelineId,
      project_id: projectId,
      project_name: projectName,
      project_full_path: projectPath,
      namespace_id: 17,
      root_namespace_id: 9,
      organization_id: 1,
      instance_id: "1",
      instance_uuid: "4d9c1f0e-6a3b-4f5e-9b7a-2c8d1e0f3a4b",
      user_id: 1,
      scoped_user_id: null,
      time_in_queue_seconds: Math.max(0, Math.floor((now - job.enqueuedAt) / 1000)),
      project_jobs_running_on_instance_runners_count: "+Inf",
      queue_size: ctx.queueSize,
      queue_depth: ctx.queueDepth,
    },
    git_info: {
      repo_url: repoUrl,
      ref: shortRef,
      sha,
      before_sha: beforeSha,
      ref_type: refType,
      refspecs: spec.refspecs ?? [
        `+refs/pipelines/${pipelineId}:refs/pipelines/${pipelineId}`,
        refType === "tag"
          ? `+refs/tags/${shortRef}:refs/tags/${shortRef}`
          : `+refs/heads/${shortRef}:refs/remotes/origin/${shortRef}`,
      ],
      depth: spec.depth ?? 20,
      repo_object_format: spec.repoObjectFormat ?? "sha1",
      protected: spec.protected ?? false,
    },
    runner_info: {
      uuid: "b1e2c3d4-a5f6-4789-8abc-def012345678",
      timeout,
      runner_session_url: null,
    },
    variables: [...predefined, ...(spec.variables ?? [])].map(variable),
    ...(spec.inputs ? { inputs: structuredClone(spec.inputs) } : {}),
    steps,
    hooks: (spec.hooks ?? []).map((h) => ({ name: h.name, script: [...h.script] })),
    image: spec.image ? image(spec.image) : null,
    services: (spec.services ?? []).map(service),
    artifacts: spec.artifacts && spec.artifacts.length > 0
      ? spec.artifacts.map(artifactEntry)
      : null,
    cache: (spec.cache ?? []).map(cacheEntry),
    credentials: [{
      type: "registry",
      url: `registry.${server.hostname}`,
      username: "gitlab-ci-token",
      password: token,
    }],
    features: {
      trace_sections: true,
      failure_reasons: [...(spec.failureReasons ?? FAILURE_REASONS)],
      ...(spec.tokenMaskPrefixes ? { token_mask_prefixes: [...spec.tokenMaskPrefixes] } : {}),
    },
    dependencies,
  };
  if (spec.secrets) payload.secrets = structuredClone(spec.secrets);
  if (spec.payload) {
    for (const [k, v] of Object.entries(spec.payload)) {
      if (v === undefined) delete payload[k];
      else payload[k] = v;
    }
  }
  for (const k of spec.omit ?? []) delete payload[k];
  if (job.transform) {
    const out = job.transform(payload);
    if (typeof out === "string") return { payload, text: out };
    payload = out;
  }
  return { payload, text: JSON.stringify(payload) };
}

/**
 * Fluent builder of a mock job, from {@linkcode GitLabMock.job}: each method changes the draft
 * and returns the builder; {@linkcode MockJobBuilder.enqueue} adds the job to the queue.
 *
 * @example
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * const mock = new GitLabMock();
 * const build = mock.job().name("build").artifact({ paths: ["out/"] }).enqueue();
 * const test = mock.job()
 *   .name("test")
 *   .variable("API_PASSWORD", "s3cr3t", { masked: true })
 *   .script(["make test"])
 *   .afterScript(["make clean"])
 *   .dependency(build)
 *   .timeout(600)
 *   .enqueue();
 * console.log(test.id, test.state); // 2 pending
 * ```
 */
export class MockJobBuilder {
  #spec: MockJobSpec;
  #transforms: PayloadTransform[] = [];
  #enqueue: (spec: MockJobSpec, transform?: PayloadTransform) => MockJob;

  /**
   * Use {@linkcode GitLabMock.job} rather than this constructor.
   *
   * @param enqueue Adds the finished spec to a mock.
   * @param spec Initial values.
   */
  constructor(
    enqueue: (spec: MockJobSpec, transform?: PayloadTransform) => MockJob,
    spec: Partial<MockJobSpec> = {},
  ) {
    this.#enqueue = enqueue;
    this.#spec = structuredClone(spec);
  }

  /** Sets the job name. */
  name(name: string): this {
    this.#spec.name = name;
    return this;
  }

  /** Sets the stage. */
  stage(stage: string): this {
    this.#spec.stage = stage;
    return this;
  }

  /**
   * Sets the git ref (`refs/merge-requests/…` makes the job require `refspecs`).
   *
   * @param ref Branch, tag or full ref.
   * @param options `type` (`branch`/`tag`) and `protected`.
   */
  ref(ref: string, options: { type?: "branch" | "tag"; protected?: boolean } = {}): this {
    this.#spec.ref = ref;
    if (options.type) this.#spec.refType = options.type;
    if (options.protected !== undefined) this.#spec.protected = options.protected;
    return this;
  }

  /**
   * Adds a variable (after the predefined `CI_*` ones; keys may repeat).
   *
   * @param key Name.
   * @param value Value (`null` is sent as JSON null).
   * @param options `masked`, `public`, `file`, `raw`.
   */
  variable(
    key: string,
    value: string | null,
    options: { masked?: boolean; public?: boolean; file?: boolean; raw?: boolean } = {},
  ): this {
    (this.#spec.variables ??= []).push({ key, value, ...options });
    return this;
  }

  /** Sets the `before_script` lines (joined with `script` into the `script` step). */
  beforeScript(lines: string[]): this {
    this.#spec.beforeScript = [...lines];
    return this;
  }

  /** Sets the `script` lines. */
  script(lines: string[]): this {
    this.#spec.script = [...lines];
    return this;
  }

  /** Sets the `after_script` lines. */
  afterScript(lines: string[]): this {
    this.#spec.afterScript = [...lines];
    return this;
  }

  /** Adds an extra step (e.g. `release`, which makes the job require `multi_build_steps`). */
  step(step: MockStep): this {
    (this.#spec.steps ??= []).push({ ...step, script: [...step.script] });
    return this;
  }

  /** Sets the image (a name or the full payload object). */
  image(image: string | Record<string, unknown> | null): this {
    this.#spec.image = image;
    return this;
  }

  /** Adds a service (a name or the full payload object). */
  service(service: string | Record<string, unknown>): this {
    (this.#spec.services ??= []).push(service);
    return this;
  }

  /** Adds an `artifacts:` entry (archive or report). */
  artifact(artifact: MockArtifactSpec): this {
    (this.#spec.artifacts ??= []).push({ ...artifact });
    return this;
  }

  /** Adds a cache entry. */
  cache(cache: MockCacheSpec): this {
    (this.#spec.cache ??= []).push({ ...cache });
    return this;
  }

  /**
   * Adds a dependency.
   *
   * @param job The dependency: a mock job, a job id, or a job name.
   * @param options `artifacts: false` leaves out `artifacts_file` (as if expired).
   */
  dependency(job: MockJob | number | string, options: { artifacts?: boolean } = {}): this {
    const ref = typeof job === "object" ? job.id : job;
    (this.#spec.dependencies ??= []).push(
      options.artifacts === undefined ? ref : { job: ref, artifacts: options.artifacts },
    );
    return this;
  }

  /**
   * Adds a job input (`inputs[]`), referenced in scripts as `${{ job.inputs.KEY }}`.
   *
   * @param key The input's name.
   * @param content Its value; the type is inferred (`string`, `number`, `boolean`, `array`,
   *   `struct`) unless `options.type` says otherwise (to send a mismatching one on purpose).
   * @param options `sensitive` (masked in the log), `type`.
   */
  input(
    key: string,
    content: unknown,
    options: { sensitive?: boolean; type?: string } = {},
  ): this {
    const type = options.type ??
      (Array.isArray(content)
        ? "array"
        : content !== null && typeof content === "object"
        ? "struct"
        : typeof content);
    (this.#spec.inputs ??= []).push({
      key,
      value: { type, content, sensitive: options.sensitive ?? false },
    });
    return this;
  }

  /** Sets the raw `inputs` array (hostile shapes included), replacing earlier inputs. */
  inputs(inputs: MockJobInput[]): this {
    this.#spec.inputs = structuredClone(inputs);
    return this;
  }

  /** Sets `features.failure_reasons`: the reasons this (older) GitLab knows. */
  failureReasons(reasons: string[]): this {
    this.#spec.failureReasons = [...reasons];
    return this;
  }

  /** Sets `git_info.repo_object_format` (`sha1` or `sha256`). */
  repoObjectFormat(format: string): this {
    this.#spec.repoObjectFormat = format;
    return this;
  }

  /** Sets the job timeout in seconds (`runner_info.timeout` and step timeouts). */
  timeout(seconds: number): this {
    this.#spec.timeout = seconds;
    return this;
  }

  /** Adds required runner features (e.g. `return_exit_code`). */
  requires(...features: string[]): this {
    (this.#spec.requires ??= []).push(...features);
    return this;
  }

  /**
   * Gives the job an archive without running it (serve it to dependents).
   *
   * @param data Bytes or base64.
   * @param options `filename` (default `artifacts.zip`).
   */
  artifactsFile(data: Uint8Array | string, options: { filename?: string } = {}): this {
    this.#spec.artifactsFile = data;
    if (options.filename) this.#spec.artifactsFilename = options.filename;
    return this;
  }

  /** Sets the initial state (a finished job is never handed out). */
  state(state: "pending" | "success" | "failed" | "canceled"): this {
    this.#spec.state = state;
    return this;
  }

  /**
   * Edits the rendered payload: an object sets top-level keys (`undefined` removes one), a
   * function can change anything or return the body text verbatim. Calls accumulate.
   */
  payload(overrides: Record<string, unknown> | PayloadTransform): this {
    if (typeof overrides === "function") {
      this.#transforms.push(overrides);
    } else {
      this.#transforms.push((p) => {
        const out = { ...p };
        for (const [k, v] of Object.entries(overrides)) {
          if (v === undefined) delete out[k];
          else out[k] = v;
        }
        return out;
      });
    }
    return this;
  }

  /** A copy of the spec built so far. */
  spec(): MockJobSpec {
    return structuredClone(this.#spec);
  }

  /** Adds the job to the mock (pending unless a finished state was set) and returns it. */
  enqueue(): MockJob {
    const transforms = [...this.#transforms];
    let transform: PayloadTransform | undefined;
    if (transforms.length > 0) {
      transform = (payload) => {
        let current: Record<string, unknown> | string = payload;
        for (const t of transforms) {
          if (typeof current === "string") break;
          current = t(current);
        }
        return current;
      };
    }
    return this.#enqueue(this.spec(), transform);
  }
}

/** Normalises a dependency spec into `{job, artifacts}`. */
export function dependencyRef(
  d: MockDependencySpec,
): { job: number | string; artifacts: boolean } {
  if (typeof d === "object") return { job: d.job, artifacts: d.artifacts ?? true };
  return { job: d, artifacts: true };
}

/** Encodes a string as UTF-8. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}
