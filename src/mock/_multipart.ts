/**
 * A streaming `multipart/form-data` reader for the mock's artifact upload (CONFORMANCE M13):
 * the body is read chunk by chunk, each part's headers are parsed, and part bytes are handed
 * out as they arrive, so a caller can refuse an oversized file without reading the rest.
 *
 * @module
 */

/** A body that is not valid `multipart/form-data` (Workhorse answers 400). */
export class MultipartError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "MultipartError";
  }
}

/** The headers of one part. */
export interface MultipartPart {
  /** `name` of `Content-Disposition` (undefined when absent). */
  name?: string;
  /** `filename` (or `filename*`) of `Content-Disposition`: set for a file, undefined for a field. */
  filename?: string;
  /** The part's `Content-Type` (default `application/octet-stream`, as RFC 7578 says for files). */
  contentType: string;
}

/** What {@linkcode readMultipart} yields: a part starts, some of its bytes, the part ends. */
export type MultipartEvent =
  | { type: "part"; part: MultipartPart }
  | { type: "data"; bytes: Uint8Array }
  | { type: "end" };

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const CRLF = new Uint8Array([CR, LF]);
const CRLFCRLF = new Uint8Array([CR, LF, CR, LF]);
const MAX_PADDING = 1024;
/** Largest header block of a part, in bytes. */
const MAX_HEADER_BYTES = 16 * 1024;
const encoder = new TextEncoder();

/**
 * The `boundary` parameter of a `multipart/form-data` content type, or undefined when the type
 * is not multipart/form-data or has no usable boundary.
 */
export function multipartBoundary(contentType: string | null): string | undefined {
  if (contentType === null) return undefined;
  const [type, ...rest] = splitParams(contentType);
  if (type.trim().toLowerCase() !== "multipart/form-data") return undefined;
  const boundary = parseParams(rest).get("boundary");
  if (boundary === undefined || boundary.length === 0 || boundary.length > 256) return undefined;
  if (/[\r\n]/.test(boundary)) return undefined;
  return boundary;
}

/**
 * Reads a `multipart/form-data` body as a stream of events. The bytes of `data` events are
 * views valid until the next event (copy them to keep them). Throws {@linkcode MultipartError}
 * on a malformed body (no opening boundary, broken part headers or over 16 KiB of them, a body
 * that ends before the closing boundary). Stopping the iteration early (or an error) cancels
 * the rest of the body; whatever follows the closing boundary (the epilogue) is not read.
 */
