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
 * @module
 */

import { chmod, lstat, mkdir, open, rm, symlink, unlink, utimes } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import {
  closeSync,
  fchmodSync,
  fstatSync,
  futimesSync,
  openSync,
  readSync,
  writeSync,
} from "node:fs";
import { setImmediate } from "node:timers";
import { resolve as resolvePath } from "node:path";
import { createInflateRaw } from "node:zlib";
import type { Client } from "../api/client.ts";
import type { DependencySpec } from "../api/payload.ts";
import type { Clock } from "../clock.ts";
import { ApiError, RequestError } from "../errors.ts";
import { retry } from "../api/retry.ts";
import { Crc32 } from "../log/crc32.ts";
import { ArtifactError } from "./errors.ts";
import { readFileStream } from "./files.ts";
import { cleanPath } from "./_path.ts";
import {
  type ArtifactEntry,
  DEFAULT_MAX_ENTRIES,
  detectFormat,
  ExtractBuffers,
  safeEntryPath,
  safeSymlinkTarget,
  ZipArtifact,
} from "./reader.ts";
import { statusLine } from "./_http_status.ts";
import { EACH_ENTRY, hasEachEntry, hasWriteEntry, READ_AT, WRITE_ENTRY } from "./_random_access.ts";

export type { ArtifactEntry } from "./reader.ts";

/**
 * A downloaded artifact: list its entries, read any file entry as a stream (as often as
 * wanted), or extract it into a directory.
 *
 * @example Read every entry of a dependency's artifact
 * ```ts
 * import type { Artifact } from "./download.ts";
 * async function dump(artifact: Artifact): Promise<void> {
 *   for (const entry of await artifact.entries()) {
 *     if (entry.isDirectory || entry.isSymlink) continue;
 *     console.log(entry.path, (await new Response(await artifact.read(entry.path)).text()).length);
 *   }
 * }
 * console.log(typeof dump);
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
 * import type { ArtifactLimits } from "./download.ts";
 * const limits: ArtifactLimits = {
 *   maxDownloadSize: 256 * 2 ** 20,
 *   maxEntries: 50_000,
 *   maxExtractSize: 2 * 2 ** 30,
 * };
 * console.log(limits.maxEntries); // 50000
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
  /** Accepted for symmetry with the other retrying calls; the official retry has no jitter. */
  random?: () => number;
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
const INFLATE_CHUNK = 16 * 1024;
const MAX_LINK_TARGET = 4096;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

function errorCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

// ------------------------------------------------------------------ byte sources

/** Where a downloaded artifact's bytes are: in memory or in a file. */
interface ByteSource {
  readonly size: number;
  /** The bytes from `start` to `end`. */
  stream(start: number, end: number): ReadableStream<Uint8Array>;
  /** The first bytes, for format detection. */
  head(length: number): Promise<Uint8Array>;
  /** A `Blob` over the bytes (read lazily for a file). */
  blob(): Blob;
  /** Frees the bytes (deletes the file). */
  dispose(): Promise<void>;
}

