/**
 * Raw deflate at any level through the runtime's native zlib (node:zlib), as a `TransformStream`
 * zip.js can use: zip.js compresses with the platform's `CompressionStream` only at level 6 and
 * falls back to its own WebAssembly zlib at every other level, which on one thread runs at a
 * quarter to a third of native zlib's speed (bench 4, `ARTIFACT_COMPRESSION_LEVEL=fast`).
 *
 * The stream drives the synchronous handle node:zlib's own `deflateRawSync` uses (Node and Deno
 * alike), so no stream of node:zlib and no buffer per input chunk is involved: each input chunk
 * is deflated at once into one reused buffer of {@link OUTPUT_CHUNK} bytes, and what it produced
 * is handed out as a copy.
 *
 * @module
 */

import * as zlib from "node:zlib";
import type { ZlibInternals } from "./reader.ts";

/** Size of the buffer deflated into (the chunks handed out are copies of what it holds). */
const OUTPUT_CHUNK = 64 * 1024;

type WriteSync = NonNullable<NonNullable<ZlibInternals["_handle"]>["writeSync"]>;

/** One node:zlib raw deflate handle, driven synchronously, with its output buffer. */
class Deflater {
  readonly level: number;
  #z: ReturnType<typeof zlib.createDeflateRaw>;
  #write: WriteSync;
  #state: Uint32Array;
  #out = new Uint8Array(OUTPUT_CHUNK);
  /** The error node:zlib reported (through the stream, after writeSync returned). */
  #failure: unknown;

  constructor(level: number) {
    this.level = level;
    this.#z = zlib.createDeflateRaw({ level });
    const internals = this.#z as unknown as ZlibInternals;
    const handle = internals._handle;
    if (typeof handle?.writeSync !== "function" || internals._writeState === undefined) {
      this.#z.close();
      throw new TypeError("This runtime's node:zlib has no synchronous deflate handle");
    }
    this.#write = handle.writeSync.bind(handle);
    this.#state = internals._writeState;
    this.#z.on("error", (err: unknown) => (this.#failure = err));
  }

  /** Deflates all of `input` with `flush`, handing a copy of each output to `emit`. */
  run(input: Uint8Array, flush: number, emit: (chunk: Uint8Array) => void): void {
    const out = this.#out;
    const state = this.#state;
    let inOffset = 0;
    let inLength = input.length;
    for (;;) {
      this.#write(flush, input, inOffset, inLength, out, 0, out.length);
      if (this.#failure !== undefined) throw this.#failure;
      const availOut = state[0];
      const availIn = state[1];
      const produced = out.length - availOut;
      // A copy: zip.js holds chunks until it has one of its own size, and the buffer is
      // deflated into again (the garbage is the compressed bytes only).
      if (produced > 0) emit(out.slice(0, produced));
      // Like node:zlib: go on while the output buffer was filled (more may be waiting).
      if (availOut !== 0) return;
      inOffset += inLength - availIn;
      inLength = availIn;
    }
  }

  /** Makes the handle ready for a new stream (same level); false when it cannot be. */
  reset(): boolean {
    if (this.#failure !== undefined) return false;
    try {
      this.#z.reset();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    this.#z.close();
  }
}

/**
 * Idle deflaters by level, reused from entry to entry: an archive of 1024 files would otherwise
 * make and free 1024 zlib states (a few hundred KiB each, freed only when the collector gets to
 * them: +25 MB of RSS in a test), where zip.js's WebAssembly zlib reused its own memory.
 */
const idle = new Map<number, Deflater[]>();
/** Idle deflaters kept per level. */
const IDLE_PER_LEVEL = 2;

function takeDeflater(level: number): Deflater {
  return idle.get(level)?.pop() ?? new Deflater(level);
}

function giveDeflater(deflater: Deflater): void {
  let list = idle.get(deflater.level);
  if (list === undefined) idle.set(deflater.level, list = []);
  if (list.length < IDLE_PER_LEVEL && deflater.reset()) list.push(deflater);
  else deflater.close();
}

/** Whether this runtime's node:zlib has the synchronous handle {@link DeflateRawStream} needs. */
export function hasNativeDeflate(): boolean {
  try {
    new Deflater(1).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * A `deflate-raw` compression stream at a given level, zip.js's `CompressionStreamLike`:
 * constructed with `(format, { level })`. Other formats are a `TypeError`, as for the
 * platform's `CompressionStream`.
 */
export class DeflateRawStream extends TransformStream<Uint8Array, Uint8Array> {
  /** The formats zip.js may construct it with. */
  static supportedFormats: string[] = ["deflate-raw"];

  constructor(format = "deflate-raw", options: { level?: number } = {}) {
    if (format !== "deflate-raw") throw new TypeError(`Unsupported format: ${format}`);
    const level = options.level ?? zlib.constants.Z_DEFAULT_COMPRESSION;
    const deflater = takeDeflater(level);
    const empty = new Uint8Array(0);
    let done = false;
    /** Gives the deflater back (reset) after a whole stream, else closes it. */
    const release = (whole: boolean) => {
      if (done) return;
      done = true;
      if (whole) giveDeflater(deflater);
      else deflater.close();
    };
    // `cancel` is a newer Transformer member (older DOM typings, as the npm build's, lack it;
    // runtimes without it leave the deflater to the garbage collector).
    const transformer = {
      transform(chunk: Uint8Array, controller: TransformStreamDefaultController<Uint8Array>) {
        try {
          if (chunk.length > 0) {
            deflater.run(chunk, zlib.constants.Z_NO_FLUSH, (c) => controller.enqueue(c));
          }
        } catch (err) {
          release(false);
          throw err;
        }
      },
      flush(controller: TransformStreamDefaultController<Uint8Array>) {
        let whole = false;
        try {
          deflater.run(empty, zlib.constants.Z_FINISH, (c) => controller.enqueue(c));
          whole = true;
        } finally {
          release(whole);
        }
      },
      cancel() {
        release(false);
      },
    };
    super(transformer);
  }
}
