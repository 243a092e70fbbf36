/**
 * Uploading a job's artifacts after its steps, like the official runner's
 * `artifacts-uploader` helper (GR `commands/helpers/artifacts_uploader.go`, `file_archiver.go`,
 * `network/gitlab.go` `UploadRawArtifacts`, the shells' `writeUploadArtifacts`):
 *
 * - each `artifacts[]` entry whose `when` fits the script result is uploaded on its own, in
 *   payload order; an entry with neither `paths` nor `untracked` is skipped;
 * - `$VAR` and `${VAR}` in `name`, `paths` and `exclude` are expanded from the job variables
 *   with GitLab's rules ({@link expandVariables});
 * - files are matched with doublestar semantics ({@link matchArtifactPaths}); nothing matched
 *   means no request at all;
 * - the archive (`zip` with deflate at `ARTIFACT_COMPRESSION_LEVEL`, multi-member `gzip`, or
 *   `raw`) is streamed into the request and rebuilt from the files for every attempt, so nothing
 *   is held in memory;
 * - retries: 3 tries, 6 while GitLab answers 503; 403 and 413 are final; waits of 1, 2, 4, 5,
 *   5 s (the official backoff, no jitter). Each try also goes through the client's own retry
 *   policy (PROTOCOL §7), as in the official runner;
 * - the first artifact that fails stops the uploads (the official stage script exits on the
 *   first failed command), and the job is to fail with `script_failure` and exit code 1 (the
 *   helper's exit status; GR `common/build.go` `ensureSupportedFailureReason` turns a stage
 *   error without a reason into `script_failure`), unless the script already failed, whose error
 *   comes first (GR `pickPriorityError`).
 *
 * @module
 */

import type { ArtifactSpec } from "../api/payload.ts";
import type { Client } from "../api/client.ts";
import type { Clock } from "../clock.ts";
import { ApiError, RequestError } from "../errors.ts";
import { backoffMs, retry } from "../api/retry.ts";
import {
  type ArchiveEntry,
  artifactFileName,
  compressionLevelFromVariable,
  gzipArchive,
  rawArchive,
  zipArchive,
} from "./archive.ts";
import { ArtifactError } from "./errors.ts";
import { whenMatches } from "../_when.ts";
import type { UploadableFile } from "./files.ts";
import { matchArtifactPaths } from "./path_match.ts";
import { cleanPath, compareCodePoints } from "./_path.ts";
import { statusLine } from "./_http_status.ts";
import { expandVariables, lookupWith, osExpand, type VariableLike } from "../variables.ts";

/** Job variables, as a map or a lookup function. */
export type VariableLookup = ReadonlyMap<string, string> | ((key: string) => string | undefined);

/** Options of {@link uploadArtifacts}. */
export interface UploadArtifactsOptions {
  /** The API client. */
  client: Client;
  /** The job's id. */
  jobId: number;
  /** The job's token (sent as `JOB-TOKEN`, never logged). */
  token: string;
  /** The job's `artifacts[]` entries. */
  specs: readonly ArtifactSpec[];
  /**
   * The files the job offers, paths relative to the project directory. Called once per
   * artifact entry, so it must be possible to walk it again; each matched file's `open()` is
   * called once per upload attempt.
   */
  files: () => AsyncIterable<UploadableFile> | Iterable<UploadableFile>;
  /** Whether the script step failed: decides which `when` values upload. */
  scriptFailed: boolean;
  /**
   * The job variables: `ARTIFACT_COMPRESSION_LEVEL` and the values of `$VAR` / `${VAR}` in
   * `name`, `paths` and `exclude`. The job's variables (a list) are expanded with GitLab's rules
   * ({@link expandVariables}: values expanded once, raw ones verbatim, `$$` is `$`, unknown
   * names empty); a map or a function gives values used as they are.
   */
  variables?: VariableLookup | Iterable<VariableLike>;
  /** Writes one line to the job log (without the newline). */
  log: (line: string) => void;
  /** Clock for the waits between tries. */
  clock: Clock;
  /** Aborts the uploads: the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * The absolute project directory: absolute patterns inside it are made relative, and it is
   * named in the "no matching files" warning. Default: none (absolute patterns match nothing).
   */
  projectDir?: string;
}

