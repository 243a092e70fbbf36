/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum GitLab expects as
 * `output.checksum` = `crc32:%08x` of the whole job log (gitlab-runner `helpers/trace/buffer.go`,
 * Go `hash/crc32.NewIEEE`; GitLab `lib/gitlab/ci/trace/checksum.rb` uses `Zlib.crc32`).
 *
 * Computed by `zlib.crc32` where the runtime has it (Deno 2, Node ≥ 20.15 and ≥ 22.2: native
 * code, about 20 times faster on a chatty job's log), else table-driven, slice-by-8.
 *
 * @module
 */

import * as zlib from "node:zlib";

/**
 * The runtime's `zlib.crc32(data, value)` (same polynomial; `value` is a finished CRC to
 * continue, like {@linkcode updateCrc}'s `crc`), or undefined on older Node.
 */
const nativeCrc = (zlib as { crc32?: (data: Uint8Array, value: number) => number }).crc32;
/** Below this many bytes the table is quicker than a call into native code. */
const NATIVE_MIN_BYTES = 64;

/** Eight 256-entry tables; table k advances a byte that is k positions further away. */
const TABLES: Int32Array = buildTables();

function buildTables(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) {
      const prev = t[(k - 1) * 256 + i];
      t[k * 256 + i] = (prev >>> 8) ^ t[prev & 0xff];
    }
  }
  return t;
}

/**
 * Continues a CRC over `bytes`; `crc` and the result are the finished (not inverted) values, so a
 * checksum kept at some offset can be continued later (the job log's checkpoints).
 *
 * @param crc The CRC-32 of the bytes before (0 for none).
 * @param bytes The next bytes.
 * @returns The CRC-32 of both.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * const enc = new TextEncoder();
 * strictEqual(updateCrc(crc32(enc.encode("1234")), enc.encode("56789")).toString(16), "cbf43926");
 * ```
 */
export function updateCrc(crc: number, bytes: Uint8Array): number {
  if (nativeCrc !== undefined && bytes.length >= NATIVE_MIN_BYTES) {
    return nativeCrc(bytes, crc >>> 0);
  }
  return tableCrc(crc, bytes);
}

/**
 * {@linkcode updateCrc} with the tables only, whatever the runtime has (exported for the tests
 * that compare both ways).
 *
 * @param crc The CRC-32 of the bytes before (0 for none).
 * @param bytes The next bytes.
 * @returns The CRC-32 of both.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * const bytes = new TextEncoder().encode("123456789".repeat(10));
 * strictEqual(tableCrc(0, bytes), updateCrc(0, bytes));
 * ```
 */
export function tableCrc(crc: number, bytes: Uint8Array): number {
  const t = TABLES;
  let c = ~crc;
  let i = 0;
  const n = bytes.length;
  const n8 = n - (n & 7);
  while (i < n8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = t[1792 + (a & 0xff)] ^ t[1536 + ((a >>> 8) & 0xff)] ^ t[1280 + ((a >>> 16) & 0xff)] ^
      t[1024 + (a >>> 24)] ^ t[768 + bytes[i + 4]] ^ t[512 + bytes[i + 5]] ^ t[256 + bytes[i + 6]] ^
      t[bytes[i + 7]];
    i += 8;
  }
  while (i < n) c = t[(c ^ bytes[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The CRC-32 (IEEE) of `bytes`, as Go's `crc32.ChecksumIEEE`.
 *
 * @param bytes The data.
 * @returns The checksum, an unsigned 32-bit integer.
 *
 * @example Checking a known value
 * ```ts
 * import { strictEqual } from "node:assert";
 * const crc = crc32(new TextEncoder().encode("123456789"));
 * strictEqual(crc.toString(16), "cbf43926");
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  return updateCrc(0, bytes);
}

/**
 * An incremental CRC-32 (IEEE): feed the log as it is written, read the checksum at any time.
 *
 * @example Checksum of a log written in two parts
 * ```ts
 * import { strictEqual } from "node:assert";
 * const encoder = new TextEncoder();
 * const crc = new Crc32().update(encoder.encode("1234")).update(encoder.encode("56789"));
 * strictEqual(`crc32:${crc.hex()}`, "crc32:cbf43926");
 * ```
 */
export class Crc32 {
  #value = 0;

  /**
   * Adds bytes to the checksum.
   *
   * @param bytes The next data.
   * @returns This object, for chaining.
   *
   * @example
   * ```ts
   * import { strictEqual } from "node:assert";
   * const crc = new Crc32();
   * crc.update(new Uint8Array([1, 2, 3]));
   * strictEqual(crc.value, crc32(new Uint8Array([1, 2, 3])));
   * ```
   */
  update(bytes: Uint8Array): this {
    this.#value = updateCrc(this.#value, bytes);
    return this;
  }

  /**
   * The checksum of everything added so far, an unsigned 32-bit integer (0 when nothing was).
   *
   * @example
   * ```ts
   * import { strictEqual } from "node:assert";
   * strictEqual(new Crc32().value, 0);
   * ```
   */
  get value(): number {
    return this.#value;
  }

  /**
   * The checksum as 8 lowercase hex digits (Go `%08x`), as sent in `output.checksum` after `crc32:`.
   *
   * @returns The zero-padded hex string.
   *
   * @example
   * ```ts
   * import { strictEqual } from "node:assert";
   * strictEqual(new Crc32().update(new TextEncoder().encode("a")).hex(), "e8b7be43");
   * ```
   */
  hex(): string {
    return this.#value.toString(16).padStart(8, "0");
  }
}
