/**
 * A downloaded gzip artifact, as the official runner writes them (one member per file, the
 * member's relative path in its header comment, `e:` + URL escape): a parser of (multi-member)
 * gzip that walks the members once, checking their CRCs, and then inflates one member at a time
 * as a stream.
 *
 * @module
 */

import { createInflateRaw } from "node:zlib";
import { Crc32 } from "../log/crc32.ts";
import type { Artifact, ArtifactLimits, ExtractOptions } from "./artifact.ts";
import { ArtifactError } from "./errors.ts";
import type { ByteSource } from "./_byte_source.ts";
import { extract, extractLimits } from "./_extract.ts";
import type { ArtifactEntry } from "./reader.ts";

const INFLATE_CHUNK = 16 * 1024;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

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

/** A gzip {@link Artifact} over a download's {@link ByteSource}; closing it frees the bytes. */
export class GzipDownload implements Artifact {
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
