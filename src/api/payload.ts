/**
 * The job payload: the `201 Created` body of `POST /api/v4/jobs/request` (PROTOCOL §4), typed,
 * and a lenient, total parser for it (CONFORMANCE C2.1–C2.3).
 *
 * GitLab has already assigned the job when this body arrives, so the parser never rejects a
 * payload for a detail: wrong or missing optional fields get a default and a warning, and only a
 * missing job `id` or `token` (without which the runner cannot even report the failure) makes
 * the result `ok: false`. The parser never throws.
 *
 * Field shapes come from GitLab's entities (`lib/api/entities/ci/job_request/*.rb`) and the
 * official runner's model (gitlab-runner `common/spec/spec.go`).
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/** When a step runs, relative to the outcome of the steps before it. */
export type StepWhen = "on_success" | "on_failure" | "always";

/** The job payload, parsed. Every key GitLab sends is here in camelCase; `raw` has the rest. */
export interface JobPayload {
  /** `id`: the job id (positive integer). Used in every job-token endpoint path. */
  id: number;
  /**
   * `token`: the job token. Authenticates PUT/PATCH/artifact calls (`JOB-TOKEN`); it also
   * appears inside `gitInfo.repoUrl`, `credentials` and variables such as `CI_JOB_TOKEN`.
   */
  token: string;
  /** `allow_git_fetch`: the project allows `git fetch` instead of a fresh clone. `false` when absent. */
  allowGitFetch: boolean;
  /** `job_info`: names and ids of the job, pipeline, project and instance. */
  jobInfo: JobInfo;
  /** `git_info`: where and what to clone. */
  gitInfo: GitInfo;
  /** `runner_info`: runner-side settings of this job, notably the timeout to enforce. */
  runnerInfo: RunnerInfo;
  /**
   * `variables`: the **effective** CI/CD variables. GitLab may send the same key more than once;
   * the last occurrence wins (gitlab-runner `common/spec/variables.go`), so this list keeps only
   * the last occurrence of each key, in the order of those last occurrences (see
   * {@linkcode effectiveVariables}). The list exactly as sent is in `raw.variables`.
   */
  variables: JobVariable[];
  /**
   * `steps`: the script steps (`script`, `after_script`, `release`, …). `undefined` when GitLab
   * left the key out (or sent `null`), which it does for a job using the `run:` keyword: the
   * runner should then fail the job cleanly (see `run`).
   */
  steps?: JobStep[];
  /**
   * `run`: the steps of a `run:` job, as the JSON-encoded **string** GitLab sends (it holds an
   * array; the official runner decodes it twice). `undefined` for ordinary jobs.
   */
  run?: string;
  /** `hooks`: `pre_get_sources_script` / `post_get_sources_script` commands. `[]` when absent. */
  hooks: JobHook[];
  /** `image`: the job's container image. `undefined` when GitLab sends `null` (no `image:`). */
  image?: JobImage;
  /** `services`: service containers. `[]` when absent or `null`. */
  services: JobService[];
  /** `artifacts`: what to upload. `[]` when GitLab sends `null` (the job defines no `artifacts:`). */
  artifacts: ArtifactSpec[];
  /** `cache`: caches to restore and save. `[]` when absent. */
  cache: CacheSpec[];
  /** `credentials`: registry credentials (usually the job token for the GitLab registry). */
  credentials: Credential[];
  /** `features`: what this GitLab supports on the runner's side (failure reasons, masking prefixes). */
  features: JobFeatures;
  /** `dependencies`: jobs whose artifacts this job downloads. `[]` when absent or `null`. */
  dependencies: DependencySpec[];
  /** `secrets` (EE): external secrets by variable name, kept as sent. `undefined` when absent. */
  secrets?: Record<string, unknown>;
  /** `policy_options` (EE): security-policy job settings, kept as sent. `undefined` when absent. */
  policyOptions?: Record<string, unknown>;
  /**
   * `inputs` (GitLab 18.x+, job `inputs:`): the job's typed inputs, referenced in its scripts
   * as `${{ job.inputs.NAME }}`. `[]` when absent. Entries the official runner would refuse (no
   * key, `null` content, an unknown type, content not of the announced type) are dropped with
   * a warning. The runner interpolates them into the steps (see `Job.inputs`).
   */
  inputs: JobInput[];
  /** The decoded JSON object exactly as received, unknown keys included (forward compatibility). */
  raw: Record<string, unknown>;
}

/** The type of a job input (`inputs[].value.type`): what its `content` holds. */
export type JobInputType = "string" | "number" | "boolean" | "array" | "struct";

/**
 * A job input's content: a string, a finite number, a boolean, an array (`array`) or an object
 * (`struct`) of such values (`null` only inside an array or object).
 */
export type JobInputContent =
  | string
  | number
  | boolean
  | null
  | JobInputContent[]
  | { [key: string]: JobInputContent };

/**
 * One job input (`inputs[]`), as GitLab sends it: `{key, value: {type, content, sensitive}}`
 * (gitlab-runner `common/spec/inputs.go` `JobInput`).
 */
export interface JobInput {
  /** `key`: the input's name, as in `${{ job.inputs.NAME }}`. Never empty. */
  key: string;
  /** `value`: the typed content. */
  value: {
    /** `type`: the announced type; `content` has it. */
    type: JobInputType;
    /** `content`: the value (never `null` at the top level). */
    content: JobInputContent;
    /** `sensitive`: the value must not appear in the job log. `false` when absent. */
    sensitive: boolean;
  };
}

