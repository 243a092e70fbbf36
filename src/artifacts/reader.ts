/**
 * Reading downloaded artifacts: format detection by magic bytes, a zip reader over a `Blob`,
 * and the path checks an extractor needs (C6.8).
 *
 * @module
 */

import { BlobReader, type Entry, type FileEntry, ZipReader } from "@zip.js/zip.js";
import { ArtifactError } from "./errors.ts";

/** The archive formats {@link detectFormat} tells apart. */
export type ArtifactFormat = "zip" | "gzip" | "zstd" | "unknown";

/**
 * Tells the format of a downloaded artifact from its first bytes, like the official runner's
 * downloader: zstd (`28 B5 2F FD`, a `tar.zst`), gzip (`1F 8B`), zip (`PK` followed by a local
 * file header, an empty-archive end record or a spanning marker). The official runner treats
 * everything that is neither zstd nor gzip as zip; here such data is `"unknown"`.
 *
 * @param head The first bytes of the artifact (4 are enough).
 * @returns The format.
 *
 * @example Detect a zip
 * ```ts
 * import { detectFormat } from "./reader.ts";
 * console.log(detectFormat(new Uint8Array([0x50, 0x4b, 0x03, 0x04]))); // "zip"
 * console.log(detectFormat(new Uint8Array([0x1f, 0x8b, 0x08]))); // "gzip"
 * console.log(detectFormat(new TextEncoder().encode("<html>"))); // "unknown"
 * ```
 */
export function detectFormat(head: Uint8Array): ArtifactFormat {
  const at = (i: number) => head[i];
  if (at(0) === 0x28 && at(1) === 0xb5 && at(2) === 0x2f && at(3) === 0xfd) return "zstd";
  if (at(0) === 0x1f && at(1) === 0x8b) return "gzip";
  if (
    at(0) === 0x50 && at(1) === 0x4b &&
    ((at(2) === 3 && at(3) === 4) || (at(2) === 5 && at(3) === 6) || (at(2) === 7 && at(3) === 8))
  ) {
    return "zip";
  }
  return "unknown";
}

/** One entry of a {@link ZipArtifact}. */
export interface ArtifactEntry {
  /** The entry's path as stored, without the trailing `/` of directories. Not validated. */
  path: string;
  /** Uncompressed size in bytes (the link target's length for a symlink). */
  size: number;
  /** Size of the stored (compressed) data in bytes. */
  compressedSize: number;
  /** `true` for a directory entry. */
  isDirectory: boolean;
  /** `true` for a symbolic link (Unix file type `S_IFLNK`); its content is the target. */
  isSymlink: boolean;
  /** Unix permission bits (`0o755`…) when the archive stores them. */
  mode?: number;
  /** Last modification time. */
  mtime: Date;
}

/**
 * A zip artifact (e.g. from `GET /jobs/:id/artifacts`) held as a `Blob`: lists its entries and
 * reads any file entry as a stream, as many times as wanted. Nothing is extracted; use
 * {@link safeEntryPath} and {@link safeSymlinkTarget} before writing entries to disk.
 *
 * @example List and read
 * ```ts
 * import { zipArchive } from "./archive.ts";
 * import { ZipArtifact } from "./reader.ts";
 * const zip = zipArchive([{ path: "out/hello.txt", open: () => new Blob(["hi"]).stream() }]);
 * const artifact = new ZipArtifact(await new Response(zip).blob());
 * for (const entry of await artifact.entries()) console.log(entry.path, entry.size);
 * console.log(await new Response(await artifact.read("out/hello.txt")).text()); // "hi"
 * await artifact.close();
 * ```
 */
export class ZipArtifact {
  #reader: ZipReader<unknown>;
  #entries: Promise<Map<string, Entry>> | undefined;

