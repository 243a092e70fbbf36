/**
 * Downloading the artifacts of a job's dependencies (`dependencies[]`), like the official
 * runner's `artifacts-downloader` helper (GR `commands/helpers/artifacts_downloader.go`,
 * `network/gitlab.go` `DownloadArtifacts`), and reading them safely.
 *
 * - The first try asks for `direct_download=true` (a redirect to object storage, followed
 *   without `JOB-TOKEN` when it points to another origin); later tries go through GitLab.
 * - 3 tries, 1 s apart; 404 means "no artifact" (`undefined`), 401 and 403 are final. Each
 *   try starts the destination from nothing, so a body cut in the middle never leaves a
 *   corrupt file.
 * - Only `http:` and `https:` answers are used (C9.2): an answer from any other URL (a redirect
 *   to `file:` or `data:`) is an {@link ArtifactError}, not retried, and nothing is read from it.
 * - Up to `memoryLimit` bytes (64 KiB) stay in memory; a larger artifact is streamed to a file
 *   in the job's temporary directory, `<buildDir>.tmp/` (outside the build directory, so never
 *   uploaded as an artifact; C10.5), deleted when the artifact is closed. Neither the download
 *   nor reading entries holds the whole artifact in memory (C10.1).
 * - Bounded (C10.2): a body larger than the size GitLab stated (`artifacts_file.size`), or than
 *   `limits.maxDownloadSize` (1 GiB) when it stated none, is cut off and fails the download;
 *   an artifact listing more than `limits.maxEntries` entries (250 000) or whose extraction
 *   would write more than `limits.maxExtractSize` bytes (16 GiB) is refused before anything is
 *   written. These {@link ArtifactError}s are not retried and name the limit.
 * - The format is told by magic bytes: zip, or gzip (one member per file, as the official
 *   runner writes them); `tar.zst` is not supported.
 *
 * This file is the download and its retry loop ({@link Dependency}); the rest lives by
 * responsibility: `artifact.ts` (the {@link Artifact} interface and limits), `_byte_source.ts`
 * (the body stored in memory or in a file, bounded), `_zip.ts` and `_gzip.ts` (one
 * {@link Artifact} per format), `_extract.ts` (safe, bounded extraction for every format).
 *
 * @module
 */

import type { Client } from "../api/client.ts";
import type { DependencySpec } from "../api/payload.ts";
import type { Clock } from "../clock.ts";
import { ApiError, RequestError } from "../errors.ts";
import { retry } from "../api/retry.ts";
import { lazy } from "../_lazy.ts";
import { ArtifactError } from "./errors.ts";
import { statusLine } from "./_http_status.ts";
import { type Artifact, type ArtifactLimits, DEFAULT_MAX_DOWNLOAD_SIZE } from "./artifact.ts";
import type { ByteSource, SizeLimit } from "./_byte_source.ts";

/** The download's machinery, loaded with the first download (an idle runner does not hold it). */
const machinery = lazy(async () => {
  const [{ rm }, { detectFormat }, { storeBody }, { ZipDownload }, { GzipDownload }] = await Promise
    .all([
      import("node:fs/promises"),
      import("./reader.ts"),
      import("./_byte_source.ts"),
      import("./_zip.ts"),
      import("./_gzip.ts"),
    ]);
  return { rm, detectFormat, storeBody, ZipDownload, GzipDownload };
});

export type { ArtifactEntry } from "./reader.ts";
export {
  type Artifact,
  type ArtifactLimits,
  DEFAULT_MAX_DOWNLOAD_SIZE,
  DEFAULT_MAX_EXTRACT_SIZE,
  type ExtractOptions,
} from "./artifact.ts";

/** Options shared by the dependencies of a job (see {@link createDependencies}). */
export interface DependencyOptions {
  /** The API client. */
  client: Client;
  /** The job's build directory. Nothing is written there unless an artifact is extracted. */
  buildDir: string;
  /**
   * Where downloads larger than `memoryLimit` are kept while their artifact is open (created
   * when needed; each file is deleted when its artifact is closed). Default `<buildDir>.tmp`,
   * next to the build directory, like the official runner's `<project dir>.tmp`: never inside
   * it, so it is never uploaded as an artifact. `runJob` removes `<buildDir>.tmp` when the job
   * ends.
   */
  tempDir?: string;
  /** Size and entry limits of downloads and extraction. */
  limits?: ArtifactLimits;
  /** Clock for the wait between tries. */
  clock: Clock;
  /** Writes one line to the job log (without the newline). Default: nothing is logged. */
  log?: (line: string) => void;
  /** Largest artifact kept in memory, in bytes (default 64 KiB); larger ones go to disk. */
  memoryLimit?: number;
}

/** Options of {@link createDependencies}. */
export interface CreateDependenciesOptions extends DependencyOptions {
  /** The job's `dependencies[]`. */
  dependencies: readonly DependencySpec[];
}