/** `job_info`: descriptive data about the job. Ids GitLab did not send are `undefined`. */
export interface JobInfo {
  /** `id`: the job id (same as the top-level `id`). */
  id?: number;
  /** `name`: the job name, e.g. `build:linux`. `""` when absent. */
  name: string;
  /** `stage`: the stage name. `""` when absent. */
  stage: string;
  /** `pipeline_id`: the pipeline id. */
  pipelineId?: number;
  /** `project_id`: the project id. */
  projectId?: number;
  /** `project_name`: the project name. `""` when absent. */
  projectName: string;
  /** `project_full_path`: the project path with namespace, e.g. `acme/widget`. `""` when absent. */
  projectFullPath: string;
  /** `namespace_id`: the project's namespace id. */
  namespaceId?: number;
  /** `root_namespace_id`: the top-level group id. */
  rootNamespaceId?: number;
  /** `organization_id`: the organization id. */
  organizationId?: number;
  /** `instance_id`: the GitLab instance id (GitLab sends a string). */
  instanceId?: string;
  /** `instance_uuid`: the GitLab instance UUID. */
  instanceUuid?: string;
  /** `user_id`: the user who triggered the job. */
  userId?: number;
  /** `scoped_user_id`: the scoped user (GitLab sends `null` when none; then `undefined`). */
  scopedUserId?: number;
  /** `time_in_queue_seconds`: how long the job waited for a runner (`null` → `undefined`). */
  timeInQueueSeconds?: number;
  /**
   * `project_jobs_running_on_instance_runners_count`: kept as the **string** GitLab sends:
   * `"+Inf"` for non-instance runners, `"0"`, `"1"`, … or `"<max>+"`.
   */
  projectJobsRunningOnInstanceRunnersCount?: string;
  /** `queue_size`: jobs in the queue when this one was picked. */
  queueSize?: number;
  /** `queue_depth`: how deep in the queue this job was found. */
  queueDepth?: number;
}

/** `git_info`: the repository to clone. */
export interface GitInfo {
  /** `repo_url`: HTTPS clone URL **with** `gitlab-ci-token:<job token>@` credentials. `""` when absent. */
  repoUrl: string;
  /** `ref`: the branch or tag name. `""` when absent. */
  ref: string;
  /** `sha`: the commit to check out. `""` when absent. */
  sha: string;
  /** `before_sha`: the previous commit of the ref (all zeros for a new ref). `""` when absent. */
  beforeSha: string;
  /** `ref_type`: `"branch"` or `"tag"`. `""` when absent. */
  refType: string;
  /** `refspecs`: refspecs to fetch. `[]` when absent. */
  refspecs: string[];
  /** `depth`: shallow clone depth; `0` means a full clone (also when absent). */
  depth: number;
  /** `repo_object_format`: `"sha1"` or `"sha256"`; `undefined` when absent (older GitLab). */
  repoObjectFormat?: string;
  /** `protected`: whether the ref is protected; `undefined` when GitLab sends `null` or nothing. */
  protected?: boolean;
}

/** `runner_info`: runner-side settings GitLab computed for this job. */
export interface RunnerInfo {
  /** `uuid`: the runner manager's UUID, when sent. */
  uuid?: string;
  /** `timeout`: the job timeout **in seconds** the runner must enforce (`job_execution_timeout`). */
  timeout?: number;
  /** `runner_session_url`: the interactive session URL; `undefined` when GitLab sends `null`. */
  runnerSessionUrl?: string;
}

/** One CI/CD variable (`variables[]`). */
export interface JobVariable {
  /** `key`: the variable name. */
  key: string;
  /** `value`: the value; GitLab may send `null`, which becomes `""`. */
  value: string;
  /** `public`: the value may be shown (predefined, non-secret variables). `false` when absent. */
  public: boolean;
  /** `masked`: the value must be hidden in the job log. `false` when absent. */
  masked: boolean;
  /** `file`: a file-type variable (the value is written to a file, the variable holds its path). GitLab sends the key only when true. */
  file: boolean;
  /** `raw`: the value must not be expanded (`$X` stays literal). GitLab sends the key only when true. */
  raw: boolean;
}

/** One script step (`steps[]`). */
export interface JobStep {
  /** `name`: `"script"` (before_script + script), `"after_script"`, `"release"`, or another string, kept as sent. */
  name: string;
  /** `script`: the commands, one per entry. `[]` when absent or `null`. */
  script: string[];
  /** `timeout`: step timeout in seconds, when sent. */
  timeout?: number;
  /** `when`: run on success, on failure, or always. `"on_success"` when absent or unknown. */
  when: StepWhen;
  /** `allow_failure`: a failure of this step does not fail the job. `false` when absent. */
  allowFailure: boolean;
}

/** One hook (`hooks[]`). */
export interface JobHook {
  /** `name`: `"pre_get_sources_script"` or `"post_get_sources_script"` (other strings kept). */
  name: string;
  /** `script`: the commands. `[]` when absent or `null`. */
  script: string[];
}

/** A port exposed by an image or service (`ports[]`). */
export interface Port {
  /** `number`: the port number. */
  number?: number;
  /** `protocol`: e.g. `"http"`. */
  protocol?: string;
  /** `name`: e.g. `"default_port"`. */
  name?: string;
}

/** The job image (`image`). */
export interface JobImage {
  /** `name`: the image reference, e.g. `debian:bookworm`. `""` when absent. */
  name: string;
  /** `alias`: network alias(es), comma or space separated (services; newer GitLab for images). */
  alias?: string;
  /** `command`: overrides the image command; `undefined` when `null`. */
  command?: string[];
  /** `entrypoint`: overrides the image entrypoint; `undefined` when `null` (keep the image's). */
  entrypoint?: string[];
  /** `ports`: exposed ports. `[]` when absent. */
  ports: Port[];
  /** `executor_opts`: executor-specific options (`docker`, `kubernetes`), kept as sent. */
  executorOpts?: Record<string, unknown>;
  /** `pull_policy`: e.g. `["if-not-present"]`; `undefined` when `null` (use the runner default). */
  pullPolicy?: string[];
}

/** A service variable (`services[].variables[]`). */
export interface ServiceVariable {
  /** `key`: the variable name. */
  key: string;
  /** `value`: the value (`null` → `""`). */
  value: string;
}

/** A service container (`services[]`). */
export interface JobService extends JobImage {
  /** `variables`: variables for this service only. `[]` when `null` or absent. */
  variables: ServiceVariable[];
}

/** What triggers an artifact upload or a cache save: the values of {@linkcode StepWhen}. */
export type UploadWhen = StepWhen;