class MemorySource implements ByteSource {
  readonly size: number;
  #bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.size = bytes.length;
  }

  stream(start: number, end: number): ReadableStream<Uint8Array> {
    return new Blob([this.#bytes.subarray(start, end) as Uint8Array<ArrayBuffer>]).stream();
  }

  head(length: number): Promise<Uint8Array> {
    return Promise.resolve(this.#bytes.subarray(0, length));
  }

  blob(): Blob {
    return new Blob([this.#bytes as Uint8Array<ArrayBuffer>]);
  }

  dispose(): Promise<void> {
    this.#bytes = new Uint8Array(0);
    return Promise.resolve();
  }
}

/**
 * A `Blob` over a byte range of a file, read only when asked (zip.js reads the central
 * directory and then each entry's range). Runtimes' own `openAsBlob` may read the whole file
 * into memory (Deno does), hence this class.
 */
class FileRangeBlob extends Blob {
  #path: string;
  #start: number;
  #end: number;
  #handle: () => number;

  /** `handle` gives the file's descriptor, opened once for all ranged reads. */
  constructor(path: string, start: number, end: number, handle: () => number) {
    super([]);
    this.#path = path;
    this.#handle = handle;
    this.#start = start;
    this.#end = end;
    const size = end - start;
    Object.defineProperty(this, "size", { get: () => size });
    Object.defineProperty(this, "type", { get: () => "" });
  }

  override slice(start?: number, end?: number, _contentType?: string): Blob {
    const size = this.#end - this.#start;
    const clamp = (v: number | undefined, fallback: number) =>
      v === undefined ? fallback : v < 0 ? Math.max(size + v, 0) : Math.min(v, size);
    const from = clamp(start, 0);
    const to = Math.max(from, clamp(end, size));
    return new FileRangeBlob(this.#path, this.#start + from, this.#start + to, this.#handle);
  }

  /** Reads at `position` (from this blob's start) into `into`, through the shared handle. */
  [READ_AT](position: number, into: Uint8Array): Promise<number> {
    const length = Math.min(into.length, this.#end - this.#start - position);
    if (length <= 0) return Promise.resolve(0);
    // Synchronous: a read of at most a few hundred KiB of a local file the download just wrote
    // (page cache) costs microseconds, a thread-pool round trip costs more (40 000 entries).
    return Promise.resolve(readSync(this.#handle(), into, 0, length, this.#start + position));
  }

  override stream(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return readFileStream(this.#path, { start: this.#start, end: this.#end }) as ReadableStream<
      Uint8Array<ArrayBuffer>
    >;
  }

  override async arrayBuffer(): Promise<ArrayBuffer> {
    const length = this.#end - this.#start;
    const buffer = new Uint8Array(length);
    if (length === 0) return buffer.buffer;
    let done = 0;
    while (done < length) {
      const n = await this[READ_AT](done, buffer.subarray(done));
      if (n === 0) throw new ArtifactError("The artifact file is shorter than expected");
      done += n;
    }
    return buffer.buffer;
  }

  override async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return new Uint8Array(await this.arrayBuffer());
  }

  override async text(): Promise<string> {
    return new TextDecoder().decode(await this.arrayBuffer());
  }
}

class FileSource implements ByteSource {
  readonly size: number;
  readonly path: string;
  #fd: number | undefined;
  #open = (): number => {
    this.#fd ??= openSync(this.path, "r");
    return this.#fd;
  };

  constructor(path: string, size: number) {
    this.path = path;
    this.size = size;
  }

  stream(start: number, end: number): ReadableStream<Uint8Array> {
    return readFileStream(this.path, { start, end });
  }

  async head(length: number): Promise<Uint8Array> {
    return new Uint8Array(
      await new FileRangeBlob(this.path, 0, Math.min(length, this.size), this.#open).arrayBuffer(),
    );
  }

  blob(): Blob {
    return new FileRangeBlob(this.path, 0, this.size, this.#open);
  }

  async dispose(): Promise<void> {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    await rm(this.path, { force: true });
  }
}

// ------------------------------------------------------------------ extraction

/** What extraction needs of an artifact. */
interface Readable {
  entries(): Promise<ArtifactEntry[]>;
  read(path: string): Promise<ReadableStream<Uint8Array>>;
}

/** Files up to this size are written with synchronous calls (one open, write, close each). */
const SYNC_WRITE_SIZE = 1024 * 1024;
/** Synchronous work between two turns of the event loop during an extraction, in ms. */
const EXTRACT_SLICE_MS = 10;

/**
 * The entries of `artifact` in archive order, one object at a time when it can (the zip reader
 * does: 40 000 entries are never an array, C10.1). Each call iterates anew.
 */
async function eachEntry(artifact: Readable): Promise<Iterable<ArtifactEntry>> {
  return hasEachEntry(artifact) ? await artifact[EACH_ENTRY]() : await artifact.entries();
}

/** Lets the event loop run (timers, sockets) between slices of synchronous extraction work. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function readText(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream as ReadableStream<Uint8Array<ArrayBuffer>>).text();
}

/**
 * Creates the directories of `rel` below `root`, refusing to go through links or files. `done`
 * holds the directories already made or checked.
 */
async function ensureDirs(
  root: string,
  segments: string[],
  entry: string,
  done: Set<string>,
): Promise<void> {
  let current = root;
  for (const segment of segments) {
    current = `${current}/${segment}`;
    if (done.has(current)) continue;
    done.add(current);
    let info;
    try {
      info = await lstat(current);
    } catch (err) {
      if (errorCode(err) !== "ENOENT") throw err;
      await mkdir(current);
      continue;
    }
    if (info.isSymbolicLink()) {
      throw new ArtifactError(`Entry would be written through a symbolic link: ${entry}`, {
        path: entry,
      });
    }
    if (!info.isDirectory()) {
      throw new ArtifactError(`Entry conflicts with a file on its path: ${entry}`, { path: entry });
    }
  }
}

/** Makes room for a new file or link at `target`: an old file or link is removed. */
async function clearTarget(target: string, entry: string): Promise<void> {
  let info;
  try {
    info = await lstat(target);
  } catch (err) {
    if (errorCode(err) === "ENOENT") return;
    throw err;
  }
  if (info.isDirectory()) {
    throw new ArtifactError(`Entry conflicts with a directory: ${entry}`, { path: entry });
  }
  await unlink(target);
}

/**
 * Checks, once everything is extracted, that a link's target does not go through another
 * link (which could lead outside the root although the target is lexically inside).
 */
async function checkLinkPath(root: string, rel: string, target: string): Promise<void> {
  for (const path of pathsOnTheWay(rel, target)) {
    let info;
    try {
      info = await lstat(`${root}/${path}`);
    } catch (err) {
      if (errorCode(err) === "ENOENT") return;
      throw err;
    }
    if (info.isSymbolicLink()) {
      await unlink(`${root}/${rel}`).catch(() => {});
      throw new ArtifactError(
        `Symlink ${rel} target goes through another symbolic link: ${target}`,
        { path: rel },
      );
    }
    if (!info.isDirectory()) return;
  }
}

/** Writes all of `chunk` to `fd` at its position. */
function writeAllSync(fd: number, chunk: Uint8Array): void {
  let done = 0;
  while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
}

/**
 * Whether a new file created with `mode` gets it exactly, or the umask takes bits away (then a
 * chmod follows, as before): learnt once per mode and extraction, from the first such file.
 */
type ModeChecks = Map<number, boolean>;

/**
 * Writes a new file with its mode and modification time; an existing file or link at `path`
 * is replaced (never written through). A small file takes synchronous calls on one descriptor
 * (open with its mode, write, utimes, close: microseconds each, where each asynchronous call
 * costs a trip through the thread pool, C10.1); a large one is written asynchronously.
 */
async function writeFile(
  path: string,
  artifact: Readable,
  entry: ArtifactEntry,
  buffers: ExtractBuffers,
  modes: ModeChecks,
): Promise<void> {
  const mode = entry.mode !== undefined ? entry.mode & 0o777 : undefined;
  const mtime = entry.mtime.getTime() > 0 ? entry.mtime : undefined;
  if (entry.size <= SYNC_WRITE_SIZE && hasWriteEntry(artifact)) {
    const create = mode ?? 0o666;
    let fd: number;
    try {
      fd = openSync(path, "wx", create);
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
      await clearTarget(path, entry.path);
      fd = openSync(path, "wx", create);
    }
    try {
      await artifact[WRITE_ENTRY](entry.path, (chunk) => writeAllSync(fd, chunk), buffers);
      if (mode !== undefined) {
        let exact = modes.get(mode);
        if (exact === undefined) {
          exact = (fstatSync(fd).mode & 0o777) === mode;
          modes.set(mode, exact);
        }
        if (!exact) fchmodSync(fd, mode);
      }
      if (mtime !== undefined) {
        try {
          futimesSync(fd, mtime, mtime);
        } catch {
          // times are best effort
        }
      }
    } finally {
      closeSync(fd);
    }
    return;
  }
  let handle: FileHandle;
  try {
    handle = await open(path, "wx");
  } catch (err) {
    if (errorCode(err) !== "EEXIST") throw err;
    await clearTarget(path, entry.path);
    handle = await open(path, "wx");
  }
  const write = async (chunk: Uint8Array) => {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await handle.write(chunk, done, chunk.length - done);
      done += bytesWritten;
    }
  };
  try {
    if (hasWriteEntry(artifact)) {
      // The zip reader inflates into one buffer, written before it is filled again.
      await artifact[WRITE_ENTRY](entry.path, write, buffers);
    } else {
      for await (const chunk of await artifact.read(entry.path)) await write(chunk);
    }
  } finally {
    await handle.close();
  }
  if (mode !== undefined) await chmod(path, mode);
  if (mtime !== undefined) await utimes(path, mtime, mtime).catch(() => {});
}

/**
 * The paths (relative to the root) a link's target is resolved through, in order, from the
 * link's directory: every segment but the last (a chain of links is fine). If one of them is a
 * link, the target is resolved through that link.
 */
function pathsOnTheWay(rel: string, target: string): string[] {
  const parts = rel.split("/");
  parts.pop();
  const segments = target.split(/[/\\]/).filter((x) => x !== "" && x !== ".");
  const out: string[] = [];
  for (let i = 0; i < segments.length - 1; i++) {
    if (segments[i] === "..") parts.pop();
    else {
      parts.push(segments[i]);
      out.push(parts.join("/"));
    }
  }
  return out;
}

/** The path of `entry` relative to `base`, checked; undefined for a `./` directory entry. */
function relativePath(base: string, entry: ArtifactEntry): string | undefined {
  // A `./` directory entry (some zip tools write one) is the target itself.
  if (entry.isDirectory && cleanPath(entry.path) === ".") return undefined;
  const target = safeEntryPath(base, entry.path);
  return target.slice(base === "/" ? 1 : base.length + 1);
}

/**
 * Checks every entry before anything is written: the limits, paths inside the root, link
 * targets inside the root, no entry below a link of the archive, no link target through a link
 * of the archive. Goes over the entries a few times rather than keeping them (C10.1); returns
 * the link targets, by entry path (links are few).
 */
async function plan(
  artifact: Readable,
  base: string,
  limits: Required<ExtractOptions>,
): Promise<Map<string, string>> {
  checkLimits(await eachEntry(artifact), limits);
  /** Targets by entry path; their paths relative to the root. */
  const targets = new Map<string, string>();
  const links = new Set<string>();
  for (const entry of await eachEntry(artifact)) {
    const rel = relativePath(base, entry);
    if (rel === undefined || !entry.isSymlink) continue;
    if (entry.size > MAX_LINK_TARGET) {
      throw new ArtifactError(`Symlink ${entry.path} has a target that is too long`, {
        path: entry.path,
      });
    }
    targets.set(
      entry.path,
      safeSymlinkTarget(rel, await readText(await artifact.read(entry.path))),
    );
    links.add(rel);
  }
  if (links.size === 0) return targets;
  const throughLink = (segments: string[]) => {
    for (let i = 1; i < segments.length; i++) {
      const prefix = segments.slice(0, i).join("/");
      if (links.has(prefix)) return prefix;
    }
    return undefined;
  };
  for (const entry of await eachEntry(artifact)) {
    const rel = relativePath(base, entry);
    if (rel === undefined) continue;
    const via = throughLink(rel.split("/"));
    if (via !== undefined) {
      throw new ArtifactError(
        `Entry would be written through the symbolic link ${via}: ${entry.path}`,
        { path: entry.path },
      );
    }
    const linkTarget = entry.isSymlink ? targets.get(entry.path) : undefined;
    if (linkTarget !== undefined) {
      const link = pathsOnTheWay(rel, linkTarget).find((path) => links.has(path));
      if (link !== undefined) {
        throw new ArtifactError(
          `Symlink ${rel} target goes through another symbolic link: ${linkTarget}`,
          { path: entry.path },
        );
      }
    }
  }
  return targets;
}

/** Checks the extraction limits against what the archive states, before anything is written. */
function checkLimits(entries: Iterable<ArtifactEntry>, limits: Required<ExtractOptions>): void {
  let count = 0;
  let total = 0;
  for (const entry of entries) {
    count++;
    if (!entry.isDirectory) total += entry.size;
  }
  if (count > limits.maxEntries) {
    throw new ArtifactError(
      `The artifact has ${count} entries, more than the limit of ${limits.maxEntries} (maxEntries)`,
      { limit: { name: "maxEntries", value: limits.maxEntries } },
    );
  }
  if (total > limits.maxSize) {
    throw new ArtifactError(
      `The artifact would extract to ${total} bytes, more than the limit of ${limits.maxSize} bytes (maxExtractSize)`,
      { limit: { name: "maxExtractSize", value: limits.maxSize } },
    );
  }
}

async function extract(
  artifact: Readable,
  dir: string,
  limits: Required<ExtractOptions>,
): Promise<string[]> {
  const root = resolvePath(dir).replaceAll("\\", "/");
  const base = root.length > 1 ? root.replace(/\/+$/, "") : root;
  const targets = await plan(artifact, base, limits);
  await mkdir(base, { recursive: true });
  const written: string[] = [];
  const links: { rel: string; target: string }[] = [];
  // Directories made or checked by this extraction (the archive's own links are refused by
  // plan(), so one stays a directory).
  const dirs = new Set<string>();
  // One output buffer and one read-ahead window for every file of this extraction.
  const buffers = new ExtractBuffers();
  const modes: ModeChecks = new Map();
  let slice = performance.now();
  for (const entry of await eachEntry(artifact)) {
    const rel = relativePath(base, entry);
    if (rel === undefined) continue;
    const segments = rel.split("/");
    const path = `${base === "/" ? "" : base}/${rel}`;
    segments.pop();
    // Existing links in the target directory are checked here, as the files are written.
    await ensureDirs(base, segments, entry.path, dirs);
    const linkTarget = entry.isSymlink ? targets.get(entry.path) : undefined;
    if (entry.isDirectory) {
      await ensureDirs(base, rel.split("/"), entry.path, dirs);
      if (entry.mode !== undefined) await chmod(path, (entry.mode & 0o777) | 0o700);
    } else if (linkTarget !== undefined) {
      await clearTarget(path, entry.path);
      await symlink(linkTarget, path);
      links.push({ rel, target: linkTarget });
    } else {
      await writeFile(path, artifact, entry, buffers, modes);
    }
    written.push(rel);
    if (performance.now() - slice > EXTRACT_SLICE_MS) {
      await nextTurn();
      slice = performance.now();
    }
  }
  for (const link of links) await checkLinkPath(base, link.rel, link.target);
  return written;
}

// ------------------------------------------------------------------ zip

/** The limits as extraction applies them. */
function extractLimits(limits: ArtifactLimits, options: ExtractOptions): Required<ExtractOptions> {
  return {
    maxEntries: options.maxEntries ?? limits.maxEntries ?? DEFAULT_MAX_ENTRIES,
    maxSize: options.maxSize ?? limits.maxExtractSize ?? DEFAULT_MAX_EXTRACT_SIZE,
  };
}

class ZipDependencyArtifact implements Artifact {
  readonly format = "zip" as const;
  #zip: ZipArtifact;
  #source: ByteSource;
  #onClose: () => void;
  #limits: ArtifactLimits;

  constructor(source: ByteSource, onClose: () => void, limits: ArtifactLimits) {
    this.#source = source;
    this.#limits = limits;
    this.#zip = new ZipArtifact(source.blob(), {
      maxEntries: limits.maxEntries ?? DEFAULT_MAX_ENTRIES,
    });
    this.#onClose = onClose;
  }

  entries(): Promise<ArtifactEntry[]> {
    return this.#zip.entries();
  }

  read(path: string): Promise<ReadableStream<Uint8Array>> {
    return this.#zip.read(path);
  }

  [WRITE_ENTRY](
    path: string,
    write: (chunk: Uint8Array) => Promise<void> | void,
    buffers?: ExtractBuffers,
  ): Promise<void> {
    return this.#zip[WRITE_ENTRY](path, write, buffers);
  }

  [EACH_ENTRY](): Promise<Iterable<ArtifactEntry>> {
    return this.#zip[EACH_ENTRY]();
  }

  extractTo(dir: string, options: ExtractOptions = {}): Promise<string[]> {
    return extract(this, dir, extractLimits(this.#limits, options));
  }

  async close(): Promise<void> {
    this.#onClose();
    await this.#zip.close().catch(() => {});
    await this.#source.dispose();
  }
}

// ------------------------------------------------------------------ gzip

interface GzipMember {
  entry: ArtifactEntry;
  dataStart: number;
  dataEnd: number;
  crc: number;
}

/** Reads a byte stream with look-ahead: whole chunks, exact counts, or up to a NUL byte. */
class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** The next available bytes (at most `max`), or undefined at the end. */
  async chunk(max = Infinity): Promise<Uint8Array | undefined> {
    let chunk = this.#pending.shift();
    while (chunk === undefined || chunk.length === 0) {
      if (chunk !== undefined) {
        chunk = this.#pending.shift();
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      chunk = value;
    }
    if (chunk.length > max) {
      this.#pending.unshift(chunk.subarray(max));
      chunk = chunk.subarray(0, max);
    }
    return chunk;
  }

  unshift(bytes: Uint8Array): void {
    if (bytes.length > 0) this.#pending.unshift(bytes);
  }

  /** Exactly `n` bytes, or undefined if the data ends first. */
  async exactly(n: number): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = await this.chunk(n - filled);
      if (chunk === undefined) return undefined;
      out.set(chunk, filled);
      filled += chunk.length;
    }
    return out;
  }

  /** The bytes up to a NUL (excluded; the NUL is consumed), or undefined at the end. */
  async untilNul(): Promise<Uint8Array | undefined> {
    const parts: Uint8Array[] = [];
    let length = 0;
    for (;;) {
      const chunk = await this.chunk();
      if (chunk === undefined) return undefined;
      const nul = chunk.indexOf(0);
      if (nul >= 0) {
        parts.push(chunk.subarray(0, nul));
        length += nul;
        this.unshift(chunk.subarray(nul + 1));
        break;
      }
      parts.push(chunk);
      length += chunk.length;
      if (length > 64 * 1024) throw new ArtifactError("Invalid gzip header: name too long");
    }
    const out = new Uint8Array(length);
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

/** A gzip header string: Latin-1 as Go reads it; `e:` + URL escape as the official runner writes. */
function headerString(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  if (text.startsWith("e:")) {
    try {
      return decodeURIComponent(text.slice(2));
    } catch {
      return text;
    }
  }
  return text;
}

function truncated(offset: number): ArtifactError {
  return new ArtifactError(`Invalid gzip artifact: data ends inside the member at ${offset}`);
}

/** Feeds a raw deflate stream to node:zlib until it ends; returns what it consumed and made. */
async function inflateToEnd(
  reader: ByteReader,
  start: number,
): Promise<{ consumed: number; size: number; crc: number }> {
  const inflater = createInflateRaw();
  const crc = new Crc32();
  let size = 0;
  let ended = false;
  let failure: unknown;
  inflater.on("data", (chunk: Uint8Array) => {
    size += chunk.length;
    crc.update(chunk);
  });
  const end = new Promise<void>((resolve, reject) => {
    inflater.on("end", () => {
      ended = true;
      resolve();
    });
    inflater.on("error", (err: unknown) => {
      failure = err;
      reject(err);
    });
  });
  end.catch(() => {});
  const write = (chunk: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      inflater.write(chunk, (err) => (err ? reject(err) : resolve()))
    );
  let fed = 0;
  try {
    for (;;) {
      const chunk = await reader.chunk(INFLATE_CHUNK);
      if (chunk === undefined) {
        inflater.end();
        await end;
        break;
      }
      await write(chunk);
      fed += chunk.length;
      // node:zlib counts in bytesWritten only the input it used: less than fed means the
      // deflate stream ended inside this chunk; the rest belongs to the trailer.
      const consumed = inflater.bytesWritten;
      if (consumed < fed) {
        reader.unshift(chunk.subarray(chunk.length - (fed - consumed)));
        inflater.end();
        await end;
        break;
      }
      if (ended) break;
    }
  } catch (err) {
    inflater.destroy();
    if (failure !== undefined || err === failure) {
      throw new ArtifactError(`Invalid gzip artifact at ${start}: ${message(failure ?? err)}`, {
        cause: failure ?? err,
      });
    }
    throw err;
  }
  return { consumed: inflater.bytesWritten, size, crc: crc.value };
}

function u32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

/** Walks the members of a (multi-member) gzip: headers, data ranges, sizes; checks CRCs. */
async function scanGzip(source: ByteSource): Promise<GzipMember[]> {
  const reader = new ByteReader(source.stream(0, source.size));
  const members: GzipMember[] = [];
  let offset = 0;
  try {
    while (offset < source.size) {
      const fixed = await reader.exactly(10);
      if (fixed === undefined) throw truncated(offset);
      if (fixed[0] !== 0x1f || fixed[1] !== 0x8b || fixed[2] !== 8) {
        throw new ArtifactError(`Invalid gzip artifact: no gzip member at ${offset}`);
      }
      const flags = fixed[3];
      const mtime = u32(fixed, 4);
      let headerLength = 10;
      if (flags & 0x04) {
        const xlen = await reader.exactly(2);
        if (xlen === undefined) throw truncated(offset);
        const n = xlen[0] | (xlen[1] << 8);
        if ((await reader.exactly(n)) === undefined) throw truncated(offset);
        headerLength += 2 + n;
      }
      let name: string | undefined;
      let comment: string | undefined;
      if (flags & 0x08) {
        const bytes = await reader.untilNul();
        if (bytes === undefined) throw truncated(offset);
        name = headerString(bytes);
        headerLength += bytes.length + 1;
      }
      if (flags & 0x10) {
        const bytes = await reader.untilNul();
        if (bytes === undefined) throw truncated(offset);
        comment = headerString(bytes);
        headerLength += bytes.length + 1;
      }
      if (flags & 0x02) {
        if ((await reader.exactly(2)) === undefined) throw truncated(offset);
        headerLength += 2;
      }
      const dataStart = offset + headerLength;
      const { consumed, size, crc } = await inflateToEnd(reader, dataStart);
      const trailer = await reader.exactly(8);
      if (trailer === undefined) throw truncated(offset);
      if (u32(trailer, 0) !== crc || u32(trailer, 4) !== size % 2 ** 32) {
        throw new ArtifactError(
          `Invalid gzip artifact: checksum mismatch in the member at ${offset}`,
        );
      }
      const path = comment || name || `artifact-${members.length + 1}`;
      members.push({
        entry: {
          path,
          size,
          compressedSize: consumed,
          isDirectory: false,
          isSymlink: false,
          mtime: new Date(mtime * 1000),
        },
        dataStart,
        dataEnd: dataStart + consumed,
        crc,
      });
      offset = dataStart + consumed + 8;
    }
  } finally {
    await reader.cancel();
  }
  return members;
}

/** Inflates one member's deflate data as a stream, checking its CRC and size at the end. */
function inflateMember(source: ByteSource, member: GzipMember): ReadableStream<Uint8Array> {
  const reader = new ByteReader(source.stream(member.dataStart, member.dataEnd));
  const inflater = createInflateRaw();
  const queue: Uint8Array[] = [];
  const crc = new Crc32();
  let size = 0;
  let failure: unknown;
  let finished = false;
  inflater.on("data", (chunk: Uint8Array) => {
    queue.push(chunk);
    size += chunk.length;
    crc.update(chunk);
  });
  const end = new Promise<void>((resolve, reject) => {
    inflater.on("end", resolve);
    inflater.on("error", (err: unknown) => {
      failure = err;
      reject(err);
    });
  });
  end.catch(() => {});
  const corrupt = (cause: unknown) =>
    new ArtifactError(`Failed to read ${member.entry.path} from the artifact: ${message(cause)}`, {
      cause,
      path: member.entry.path,
    });
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        while (queue.length === 0 && !finished) {
          const chunk = await reader.chunk(INFLATE_CHUNK);
          if (chunk === undefined) {
            inflater.end();
            await end;
            finished = true;
            break;
          }
          await new Promise<void>((resolve, reject) =>
            inflater.write(chunk, (err) => (err ? reject(err) : resolve()))
          );
        }
      } catch (err) {
        inflater.destroy();
        throw corrupt(failure ?? err);
      }
      const next = queue.shift();
      if (next !== undefined) {
        controller.enqueue(next);
        return;
      }
      if (crc.value !== member.crc || size !== member.entry.size) {
        throw corrupt(new Error("checksum mismatch"));
      }
      controller.close();
    },
    async cancel() {
      inflater.destroy();
      await reader.cancel();
    },
  }, { highWaterMark: 0 });
}

class GzipDependencyArtifact implements Artifact {
  readonly format = "gzip" as const;
  #source: ByteSource;
  #members: Promise<GzipMember[]> | undefined;
  #onClose: () => void;
  #limits: ArtifactLimits;

  constructor(source: ByteSource, onClose: () => void, limits: ArtifactLimits) {
    this.#source = source;
    this.#onClose = onClose;
    this.#limits = limits;
  }

  #load(): Promise<GzipMember[]> {
    this.#members ??= scanGzip(this.#source);
    return this.#members;
  }

  async entries(): Promise<ArtifactEntry[]> {
    return (await this.#load()).map((m) => ({ ...m.entry }));
  }

  async read(path: string): Promise<ReadableStream<Uint8Array>> {
    const member = (await this.#load()).find((m) => m.entry.path === path);
    if (member === undefined) {
      throw new ArtifactError(`No entry ${path} in the artifact`, { path });
    }
    return inflateMember(this.#source, member);
  }

  extractTo(dir: string, options: ExtractOptions = {}): Promise<string[]> {
    return extract(this, dir, extractLimits(this.#limits, options));
  }

  async close(): Promise<void> {
    this.#onClose();
    await this.#source.dispose();
  }
}

// ------------------------------------------------------------------ download

/** The largest body a download accepts, and what to call that limit in its error. */
interface SizeLimit {
  bytes: number;
  /** `artifacts_file.size` (stated by GitLab) or `maxDownloadSize`. */
  name: string;
}

/**
 * Streams a body into memory, or into `file` once it grows past `limit`; a body growing past
 * `max` is cancelled and is an {@link ArtifactError}.
 */
async function store(
  body: ReadableStream<Uint8Array>,
  file: string,
  limit: number,
  max: SizeLimit,
): Promise<ByteSource> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  const writeAll = async (chunk: Uint8Array) => {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await handle!.write(chunk, done, chunk.length - done);
      done += bytesWritten;
    }
  };
  try {
    for await (const chunk of body) {
      if (length + chunk.length > max.bytes) {
        // Leaving the loop cancels the body: nothing more is read.
        throw new ArtifactError(
          `The artifact is larger than ${
            max.name === "maxDownloadSize"
              ? `the limit of ${max.bytes} bytes (maxDownloadSize)`
              : `the ${max.bytes} bytes GitLab stated (artifacts_file.size)`
          }: the download was stopped`,
          { limit: { name: max.name, value: max.bytes } },
        );
      }
      if (handle === undefined && length + chunk.length > limit) {
        await mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
        handle = await open(file, "w");
        for (const held of chunks) await writeAll(held);
        chunks.length = 0;
      }
      if (handle !== undefined) await writeAll(chunk);
      else chunks.push(chunk);
      length += chunk.length;
    }
  } catch (err) {
    await handle?.close().catch(() => {});
    handle = undefined;
    await rm(file, { force: true });
    throw err;
  }
  if (handle !== undefined) {
    await handle.close();
    return new FileSource(file, length);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new MemorySource(bytes);
}

/**
 * A job whose artifacts this job needs (`dependencies[]`). {@link Dependency.download} fetches
 * its artifact once; later calls give the same {@link Artifact} without a request.
 *
 * @example Download every dependency that has an artifact
 * ```ts
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
 * console.log(dependency.name, (await artifact?.entries())?.map((e) => e.path)); // build ["out/app"]
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
          source = await store(response.body, file, limit, max);
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
    const onClose = () => {
      this.#result = undefined;
    };
    const format = detectFormat(await source.head(4));
    const limits = this.#options.limits ?? {};
    if (format === "zip") return new ZipDependencyArtifact(source, onClose, limits);
    if (format === "gzip") return new GzipDependencyArtifact(source, onClose, limits);
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
 * import { createDependencies } from "./download.ts";
 * import { Client } from "../api/client.ts";
 * import { systemClock } from "../clock.ts";
 * const deps = createDependencies({
 *   client: new Client("https://gitlab.example.com"),
 *   dependencies: [{ id: 7, name: "build", token: "t", artifactsFile: { filename: "a.zip", size: 9 } }],
 *   buildDir: "/tmp/build",
 *   clock: systemClock,
 * });
 * console.log(deps.map((d) => `${d.name} ${d.hasArtifacts}`)); // ["build true"]
 * ```
 */
export function createDependencies(options: CreateDependenciesOptions): Dependency[] {
  const { dependencies, ...shared } = options;
  return dependencies.map((spec) => new Dependency(spec, shared));
}
