/**
 * The 201 body of `/jobs/request`: the job payload in GitLab's key order (PROTOCOL.md §4, the
 * sample in §12.2, the quirks of §13 item 6).
 *
 * {@linkcode defaultPayload} builds what GitLab would send for a spec;
 * {@linkcode renderPayload} then applies the spec's `payload`/`omit` and the builder's
 * transforms. The predefined `CI_*` variables come from {@linkcode predefinedVariables}.
 *
 * @module
 */

import { predefinedVariables as morePredefinedVariables } from "./_predefined_variables.ts";
import { ARTIFACT_TYPE_FORMATS, FAILURE_REASONS, REPORT_DEFAULT_NAMES } from "./_constants.ts";
import type { JobState } from "./_job_state.ts";
import { hexFromSeed } from "./_util.ts";
import type {
  MockArtifactSpec,
  MockCacheSpec,
  MockJobSpec,
  MockStep,
  MockVariable,
} from "./types.ts";

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

/** The values a payload is derived from: defaults of the spec, resolved once. */
export interface PayloadFacts {
  /** Server URL as the runner reaches it. */
  server: URL;
  /** The same, without trailing slashes. */
  serverUrl: string;
  /** `group/project`. */
  projectPath: string;
  /** Last path segment of the project path. */
  projectName: string;
  /** Everything before it (the project path itself for a top-level project). */
  namespace: string;
  /** Project id. */
  projectId: number;
  /** Pipeline id. */
  pipelineId: number;
  /** `branch` or `tag`. */
  refType: "branch" | "tag";
  /** The ref without `refs/heads/` or `refs/tags/`. */
  shortRef: string;
  /** Commit SHA. */
  sha: string;
  /** Previous commit SHA. */
  beforeSha: string;
  /** Job timeout in seconds. */
  timeout: number;
  /** The job token. */
  token: string;
  /** Web URL of the project. */
  projectUrl: string;
  /** Clone URL with the job token in it. */
  repoUrl: string;
}