/** Options of {@link Dependency.download}. */
export interface DependencyDownloadOptions {
  /** Aborts the download: it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

const DEFAULT_MEMORY_LIMIT = 64 * 1024;
const TRIES = 3;
const RETRY_WAIT_MS = 1000;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/**
 * A job whose artifacts this job needs (`dependencies[]`). {@link Dependency.download} fetches
 * its artifact once; later calls give the same {@link Artifact} without a request.
 *
 * @example Download every dependency that has an artifact
 * ```ts
 * import { deepStrictEqual, strictEqual } from "node:assert";
 * import { createDependencies } from "./download.ts";
 * import { Client } from "../api/client.ts";
 * import { systemClock } from "../clock.ts";
 * import { zipArchive } from "./archive.ts";
 * import { GitLabMock } from "../mock/mod.ts";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * const zip = zipArchive([{ path: "out/app", open: () => new Blob(["binary"]).stream() }]);
 * const mock = new GitLabMock();
 * const build = mock.job().name("build").state("success")
 *   .artifactsFile(new Uint8Array(await new Response(zip).arrayBuffer())).enqueue();
 * mock.job().name("test").dependency(build).enqueue();
 * const client = new Client(mock.url, { fetch: mock.fetch });
 * const taken = await client.requestJob(mock.runnerToken);
 * if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
 * const buildDir = await mkdtemp(join(tmpdir(), "build-"));
 * const [dependency] = createDependencies({
 *   client,
 *   dependencies: taken.job.payload.dependencies,
 *   buildDir,
 *   clock: systemClock,
 * });
 * const artifact = await dependency.download();
 * strictEqual(dependency.name, "build");
 * deepStrictEqual((await artifact?.entries())?.map((e) => e.path), ["out/app"]);
 * await artifact?.close?.();
 * await rm(buildDir, { recursive: true });
 * ```
 */
export class Dependency {
  /** The dependency job's id. */
  readonly id: number;
  /** The dependency job's name. */
  readonly name: string;
  /** Whether GitLab says the job has an artifact (`artifacts_file` is present). */
  readonly hasArtifacts: boolean;
  /** `artifacts_file`: the archive's file name and size, when present. */
  readonly artifactsFile?: { filename: string; size: number };
  #token: string;
  #options: DependencyOptions;
  #result: Promise<Artifact | undefined> | undefined;

  /**
   * Use {@link createDependencies} rather than this constructor.
   *
   * @param spec The dependency from the job payload.
   * @param options What the download needs.
   */
  constructor(spec: DependencySpec, options: DependencyOptions) {
    this.id = spec.id;
    this.name = spec.name;
    this.hasArtifacts = spec.artifactsFile !== undefined;
    if (spec.artifactsFile !== undefined) this.artifactsFile = { ...spec.artifactsFile };
    this.#token = spec.token;
    this.#options = options;
  }

