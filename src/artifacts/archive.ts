/**
 * Streaming writers for the three artifact formats GitLab accepts (`artifact_format`): `zip`,
 * `gzip` and `raw`. Each returns a `ReadableStream` of the archive that reads the files one
 * after another, only as fast as the stream is consumed, so memory does not grow with the size
 * of the artifact.
 *
 * Entries are described by {@link ArchiveEntry}: a relative path and an `open()` that is called
 * only when the file's turn comes. When `entries` is a synchronous iterable (an array), paths and
 * the file count of `raw` are checked at once and the function throws an {@link ArtifactError};
 * with an async iterable, the same errors error the returned stream. A file that fails to read
 * errors the stream with an `ArtifactError` whose `cause` is the read error. Cancelling the
 * returned stream cancels the file being read.
 *
 * @module
 */

import { lazy } from "../_lazy.ts";
import { ArtifactError } from "./errors.ts";
import { DeflateRawStream, hasNativeDeflate } from "./_deflate.ts";
import { archivePath, compareCodePoints } from "./_path.ts";

/** zip.js, loaded with the first zip: an idle runner does not need its ~3 MB. */
const zipJs = lazy(() => import("@zip.js/zip.js"));

/** One file to put into an artifact archive. */
export interface ArchiveEntry {
  /** Path relative to the project directory, with `/` separators; cleaned (`./a//b` → `a/b`). */
  path: string;
  /** Opens the file's content; called once, when the entry is written. */
  open(): ReadableStream<Uint8Array> | Promise<ReadableStream<Uint8Array>>;
  /**
   * The size in bytes, if known (zip only). An entry with a size under 4 GiB is written without
   * Zip64 fields (version 2.0, readable by every unzip); the sizes recorded are always the
   * bytes actually read, so a file that grew or shrank since is fine, as long as it does not
   * reach 4 GiB while `size` said less.
   */
  size?: number;
  /** Unix mode (`st_mode`, e.g. `0o100755` or `0o755`); zip only. */
  mode?: number;
  /** Modification time; stored in zip entries and in each gzip member header. */
  mtime?: Date;
}

/** Options of {@link zipArchive}. */
export interface ArchiveOptions {
  /**
   * Deflate level, 0 (store, no compression) to 9; see {@link compressionLevelFromVariable}.
   * Default 6. {@link gzipArchive} takes none: like the official runner, it ignores the level.
   */
  level?: number;
}

/** Entries given to the archive writers. */
export type ArchiveEntries = AsyncIterable<ArchiveEntry> | Iterable<ArchiveEntry>;

const DEFAULT_LEVEL = 6;

/**
 * Maps the `ARTIFACT_COMPRESSION_LEVEL` job variable to a deflate level, like the official
 * runner's fastzip archiver: `fastest` → 0 (stored), `fast` → 1, `slow` → 7, `slowest` → 9.
 * `default`, an empty or missing value, and unknown values give 6, the level of the official
 * runner's default zip archiver (Go's `flate.DefaultCompression`; fastzip uses 5).
 *
 * @param value The variable's value, if set (compared case-insensitively, trimmed).
 * @returns A level for {@link ArchiveOptions.level}.
 *
 * @example From job variables
 * ```ts
 * import { compressionLevelFromVariable } from "./archive.ts";
 * import { strictEqual } from "node:assert";
 * strictEqual(compressionLevelFromVariable("fastest"), 0);
 * strictEqual(compressionLevelFromVariable("slowest"), 9);
 * strictEqual(compressionLevelFromVariable(undefined), 6);
 * ```
 */
export function compressionLevelFromVariable(value?: string): number {
  switch (value?.trim().toLowerCase()) {
    case "fastest":
      return 0;
    case "fast":
      return 1;
    case "slow":
      return 7;
    case "slowest":
      return 9;
    default:
      return DEFAULT_LEVEL;
  }
}

