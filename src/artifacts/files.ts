/**
 * The files a job offers for its artifacts: {@link UploadableFile} (a relative path and a way to
 * open its content), {@link filesUnder} to offer every file below a directory (for runners that
 * build in the build directory), and {@link readFileStream} to stream a file from disk.
 *
 * Works on Deno and Node (`node:fs/promises` only).
 *
 * @module
 */

import type { FileHandle } from "node:fs/promises";
import { lazy } from "../_lazy.ts";
import { compareCodePoints } from "./_path.ts";

/** `node:fs/promises`, loaded with the first file read (an idle runner does not hold it). */
const fs = lazy(() => import("node:fs/promises"));

/**
 * One file a job offers for upload. Artifact `paths` and `exclude` patterns are matched against
 * `path`; `open()` is called only for files that end up in an artifact, once per upload attempt
 * (a retried upload reads the file again from the start).
 *
 * @example A file produced in memory
 * ```ts
 * import type { UploadableFile } from "./files.ts";
 * import { strictEqual } from "node:assert";
 * const report: UploadableFile = {
 *   path: "reports/junit.xml",
 *   open: () => new Blob(["<testsuites/>"]).stream(),
 *   size: 13,
 * };
 * strictEqual(await new Response(await report.open()).text(), "<testsuites/>");
 * ```
 */
export interface UploadableFile {
  /** Path relative to the project directory, with `/` separators (`./a//b` is cleaned to `a/b`). */
  path: string;
  /** Opens the content from the start; may be called several times (once per upload attempt). */
  open(): ReadableStream<Uint8Array> | Promise<ReadableStream<Uint8Array>>;
  /** Size in bytes, if known (lets zip entries skip Zip64 fields). */
  size?: number;
  /**
   * Unix mode (`st_mode`, e.g. `0o100755`), if known. A symbolic link has the file type
   * `0o120000`, and its content (what `open()` gives) is the link target.
   */
  mode?: number;
  /** Modification time, if known. */
  mtime?: Date;
}

/**
 * Bytes read per step: each read is a trip through the runtime's thread pool, and each chunk
 * goes through the stream pipeline. With 64 KiB reads the 512 MiB level-1 zip upload of bench 4
 * peaked at 200-250 MB of RSS, with 256 KiB reads at 195 MB (same machine, same load).
 */
const CHUNK_SIZE = 256 * 1024;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** Options of {@link readFileStream}. */
export interface ReadFileStreamOptions {
  /** First byte to read (default 0). */
  start?: number;
  /** Byte to stop before (default: the end of the file). */
  end?: number;
}

/**
 * Streams a file (or a byte range of it) from disk, 256 KiB at a time, only as fast as the stream
 * is read. The file is opened on the first read and closed at its end, on error or on cancel.
 *
 * @param path The file's path.
 * @param options The byte range to read.
 * @returns The file's bytes.
 *
 * @example Offer a file of the build directory
 * ```ts
 * import { readFileStream, type UploadableFile } from "./files.ts";
 * import { strictEqual } from "node:assert";
 * import { mkdtemp, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * const dir = await mkdtemp(join(tmpdir(), "files-"));
 * await writeFile(join(dir, "app.log"), "started\n");
 * const file: UploadableFile = { path: "app.log", open: () => readFileStream(join(dir, "app.log")) };
 * strictEqual(await new Response(await file.open()).text(), "started\n");
 * await rm(dir, { recursive: true });
 * ```
 */
export function readFileStream(
  path: string,
  options: ReadFileStreamOptions = {},
): ReadableStream<Uint8Array> {
  let position = options.start ?? 0;
  const end = options.end ?? Infinity;
  let handle: FileHandle | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle?.close().catch(() => {});
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        handle ??= await (await fs()).open(path, "r");
        const want = Math.min(CHUNK_SIZE, end - position);
        if (want <= 0) {
          await close();
          controller.close();
          return;
        }
        const buffer = new Uint8Array(want);
        const { bytesRead } = await handle.read(buffer, 0, want, position);
        if (bytesRead === 0) {
          await close();
          controller.close();
          return;
        }
        position += bytesRead;
        controller.enqueue(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
      } catch (err) {
        await close();
        throw err;
      }
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

function linkStream(path: string): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(new TextEncoder().encode(await (await fs()).readlink(path)));
      controller.close();
    },
  });
}

async function* walk(root: string, prefix: string): AsyncGenerator<UploadableFile> {
  const { lstat, readdir } = await fs();
  const dir = prefix === "" ? root : `${root}/${prefix}`;
  const names = (await readdir(dir)).sort(compareCodePoints);
  for (const name of names) {
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    const abs = `${root}/${rel}`;
    let info;
    try {
      info = await lstat(abs);
    } catch (err) {
      // Removed while walking.
      if ((err as { code?: string }).code === "ENOENT") continue;
      throw err;
    }
    if (info.isDirectory()) {
      yield* walk(root, rel);
    } else if (info.isFile()) {
      yield {
        path: rel,
        open: () => readFileStream(abs),
        size: info.size,
        mode: info.mode,
        mtime: info.mtime,
      };
    } else if (info.isSymbolicLink()) {
      const mode = (info.mode & S_IFMT) === S_IFLNK ? info.mode : S_IFLNK | 0o777;
      yield { path: rel, open: () => linkStream(abs), size: info.size, mode, mtime: info.mtime };
    }
    // Sockets, FIFOs and devices are not offered (reading a FIFO could block forever).
  }
}

/**
 * Offers every file below a directory, for runners whose jobs write their results into the build
 * directory: regular files and symbolic links, with paths relative to `dir` in code point order
 * (the byte order of UTF-8), depth first. Directories are walked but not listed themselves;
 * sockets, FIFOs and devices are left out. Each call walks the directory again, lazily.
 *
 * Symbolic links are offered as links, never followed: the mode carries the link file type and
 * `open()` gives the target, so a zip artifact stores them as links, like the official runner;
 * a link to a directory is not descended into.
 *
 * @param dir The directory, e.g. the job's build directory.
 * @returns The files, each opened only when read.
 *
 * @example List a build directory
 * ```ts
 * import { filesUnder } from "./files.ts";
 * import { deepStrictEqual } from "node:assert";
 * import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * const dir = await mkdtemp(join(tmpdir(), "build-"));
 * await mkdir(join(dir, "out"));
 * await writeFile(join(dir, "out", "app"), "binary");
 * await writeFile(join(dir, "build.log"), "ok\n");
 * const paths: string[] = [];
 * for await (const file of filesUnder(dir)) paths.push(file.path);
 * deepStrictEqual(paths, ["build.log", "out/app"]);
 * await rm(dir, { recursive: true });
 * ```
 */
export function filesUnder(dir: string): AsyncIterable<UploadableFile> {
  const root = dir.length > 1 ? dir.replace(/[/\\]+$/, "") : dir;
  return { [Symbol.asyncIterator]: () => walk(root, "") };
}
