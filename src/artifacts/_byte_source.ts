/**
 * Where a downloaded artifact's bytes live and how they get there: {@link storeBody} streams a
 * response body into memory, or into a file once it outgrows the memory limit, and stops it at
 * the size limit (C10.2, C10.5); the result is a {@link ByteSource} over memory or over the file
 * (read through {@link FileRangeBlob}, one descriptor and positional reads, never the whole file).
 *
 * @module
 */

import { mkdir, open, rm } from "node:fs/promises";
import { closeSync, openSync, readSync } from "node:fs";
import { ArtifactError } from "./errors.ts";
import { readFileStream } from "./files.ts";
import { READ_AT } from "./_random_access.ts";

/** Where a downloaded artifact's bytes are: in memory or in a file. */
export interface ByteSource {
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

/** The bytes of a small artifact, in memory. */
export class MemorySource implements ByteSource {
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
export class FileRangeBlob extends Blob {
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

/** The bytes of a large artifact, in a file deleted by {@link FileSource.dispose}. */
export class FileSource implements ByteSource {
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

/** The largest body a download accepts, and what to call that limit in its error. */
export interface SizeLimit {
  bytes: number;
  /** `artifacts_file.size` (stated by GitLab) or `maxDownloadSize`. */
  name: string;
}

/**
 * Streams a body into memory, or into `file` once it grows past `limit`; a body growing past
 * `max` is cancelled and is an {@link ArtifactError}.
 */
export async function storeBody(
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