/**
 * The file name sent in the upload's multipart `filename`, like the official runner: the base
 * name of the artifact `name` (an empty name, `.` or `/` give `default`) plus `.zip` for `zip`
 * (and for an empty format, which means zip) or `.gz` for `gzip`; `raw` and other formats keep
 * the base name as it is.
 *
 * @param name The artifact's `name` from the job payload, if any.
 * @param format The artifact's `artifact_format` (`zip`, `gzip`, `raw`…).
 * @returns The file name, e.g. `artifacts.zip`.
 *
 * @example File names
 * ```ts
 * import { artifactFileName } from "./archive.ts";
 * import { strictEqual } from "node:assert";
 * strictEqual(artifactFileName("my/artifacts", "zip"), "artifacts.zip");
 * strictEqual(artifactFileName(undefined, "gzip"), "default.gz");
 * strictEqual(artifactFileName("report.xml", "raw"), "report.xml");
 * ```
 */
export function artifactFileName(name: string | undefined, format: string): string {
  let base = (name ?? "").replace(/\/+$/, "");
  base = base.slice(base.lastIndexOf("/") + 1);
  if (base === "" || base === ".") base = "default";
  switch (format) {
    case "":
    case "zip":
    case "zipzstd":
      return `${base}.zip`;
    case "gzip":
      return `${base}.gz`;
    case "tarzstd":
      return `${base}.tar.zst`;
    default:
      return base;
  }
}

function checkLevel(level: number | undefined): number {
  const value = level ?? DEFAULT_LEVEL;
  if (!Number.isInteger(value) || value < 0 || value > 9) {
    throw new RangeError(`Compression level must be an integer from 0 to 9, got ${level}`);
  }
  return value;
}

function isSyncIterable(entries: ArchiveEntries): entries is Iterable<ArchiveEntry> {
  return typeof (entries as Iterable<ArchiveEntry>)[Symbol.iterator] === "function";
}

/** Validates the paths (cleaned, relative, unique) of all entries, in order. */
function checkedEntries(entries: Iterable<ArchiveEntry>): ArchiveEntry[] {
  const seen = new Set<string>();
  const out: ArchiveEntry[] = [];
  for (const entry of entries) out.push(checkedEntry(entry, seen));
  return out;
}

function checkedEntry(entry: ArchiveEntry, seen: Set<string>): ArchiveEntry {
  const path = archivePath(entry.path);
  if (seen.has(path)) throw new ArtifactError(`Duplicate archive entry: ${path}`, { path });
  seen.add(path);
  return path === entry.path ? entry : { ...entry, path, open: () => entry.open() };
}

async function collectEntries(entries: ArchiveEntries): Promise<ArchiveEntry[]> {
  if (isSyncIterable(entries)) return checkedEntries(entries);
  const seen = new Set<string>();
  const out: ArchiveEntry[] = [];
  for await (const entry of entries) out.push(checkedEntry(entry, seen));
  return out;
}

function readError(path: string, cause: unknown): ArtifactError {
  if (cause instanceof ArtifactError) return cause;
  const why = cause instanceof Error ? cause.message : String(cause);
  return new ArtifactError(`Failed to archive ${path}: ${why}`, { cause, path });
}

/** The source being read, so that cancelling the output can cancel it at once. */
interface ActiveSource {
  reader?: ReadableStreamDefaultReader<Uint8Array>;
}

/**
 * A pull-driven stream over an async generator: one `next()` per pull (so it advances only as
 * fast as it is read). Cancelling the stream cancels the source being read and returns the
 * generator (running its `finally` blocks).
 */
function streamFrom(
  chunks: AsyncGenerator<Uint8Array>,
  active: ActiveSource,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await chunks.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await active.reader?.cancel(reason).catch(() => {});
      await chunks.return(undefined);
    },
  }, { highWaterMark: 0 });
}