/** One artifact to upload (`artifacts[]`): the archive, or one report. */
export interface ArtifactSpec {
  /** `name`: the archive name (reports: the default file name); `undefined` when `null`. */
  name?: string;
  /** `untracked`: add all untracked files. GitLab omits the key when unset and on reports: `false`. */
  untracked: boolean;
  /** `paths`: glob patterns to include. GitLab sends `null` for an untracked-only archive: `[]`. */
  paths: string[];
  /** `exclude`: glob patterns to leave out. GitLab sends the key only when non-empty: `[]`. */
  exclude: string[];
  /** `when`: upload on success, on failure, or always. `null`/absent → `"on_success"`. */
  when: UploadWhen;
  /** `expire_in`: e.g. `"1 week"`; `undefined` when `null` (server default). */
  expireIn?: string;
  /** `artifact_type`: `"archive"` or a report type (`"junit"`, …). `"archive"` when absent. */
  artifactType: string;
  /** `artifact_format`: `"zip"`, `"gzip"`, `"raw"`, … `"zip"` when absent. */
  artifactFormat: string;
}

/** One cache (`cache[]`). */
export interface CacheSpec {
  /** `key`: the cache key, with GitLab's `-<index>` / `-protected` suffixes. `""` when absent. */
  key: string;
  /** `untracked`: cache all untracked files. `false` when absent. */
  untracked: boolean;
  /** `paths`: glob patterns to cache. `[]` when absent or `null`. */
  paths: string[];
  /**
   * `policy`: `"pull-push"`, `"pull"` or `"push"`; `"pull-push"` when absent or empty. Other
   * strings are kept as sent (the official runner refuses unknown policies).
   */
  policy: string;
  /** `when`: save on success, on failure, or always. `"on_success"` when absent or unknown. */
  when: UploadWhen;
  /** `fallback_keys`: keys to try when `key` has no cache. `[]` when absent. */
  fallbackKeys: string[];
}

/** Registry credentials (`credentials[]`). */
export interface Credential {
  /** `type`: `"registry"` (the only type the official runner uses). */
  type: string;
  /** `url`: the registry host, e.g. `registry.example.com`. */
  url: string;
  /** `username`: usually `gitlab-ci-token`. */
  username: string;
  /** `password`: usually the job token. */
  password: string;
}

/** A job whose artifacts this job needs (`dependencies[]`). */
export interface DependencySpec {
  /** `id`: the dependency job's id (download with `GET /jobs/:id/artifacts`). `0` if GitLab sent none. */
  id: number;
  /** `name`: the dependency job's name. */
  name: string;
  /** `token`: the token to download with (the current job's token). */
  token: string;
  /** `artifacts_file`: the archive; GitLab omits it when none is available (expired or erased). */
  artifactsFile?: { filename: string; size: number };
}

/** `features`: what this GitLab instance supports. */
export interface JobFeatures {
  /** `trace_sections`: GitLab understands collapsible log sections. `false` when absent. */
  traceSections: boolean;
  /** `failure_reasons`: every `failure_reason` this GitLab accepts (for `mapFailureReason`). `[]` when absent. */
  failureReasons: string[];
  /** `token_mask_prefixes` (newer GitLab): token prefixes to mask in the log. `[]` when absent. */
  tokenMaskPrefixes: string[];
  /** `tracing` (newer GitLab): OpenTelemetry settings, kept as sent. */
  tracing?: unknown;
}

/** The result of parsing a job payload: the payload and warnings, or why it cannot be used. */
export type ParseResult =
  | {
    /** The payload is usable. */
    ok: true;
    /** The parsed payload. */
    payload: JobPayload;
    /** Fields that had the wrong type and were replaced by a default, one sentence each. */
    warnings: string[];
  }
  | {
    /** No usable id/token: the job cannot run. */
    ok: false;
    /** Why, in one sentence. */
    error: string;
    /** The job id, if one could be read: send the final `failed` update with it (C2.2). */
    id?: number;
    /** The job token, if one could be read. */
    token?: string;
  };

// ---------------------------------------------------------------------------------------------
// Public functions
// ---------------------------------------------------------------------------------------------

/**
 * Parses a decoded job payload (the value of `JSON.parse` on the `201` body). Lenient and
 * total: it never throws. Only a missing or invalid `id` (positive integer) or `token`
 * (non-empty string) gives `ok: false`; any other wrong-typed field gets its default and a
 * warning, and unknown keys are ignored (they stay in `raw`).
 *
 * `variables` in the result is the effective list: duplicate keys are collapsed, the last
 * occurrence winning (see {@linkcode effectiveVariables}).
 *
 * @param input Any value; normally a decoded JSON object.
 * @returns The payload with warnings, or an error with whatever id/token could be read.
 *
 * @example Parsing a minimal payload
 * ```ts
 * import { strictEqual } from "node:assert";
 * const result = parseJobPayload({ id: 42, token: "glcbt-abc", artifacts: null });
 * if (!result.ok) throw new Error(result.error);
 * strictEqual(result.payload.id, 42);
 * strictEqual(result.payload.artifacts.length, 0);
 * ```
 */
export function parseJobPayload(input: unknown): ParseResult {
  try {
    return parseValue(input, false);
  } catch (err) {
    // Only reachable with hostile inputs (throwing getters, proxies): still never throw.
    const why = err instanceof Error ? err.message : String(err);
    return { ok: false, error: `Job payload could not be read: ${why}` };
  }
}

/**
 * Parses the raw `201` body text. When the text is not valid JSON (for example cut short), it
 * still looks for the top-level `"id"` and `"token"` so the runner can send the final `failed`
 * update (C2.2). The search is best effort: it only takes keys of the outermost object, so the
 * ids and tokens of `job_info` and `dependencies` are never mistaken for the job's.
 *
 * @param text The response body.
 * @returns As {@linkcode parseJobPayload}; on invalid JSON, `ok: false` with any id/token found.
 *
 * @example Recovering the id and token of a truncated body
 * ```ts
 * import { strictEqual } from "node:assert";
 * const result = parseJobPayloadText('{"id": 7311, "token": "glcbt-x", "variables": [');
 * if (result.ok) throw new Error("a truncated body cannot parse");
 * strictEqual(result.id, 7311);
 * strictEqual(result.token, "glcbt-x");
 * ```
 */
