/**
 * What a downloaded artifact is to its user: the {@link Artifact} interface every archive format
 * implements, and the limits of downloading and extracting one (C10.2).
 *
 * @module
 */

import type { ArtifactEntry } from "./reader.ts";

export type { ArtifactEntry } from "./reader.ts";

/**
 * A downloaded artifact: list its entries, read any file entry as a stream (as often as
 * wanted), or extract it into a directory.
 *
 * @example Read every entry of a dependency's artifact
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import type { Artifact } from "./artifact.ts";
 * import { zipArchive } from "./archive.ts";
 * import { createDependencies } from "./download.ts";
 * import { Client } from "../api/client.ts";
 * import { systemClock } from "../clock.ts";
 * import { GitLabMock } from "../mock/mod.ts";
 * async function sizes(artifact: Artifact): Promise<Record<string, number>> {
 *   const out: Record<string, number> = {};
 *   for (const entry of await artifact.entries()) {
 *     if (entry.isDirectory || entry.isSymlink) continue;
 *     out[entry.path] = (await new Response(await artifact.read(entry.path)).text()).length;
 *   }
 *   return out;
 * }
 * const zip = zipArchive([
 *   { path: "out/app", open: () => new Blob(["binary"]).stream() },
 *   { path: "out/README", open: () => new Blob(["read me"]).stream() },
 * ]);
 * const mock = new GitLabMock();
 * const build = mock.job().name("build").state("success")
 *   .artifactsFile(new Uint8Array(await new Response(zip).arrayBuffer())).enqueue();
 * mock.job().name("test").dependency(build).enqueue();
 * const client = new Client(mock.url, { fetch: mock.fetch });
 * const taken = await client.requestJob(mock.runnerToken);
 * if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
 * const [dependency] = createDependencies({
 *   client,
 *   dependencies: taken.job.payload.dependencies,
 *   buildDir: "/nonexistent/build", // small artifacts stay in memory: nothing is written
 *   clock: systemClock,
 * });
 * const artifact = await dependency.download();
 * if (!artifact) throw new Error("no artifact");
 * deepStrictEqual(await sizes(artifact), { "out/app": 6, "out/README": 7 });
 * await artifact.close?.();
 * ```
 */
export interface Artifact {
  /** The archive format, told by its magic bytes. */
  readonly format: "zip" | "gzip";
  /**
   * Lists the entries in archive order. Paths are as stored and not validated: use
   * {@link Artifact.extractTo} (or `safeEntryPath`) before writing anything to disk. A gzip
   * artifact lists one file per member, named by the member's relative path (header comment)
   * or file name.
   */
  entries(): Promise<ArtifactEntry[]>;
  /**
   * Reads one file entry (or a symlink's target) as a stream; each call reads it again.
   * A corrupt entry errors the stream with an {@link ArtifactError}.
   */
  read(path: string): Promise<ReadableStream<Uint8Array>>;
  /**
   * Extracts every entry below `dir` (created if missing) and returns the paths written,
   * relative to `dir`. Refuses (with an {@link ArtifactError}) entries that would land outside
   * `dir` (`../`, absolute paths), symbolic links pointing outside it or through another link,
   * and never writes through a symbolic link (an existing file or link at an entry's path is
   * replaced; a link in the middle of a path is an error). Permission bits are kept (without
   * setuid, setgid and sticky), and the modification times of files.
   *
   * Bounded (C10.2): more entries than `maxEntries` or a total stated size above `maxSize`
   * is an {@link ArtifactError} naming the limit before anything is written, and an entry
   * inflating to more than its stated size stops as soon as it does.
   */
  extractTo(dir: string, options?: ExtractOptions): Promise<string[]>;
  /**
   * Releases the artifact: a downloaded file is deleted, and the next
   * {@link Dependency.download} downloads again.
   */
  close?(): Promise<void>;
}

/** Options of {@link Artifact.extractTo}; the defaults come from {@link ArtifactLimits}. */
export interface ExtractOptions {
  /** The most entries to extract (default `limits.maxEntries`, 250 000). */
  maxEntries?: number;
  /** The most bytes to write, summed over the entries (default `limits.maxExtractSize`, 16 GiB). */
  maxSize?: number;
}

/**
 * Limits of dependency downloads and their extraction (C10.2). Going beyond one is an
 * {@link ArtifactError} whose `limit` names it (`name`, `value`).
 *
 * @example Tighter limits for a runner with little disk
 * ```ts
 * import { strictEqual } from "node:assert";
 * import type { ArtifactLimits } from "./artifact.ts";
 * const limits: ArtifactLimits = {
 *   maxDownloadSize: 256 * 2 ** 20,
 *   maxEntries: 50_000,
 *   maxExtractSize: 2 * 2 ** 30,
 * };
 * strictEqual(limits.maxEntries, 50_000);
 * ```
 */
export interface ArtifactLimits {
  /**
   * The largest body downloaded when GitLab does not state the artifact's size, in bytes
   * (default {@link DEFAULT_MAX_DOWNLOAD_SIZE}, 1 GiB). When it does (`artifacts_file.size`,
   * the exact size of the stored file), a body larger than that size is cut off instead.
   */
  maxDownloadSize?: number;
  /** The most entries an artifact may list (default 250 000). */
  maxEntries?: number;
  /**
   * The most bytes one {@link Artifact.extractTo} writes, summed over the entries (default
   * {@link DEFAULT_MAX_EXTRACT_SIZE}, 16 GiB).
   */
  maxExtractSize?: number;
}

/** Default of {@link ArtifactLimits.maxDownloadSize}: 1 GiB. */
export const DEFAULT_MAX_DOWNLOAD_SIZE: number = 2 ** 30;
/** Default of {@link ArtifactLimits.maxExtractSize}: 16 GiB. */
export const DEFAULT_MAX_EXTRACT_SIZE: number = 16 * 2 ** 30;