/** Resolves the spec's defaults for one job. */
export function payloadFacts(job: JobState, serverUrl: string): PayloadFacts {
  const spec = job.spec;
  const server = new URL(serverUrl);
  const trimmed = serverUrl.replace(/\/+$/, "");
  const projectPath = spec.projectPath ?? "mock/project";
  const pipelineId = spec.pipelineId ?? 1000 + job.id;
  const token = job.token;
  return {
    server,
    serverUrl: trimmed,
    projectPath,
    projectName: projectPath.split("/").pop() ?? projectPath,
    namespace: projectPath.split("/").slice(0, -1).join("/") || projectPath,
    projectId: spec.projectId ?? 42,
    pipelineId,
    refType: spec.refType ?? "branch",
    shortRef: (spec.ref ?? "main").replace(/^refs\/(heads|tags)\//, ""),
    sha: spec.sha ?? hexFromSeed(job.id, 40),
    beforeSha: spec.beforeSha ?? "0000000000000000000000000000000000000000",
    timeout: spec.timeout ?? 3600,
    token,
    projectUrl: `${trimmed}/${projectPath}`,
    repoUrl: `${server.protocol}//gitlab-ci-token:${token}@${server.host}${
      server.pathname.replace(/\/+$/, "")
    }/${projectPath}.git`,
  };
}

/** `git_info.depth` like GitLab's `BuildRunnerPresenter#git_depth`: the job's `GIT_DEPTH`, else the project's. */
function gitDepth(spec: JobState["spec"]): number {
  const value = (spec.variables ?? []).filter((v) => v.key === "GIT_DEPTH").pop()?.value;
  return typeof value === "string" && /^\d+$/.test(value) ? Number(value) : spec.depth ?? 20;
}

/**
 * `git_info.refspecs` as GitLab's `BuildRunnerPresenter#refspecs` makes them: the pipeline's
 * persistent ref by commit, then with a depth the branch or tag (nothing more for a
 * merge-request ref), with depth 0 every branch and tag.
 */
function presenterRefspecs(
  sha: string,
  pipelineId: number,
  ref: string,
  refType: string,
  depth: number,
): string[] {
  const specs = [`+${sha}:refs/pipelines/${pipelineId}`];
  const short = ref.replace(/^refs\/(heads|tags)\//, "");
  if (depth > 0) {
    if (refType === "tag") specs.push(`+refs/tags/${short}:refs/tags/${short}`);
    else if (!ref.startsWith("refs/") || ref.startsWith("refs/heads/")) {
      specs.push(`+refs/heads/${short}:refs/remotes/origin/${short}`);
    }
  } else {
    specs.push("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*");
  }
  return specs;
}

/** The predefined variables GitLab puts before the job's own (PROTOCOL §4, §12.2). */
export function predefinedVariables(job: JobState, facts: PayloadFacts): MockVariable[] {
  const { server, serverUrl, projectUrl, token, sha, shortRef, pipelineId } = facts;
  return [
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
    { key: "CI_JOB_STAGE", value: job.spec.stage ?? "test", public: true },
    { key: "CI_REGISTRY_USER", value: "gitlab-ci-token", public: true },
    { key: "CI_REGISTRY_PASSWORD", value: token, public: false, masked: true },
    { key: "CI_REPOSITORY_URL", value: facts.repoUrl, public: false },
    { key: "CI_PROJECT_ID", value: String(facts.projectId), public: true },
    { key: "CI_PROJECT_NAME", value: facts.projectName, public: true },
    { key: "CI_PROJECT_PATH", value: facts.projectPath, public: true },
    { key: "CI_PROJECT_NAMESPACE", value: facts.namespace, public: true },
    { key: "CI_PROJECT_URL", value: projectUrl, public: true },
    { key: "CI_PROJECT_DIR", value: `/builds/${facts.projectPath}`, public: true },
    { key: "CI_PIPELINE_ID", value: String(pipelineId), public: true },
    { key: "CI_PIPELINE_URL", value: `${projectUrl}/-/pipelines/${pipelineId}`, public: true },
    { key: "CI_COMMIT_SHA", value: sha, public: true },
    { key: "CI_COMMIT_SHORT_SHA", value: sha.slice(0, 8), public: true },
    { key: "CI_COMMIT_BEFORE_SHA", value: facts.beforeSha, public: true },
    { key: "CI_COMMIT_REF_NAME", value: shortRef, public: true },
    { key: "CI_COMMIT_REF_SLUG", value: slug(shortRef), public: true },
    facts.refType === "tag"
      ? { key: "CI_COMMIT_TAG", value: shortRef, public: true }
      : { key: "CI_COMMIT_BRANCH", value: shortRef, public: true },
    { key: "CI_DEFAULT_BRANCH", value: "main", public: true },
    { key: "GITLAB_USER_ID", value: "1", public: true },
    { key: "GITLAB_USER_LOGIN", value: "mock-user", public: true },
  ];
}

/**
 * The core list and, made from its values, the rest of GitLab's predefined variables
 * (`_predefined_variables.ts`): about 85, a payload as large as a real one (PROTOCOL §4).
 */
function allPredefined(job: JobState, facts: PayloadFacts, now: number): MockVariable[] {
  const core = predefinedVariables(job, facts);
  core.push(...morePredefinedVariables(core, now, facts.timeout, job.spec.protected ?? false));
  return core;
}

/**
 * The payload GitLab would send for this job, before the spec's `payload`/`omit` and the
 * builder's transforms: every key, in GitLab's order.
 */
export function defaultPayload(
  job: JobState,
  ctx: RenderContext,
  now: number,
): Record<string, unknown> {
  const spec = job.spec;
  const facts = payloadFacts(job, ctx.serverUrl);
  const { token, pipelineId, shortRef, refType, timeout } = facts;
  const payload: Record<string, unknown> = {
    id: job.id,
    token,
    allow_git_fetch: true,
    job_info: {
      id: job.id,
      name: job.name,
      stage: spec.stage ?? "test",
      pipeline_id: pipelineId,
      project_id: facts.projectId,
      project_name: facts.projectName,
      project_full_path: facts.projectPath,
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
      repo_url: facts.repoUrl,
      ref: shortRef,
      sha: facts.sha,
      before_sha: facts.beforeSha,
      ref_type: refType,
      refspecs: spec.refspecs ??
        presenterRefspecs(facts.sha, pipelineId, spec.ref ?? "main", refType, gitDepth(spec)),
      depth: gitDepth(spec),
      repo_object_format: spec.repoObjectFormat ?? "sha1",
      protected: spec.protected ?? false,
    },
    runner_info: {
      uuid: "b1e2c3d4-a5f6-4789-8abc-def012345678",
      timeout,
      runner_session_url: null,
    },
    variables: [...allPredefined(job, facts, now), ...(spec.variables ?? [])].map(variable),
    ...(spec.inputs ? { inputs: structuredClone(spec.inputs) } : {}),
    steps: steps(spec, timeout),
    hooks: (spec.hooks ?? []).map((h) => ({ name: h.name, script: [...h.script] })),
    image: spec.image ? image(spec.image) : null,
    services: (spec.services ?? []).map(service),
    artifacts: spec.artifacts && spec.artifacts.length > 0
      ? spec.artifacts.map(artifactEntry)
      : null,
    cache: (spec.cache ?? []).map(cacheEntry),
    credentials: [{
      type: "registry",
      url: `registry.${facts.server.hostname}`,
      username: "gitlab-ci-token",
      password: token,
    }],
    features: {
      trace_sections: true,
      failure_reasons: [...(spec.failureReasons ?? FAILURE_REASONS)],
      ...(spec.tokenMaskPrefixes ? { token_mask_prefixes: [...spec.tokenMaskPrefixes] } : {}),
    },
    dependencies: dependencies(job, ctx),
  };
  if (spec.secrets) payload.secrets = structuredClone(spec.secrets);
  return payload;
}

/**
 * Renders the 201 payload of `/jobs/request`: {@linkcode defaultPayload}, then the spec's
 * `payload`/`omit` and the builder's transform. Returns the object and the exact body text.
 */
export function renderPayload(
  job: JobState,
  ctx: RenderContext,
  now: number,
): { payload: Record<string, unknown>; text: string } {
  const spec = job.spec;
  let payload = defaultPayload(job, ctx, now);
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

/** `script` (with `before_script`), the extra steps, then `after_script`. */
function steps(spec: MockJobSpec, timeout: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [
    step({
      name: "script",
      script: [...(spec.beforeScript ?? []), ...(spec.script ?? ["echo hello from the mock"])],
      when: "on_success",
      allowFailure: false,
    }, timeout),
    ...(spec.steps ?? []).map((s) => step(s, timeout)),
  ];
  if (spec.afterScript) {
    out.push(step({
      name: "after_script",
      script: spec.afterScript,
      when: "always",
      allowFailure: true,
    }, timeout));
  }
  return out;
}

/** The `dependencies` entries; `artifacts_file` only while the dependency has an archive. */
function dependencies(job: JobState, ctx: RenderContext): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const dep of job.dependencies) {
    const d = ctx.getJob(dep.id);
    if (!d) continue;
    const entry: Record<string, unknown> = {
      id: d.id,
      name: d.name,
      token: ctx.dependencyToken === "job" ? job.token : d.token,
    };
    const archive = d.archive;
    if (dep.artifacts && archive) {
      entry.artifacts_file = { filename: archive.filename, size: archive.data.length };
    }
    out.push(entry);
  }
  return out;
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