/** Yields the chunks of a stream, read errors wrapped; an early exit cancels it. */
async function* chunksOf(
  stream: ReadableStream<Uint8Array>,
  path: string,
  active: ActiveSource,
): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  active.reader = reader;
  let done = false;
  try {
    while (true) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        done = true;
        throw readError(path, err);
      }
      if (result.done) {
        done = true;
        return;
      }
      yield result.value;
    }
  } finally {
    active.reader = undefined;
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

async function openEntry(entry: ArchiveEntry): Promise<ReadableStream<Uint8Array>> {
  try {
    return await entry.open();
  } catch (err) {
    throw readError(entry.path, err);
  }
}

/** Whether zip.js was given the native deflate (undefined until a zip at such a level). */
let nativeDeflate: boolean | undefined;

/**
 * Gives zip.js node:zlib's deflate for the levels it does not leave to the platform's
 * `CompressionStream` (all but 6), once: zip.js's own WebAssembly zlib takes three to four times
 * as long (bench 4b). zip.js's configuration is process-wide; this sets only its
 * `CompressionStreamFallback`, which zip.js constructs for `deflate-raw` only.
 */
function useNativeDeflate(configure: typeof import("@zip.js/zip.js").configure): void {
  if (nativeDeflate !== undefined) return;
  nativeDeflate = hasNativeDeflate();
  if (nativeDeflate) configure({ CompressionStreamFallback: DeflateRawStream });
}

/**
 * Writes a zip archive (deflate, or stored at level 0) of the entries, in the order given.
 *
 * Uses zip.js without web workers; entries are added one after another and written straight
 * to the output. At level 6 zip.js deflates with the platform's `CompressionStream`; at the
 * other levels it is given node:zlib's deflate (zip.js's configuration is process-wide: its
 * `CompressionStreamFallback` is set on the first such archive). An entry of unknown `size` gets a Zip64 local header (its central directory
 * record drops it when the sizes fit in 32 bits), which GitLab reads fine.
 *
 * @param entries The files, with paths relative to the project directory.
 * @param options The compression `level`.
 * @returns The zip bytes.
 * @throws {ArtifactError} At once for an invalid or duplicate path when `entries` is an array.
 * @throws {RangeError} At once for a level outside 0–9.
 *
 * @example Zip two files and read the result back
 * ```ts
 * import { zipArchive } from "./archive.ts";
 * import { ZipArtifact } from "./reader.ts";
 * import { deepStrictEqual } from "node:assert";
 * const file = (text: string) => () => new Blob([text]).stream();
 * const zip = zipArchive([
 *   { path: "out/a.txt", open: file("hello") },
 *   { path: "out/b.txt", open: file("world") },
 * ]);
 * const bytes = new Uint8Array(await new Response(zip).arrayBuffer());
 * const artifact = new ZipArtifact(bytes);
 * deepStrictEqual((await artifact.entries()).map((e) => e.path), ["out/a.txt", "out/b.txt"]);
 * await artifact.close();
 * ```
 */
export function zipArchive(
  entries: ArchiveEntries,
  options: ArchiveOptions = {},
): ReadableStream<Uint8Array> {
  const level = checkLevel(options.level);
  const source = isSyncIterable(entries) ? checkedEntries(entries) : entries;
  let output!: TransformStreamDefaultController<Uint8Array>;
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      output = controller;
    },
  });
  const active: ActiveSource = {};
  let cancelled = false;
  (async () => {
    const seen = new Set<string>();
    let current = "";
    let readFailure: ArtifactError | undefined;
    try {
      const { ZipWriter, configure } = await zipJs();
      if (level !== 0 && level !== DEFAULT_LEVEL) useNativeDeflate(configure);
      const zip = new ZipWriter(writable, { useWebWorkers: false, level, keepOrder: true });
      for await (const raw of source) {
        if (cancelled) return;
        const entry = checkedEntry(raw, seen);
        current = entry.path;
        const content = (await openEntry(entry)).getReader();
        active.reader = content;
        // zip.js reads this wrapper; a read error is kept to be reported as the cause.
        const data = new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              const { value, done } = await content.read();
              if (done) controller.close();
              else controller.enqueue(value);
            } catch (err) {
              readFailure = readError(entry.path, err);
              controller.error(readFailure);
            }
          },
          cancel: (reason) => content.cancel(reason),
        }, { highWaterMark: 0 });
        try {
          await zip.add(entry.path, data, {
            level,
            ...(entry.size !== undefined ? { uncompressedSize: entry.size } : {}),
            ...(entry.mtime !== undefined ? { lastModDate: entry.mtime } : {}),
            ...(entry.mode !== undefined ? { unixMode: entry.mode } : {}),
          });
        } catch (err) {
          // Stop reading the file (a no-op when the read itself failed).
          await content.cancel(err).catch(() => {});
          throw readFailure ?? err;
        } finally {
          active.reader = undefined;
          content.releaseLock();
        }
      }
      current = "";
      await zip.close();
    } catch (err) {
      if (cancelled) return;
      try {
        output.error(
          err instanceof ArtifactError ? err : new ArtifactError(
            `Failed to write the zip archive${current ? ` at ${current}` : ""}: ${
              err instanceof Error ? err.message : String(err)
            }`,
            { cause: err, ...(current ? { path: current } : {}) },
          ),
        );
      } catch {
        // The output is already errored.
      }
    }
  })();
  const out = readable.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await out.read();
      } catch (err) {
        // zip.js may error the output with its own error before the task above does.
        throw err instanceof ArtifactError ? err : new ArtifactError(
          `Failed to write the zip archive: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    async cancel(reason) {
      cancelled = true;
      await active.reader?.cancel(reason).catch(() => {});
      await out.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

const encoder = new TextEncoder();

/** Go's `url.PathEscape`: keeps `A-Za-z0-9-_.~$&+:=@`, escapes every other UTF-8 byte. */
function pathEscape(s: string): string {
  let out = "";
  for (const byte of encoder.encode(s)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~$&+:=@]/.test(c)
      ? c
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * The official runner's `sanitizePath` for gzip header strings: kept as is when plain ASCII
 * without `%`, else `e:` + the URL path escape of the string.
 */
function gzipHeaderString(s: string): string {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(s) && !s.includes("%") ? s : `e:${pathEscape(s)}`;
}

/**
 * A gzip member header (RFC 1952) with FNAME and FCOMMENT, as Go's `gzip.Writer` writes it:
 * MTIME in seconds (0 when unknown), XFL 0, OS 255 (unknown).
 */
function gzipHeader(name: string, comment: string, mtime: Date | undefined): Uint8Array {
  const nameBytes = encoder.encode(gzipHeaderString(name));
  const commentBytes = encoder.encode(gzipHeaderString(comment));
  const header = new Uint8Array(10 + nameBytes.length + 1 + commentBytes.length + 1);
  const seconds = mtime === undefined ? 0 : Math.floor(mtime.getTime() / 1000);
  const time = seconds > 0 && seconds <= 0xffffffff ? seconds : 0;
  header.set([0x1f, 0x8b, 8, 0x08 | 0x10]);
  new DataView(header.buffer).setUint32(4, time, true);
  header[8] = 0;
  header[9] = 255;
  header.set(nameBytes, 10);
  header.set(commentBytes, 10 + nameBytes.length + 1);
  return header;
}

/**
 * Length of the gzip header at the start of `buf`, or `undefined` when more bytes are needed.
 */
function gzipHeaderLength(buf: Uint8Array): number | undefined {
  if (buf.length < 10) return undefined;
  if (buf[0] !== 0x1f || buf[1] !== 0x8b || buf[2] !== 8) {
    throw new ArtifactError("CompressionStream produced an unexpected gzip header");
  }
  const flags = buf[3];
  let i = 10;
  if (flags & 0x04) {
    if (buf.length < i + 2) return undefined;
    i += 2 + (buf[i] | (buf[i + 1] << 8));
  }
  for (const bit of [0x08, 0x10]) {
    if (flags & bit) {
      const end = buf.indexOf(0, i);
      if (end < 0) return undefined;
      i = end + 1;
    }
  }
  if (flags & 0x02) i += 2;
  return buf.length >= i ? i : undefined;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** One gzip member: our header, then the native member minus its own header. */
async function* gzipMember(
  entry: ArchiveEntry,
  active: ActiveSource,
): AsyncGenerator<Uint8Array> {
  const base = entry.path.slice(entry.path.lastIndexOf("/") + 1);
  yield gzipHeader(base, entry.path, entry.mtime);
  const content = await openEntry(entry);
  // (The DOM typings want ArrayBuffer-backed chunks; any Uint8Array works.)
  const compressed = content.pipeThrough(
    new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
  let pending: Uint8Array | undefined = new Uint8Array(0);
  for await (const chunk of chunksOf(compressed, entry.path, active)) {
    if (pending === undefined) {
      yield chunk;
      continue;
    }
    pending = concat(pending, chunk);
    const skip = gzipHeaderLength(pending);
    if (skip === undefined) continue;
    const rest = pending.subarray(skip);
    pending = undefined;
    if (rest.length > 0) yield rest;
  }
  if (pending !== undefined) {
    throw new ArtifactError("CompressionStream produced a truncated gzip member", {
      path: entry.path,
    });
  }
}

/**
 * Writes a gzip artifact like the official runner: one gzip member per file, concatenated, in
 * path order (code point order, the byte order of UTF-8). Each member header carries the file's
 * base name as FNAME and its relative path as FCOMMENT; a string that is not plain ASCII or
 * contains `%` is written as `e:` + its URL path escape (`e:r%C3%A9sum%C3%A9.xml`), and the
 * member's MTIME is the entry's `mtime`.
 *
 * The data is compressed by the platform's `CompressionStream` at its default level: the
 * official runner ignores the compression level for gzip too.
 *
 * Note: a multi-member gzip decodes as the concatenation of the files with `gunzip` or Node's
 * `zlib.gunzipSync`, but Deno's `DecompressionStream("gzip")` stops with an error after the
 * first member.
 *
 * @param entries The files, with paths relative to the project directory.
 * @returns The concatenated gzip members.
 * @throws {ArtifactError} At once for an invalid or duplicate path when `entries` is an array.
 *
 * @example A junit report
 * ```ts
 * import { gzipArchive } from "./archive.ts";
 * import { strictEqual } from "node:assert";
 * const gz = gzipArchive([
 *   { path: "reports/junit.xml", open: () => new Blob(["<testsuites/>"]).stream() },
 * ]);
 * const blob = await new Response(gz).blob();
 * const text = await new Response(blob.stream().pipeThrough(new DecompressionStream("gzip"))).text();
 * strictEqual(text, "<testsuites/>");
 * ```
 */
export function gzipArchive(entries: ArchiveEntries): ReadableStream<Uint8Array> {
  const checked = isSyncIterable(entries) ? checkedEntries(entries) : undefined;
  const active: ActiveSource = {};
  return streamFrom(
    (async function* () {
      const list = checked ?? await collectEntries(entries);
      list.sort((a, b) => compareCodePoints(a.path, b.path));
      for (const entry of list) yield* gzipMember(entry, active);
    })(),
    active,
  );
}

function checkRawCount(list: ArchiveEntry[]): ArchiveEntry {
  if (list.length === 0) throw new ArtifactError("No file to send as raw artifact");
  if (list.length > 1) {
    throw new ArtifactError(
      `Only one file can be sent as raw artifact, got ${list.length}: ${
        list.slice(0, 5).map((e) => e.path).join(", ")
      }${list.length > 5 ? ", …" : ""}`,
    );
  }
  return list[0];
}

/**
 * Writes a `raw` artifact: the bytes of exactly one file (e.g. a `sast` or `terraform`
 * report), as the official runner does.
 *
 * @param entries Exactly one file.
 * @returns The file's bytes.
 * @throws {ArtifactError} At once when `entries` is an array with zero or several files, or an
 *   invalid path (for an async iterable the stream errors instead).
 *
 * @example One report
 * ```ts
 * import { rawArchive } from "./archive.ts";
 * import { strictEqual } from "node:assert";
 * const raw = rawArchive([{ path: "gl-sast-report.json", open: () => new Blob(["{}"]).stream() }]);
 * strictEqual(await new Response(raw).text(), "{}");
 * ```
 *
 * @example Several files are an error
 * ```ts
 * import { rawArchive } from "./archive.ts";
 * import { ArtifactError } from "./errors.ts";
 * import { throws } from "node:assert";
 * const open = () => new Blob(["x"]).stream();
 * throws(() => rawArchive([{ path: "a", open }, { path: "b", open }]), ArtifactError);
 * ```
 */
export function rawArchive(entries: ArchiveEntries): ReadableStream<Uint8Array> {
  const single = isSyncIterable(entries) ? checkRawCount(checkedEntries(entries)) : undefined;
  const active: ActiveSource = {};
  return streamFrom(
    (async function* () {
      const entry = single ?? checkRawCount(await collectEntries(entries));
      yield* chunksOf(await openEntry(entry), entry.path, active);
    })(),
    active,
  );
}