/** An artifact that was uploaded. */
export interface UploadedArtifact {
  /** The artifact's name ({@link UploadFailure.name}). */
  name: string;
  /** The multipart file name, e.g. `artifacts.zip`. */
  filename: string;
  /** `artifact_type`. */
  type: string;
  /** `artifact_format`. */
  format: string;
  /** Number of files in it. */
  files: number;
  /** Size of the uploaded archive in bytes. */
  bytes: number;
  /** Upload attempts it took. */
  tries: number;
}

/** An artifact that could not be uploaded. */
export interface UploadFailure {
  /** The artifact's `name` after variable expansion, or its `artifact_type` when it has none. */
  name: string;
  /**
   * Why: an {@link ArtifactError} (archive), an `ApiError` (GitLab's last answer) or a
   * `RequestError` (no answer).
   */
  error: Error;
}

/** What {@link uploadArtifacts} did. */
export interface UploadArtifactsResult {
  /** Every artifact due was uploaded (or had no files, which is not an error). */
  ok: boolean;
  /** The uploaded artifacts, in order. */
  uploaded: UploadedArtifact[];
  /** The failed artifact (at most one: the first failure stops the uploads). */
  failures: UploadFailure[];
  /**
   * When not `ok`: the failure reason the official runner gives such a job, `script_failure`
   * (the job's own script error, if any, takes precedence).
   */
  failureReason?: "script_failure";
  /** When not `ok`: the exit code the official runner reports (the helper exits with 1). */
  exitCode?: number;
}

const DEFAULT_TRIES = 3;
const SERVICE_UNAVAILABLE_TRIES = 6;
const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 5000;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** How `name`, `paths`, `exclude` and `ARTIFACT_COMPRESSION_LEVEL` are read from the variables. */
interface Expander {
  /** Expands `$VAR` / `${VAR}`. */
  expand(text: string): string;
  /** The (expanded) value of one variable, `undefined` when there is none. */
  get(key: string): string | undefined;
}

/**
 * The job's variables (a list) are expanded with {@link expandVariables}, GitLab's rules; a map
 * or a function holds values that are used as they are, with the same `$` syntax (`os.Expand`:
 * `$$` is `$`, unknown and special names are empty).
 */
function expander(variables: UploadArtifactsOptions["variables"]): Expander {
  if (variables === undefined) variables = [];
  if (typeof variables === "function" || variables instanceof Map) {
    const get: (key: string) => string | undefined = typeof variables === "function"
      ? variables
      : (key) => (variables as ReadonlyMap<string, string>).get(key);
    const lookup = lookupWith(get);
    return { expand: (text) => osExpand(text, lookup), get };
  }
  const list = [...(variables as Iterable<VariableLike>)];
  const known = new Set(list.map((v) => v.key));
  return {
    expand: (text) => expandVariables(text, list),
    get: (key) => known.has(key) ? expandVariables(`\${${key}}`, list) : undefined,
  };
}