export function parseJobPayloadText(text: string): ParseResult {
  try {
    if (typeof text !== "string") {
      return { ok: false, error: `Job payload text is not a string (got ${kindOf(text)})` };
    }
    if (text.trim() === "") return { ok: false, error: "Job payload is empty" };
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const found = recoverIdAndToken(text);
      return { ok: false, error: `Job payload is not valid JSON: ${why}`, ...found };
    }
    return parseValue(value, JSON.parse === NATIVE_JSON_PARSE);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { ok: false, error: `Job payload could not be read: ${why}` };
  }
}

/**
 * Collapses duplicate variable keys: the last occurrence of each key wins, and the result is in
 * the order of those last occurrences (GitLab appends overrides after the defaults, so this is
 * the official runner's precedence).
 *
 * @param list Variables as GitLab sent them.
 * @returns A new array with one entry per key.
 *
 * @example Last one wins
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * const vars = effectiveVariables([
 *   { key: "A", value: "1", public: true, masked: false, file: false, raw: false },
 *   { key: "B", value: "2", public: true, masked: false, file: false, raw: false },
 *   { key: "A", value: "3", public: true, masked: false, file: false, raw: false },
 * ]);
 * deepStrictEqual(vars.map((v) => `${v.key}=${v.value}`), ["B=2", "A=3"]);
 * ```
 */
export function effectiveVariables(list: readonly JobVariable[]): JobVariable[] {
  const last = new Map<string, number>();
  for (let i = 0; i < list.length; i++) last.set(list[i].key, i);
  if (last.size === list.length) return list.slice();
  return list.filter((v, i) => last.get(v.key) === i);
}

/**
 * The slots of the open-addressing table {@linkcode collapseVariables} uses: a power of two,
 * twice the longest list it takes (longer lists go to {@linkcode effectiveVariables}'s `Map`).
 * The table is reused by every call and holds list indices only (never a key or a value): 4 KiB
 * for the life of the process.
 */
const KEY_SLOTS = 512;
/** The round (call) that last used each slot: slots of other rounds are empty. */
const slotRound = new Int32Array(KEY_SLOTS);
/** The list index a slot holds in its round: the last entry seen with that slot's key. */
const slotIndex = new Int32Array(KEY_SLOTS);
let round = 0;

/**
 * The slot of `key` in round `r`: the one holding an entry of `list` with that key, or the empty
 * slot where it goes. A cheap hash of the length and three characters picks the first slot to
 * look at; keys are compared whole, so a slot never mixes two keys.
 */
function slotOf(list: readonly JobVariable[], key: string, r: number): number {
  const n = key.length;
  let h = Math.imul(
    (n << 16) ^ (key.charCodeAt(0) << 8) ^ (key.charCodeAt(n >> 1) << 4) ^ key.charCodeAt(n - 1),
    0x9e3779b1,
  ) >>> 23; // the top 9 bits: 0 … KEY_SLOTS - 1
  while (slotRound[h] === r && list[slotIndex[h]].key !== key) h = (h + 1) & (KEY_SLOTS - 1);
  return h;
}

/**
 * {@linkcode effectiveVariables} on a list the parser just built (its own array): the list
 * itself when no key repeats (the usual case), else a new one of the last occurrences. Up to
 * `KEY_SLOTS / 2` entries it allocates nothing but that new list.
 */