  /**
   * Wraps the artifact's bytes; nothing is read until {@link ZipArtifact.entries} or
   * {@link ZipArtifact.read} is called.
   *
   * @param data The whole zip, e.g. a downloaded body as a `Blob` (a file opened as a `Blob`
   *   is read lazily, part by part).
   */
  constructor(data: Blob | Uint8Array) {
    const blob = data instanceof Blob ? data : new Blob([data as Uint8Array<ArrayBuffer>]);
    this.#reader = new ZipReader(new BlobReader(blob), {
      useWebWorkers: false,
      // Entries escaping the target are listed; extraction must check them (safeEntryPath).
      filenameValidation: "tolerant",
    });
  }

  #load(): Promise<Map<string, Entry>> {
    this.#entries ??= (async () => {
      let list: Entry[];
      try {
        list = await this.#reader.getEntries();
      } catch (err) {
        throw new ArtifactError(
          `Invalid zip artifact: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      const map = new Map<string, Entry>();
      for (const entry of list) map.set(entryPath(entry), entry);
      return map;
    })();
    return this.#entries;
  }

  /**
   * Lists the entries in archive order.
   *
   * @returns One {@link ArtifactEntry} per zip entry.
   * @throws {ArtifactError} When the data is not a readable zip.
   */
  async entries(): Promise<ArtifactEntry[]> {
    return [...(await this.#load()).entries()].map(([path, entry]) => ({
      path,
      size: entry.uncompressedSize,
      compressedSize: entry.compressedSize,
      isDirectory: entry.directory,
      isSymlink: entry.symlink === true,
      ...(entry.unixMode !== undefined ? { mode: entry.unixMode & 0o7777 } : {}),
      mtime: entry.lastModDate,
    }));
  }

  /**
   * Reads one file entry (or a symlink's target) as a stream; each call starts a new read.
   * A corrupt entry (bad CRC, bad data) errors the stream with an {@link ArtifactError}.
   *
   * @param path The entry's path as listed by {@link ZipArtifact.entries}.
   * @returns The entry's uncompressed content.
   * @throws {ArtifactError} When there is no such entry or it is a directory.
   */
  async read(path: string): Promise<ReadableStream<Uint8Array>> {
    const entry = (await this.#load()).get(path);
    if (entry === undefined) throw new ArtifactError(`No entry ${path} in the artifact`, { path });
    if (entry.directory) throw new ArtifactError(`Entry ${path} is a directory`, { path });
    const file: FileEntry = entry;
    const wrap = (err: unknown) =>
      err instanceof ArtifactError ? err : new ArtifactError(
        `Failed to read ${path} from the artifact: ${
          err instanceof Error ? err.message : String(err)
        }`,
        { cause: err, path },
      );
    // zip.js writes into `inner`; the returned stream maps its errors to ArtifactErrors. A
    // failure before zip.js writes anything (a bad local header) may leave `inner` open, so the
    // failure also cancels the reader, and the end of the data waits for getData to settle.
    const inner = new TransformStream<Uint8Array, Uint8Array>();
    const reader = inner.readable.getReader();
    let failure: { error: unknown } | undefined;
    const settled = file.getData(inner.writable, { useWebWorkers: false, checkSignature: true })
      .then(() => {}, (error) => {
        failure = { error };
        reader.cancel(error).catch(() => {});
      });
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (err) {
          controller.error(wrap(failure ? failure.error : err));
          return;
        }
        if (!result.done) return controller.enqueue(result.value);
        await settled;
        if (failure) controller.error(wrap(failure.error));
        else controller.close();
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /**
   * Reads one file entry whole into memory.
   *
   * @param path The entry's path as listed by {@link ZipArtifact.entries}.
   * @returns The entry's uncompressed content.
   * @throws {ArtifactError} When there is no such entry, it is a directory or it is corrupt.
   */
  async bytes(path: string): Promise<Uint8Array> {
    const stream = await this.read(path);
    const chunks: Uint8Array[] = [];
    let length = 0;
    for await (const chunk of stream) {
      chunks.push(chunk);
      length += chunk.length;
    }
    const out = new Uint8Array(length);
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  /** Releases the reader. */
  async close(): Promise<void> {
    await this.#reader.close();
  }
}

function entryPath(entry: Entry): string {
  return entry.directory ? entry.filename.replace(/\/+$/, "") : entry.filename;
}

/**
 * Resolves `path` segment by segment, treating both `/` and `\` as separators (a Windows host
 * does); throws when it climbs above its start or names something Windows would read as a
 * parent (`.. `, `...`). Returns the remaining depth.
 */
function checkSegments(segments: string[], depth: number, what: string, path: string): number {
  for (const segment of segments) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      depth--;
      if (depth < 0) {
        throw new ArtifactError(`${what} escapes the target directory: ${path}`, { path });
      }
      continue;
    }
    if (/^[. ]+$/.test(segment)) {
      throw new ArtifactError(`${what} has an ambiguous dot segment: ${path}`, { path });
    }
    depth++;
  }
  return depth;
}

function isAbsoluteLike(path: string): boolean {
  return path.startsWith("/") || path.startsWith("\\") || /^[A-Za-z]:/.test(path);
}

/**
 * Where to extract an archive entry: `root` joined with the entry's normalised path. Throws for
 * an entry that would land outside `root`: `..` climbing out (also with `\` separators, as on
 * Windows), absolute paths (`/etc/passwd`, `\\server\share`, `C:\x`, `C:x`), a NUL byte, a
 * Windows-ambiguous dot segment (`.. `, `...`), or a path naming `root` itself.
 *
 * The check is lexical: an extractor must also refuse to write through a symlink, and check
 * link targets with {@link safeSymlinkTarget}.
 *
 * @param root The target directory (its trailing separators are dropped).
 * @param entryPath The entry's path as stored in the archive.
 * @returns `root` + `/` + the entry path cleaned of `.`, `..` and repeated `/`.
 * @throws {ArtifactError} When the entry is unsafe.
 *
 * @example Safe and unsafe entries
 * ```ts
 * import { safeEntryPath } from "./reader.ts";
 * console.log(safeEntryPath("/builds/dep", "./out//a.txt")); // "/builds/dep/out/a.txt"
 * try {
 *   safeEntryPath("/builds/dep", "../../etc/passwd");
 * } catch (err) {
 *   console.log((err as Error).name); // "ArtifactError"
 * }
 * ```
 */
export function safeEntryPath(root: string, entryPath: string): string {
  if (entryPath.includes("\0")) {
    throw new ArtifactError(`Entry path contains a NUL byte: ${entryPath}`, { path: entryPath });
  }
  if (isAbsoluteLike(entryPath)) {
    throw new ArtifactError(`Entry path is absolute: ${entryPath}`, { path: entryPath });
  }
  checkSegments(entryPath.split(/[/\\]/), 0, "Entry", entryPath);
  const kept: string[] = [];
  for (const segment of entryPath.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") kept.pop();
    else kept.push(segment);
  }
  if (kept.length === 0) {
    throw new ArtifactError(`Entry path names the target directory itself: ${entryPath}`, {
      path: entryPath,
    });
  }
  const base = root.length > 1 ? root.replace(/[/\\]+$/, "") : root;
  return `${base === "/" ? "" : base}/${kept.join("/")}`;
}

/**
 * Checks the target of a symlink entry: relative, and staying inside the extraction root when
 * resolved from the link's own directory (`a/b/link` → `../c` is `a/c`, fine; `../../../etc`
 * is not). Absolute targets are refused.
 *
 * @param entryPath The symlink entry's path as stored in the archive.
 * @param target The link target (the entry's content).
 * @returns The target, unchanged, when it is safe.
 * @throws {ArtifactError} When the target points outside the root or is absolute.
 *
 * @example A link climbing out
 * ```ts
 * import { safeSymlinkTarget } from "./reader.ts";
 * console.log(safeSymlinkTarget("out/latest", "v2/app")); // "v2/app"
 * try {
 *   safeSymlinkTarget("out/latest", "../../secret");
 * } catch (err) {
 *   console.log((err as Error).message);
 * }
 * ```
 */
export function safeSymlinkTarget(entryPath: string, target: string): string {
  if (target === "" || target.includes("\0")) {
    throw new ArtifactError(`Invalid symlink target for ${entryPath}`, { path: entryPath });
  }
  if (isAbsoluteLike(target)) {
    throw new ArtifactError(`Symlink ${entryPath} has an absolute target: ${target}`, {
      path: entryPath,
    });
  }
  const parents = entryPath.split(/[/\\]/).filter((s) => s !== "" && s !== ".");
  parents.pop(); // the link itself
  const depth = checkSegments(parents, 0, "Symlink", entryPath);
  checkSegments(target.split(/[/\\]/), depth, `Symlink ${entryPath} target`, target);
  return target;
}