  /**
   * Downloads the artifact with the dependency's token (see the module documentation for the
   * retry rules). Resolves to `undefined` when there is none: no `artifacts_file` in the
   * payload (no request is made), or GitLab answered 404. The result is kept: later calls
   * return the same {@link Artifact} until it is closed; a failed download is tried anew.
   *
   * @param options The abort signal.
   * @returns The artifact, or `undefined`.
   * @throws {ApiError} GitLab refused (401, 403) or kept failing.
   * @throws {RequestError} No answer, or the body broke off, on every try.
   * @throws {ArtifactError} The data is not a zip or gzip archive; the body went beyond the
   *   size limit (`err.limit`); a redirect led to a URL that is not http or https. Not retried.
   */
  download(options: DependencyDownloadOptions = {}): Promise<Artifact | undefined> {
    if (!this.hasArtifacts) return Promise.resolve(undefined);
    if (this.#result === undefined) {
      const result = this.#download(options.signal);
      this.#result = result;
      result.catch(() => {
        if (this.#result === result) this.#result = undefined;
      });
    }
    return this.#result;
  }

  async #download(signal: AbortSignal | undefined): Promise<Artifact | undefined> {
    const { client, clock } = this.#options;
    const { rm, storeBody } = await machinery();
    const log = this.#options.log ?? (() => {});
    const limit = this.#options.memoryLimit ?? DEFAULT_MEMORY_LIMIT;
    const tempDir = this.#options.tempDir ?? `${this.#options.buildDir.replace(/[/\\]+$/, "")}.tmp`;
    const file = `${tempDir.replace(/[/\\]+$/, "")}/artifact-${this.id}.download`;
    const stated = this.artifactsFile?.size ?? 0;
    const max: SizeLimit = stated > 0 ? { bytes: stated, name: "artifacts_file.size" } : {
      bytes: this.#options.limits?.maxDownloadSize ?? DEFAULT_MAX_DOWNLOAD_SIZE,
      name: "maxDownloadSize",
    };
    const endpoint = `GET /api/v4/jobs/${this.id}/artifacts`;
    const prefix = "Downloading artifacts from coordinator...";
    const fields = `id=${this.id}`;
    log(`Downloading artifacts for ${this.name} (${this.id})...`);
    const attempt = async (n: number): Promise<Artifact | undefined> => {
      // Each try starts from nothing: no bytes of an earlier, broken try survive.
      await rm(file, { force: true });
      let source: ByteSource;
      let host = "";
      try {
        const response = await client.downloadArtifact(this.id, this.#token, {
          directDownload: n === 0,
          signal,
        });
        if (response === undefined) {
          log(`ERROR: ${prefix} not found  ${fields} responseStatus=${statusLine(404)}`);
          return undefined;
        }
        try {
          host = response.url ? ` host=${new URL(response.url).host}` : "";
        } catch {
          host = "";
        }
        if (response.body === null) throw new RequestError(endpoint, new Error("No body"));
        try {
          source = await storeBody(response.body, file, limit, max);
        } catch (err) {
          if (signal?.aborted || err instanceof ArtifactError) throw err;
          throw err instanceof RequestError ? err : new RequestError(endpoint, err);
        }
        const declared = response.headers.get("content-length");
        if (
          declared !== null && /^\d+$/.test(declared) &&
          !response.headers.has("content-encoding") &&
          Number(declared) !== source.size
        ) {
          await source.dispose();
          throw new RequestError(
            endpoint,
            new Error(`The body ended after ${source.size} of ${declared} bytes`),
          );
        }
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        if (err instanceof RequestError && !err.transient) {
          // The client refused GitLab's answer (a redirect to a non-HTTP URL or to another
          // origin where the token would go): final.
          throw new ArtifactError(
            `The artifact download of ${this.name} (${this.id}) was refused: ${err.message}`,
            { cause: err },
          );
        }
        if (err instanceof ApiError) {
          const word = err.status === 401 || err.status === 403 ? "forbidden" : "failed";
          log(
            `ERROR: ${prefix} ${word}  ${fields} responseStatus=${statusLine(err.status)} ` +
              `status=${err.status}`,
          );
        } else if (!(err instanceof ArtifactError)) {
          log(`ERROR: ${prefix} error  error=${message(err)} ${fields}`);
        }
        throw err;
      }
      log(`${prefix} ok  ${fields}${host} responseStatus=${statusLine(200)} bytes=${source.size}`);
      return await this.#open(source);
    };
    try {
      // The request policy (C8): 3 tries, 1 s apart, like the official runner.
      return await retry(attempt, {
        clock,
        signal,
        attempts: TRIES,
        retryable: (err) => {
          // A limit, a refused URL, 401/403: trying again would give the same.
          if (err instanceof ArtifactError) return false;
          if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return false;
          return RETRY_WAIT_MS;
        },
        onRetry: (err) => log(`WARNING: Retrying...  error=${message(err)}`),
      });
    } catch (err) {
      if (err instanceof ArtifactError) {
        log(`ERROR: ${prefix} error  error=${message(err)} ${fields}`);
      }
      throw err;
    }
  }

  async #open(source: ByteSource): Promise<Artifact> {
    const { detectFormat, ZipDownload, GzipDownload } = await machinery();
    const onClose = () => {
      this.#result = undefined;
    };
    const format = detectFormat(await source.head(4));
    const limits = this.#options.limits ?? {};
    if (format === "zip") return new ZipDownload(source, onClose, limits);
    if (format === "gzip") return new GzipDownload(source, onClose, limits);
    await source.dispose();
    throw new ArtifactError(
      format === "zstd"
        ? `The artifact of ${this.name} (${this.id}) is a tar.zst archive, which is not supported`
        : `The artifact of ${this.name} (${this.id}) is neither a zip nor a gzip archive`,
    );
  }
}

/**
 * Makes a {@link Dependency} per entry of the job's `dependencies[]`, in payload order.
 *
 * @param options The dependencies and what their downloads need.
 * @returns The dependencies; nothing is downloaded yet.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import { createDependencies } from "./download.ts";
 * import { Client } from "../api/client.ts";
 * import { systemClock } from "../clock.ts";
 * const deps = createDependencies({
 *   client: new Client("https://gitlab.example.com"),
 *   dependencies: [{ id: 7, name: "build", token: "t", artifactsFile: { filename: "a.zip", size: 9 } }],
 *   buildDir: "/tmp/build",
 *   clock: systemClock,
 * });
 * deepStrictEqual(deps.map((d) => `${d.name} ${d.hasArtifacts}`), ["build true"]);
 * ```
 */
export function createDependencies(options: CreateDependenciesOptions): Dependency[] {
  // Most jobs have none: no copy of the options for them.
  if (options.dependencies.length === 0) return [];
  const { dependencies, ...shared } = options;
  return dependencies.map((spec) => new Dependency(spec, shared));
}
