/**
 * Small helpers of the GitLab mock: responses, CRC-32, token masking, base64, a seeded PRNG.
 *
 * @module
 */

import * as zlib from "node:zlib";
import { STATUS_TEXT } from "./_constants.ts";

/** A JSON response with the given status. */
export function jsonResponse(status: number, body: unknown, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json");
  return new Response(JSON.stringify(body), { status, statusText: statusText(status), headers: h });
}

/** A Rails-style API error: `{"message": "<status> <text>"}` or the given message. */
export function errorResponse(status: number, message?: string, headers?: HeadersInit): Response {
  return jsonResponse(status, { message: message ?? `${status} ${statusText(status)}` }, headers);
}

/** A plain-text response (Grape answers PUT/upload with the status number as text). */
export function textResponse(status: number, body: string | null, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  if (body !== null) h.set("content-type", "text/plain");
  return new Response(nullBodyStatus(status) ? null : body, {
    status,
    statusText: statusText(status),
    headers: h,
  });
}

/** The reason phrase of a status. */
export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? "";
}

/** Statuses whose responses must not have a body. */
export function nullBodyStatus(status: number): boolean {
  return status === 101 || status === 103 || status === 204 || status === 205 || status === 304;
}

let crcTable: Uint32Array | undefined;

function makeCrcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

/**
 * The runtime's `zlib.crc32` (Deno 2, Node ≥ 20.15): the mock stores every PATCH's CRC, and a
 * byte-at-a-time table costs about 7 ms per MiB, as long as the round trip of the rest of the PATCH.
 */
const nativeCrc = (zlib as { crc32?: (data: Uint8Array, value: number) => number }).crc32;

/** Continues a CRC-32 (IEEE) over `data`; start with `crc = 0`. */
export function crc32(data: Uint8Array, crc = 0): number {
  if (nativeCrc !== undefined && data.length >= 64) return nativeCrc(data, crc >>> 0);
  return tableCrc32(data, crc);
}

/** {@linkcode crc32} with the mock's own byte table (where the runtime has no `zlib.crc32`). */
export function tableCrc32(data: Uint8Array, crc = 0): number {
  const table = crcTable ??= makeCrcTable();
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * Replaces every occurrence of `secret` in `data` (in place) by `x` × its length, like
 * `Gitlab::Ci::MaskSecret.mask!`: left to right, an occurrence found is replaced before the search
 * goes on after it. Returns the number of replacements.
 *
 * Horspool's search (it looks at about one byte in `secret.length`): every PATCH is masked with
 * the job's and the runner's token, and stepping through each occurrence of their first byte cost
 * about 9 ms per MiB, longer than the rest of the PATCH's round trip.
 */
export function maskSecret(data: Uint8Array, secret: Uint8Array): number {
  const n = secret.length;
  if (n === 0 || data.length < n) return 0;
  // How far the window may move when its last byte is `b`: to the last `b` in `secret` before its
  // end, else past it.
  const shift = new Int32Array(256).fill(n);
  for (let k = 0; k < n - 1; k++) shift[secret[k]] = n - 1 - k;
  const last = secret[n - 1];
  const stop = data.length - n;
  let count = 0;
  let i = 0;
  while (i <= stop) {
    const b = data[i + n - 1];
    if (b === last) {
      let k = 0;
      while (k < n - 1 && data[i + k] === secret[k]) k++;
      if (k === n - 1) {
        data.fill(0x78, i, i + n);
        count++;
        i += n;
        continue;
      }
    }
    i += shift[b];
  }
  return count;
}

/** Concatenates byte chunks. */
export function concatBytes(chunks: readonly Uint8Array[], size?: number): Uint8Array {
  const total = size ?? chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** Decodes standard base64 (whitespace tolerated). */
export function base64Decode(text: string): Uint8Array {
  const bin = atob(text.replace(/\s+/g, ""));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Lowercase hex of bytes. */
export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** mulberry32: a small, fast, seedable PRNG returning numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return function next(): number {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` hex characters derived deterministically from `seed`. */
export function hexFromSeed(seed: number, n: number): string {
  const rand = mulberry32(seed ^ 0x9e3779b9);
  let s = "";
  while (s.length < n) s += Math.floor(rand() * 0x100000000).toString(16).padStart(8, "0");
  return s.slice(0, n);
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** `n` cryptographically random alphanumeric characters. */
export function randomAlphanumeric(n: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = "";
  for (const b of bytes) s += ALPHANUMERIC[b % ALPHANUMERIC.length];
  return s;
}

/** `n` cryptographically random hex characters. */
export function randomHex(n: number): string {
  return hex(crypto.getRandomValues(new Uint8Array(Math.ceil(n / 2)))).slice(0, n);
}

/** Ruby's `String#to_i`: the leading integer of a string, 0 when there is none. */
export function rubyToI(text: string | undefined): number {
  const m = /^\s*([+-]?\d+)/.exec(text ?? "");
  return m ? Number.parseInt(m[1], 10) : 0;
}

/**
 * Grape's Integer coercion: a JSON integer or a string of digits; `undefined` when absent,
 * `NaN` when invalid.
 */
export function coerceInteger(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number") return Number.isInteger(value) ? value : NaN;
  if (typeof value === "string" && /^\s*[+-]?\d+\s*$/.test(value)) {
    return Number.parseInt(value, 10);
  }
  return NaN;
}

/** Grape's Boolean coercion of a query value: `undefined` when absent, `null` when invalid. */
export function coerceBoolean(value: string | null): boolean | undefined | null {
  if (value === null) return undefined;
  const v = value.toLowerCase();
  if (["1", "on", "t", "true", "y", "yes"].includes(v)) return true;
  if (["0", "off", "f", "false", "n", "no", ""].includes(v)) return false;
  return null;
}

/** An `AbortError` DOMException (what fetch rejects with when aborted). */
export function abortError(signal?: AbortSignal): unknown {
  return signal?.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** One signal that aborts when any of the given signals aborts. */
export function anySignal(signals: readonly (AbortSignal | undefined)[]): AbortSignal {
  const list = signals.filter((s): s is AbortSignal => s !== undefined);
  if (list.length === 1) return list[0];
  return AbortSignal.any(list);
}

/**
 * The same answer, whose body sends `bytes` bytes (`true`: half of it) and then never ends until
 * the reader cancels (a fault: a stalled connection).
 */
export async function stalledResponse(response: Response, bytes: true | number): Promise<Response> {
  const body = new Uint8Array(await response.arrayBuffer());
  const cut = bytes === true ? Math.floor(body.byteLength / 2) : Math.min(bytes, body.byteLength);
  let sent = false;
  let wake: (() => void) | undefined;
  const headers = new Headers(response.headers);
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sent) {
        sent = true;
        if (cut > 0) controller.enqueue(body.slice(0, cut));
        return;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    },
    cancel() {
      wake?.();
    },
  }, { highWaterMark: 0 });
  return new Response(stream, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}

const encoder = new TextEncoder();

/** Encodes a string as UTF-8. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}
