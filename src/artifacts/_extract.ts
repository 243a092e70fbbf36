/**
 * Extracting an artifact into a directory, safely and bounded (C9.3, C10.1, C10.2): every entry
 * is checked before anything is written ({@link plan}: limits, paths, link targets), then
 * directories, files and links are written in archive order. Small files take synchronous calls
 * on one descriptor each; the zip reader inflates into one reused buffer ({@link WRITE_ENTRY}).
 * Works on any {@link Readable}: a new archive format only has to list and read its entries.
 *
 * @module
 */

import { chmod, lstat, mkdir, open, symlink, unlink, utimes } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { closeSync, fchmodSync, fstatSync, futimesSync, openSync, writeSync } from "node:fs";
import { setImmediate } from "node:timers";
import { resolve as resolvePath } from "node:path";
import { ArtifactError } from "./errors.ts";
import { cleanPath } from "./_path.ts";
import {
  type ArtifactEntry,
  DEFAULT_MAX_ENTRIES,
  ExtractBuffers,
  safeEntryPath,
  safeSymlinkTarget,
} from "./reader.ts";
import { type ArtifactLimits, DEFAULT_MAX_EXTRACT_SIZE, type ExtractOptions } from "./artifact.ts";
import { EACH_ENTRY, hasEachEntry, hasWriteEntry, WRITE_ENTRY } from "./_random_access.ts";

const MAX_LINK_TARGET = 4096;

function errorCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

/** What extraction needs of an artifact. */
export interface Readable {
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

/** Extracts every entry of `artifact` below `dir`; see `Artifact.extractTo`. */
export async function extract(
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
    // Existing links in the target directory are checked here, as the files are written (once
    // per directory: a directory made or checked has its parents made or checked too).
    if (segments.length > 0 && !dirs.has(`${base}/${segments.join("/")}`)) {
      await ensureDirs(base, segments, entry.path, dirs);
    }
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

/** The limits as extraction applies them. */
export function extractLimits(
  limits: ArtifactLimits,
  options: ExtractOptions,
): Required<ExtractOptions> {
  return {
    maxEntries: options.maxEntries ?? limits.maxEntries ?? DEFAULT_MAX_ENTRIES,
    maxSize: options.maxSize ?? limits.maxExtractSize ?? DEFAULT_MAX_EXTRACT_SIZE,
  };
}