export async function* readMultipart(
  body: ReadableStream<Uint8Array> | null,
  boundary: string,
): AsyncGenerator<MultipartEvent, void, undefined> {
  if (body === null) throw new MultipartError("empty multipart body");
  // Every delimiter is CRLF "--" boundary; the first one may open the body without the CRLF,
  // so the body is read as if a CRLF came first.
  const delimiter = encoder.encode(`\r\n--${boundary}`);
  const keep = delimiter.length - 1;
  const reader = body.getReader();
  let buf: Uint8Array = CRLF;
  let pos = 0;
  let eof = false;
  let state: "preamble" | "delimiter" | "headers" | "body" | "done" = "preamble";

  /** Appends the next chunk to what is left; false at the end of the body. */
  const more = async (): Promise<boolean> => {
    if (eof) return false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        eof = true;
        return false;
      }
      if (value.length === 0) continue;
      const left = buf.length - pos;
      if (left === 0) {
        buf = value;
      } else {
        const joined = new Uint8Array(left + value.length);
        joined.set(buf.subarray(pos));
        joined.set(value, left);
        buf = joined;
      }
      pos = 0;
      return true;
    }
  };

  try {
    while (state !== "done") {
      if (state === "preamble") {
        const at = findDelimiter(buf, delimiter, pos);
        if (at >= 0) {
          pos = at + delimiter.length;
          state = "delimiter";
          continue;
        }
        pos = Math.max(pos, at === MORE ? buf.length - delimiter.length : buf.length - keep);
        if (!(await more())) throw new MultipartError("no multipart boundary in the body");
      } else if (state === "delimiter") {
        // After a delimiter: "--" closes the body; else transport padding, then CRLF.
        let i = pos;
        while (i < buf.length && i - pos < MAX_PADDING && (buf[i] === 0x20 || buf[i] === 0x09)) {
          i++;
        }
        if (i + 2 > buf.length) {
          if (i - pos >= MAX_PADDING) throw new MultipartError("invalid multipart boundary line");
          if (!(await more())) throw new MultipartError("multipart body ends after a boundary");
          continue;
        }
        if (i === pos && buf[i] === DASH && buf[i + 1] === DASH) {
          state = "done";
        } else if (buf[i] === CR && buf[i + 1] === LF) {
          pos = i + 2;
          state = "headers";
        } else {
          throw new MultipartError("invalid multipart boundary line");
        }
      } else if (state === "headers") {
        if (buf.length - pos >= 2 && buf[pos] === CR && buf[pos + 1] === LF) {
          // No headers at all.
          pos += 2;
          yield { type: "part", part: parsePartHeaders("") };
          state = "body";
          continue;
        }
        const at = indexOf(buf, CRLFCRLF, pos);
        if (at >= 0 && at - pos <= MAX_HEADER_BYTES) {
          const text = new TextDecoder().decode(buf.subarray(pos, at));
          pos = at + 4;
          yield { type: "part", part: parsePartHeaders(text) };
          state = "body";
        } else if (at >= 0 || buf.length - pos > MAX_HEADER_BYTES + 4) {
          throw new MultipartError("multipart part headers are too large");
        } else if (!(await more())) {
          throw new MultipartError("multipart body ends in part headers");
        }
      } else {
        const at = findDelimiter(buf, delimiter, pos);
        if (at >= 0) {
          if (at > pos) yield { type: "data", bytes: buf.subarray(pos, at) };
          yield { type: "end" };
          pos = at + delimiter.length;
          state = "delimiter";
          continue;
        }
        // Everything before a possible delimiter is part data for sure.
        const safe = at === MORE ? buf.length - delimiter.length : buf.length - keep;
        if (safe > pos) {
          yield { type: "data", bytes: buf.subarray(pos, safe) };
          pos = safe;
        }
        if (!(await more())) throw new MultipartError("multipart body ends inside a part");
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Parses a part's header block (lines without the final empty line). */
function parsePartHeaders(text: string): MultipartPart {
  const headers = new Map<string, string>();
  let last: string | undefined;
  for (const line of text.split("\r\n")) {
    if (line === "") continue;
    if ((line[0] === " " || line[0] === "\t") && last !== undefined) {
      headers.set(last, `${headers.get(last)} ${line.trim()}`); // obsolete line folding
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new MultipartError("invalid multipart part header");
    last = line.slice(0, colon).trim().toLowerCase();
    headers.set(last, line.slice(colon + 1).trim());
  }
  const part: MultipartPart = {
    contentType: headers.get("content-type") || "application/octet-stream",
  };
  const disposition = headers.get("content-disposition");
  if (disposition !== undefined) {
    const [, ...rest] = splitParams(disposition);
    const params = parseParams(rest);
    const name = params.get("name");
    if (name !== undefined) part.name = name;
    const extended = params.get("filename*");
    const filename = extended !== undefined ? decodeExtended(extended) : undefined;
    if (filename !== undefined) part.filename = filename;
    else if (params.has("filename")) part.filename = params.get("filename");
  }
  return part;
}

/** Splits a header value at `;` outside quoted strings. */
function splitParams(value: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted && c === "\\" && i + 1 < value.length) {
      current += c + value[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ";" && !quoted) {
      out.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  out.push(current);
  return out;
}

/** `key=value` / `key="quoted \" value"` parameters, keys lower-cased; the first one wins. */
function parseParams(parts: string[]): Map<string, string> {
  const params = new Map<string, string>();
  for (const part of parts) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    }
    if (!params.has(key)) params.set(key, value);
  }
  return params;
}

/** An RFC 5987 `charset'lang'percent-encoded` value (UTF-8 only), or undefined. */
function decodeExtended(value: string): string | undefined {
  const m = /^utf-8'[^']*'(.*)$/i.exec(value);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return undefined;
  }
}

const MORE = -2;

/**
 * Index of the next delimiter at or after `from`: the delimiter bytes followed by what may
 * follow a boundary (`-`, space, tab, CR, LF). Like Go's `mime/multipart`, a delimiter followed
 * by anything else is data. -1 when there is none, {@linkcode MORE} when the delimiter ends the
 * buffer (the next byte decides; it starts at `buffer.length - delimiter.length`).
 */
function findDelimiter(buf: Uint8Array, delimiter: Uint8Array, from: number): number {
  for (let at = indexOf(buf, delimiter, from); at >= 0; at = indexOf(buf, delimiter, at + 1)) {
    const after = at + delimiter.length;
    if (after >= buf.length) return MORE;
    const c = buf[after];
    if (c === DASH || c === 0x20 || c === 0x09 || c === CR || c === LF) return at;
  }
  return -1;
}

/** Index of `needle` in `haystack` at or after `from`, or -1. */
function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  for (
    let i = haystack.indexOf(first, from);
    i >= 0 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** A resizable `ArrayBuffer` (ES2024), typed here for older `lib` settings. */
interface GrowableBuffer {
  readonly byteLength: number;
  resize(length: number): void;
  transferToFixedLength?(): ArrayBuffer;
  slice(begin: number, end?: number): ArrayBuffer;
}

/**
 * Collects bytes up to a known limit in one growing buffer (a resizable `ArrayBuffer`, so the
 * bytes are never held twice), or in a list of chunks joined at the end where that cannot be
 * reserved.
 */
export class ByteCollector {
  #buffer?: GrowableBuffer;
  #chunks: Uint8Array[] = [];
  #length = 0;

  /** Creates a collector for at most `maxBytes` bytes. */
  constructor(maxBytes: number) {
    try {
      const Growable = ArrayBuffer as unknown as new (
        length: number,
        options: { maxByteLength: number },
      ) => GrowableBuffer;
      const buffer = new Growable(0, { maxByteLength: maxBytes });
      if (typeof buffer.resize === "function") this.#buffer = buffer;
    } catch {
      // Too large to reserve (or no resizable buffers): collect chunks.
    }
  }

  /** Bytes collected so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends a copy of `bytes`. */
  push(bytes: Uint8Array): void {
    if (this.#buffer) {
      this.#buffer.resize(this.#length + bytes.length);
      new Uint8Array(this.#buffer as unknown as ArrayBuffer, this.#length, bytes.length).set(bytes);
    } else {
      this.#chunks.push(bytes.slice());
    }
    this.#length += bytes.length;
  }

  /** The collected bytes, in a fixed-length buffer; the collector is spent. */
  bytes(): Uint8Array<ArrayBuffer> {
    if (this.#buffer) {
      const buffer = this.#buffer;
      this.#buffer = undefined;
      // Zero-copy where supported; a copy on runtimes without transferToFixedLength (Node 20).
      const fixed = typeof buffer.transferToFixedLength === "function"
        ? buffer.transferToFixedLength()
        : buffer.slice(0, this.#length);
      return new Uint8Array(fixed);
    }
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    this.#chunks = [];
    return out;
  }
}