function isLink(file: UploadableFile): boolean {
  return file.mode !== undefined && (file.mode & S_IFMT) === S_IFLNK;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** How many tries an error allows in total; 0 when it is final. */
function allowedTries(err: unknown): number {
  if (err instanceof ApiError) {
    if (err.status === 403 || err.status === 413) return 0;
    if (err.status === 503) return SERVICE_UNAVAILABLE_TRIES;
    return DEFAULT_TRIES;
  }
  if (err instanceof RequestError) return DEFAULT_TRIES;
  return 0;
}

/** The result word the official runner logs for an answer. */
function resultWord(status: number): { word: string; level: "ERROR" | "WARNING" } {
  switch (status) {
    case 403:
      return { word: "forbidden", level: "ERROR" };
    case 413:
      return { word: "too large archive", level: "WARNING" };
    case 503:
      return { word: "service unavailable", level: "ERROR" };
    case 307:
      return { word: "redirected", level: "WARNING" };
    default:
      return { word: "failed", level: "WARNING" };
  }
}

interface Candidate {
  path: string;
  file: UploadableFile;
}

async function collectFiles(
  files: AsyncIterable<UploadableFile> | Iterable<UploadableFile>,
): Promise<Map<string, UploadableFile>> {
  const byPath = new Map<string, UploadableFile>();
  for await (const file of files) {
    if (typeof file?.path !== "string") continue;
    const path = cleanPath(file.path);
    if (!byPath.has(path)) byPath.set(path, file);
  }
  return byPath;
}

/** Wraps an archive stream: counts its bytes and remembers an archive error. */
function observed(
  stream: ReadableStream<Uint8Array>,
  state: { bytes: number; error?: unknown },
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        state.error = err;
        controller.error(err);
        return;
      }
      if (result.done) {
        controller.close();
        return;
      }
      state.bytes += result.value.byteLength;
      controller.enqueue(result.value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

interface Prepared {
  name: string;
  filename: string;
  type: string;
  format: string;
  expireIn?: string;
  entries: ArchiveEntry[];
  level: number;
}

/** Matches the files of one artifact entry and logs what was found, like `file_archiver.go`. */
async function prepare(
  spec: ArtifactSpec,
  options: UploadArtifactsOptions,
  x: Expander,
): Promise<Prepared | undefined> {
  const { log } = options;
  const rawName = spec.name !== undefined ? x.expand(spec.name) : undefined;
  const name = rawName || spec.artifactType;
  const paths = spec.paths.map((p) => x.expand(p));
  const exclude = spec.exclude.map((p) => x.expand(p));
  const format = spec.artifactFormat || "zip";
  const projectDir = options.projectDir;
  const available = await collectFiles(options.files());
  const all = [...available.keys()];

  const matched = new Set<string>();
  for (const pattern of paths) {
    const found = matchArtifactPaths(all, { paths: [pattern], exclude, projectDir });
    for (const path of found) matched.add(path);
    const shown = cleanPath(pattern);
    if (found.length === 0) {
      log(
        `WARNING: ${shown}: no matching files. Ensure that the artifact path is relative to ` +
          `the working directory (${projectDir ?? "."})`,
      );
    } else {
      log(`${shown}: found ${found.length} matching artifact files and directories`);
    }
  }
  if (spec.untracked) {
    // There is no git checkout to ask: the offered files are the untracked ones.
    const found = matchArtifactPaths(all, { paths: ["."], exclude, projectDir });
    for (const path of found) matched.add(path);
    if (found.length === 0) log("WARNING: untracked: no files");
    else log(`untracked: found ${found.length} files`);
  }
  if (exclude.length > 0) {
    // Like the official runner: count the files each rule kept out (first matching rule).
    const candidates = new Set(
      matchArtifactPaths(all, { paths: spec.untracked ? ["."] : paths, projectDir }),
    );
    let remaining = [...candidates];
    for (const rule of exclude) {
      const kept = new Set(
        matchArtifactPaths(remaining, { paths: ["."], exclude: [rule], projectDir }),
      );
      const excluded = remaining.length - kept.size;
      if (excluded > 0) log(`${rule}: excluded ${excluded} files`);
      remaining = remaining.filter((p) => kept.has(p));
    }
  }

  const chosen: Candidate[] = [...matched].sort(compareCodePoints).map((path) => ({
    path,
    file: available.get(path)!,
  }));
  let usable = chosen;
  if (format !== "zip") {
    usable = chosen.filter((c) => {
      if (!isLink(c.file)) return true;
      log(`WARNING: ${c.path}: symbolic links cannot be stored in a ${format} artifact, skipped`);
      return false;
    });
  }
  if (usable.length === 0) {
    log("ERROR: No files to upload");
    return undefined;
  }
  return {
    name,
    filename: artifactFileName(rawName, format),
    type: spec.artifactType,
    format,
    expireIn: spec.expireIn,
    entries: usable.map(({ path, file }) => ({
      path,
      open: () => file.open(),
      ...(file.size !== undefined ? { size: file.size } : {}),
      ...(file.mode !== undefined ? { mode: file.mode } : {}),
      ...(file.mtime !== undefined ? { mtime: file.mtime } : {}),
    })),
    level: compressionLevelFromVariable(x.get("ARTIFACT_COMPRESSION_LEVEL")),
  };
}

function archiveStream(prepared: Prepared): ReadableStream<Uint8Array> {
  switch (prepared.format) {
    case "zip":
      return zipArchive(prepared.entries, { level: prepared.level });
    case "gzip":
      return gzipArchive(prepared.entries);
    case "raw":
      return rawArchive(prepared.entries);
    default:
      throw new ArtifactError(
        `Unsupported artifact format ${JSON.stringify(prepared.format)}: only zip, gzip and raw`,
      );
  }
}

/**
 * Refuses, before any request, an artifact that cannot be built: a `raw` one without exactly one
 * file, or an unknown format. (Paths are already cleaned and unique.)
 */
function checkArchive(prepared: Prepared): void {
  if (prepared.format === "raw") {
    // Checks the count at once; the stream is not started, so no file is opened.
    rawArchive(prepared.entries).cancel().catch(() => {});
  } else if (prepared.format !== "zip" && prepared.format !== "gzip") {
    archiveStream(prepared);
  }
}

/** Uploads one prepared artifact with the official retry policy. */
async function upload(
  prepared: Prepared,
  options: UploadArtifactsOptions,
): Promise<UploadedArtifact> {
  const { client, log, clock, signal } = options;
  checkArchive(prepared);
  const prefix = prepared.type
    ? `Uploading artifacts as ${JSON.stringify(prepared.type)} to coordinator...`
    : "Uploading artifacts to coordinator...";
  const fields = `id=${options.jobId}`;
  const attempt = async (n: number): Promise<UploadedArtifact> => {
    const state: { bytes: number; error?: unknown } = { bytes: 0 };
    try {
      await client.uploadArtifact(options.jobId, options.token, {
        open: () => {
          state.bytes = 0;
          state.error = undefined;
          return observed(archiveStream(prepared), state);
        },
        filename: prepared.filename,
        artifactType: prepared.type,
        artifactFormat: prepared.format,
        expireIn: prepared.expireIn,
        signal,
      });
      log(
        `${prefix} ${statusLine(201)}  ${fields} responseStatus=${statusLine(201)} ` +
          `files=${prepared.entries.length} bytes=${state.bytes}`,
      );
      return {
        name: prepared.name,
        filename: prepared.filename,
        type: prepared.type,
        format: prepared.format,
        files: prepared.entries.length,
        bytes: state.bytes,
        tries: n + 1,
      };
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      if (state.error !== undefined) {
        // The archive itself failed (a file could not be read): another try would not help.
        throw state.error instanceof ArtifactError
          ? state.error
          : new ArtifactError(`Failed to build the artifact: ${message(state.error)}`, {
            cause: state.error,
          });
      }
      if (err instanceof ApiError) {
        const { word, level } = resultWord(err.status);
        log(
          `${level}: ${prefix} ${word}  ${fields} responseStatus=${statusLine(err.status)} ` +
            `status=${err.status}`,
        );
      } else {
        log(`ERROR: ${prefix} error  error=${message(err)} ${fields}`);
      }
      throw err;
    }
  };
  // The request policy (C8) with the official upload rules: 3 tries (6 on 503), 403 and 413
  // final, waits of 1, 2, 4, 5, 5 s.
  return await retry(attempt, {
    clock,
    signal,
    attempts: Infinity,
    retryable: (err, n) => {
      if (err instanceof ArtifactError) return false;
      if (err instanceof RequestError && !err.transient) return false;
      if (n + 1 >= allowedTries(err)) return false;
      // The official backoff (`jpillora/backoff`: min 1 s, max 5 s, factor 2), without jitter.
      return backoffMs(n, { min: MIN_BACKOFF_MS, max: MAX_BACKOFF_MS, random: () => 1 });
    },
    onRetry: (err) => log(`WARNING: Retrying...  error=${message(err)}`),
  });
}

/**
 * Uploads the artifacts of a job after its steps (see the module documentation for the rules),
 * logging like the official runner: `Uploading artifacts...`, `<path>: found N matching
 * artifact files and directories` (or `WARNING: <path>: no matching files…`), then
 * `Uploading artifacts as "archive" to coordinator... 201 Created  id=… responseStatus=201
 * Created files=N bytes=M`; retries and failures are logged too, the token never is.
 *
 * A `raw` artifact must match exactly one file; several fail the artifact without a request.
 * Symbolic links (mode `0o120000`) are stored as links in zip artifacts and left out of gzip and
 * raw ones. `untracked: true` adds every offered file (there is no git checkout to ask which
 * are untracked), minus `exclude`.
 *
 * @param options See {@link UploadArtifactsOptions}.
 * @returns What was uploaded and what failed, with the job failure to report when not `ok`.
 * @throws The signal's reason when `options.signal` aborts.
 *
 * @example Upload an archive to the in-process mock
 * ```ts
 * import { uploadArtifacts } from "./upload.ts";
 * import { Client } from "../api/client.ts";
 * import { systemClock } from "../clock.ts";
 * import { GitLabMock } from "../mock/mod.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const job = mock.job().artifact({ name: "bin", paths: ["out/"] }).enqueue();
 * const client = new Client(mock.url, { fetch: mock.fetch });
 * const taken = await client.requestJob(mock.runnerToken);
 * if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
 * const payload = taken.job.payload;
 * const lines: string[] = [];
 * const result = await uploadArtifacts({
 *   client,
 *   jobId: payload.id,
 *   token: payload.token,
 *   specs: payload.artifacts,
 *   files: () => [{ path: "out/app", open: () => new Blob(["binary"]).stream() }],
 *   scriptFailed: false,
 *   log: (line) => lines.push(line),
 *   clock: systemClock,
 * });
 * strictEqual(result.ok, true);
 * strictEqual(job.artifacts[0].filename, "bin.zip");
 * deepStrictEqual(lines.slice(0, 2), [
 *   "Uploading artifacts...",
 *   "out: found 1 matching artifact files and directories",
 * ]);
 * ```
 */
export async function uploadArtifacts(
  options: UploadArtifactsOptions,
): Promise<UploadArtifactsResult> {
  const x = expander(options.variables);
  const result: UploadArtifactsResult = { ok: true, uploaded: [], failures: [] };
  for (const spec of options.specs) {
    options.signal?.throwIfAborted();
    if (!whenMatches(spec.when, options.scriptFailed)) continue;
    if (spec.paths.length === 0 && !spec.untracked) continue;
    options.log("Uploading artifacts...");
    const name = (spec.name !== undefined ? x.expand(spec.name) : "") || spec.artifactType;
    try {
      const prepared = await prepare(spec, options, x);
      if (prepared === undefined) continue;
      result.uploaded.push(await upload(prepared, options));
    } catch (err) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      const error = err instanceof Error ? err : new Error(String(err));
      options.log(`FATAL: ${error.message}`);
      result.ok = false;
      result.failures.push({ name, error });
      result.failureReason = "script_failure";
      result.exitCode = 1;
      break;
    }
  }
  return result;
}