function collapseVariables(list: JobVariable[]): JobVariable[] {
  if (list.length > KEY_SLOTS / 2) return effectiveVariables(list);
  if (round === 0x7fffffff) {
    slotRound.fill(0);
    round = 0;
  }
  const r = ++round;
  let repeats = false;
  for (let i = 0; i < list.length; i++) {
    const h = slotOf(list, list[i].key, r);
    if (slotRound[h] === r) repeats = true;
    else slotRound[h] = r;
    slotIndex[h] = i;
  }
  if (!repeats) return list;
  const out: JobVariable[] = [];
  for (let i = 0; i < list.length; i++) {
    if (slotIndex[slotOf(list, list[i].key, r)] === i) out.push(list[i]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading helpers: each takes the value, where it is (a path and a key, joined by `at` only for
// a warning) and the warning list
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Own property only, so `constructor`, `__proto__` and friends never leak in. */
function field(o: Obj, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

function isAbsent(v: unknown): v is null | undefined {
  return v === undefined || v === null;
}

/**
 * A field's path in a warning: `path.key`, or `path` when `key` is `""`. The readers take the
 * two apart and join them only for a warning, so a field read without one builds no string.
 */
function at(path: string, key: string): string {
  return key === "" ? path : `${path}.${key}`;
}

function wrongType(w: string[], path: string, expected: string, v: unknown, using: string): void {
  w.push(`${path}: expected ${expected}, got ${kindOf(v)}; using ${using}`);
}

/** A string; numbers and booleans are turned into strings (with a warning unless `quiet`). */
function optString(
  v: unknown,
  path: string,
  key: string,
  w: string[],
  quiet = false,
): string | undefined {
  if (typeof v === "string") return v;
  if (isAbsent(v)) return undefined;
  if (typeof v === "number" || typeof v === "boolean") {
    if (!quiet) w.push(`${at(path, key)}: expected string, got ${typeof v}; converted`);
    return String(v);
  }
  wrongType(w, at(path, key), "string", v, "nothing");
  return undefined;
}

function str(v: unknown, path: string, key: string, w: string[], def = ""): string {
  if (typeof v === "string") return v;
  if (isAbsent(v)) return def;
  if (typeof v === "number" || typeof v === "boolean") {
    w.push(`${at(path, key)}: expected string, got ${typeof v}; converted`);
    return String(v);
  }
  wrongType(w, at(path, key), "string", v, JSON.stringify(def));
  return def;
}

const DECIMAL_REGEXP = /^\s*-?\d+(\.\d+)?\s*$/;

/** A finite number; decimal strings are accepted (with a warning). */
function optNumber(v: unknown, path: string, key: string, w: string[]): number | undefined {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (isAbsent(v)) return undefined;
  if (typeof v === "string" && DECIMAL_REGEXP.test(v)) {
    w.push(`${at(path, key)}: expected number, got string; converted`);
    return Number(v);
  }
  wrongType(w, at(path, key), "number", v, "nothing");
  return undefined;
}

function num(v: unknown, path: string, key: string, w: string[], def: number): number {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (isAbsent(v)) return def;
  if (typeof v === "string" && DECIMAL_REGEXP.test(v)) {
    w.push(`${at(path, key)}: expected number, got string; converted`);
    return Number(v);
  }
  wrongType(w, at(path, key), "number", v, String(def));
  return def;
}

function bool(v: unknown, path: string, key: string, w: string[], def = false): boolean {
  if (typeof v === "boolean") return v;
  if (isAbsent(v)) return def;
  wrongType(w, at(path, key), "boolean", v, String(def));
  return def;
}

function optBool(v: unknown, path: string, key: string, w: string[]): boolean | undefined {
  if (typeof v === "boolean") return v;
  if (isAbsent(v)) return undefined;
  wrongType(w, at(path, key), "boolean", v, "nothing");
  return undefined;
}

/** A string array; `null`/absent → `[]`, a lone string → `[it]`, non-string items dropped. */
function strList(v: unknown, path: string, key: string, w: string[]): string[] {
  if (isAbsent(v)) return [];
  if (typeof v === "string") {
    w.push(`${at(path, key)}: expected array, got string; using it as a one-item list`);
    return [v];
  }
  if (!Array.isArray(v)) {
    wrongType(w, at(path, key), "array", v, "[]");
    return [];
  }
  const out: string[] = [];
  v.forEach((item, i) => {
    if (typeof item === "string") out.push(item);
    else if (typeof item === "number" || typeof item === "boolean") {
      w.push(`${at(path, key)}[${i}]: expected string, got ${typeof item}; converted`);
      out.push(String(item));
    } else w.push(`${at(path, key)}[${i}]: expected string, got ${kindOf(item)}; dropped`);
  });
  return out;
}

function optStrList(v: unknown, path: string, key: string, w: string[]): string[] | undefined {
  return isAbsent(v) ? undefined : strList(v, path, key, w);
}

/** The objects of an array; `null`/absent → `[]`, non-object items dropped with a warning. */
function objList(v: unknown, path: string, w: string[]): Array<[Obj, string]> {
  if (isAbsent(v)) return [];
  if (!Array.isArray(v)) {
    wrongType(w, path, "array", v, "[]");
    return [];
  }
  const out: Array<[Obj, string]> = [];
  v.forEach((item, i) => {
    if (isObject(item)) out.push([item, `${path}[${i}]`]);
    else w.push(`${path}[${i}]: expected object, got ${kindOf(item)}; dropped`);
  });
  return out;
}

function obj(v: unknown, path: string, w: string[]): Obj {
  if (isObject(v)) return v;
  if (!isAbsent(v)) wrongType(w, path, "object", v, "defaults");
  return {};
}

function optObj(v: unknown, path: string, key: string, w: string[]): Obj | undefined {
  if (isObject(v)) return v;
  if (!isAbsent(v)) wrongType(w, at(path, key), "object", v, "nothing");
  return undefined;
}

const WHEN_VALUES: readonly string[] = ["on_success", "on_failure", "always"];

function when(v: unknown, path: string, key: string, w: string[]): StepWhen {
  if (typeof v === "string" && WHEN_VALUES.includes(v)) return v as StepWhen;
  if (isAbsent(v) || v === "") return "on_success";
  const shown = typeof v === "string" || typeof v === "number" ? JSON.stringify(v) : kindOf(v);
  w.push(`${at(path, key)}: unknown value ${shown}; using "on_success"`);
  return "on_success";
}

// ---------------------------------------------------------------------------------------------
// Section parsers
// ---------------------------------------------------------------------------------------------

function parseJobInfo(v: unknown, w: string[]): JobInfo {
  const o = obj(v, "job_info", w);
  return {
    id: optNumber(field(o, "id"), "job_info.id", "", w),
    name: str(field(o, "name"), "job_info.name", "", w),
    stage: str(field(o, "stage"), "job_info.stage", "", w),
    pipelineId: optNumber(field(o, "pipeline_id"), "job_info.pipeline_id", "", w),
    projectId: optNumber(field(o, "project_id"), "job_info.project_id", "", w),
    projectName: str(field(o, "project_name"), "job_info.project_name", "", w),
    projectFullPath: str(field(o, "project_full_path"), "job_info.project_full_path", "", w),
    namespaceId: optNumber(field(o, "namespace_id"), "job_info.namespace_id", "", w),
    rootNamespaceId: optNumber(field(o, "root_namespace_id"), "job_info.root_namespace_id", "", w),
    organizationId: optNumber(field(o, "organization_id"), "job_info.organization_id", "", w),
    // GitLab sends instance_id and the runner count as strings; numbers are accepted quietly.
    instanceId: optString(field(o, "instance_id"), "job_info.instance_id", "", w, true),
    instanceUuid: optString(field(o, "instance_uuid"), "job_info.instance_uuid", "", w),
    userId: optNumber(field(o, "user_id"), "job_info.user_id", "", w),
    scopedUserId: optNumber(field(o, "scoped_user_id"), "job_info.scoped_user_id", "", w),
    timeInQueueSeconds: optNumber(
      field(o, "time_in_queue_seconds"),
      "job_info.time_in_queue_seconds",
      "",
      w,
    ),
    projectJobsRunningOnInstanceRunnersCount: optString(
      field(o, "project_jobs_running_on_instance_runners_count"),
      "job_info.project_jobs_running_on_instance_runners_count",
      "",
      w,
      true,
    ),
    queueSize: optNumber(field(o, "queue_size"), "job_info.queue_size", "", w),
    queueDepth: optNumber(field(o, "queue_depth"), "job_info.queue_depth", "", w),
  };
}

function parseGitInfo(v: unknown, w: string[]): GitInfo {
  const o = obj(v, "git_info", w);
  return {
    repoUrl: str(field(o, "repo_url"), "git_info.repo_url", "", w),
    ref: str(field(o, "ref"), "git_info.ref", "", w),
    sha: str(field(o, "sha"), "git_info.sha", "", w),
    beforeSha: str(field(o, "before_sha"), "git_info.before_sha", "", w),
    refType: str(field(o, "ref_type"), "git_info.ref_type", "", w),
    refspecs: strList(field(o, "refspecs"), "git_info.refspecs", "", w),
    depth: num(field(o, "depth"), "git_info.depth", "", w, 0),
    repoObjectFormat: optString(
      field(o, "repo_object_format"),
      "git_info.repo_object_format",
      "",
      w,
    ),
    protected: optBool(field(o, "protected"), "git_info.protected", "", w),
  };
}

function parseRunnerInfo(v: unknown, w: string[]): RunnerInfo {
  const o = obj(v, "runner_info", w);
  return {
    uuid: optString(field(o, "uuid"), "runner_info.uuid", "", w),
    timeout: optNumber(field(o, "timeout"), "runner_info.timeout", "", w),
    runnerSessionUrl: optString(
      field(o, "runner_session_url"),
      "runner_info.runner_session_url",
      "",
      w,
    ),
  };
}

/**
 * `variables[]`: a real job has 60–100 of them, so the usual entry (a key, a string value,
 * booleans or nothing for the flags) is taken without building the path strings of warnings;
 * any other entry goes through the general readers, with the same warnings in the same order
 * (first the entries that are not objects, as `objList` reports them, then the fields).
 */
function parseVariables(v: unknown, w: string[], json: boolean): JobVariable[] {
  if (!Array.isArray(v)) {
    objList(v, "variables", w); // not a list: its warning, and no variables
    return [];
  }
  // A value from the runtime's `JSON.parse` has only own data properties and `Object.prototype`
  // as prototype: when that has none of the six keys, a plain read is `field`'s own-property
  // read (a key the entry lacks reads as `undefined`, and no inherited getter runs). Nothing in
  // the loop runs code that could change `Object.prototype`.
  const plain = json && !("key" in OBJECT_PROTOTYPE) && !("value" in OBJECT_PROTOTYPE) &&
    !("public" in OBJECT_PROTOTYPE) && !("masked" in OBJECT_PROTOTYPE) &&
    !("file" in OBJECT_PROTOTYPE) && !("raw" in OBJECT_PROTOTYPE);
  // A JSON array's length is that of the list (a real array); the list is cut to what it holds.
  const out: JobVariable[] = plain ? new Array(v.length) : [];
  let n = 0;
  let listWarnings: string[] | undefined;
  let fieldWarnings: string[] | undefined;
  for (let i = 0; i < v.length; i++) {
    const o: unknown = v[i];
    if (!isObject(o)) {
      (listWarnings ??= []).push(`variables[${i}]: expected object, got ${kindOf(o)}; dropped`);
      continue;
    }
    const key = plain ? o.key : field(o, "key");
    const value = plain ? o.value : field(o, "value");
    const pub = plain ? o.public : field(o, "public");
    const masked = plain ? o.masked : field(o, "masked");
    const file = plain ? o.file : field(o, "file");
    const raw = plain ? o.raw : field(o, "raw");
    if (
      typeof key === "string" && key !== "" &&
      (typeof value === "string" || value === undefined || value === null) &&
      isFlag(pub) && isFlag(masked) && isFlag(file) && isFlag(raw)
    ) {
      out[n++] = {
        key,
        value: value ?? "",
        public: pub === true,
        masked: masked === true,
        file: file === true,
        raw: raw === true,
      };
    } else {
      const variable = parseVariableObject(o, `variables[${i}]`, fieldWarnings ??= []);
      if (variable !== undefined) out[n++] = variable;
    }
  }
  if (out.length !== n) out.length = n;
  // Spread as before: a list of more warnings than a call takes fails the same way.
  if (listWarnings) w.push(...listWarnings);
  if (fieldWarnings) w.push(...fieldWarnings);
  return out;
}

/** A flag as `bool` takes it without a warning. */
function isFlag(v: unknown): boolean {
  return typeof v === "boolean" || v === undefined || v === null;
}

/** One entry of `variables[]` by the general readers; `undefined` (and a warning) without a key. */
function parseVariableObject(o: Obj, path: string, w: string[]): JobVariable | undefined {
  const key = optString(field(o, "key"), path, "key", w);
  if (key === undefined || key === "") {
    w.push(`${path}: variable without a key; dropped`);
    return undefined;
  }
  return {
    key,
    value: str(field(o, "value"), path, "value", w),
    public: bool(field(o, "public"), path, "public", w),
    masked: bool(field(o, "masked"), path, "masked", w),
    file: bool(field(o, "file"), path, "file", w),
    raw: bool(field(o, "raw"), path, "raw", w),
  };
}

const INPUT_TYPES: readonly string[] = ["string", "number", "boolean", "array", "struct"];

/** The `JobInputType` `v` has, if it is valid input content. */
function contentKind(v: unknown, depth = 0): JobInputType | "null" | undefined {
  if (depth > 64) return undefined; // deeper than any CI configuration: refuse, never recurse on
  if (v === null) return "null";
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "number") return Number.isFinite(v) ? "number" : undefined;
  if (Array.isArray(v)) {
    return v.every((item) => contentKind(item, depth + 1) !== undefined) ? "array" : undefined;
  }
  if (isObject(v)) {
    return Object.values(v).every((item) => contentKind(item, depth + 1) !== undefined)
      ? "struct"
      : undefined;
  }
  return undefined;
}

/**
 * `inputs[]`, validated like the official runner's `JobInput.validate` (a key; content not
 * `null`; a known type; content of that type). Warnings name the key and the kinds only, never
 * the content (it may be sensitive).
 */
function parseInputs(v: unknown, w: string[]): JobInput[] {
  const out: JobInput[] = [];
  for (const [o, path] of objList(v, "inputs", w)) {
    const key = field(o, "key");
    if (typeof key !== "string" || key === "") {
      w.push(`${path}: input without a key; dropped`);
      continue;
    }
    const value = field(o, "value");
    const content = isObject(value) ? field(value, "content") : undefined;
    if (!isObject(value) || isAbsent(content)) {
      w.push(`${path}: input ${JSON.stringify(key)} has no content; dropped`);
      continue;
    }
    const type = field(value, "type");
    if (typeof type !== "string" || !INPUT_TYPES.includes(type)) {
      const shown = typeof type === "string" ? JSON.stringify(type.slice(0, 40)) : kindOf(type);
      w.push(`${path}: input ${JSON.stringify(key)} has an unknown type ${shown}; dropped`);
      continue;
    }
    const kind = contentKind(content);
    if (kind !== type) {
      w.push(
        `${path}: input ${JSON.stringify(key)} is announced as ${type} but holds ${
          kind ?? "an unusable value"
        }; dropped`,
      );
      continue;
    }
    out.push({
      key,
      value: {
        type: type as JobInputType,
        content: content as JobInputContent,
        sensitive: bool(field(value, "sensitive"), path, "value.sensitive", w),
      },
    });
  }
  return out;
}

function parseSteps(v: unknown, w: string[]): JobStep[] | undefined {
  if (isAbsent(v)) return undefined;
  if (!Array.isArray(v)) {
    wrongType(w, "steps", "array", v, "no steps");
    return undefined;
  }
  return objList(v, "steps", w).map(([o, path]) => ({
    name: str(field(o, "name"), path, "name", w),
    script: strList(field(o, "script"), path, "script", w),
    timeout: optNumber(field(o, "timeout"), path, "timeout", w),
    when: when(field(o, "when"), path, "when", w),
    allowFailure: bool(field(o, "allow_failure"), path, "allow_failure", w),
  }));
}

function parseRun(v: unknown, w: string[]): string | undefined {
  if (typeof v === "string") return v;
  if (isAbsent(v)) return undefined;
  // GitLab sends a JSON string; keep a structured value usable by re-encoding it.
  w.push(`run: expected a JSON string, got ${kindOf(v)}; re-encoded`);
  try {
    return JSON.stringify(v);
  } catch {
    return undefined;
  }
}

function parseHooks(v: unknown, w: string[]): JobHook[] {
  return objList(v, "hooks", w).map(([o, path]) => ({
    name: str(field(o, "name"), path, "name", w),
    script: strList(field(o, "script"), path, "script", w),
  }));
}

function parsePorts(v: unknown, path: string, w: string[]): Port[] {
  return objList(v, path, w).map(([o, p]) => ({
    number: optNumber(field(o, "number"), p, "number", w),
    protocol: optString(field(o, "protocol"), p, "protocol", w),
    name: optString(field(o, "name"), p, "name", w),
  }));
}

function parseImageObject(o: Obj, path: string, w: string[]): JobImage {
  return {
    name: str(field(o, "name"), path, "name", w),
    alias: optString(field(o, "alias"), path, "alias", w),
    command: optStrList(field(o, "command"), path, "command", w),
    entrypoint: optStrList(field(o, "entrypoint"), path, "entrypoint", w),
    ports: parsePorts(field(o, "ports"), `${path}.ports`, w),
    executorOpts: optObj(field(o, "executor_opts"), path, "executor_opts", w),
    pullPolicy: optStrList(field(o, "pull_policy"), path, "pull_policy", w),
  };
}

function parseImage(v: unknown, w: string[]): JobImage | undefined {
  const o = optObj(v, "image", "", w);
  return o === undefined ? undefined : parseImageObject(o, "image", w);
}

function parseServices(v: unknown, w: string[]): JobService[] {
  return objList(v, "services", w).map(([o, path]) => ({
    ...parseImageObject(o, path, w),
    variables: objList(field(o, "variables"), `${path}.variables`, w).map(([vo, vp]) => ({
      key: str(field(vo, "key"), vp, "key", w),
      value: str(field(vo, "value"), vp, "value", w),
    })),
  }));
}

function nonEmpty(s: string, def: string): string {
  return s === "" ? def : s;
}

function parseArtifacts(v: unknown, w: string[]): ArtifactSpec[] {
  return objList(v, "artifacts", w).map(([o, path]) => ({
    name: optString(field(o, "name"), path, "name", w),
    untracked: bool(field(o, "untracked"), path, "untracked", w),
    paths: strList(field(o, "paths"), path, "paths", w),
    exclude: strList(field(o, "exclude"), path, "exclude", w),
    when: when(field(o, "when"), path, "when", w),
    expireIn: optString(field(o, "expire_in"), path, "expire_in", w),
    artifactType: nonEmpty(str(field(o, "artifact_type"), path, "artifact_type", w), "archive"),
    artifactFormat: nonEmpty(str(field(o, "artifact_format"), path, "artifact_format", w), "zip"),
  }));
}

function parseCache(v: unknown, w: string[]): CacheSpec[] {
  return objList(v, "cache", w).map(([o, path]) => ({
    key: str(field(o, "key"), path, "key", w),
    untracked: bool(field(o, "untracked"), path, "untracked", w),
    paths: strList(field(o, "paths"), path, "paths", w),
    policy: nonEmpty(str(field(o, "policy"), path, "policy", w), "pull-push"),
    when: when(field(o, "when"), path, "when", w),
    fallbackKeys: strList(field(o, "fallback_keys"), path, "fallback_keys", w),
  }));
}

function parseCredentials(v: unknown, w: string[]): Credential[] {
  return objList(v, "credentials", w).map(([o, path]) => ({
    type: str(field(o, "type"), path, "type", w),
    url: str(field(o, "url"), path, "url", w),
    username: str(field(o, "username"), path, "username", w),
    password: str(field(o, "password"), path, "password", w),
  }));
}

function parseFeatures(v: unknown, w: string[]): JobFeatures {
  const o = obj(v, "features", w);
  const tracing = field(o, "tracing");
  return {
    traceSections: bool(field(o, "trace_sections"), "features.trace_sections", "", w),
    failureReasons: strList(field(o, "failure_reasons"), "features.failure_reasons", "", w),
    tokenMaskPrefixes: strList(
      field(o, "token_mask_prefixes"),
      "features.token_mask_prefixes",
      "",
      w,
    ),
    tracing: isAbsent(tracing) ? undefined : tracing,
  };
}

function parseDependencies(v: unknown, w: string[]): DependencySpec[] {
  return objList(v, "dependencies", w).map(([o, path]) => {
    const id = field(o, "id");
    if (isAbsent(id)) w.push(`${path}.id: missing; using 0`);
    const dep: DependencySpec = {
      id: num(id, path, "id", w, 0),
      name: str(field(o, "name"), path, "name", w),
      token: str(field(o, "token"), path, "token", w),
    };
    const file = optObj(field(o, "artifacts_file"), path, "artifacts_file", w);
    if (file !== undefined) {
      dep.artifactsFile = {
        filename: str(field(file, "filename"), path, "artifacts_file.filename", w),
        size: num(field(file, "size"), path, "artifacts_file.size", w, 0),
      };
    }
    return dep;
  });
}

// ---------------------------------------------------------------------------------------------
// Top level
// ---------------------------------------------------------------------------------------------

/** A positive safe integer, or a decimal string of one. */
function readId(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v > 0 ? v : undefined;
  if (typeof v === "string" && /^\s*\d+\s*$/.test(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  }
  return undefined;
}

function readToken(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** `JSON.parse` as the module found it: its results hold own data properties only. */
const NATIVE_JSON_PARSE = JSON.parse;
const OBJECT_PROTOTYPE: object = Object.getPrototypeOf({});

/**
 * The parser. `json`: `input` is what the runtime's `JSON.parse` returned (see
 * `parseVariables`).
 */
function parseValue(input: unknown, json: boolean): ParseResult {
  if (!isObject(input)) {
    return { ok: false, error: `Job payload is not a JSON object (got ${kindOf(input)})` };
  }
  const rawId = field(input, "id");
  const rawToken = field(input, "token");
  const id = readId(rawId);
  const token = readToken(rawToken);
  if (id === undefined || token === undefined) {
    const problems: string[] = [];
    if (id === undefined) problems.push(`no valid id (got ${describeValue(rawId)})`);
    if (token === undefined) problems.push(`no valid token (got ${describeValue(rawToken)})`);
    const result: Extract<ParseResult, { ok: false }> = {
      ok: false,
      error: `Job payload has ${problems.join(" and ")}`,
    };
    if (id !== undefined) result.id = id;
    if (token !== undefined) result.token = token;
    return result;
  }

  const w: string[] = [];
  if (typeof rawId === "string") w.push("id: expected number, got string; converted");
  const payload: JobPayload = {
    id,
    token,
    allowGitFetch: bool(field(input, "allow_git_fetch"), "allow_git_fetch", "", w),
    jobInfo: parseJobInfo(field(input, "job_info"), w),
    gitInfo: parseGitInfo(field(input, "git_info"), w),
    runnerInfo: parseRunnerInfo(field(input, "runner_info"), w),
    variables: collapseVariables(parseVariables(field(input, "variables"), w, json)),
    inputs: parseInputs(field(input, "inputs"), w),
    hooks: parseHooks(field(input, "hooks"), w),
    services: parseServices(field(input, "services"), w),
    artifacts: parseArtifacts(field(input, "artifacts"), w),
    cache: parseCache(field(input, "cache"), w),
    credentials: parseCredentials(field(input, "credentials"), w),
    features: parseFeatures(field(input, "features"), w),
    dependencies: parseDependencies(field(input, "dependencies"), w),
    raw: input,
  };
  const steps = parseSteps(field(input, "steps"), w);
  if (steps !== undefined) payload.steps = steps;
  const run = parseRun(field(input, "run"), w);
  if (run !== undefined) payload.run = run;
  const image = parseImage(field(input, "image"), w);
  if (image !== undefined) payload.image = image;
  const secrets = optObj(field(input, "secrets"), "secrets", "", w);
  if (secrets !== undefined) payload.secrets = secrets;
  const policyOptions = optObj(field(input, "policy_options"), "policy_options", "", w);
  if (policyOptions !== undefined) payload.policyOptions = policyOptions;
  return { ok: true, payload, warnings: w };
}

/** A short description of a bad id/token for the error message (never the full value). */
function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string") return v === "" ? "an empty string" : "a string";
  if (typeof v === "number") return String(v);
  return kindOf(v);
}

// ---------------------------------------------------------------------------------------------
// Recovery from invalid JSON (C2.2)
// ---------------------------------------------------------------------------------------------

/**
 * Scans `text` for the keys `"id"` and `"token"` of the outermost object, skipping nested
 * objects and arrays and the contents of strings. Works on truncated or otherwise broken JSON
 * as long as the part before those keys is intact (GitLab renders them first).
 */
function recoverIdAndToken(text: string): { id?: number; token?: string } {
  const out: { id?: number; token?: string } = {};
  const start = text.indexOf("{");
  if (start < 0) return out;
  let depth = 0;
  let i = start;
  while (i < text.length && (out.id === undefined || out.token === undefined)) {
    const c = text[i];
    if (c === '"') {
      const s = readJsonString(text, i);
      if (s === undefined) break;
      i = s.end;
      if (depth !== 1) continue;
      let j = skipSpace(text, i);
      if (text[j] !== ":") continue;
      j = skipSpace(text, j + 1);
      if (s.value === "id" && out.id === undefined) {
        const m = /^\d+(?![\d.eE])/.exec(text.slice(j, j + 32));
        const quoted = text[j] === '"' ? readJsonString(text, j) : undefined;
        const id = readId(m ? Number(m[0]) : quoted?.value);
        if (id !== undefined) out.id = id;
      } else if (s.value === "token" && out.token === undefined && text[j] === '"') {
        const token = readToken(readJsonString(text, j)?.value);
        if (token !== undefined) out.token = token;
      }
      continue;
    }
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth <= 0) break;
    }
    i++;
  }
  return out;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && /\s/.test(text[i])) i++;
  return i;
}

/** Reads the JSON string starting at `text[i] === '"'`; `undefined` when it is unterminated. */
function readJsonString(text: string, i: number): { value: string; end: number } | undefined {
  let j = i + 1;
  while (j < text.length) {
    const c = text[j];
    if (c === "\\") {
      j += 2;
      continue;
    }
    if (c === '"') {
      const literal = text.slice(i, j + 1);
      let value: string;
      try {
        value = JSON.parse(literal);
      } catch {
        value = literal.slice(1, -1);
      }
      return { value, end: j + 1 };
    }
    j++;
  }
  return undefined;
}
