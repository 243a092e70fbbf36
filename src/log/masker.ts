/**
 * Streaming secret masking of job logs, as the official GitLab runner masks them (PROTOCOL §11).
 *
 * What is masked (facts read from gitlab-runner, `gitlabhq/gitlab-runner`,
 * `common/buildlogger/build_logger.go` and `common/buildlogger/internal/{masker,urlsanitizer,tokensanitizer}`,
 * `common/buildlogger/internal/unique.go`, `common/spec/variables.go` `Masked()`):
 *
 * 1. **Secrets**: the exact values of masked variables, byte for byte. The runner trims them
 *    (Go `strings.TrimSpace`), drops empty ones and duplicates, and has no minimum length (GitLab
 *    itself asks for 8 characters when a masked variable is created, the runner does not check).
 *    URL-encoded or otherwise re-encoded forms are *not* masked by the official runner, nor here.
 * 2. **Token prefixes**: a prefix is kept and the run of `[A-Za-z0-9._=-]` bytes that follows it
 *    becomes `[MASKED]`. The run has no maximum length: it ends at the first byte outside that
 *    alphabet (or at the end of the stream). A prefix followed by no such byte stays as it is.
 *    Prefixes match anywhere, also inside words (`xglpat-abc` → `xglpat-[MASKED]`).
 * 3. **URL parameters**: after `?key=` or `&key=`, where `key` (at most 20 bytes, compared
 *    case-insensitively) is one of `private_token`, `authenticity_token`, `rss_token`,
 *    `x-amz-signature`, `x-amz-credential`, `x-amz-security-token`, the value up to the next
 *    `?`, `&`, Unicode space or control character (Go `unicode.IsSpace`/`unicode.IsControl`)
 *    becomes `[MASKED]`; an empty value also gets a `[MASKED]`.
 *
 * How overlaps are resolved (our choice, chunking-independent, documented): every rule is applied
 * to the original bytes, each match gives a masked interval (a secret occurrence, a token run, a
 * parameter value), and each group of overlapping intervals is replaced by one `[MASKED]`.
 * So the longest secret at a position wins, and no byte of any occurrence is ever emitted, also
 * when secrets partly overlap. Touching (not overlapping) matches give one `[MASKED]` each, as in
 * the official runner (`secretsecret` → `[MASKED][MASKED]`).
 *
 * Deliberate differences from the official runner (which chains one writer per phrase/prefix):
 * results never depend on how the stream is cut into writes (the official one can miss a 20-byte
 * URL key cut just before `=`, or a multi-byte space cut in two); partly overlapping secrets never
 * leak the part outside the winner; all token prefixes are applied (the official one silently
 * keeps only the 15 shortest); keys are compared with ASCII case folding only.
 *
 * @module
 */

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** The replacement text. */
const MASK = ENCODER.encode("[MASKED]");
/**
 * Largest join or output buffer a scanner keeps for reuse (bigger ones are allocated per write,
 * so a single huge write does not stay in memory).
 */
const MAX_REUSED = 1024 * 1024;

/** The token prefix the official runner always masks (`tokensanitizer.DefaultTokenPrefixes`). */
const PAT_PREFIX = "glpat-";

/**
 * The token prefixes masked by default: GitLab's token prefixes, as the official runner applies them
 * with the feature flag `FF_MASK_ALL_DEFAULT_TOKENS` (on by default). `glpat-` comes first and is
 * always masked, even when the defaults are turned off.
 *
 * Source: gitlab-runner `common/buildlogger/internal/tokensanitizer/token_masker.go`
 * `DefaultTokenPrefixes`, plus `glrtr-` (runner authentication tokens created from a registration
 * token, listed in PROTOCOL §11 and in GitLab's token prefix table).
 *
 * @example Checking a prefix
 * ```ts
 * import { strictEqual } from "node:assert";
 * strictEqual(DEFAULT_TOKEN_PREFIXES.includes("glrt-"), true);
 * strictEqual(DEFAULT_TOKEN_PREFIXES[0], "glpat-");
 * ```
 */
export const DEFAULT_TOKEN_PREFIXES: readonly string[] = Object.freeze([
  PAT_PREFIX,
  "gloas-",
  "gldt-",
  "glrt-",
  "glrtr-",
  "glcbt-",
  "glptt-",
  "glft-",
  "glimt-",
  "glagent-",
  "glsoat-",
  "glffct-",
  "_gitlab_session=",
  "gltok-",
]);

/** URL query parameters whose values are masked (gitlab-runner `urlsanitizer.tokenParamKeys`). */
const URL_PARAMETERS: readonly Uint8Array[] = [
  "private_token",
  "authenticity_token",
  "rss_token",
  "x-amz-signature",
  "x-amz-credential",
  "x-amz-security-token",
].map((key) => ENCODER.encode(key));

/** Longest parameter key the official sanitizer looks at (its key buffer holds `?` + 20 bytes). */
const MAX_KEY_LENGTH = 20;

/** The alphabet of a token after its prefix: `[A-Za-z0-9._=-]` (tokensanitizer `alphabet`). */
const TOKEN_ALPHABET = new Uint8Array(256);
/** ASCII bytes that end a URL parameter value: `?`, `&`, controls, spaces (urlsanitizer `isParamEnd`). */
const PARAM_END_ASCII = new Uint8Array(128);

(function initTables() {
  for (const c of "-._=") TOKEN_ALPHABET[c.charCodeAt(0)] = 1;
  for (let b = 0x30; b <= 0x39; b++) TOKEN_ALPHABET[b] = 1;
  for (let b = 0x41; b <= 0x5a; b++) TOKEN_ALPHABET[b] = 1;
  for (let b = 0x61; b <= 0x7a; b++) TOKEN_ALPHABET[b] = 1;
  for (let b = 0; b <= 0x20; b++) PARAM_END_ASCII[b] = 1;
  PARAM_END_ASCII[0x7f] = 1;
  PARAM_END_ASCII[0x3f] = 1; // ?
  PARAM_END_ASCII[0x26] = 1; // &
})();

/**
 * Go's `strings.TrimSpace` (Unicode White_Space as in `unicode.IsSpace`), which differs from
 * `String.prototype.trim` on U+0085 (trimmed by Go) and U+FEFF (kept by Go).
 */
const GO_SPACE_EDGES =
  /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** Options of {@linkcode Masker} and {@linkcode MaskingStream}. */
export interface MaskerOptions {
  /**
   * Values to mask, typically the values of the job's variables marked `masked`. Each is trimmed
   * of surrounding white space (as the official runner does); empty ones are ignored.
   */
  secrets?: readonly string[];
  /**
   * Token prefixes added to the defaults, typically the job's `features.token_mask_prefixes`.
   * Trimmed; empty ones are ignored.
   */
  tokenPrefixes?: readonly string[];
  /**
   * Apply {@linkcode DEFAULT_TOKEN_PREFIXES} (the official `FF_MASK_ALL_DEFAULT_TOKENS`
   * behaviour, default `true`). When `false`, only `glpat-` and {@linkcode tokenPrefixes} apply.
   */
  defaultTokenPrefixes?: boolean;
  /** Mask the values of sensitive URL query parameters (default `true`). */
  urlParameters?: boolean;
}

/** One literal to look for: a secret (masked whole) or a token prefix (kept, its run masked). */
interface Pattern {
  readonly bytes: Uint8Array;
  readonly secret: boolean;
  /**
   * For a secret of {@linkcode LONG_SECRET} bytes or more: its number among the long secrets of
   * its tables (where the scanner keeps its state); -1 for other patterns.
   */
  readonly long: number;
  /**
   * A long secret's failure function, made at its first use: `fail[k]` is the length of the
   * longest proper border (a prefix that is also a suffix) of its first `k` bytes.
   */
  fail: Int32Array | undefined;
  /**
   * For a long secret alone where it may start (its bucket holds only it, no URL parameter starts
   * with its first byte): its pair table value, by which the scanner tells, position by position,
   * that nothing else may start there (see `#runAhead`); else 0.
   */
  solo: number;
}

/**
 * From this length on, a secret is matched with its failure function (as Knuth-Morris-Pratt):
 * after a mismatch or a match the scanner knows where the secret can start next and how many of
 * its bytes already match there, so it compares each byte of the input with the secret a bounded
 * number of times however the secret repeats itself (`aaa…ab` in a log of `a`s). A shorter secret
 * is compared from its third byte wherever it may start: at most this many bytes a position.
 */
const LONG_SECRET = 64;

/**
 * The part of the tables that comes from the token prefixes and the flags, the same for nearly
 * every job: built once and shared, read only (a job's secrets are added to copies of the parts
 * they change). It holds no secret.
 */
interface Base {
  /** Number of this base, in the entries of {@linkcode MERGED}. */
  readonly id: number;
  readonly urlParameters: boolean;
  readonly first: Uint8Array;
  readonly bucketOf: Map<number, number>;
  readonly buckets: readonly Pattern[][];
  readonly single: readonly (Pattern[] | undefined)[];
  /** The pair table of the prefixes and URL parameters alone. */
  readonly pair: Uint8Array;
  /**
   * Where `#evaluate` lists the prefixes found at one position (one slot per prefix, plus one):
   * shared by the scanners of this base, each using it only during one call.
   */
  readonly cPrefix: number[];
}

/**
 * Bases built, by their prefixes and flags (a key of at most {@linkcode MAX_BASE_KEY}
 * characters; longer ones are not kept). At most {@linkcode MAX_BASES}, each about 66 KiB plus
 * its prefixes; the oldest goes first.
 */
const BASES = new Map<string, Base>();
const MAX_BASES = 4;
const MAX_BASE_KEY = 4096;
let baseCount = 0;

/** The base of `options`: from {@linkcode BASES}, or built (and kept when its key is short). */
function baseOf(options: MaskerOptions): Base {
  const defaults = options.defaultTokenPrefixes !== false;
  const url = options.urlParameters !== false;
  const extra = options.tokenPrefixes;
  let key = defaults ? (url ? "11" : "10") : (url ? "01" : "00");
  // JSON of the strings: two different lists never give the same key.
  if (extra !== undefined && extra.length !== 0) key += JSON.stringify(extra.map(String));
  let base = BASES.get(key);
  if (base !== undefined) return base;
  base = buildBase(defaults, url, extra ?? []);
  if (key.length <= MAX_BASE_KEY) {
    if (BASES.size >= MAX_BASES) BASES.delete(BASES.keys().next().value!);
    BASES.set(key, base);
  }
  return base;
}

function buildBase(defaults: boolean, url: boolean, extra: readonly string[]): Base {
  const prefixes = unique([...(defaults ? DEFAULT_TOKEN_PREFIXES : [PAT_PREFIX]), ...extra]);
  const patterns: Pattern[] = prefixes.map((prefix) => ({
    bytes: ENCODER.encode(prefix),
    secret: false,
    long: -1,
    fail: undefined,
    solo: 0,
  }));
  patterns.sort((a, b) => b.bytes.length - a.bytes.length);
  const first = new Uint8Array(256);
  const bucketOf = new Map<number, number>();
  const buckets: Pattern[][] = [];
  const single: (Pattern[] | undefined)[] = new Array(256);
  const pair = new Uint8Array(65536);
  for (const p of patterns) {
    const b0 = p.bytes[0];
    if (p.bytes.length === 1) {
      (single[b0] ??= []).push(p);
      first[b0] |= 2;
      continue;
    }
    const key = (b0 << 8) | p.bytes[1];
    let bucket = bucketOf.get(key);
    if (bucket === undefined) {
      buckets.push([]);
      bucket = buckets.length;
      bucketOf.set(key, bucket);
    }
    buckets[bucket - 1].push(p);
    first[b0] |= 1;
    pair[key] = pairValue(bucket);
  }
  for (let b0 = 0; b0 < 256; b0++) if ((first[b0] & 2) !== 0) fillRow(pair, b0);
  if (url) {
    for (const b0 of [0x3f, 0x26]) {
      first[b0] |= 1;
      fillRow(pair, b0);
    }
  }
  const cPrefix = new Array<number>(prefixes.length + 1).fill(0);
  return { id: ++baseCount, urlParameters: url, first, bucketOf, buckets, single, pair, cPrefix };
}

/**
 * A pair table's value for a pair starting the patterns of bucket `id` (1, 2, …): the id itself
 * when below {@linkcode NO_BUCKET}, so that the scan finds the bucket without `bucketOf`.
 */
function pairValue(id: number): number {
  return id < NO_BUCKET ? id : NO_BUCKET;
}

/**
 * A pair table's value where some pattern may start (a one-byte pattern, `?` and `&`) but no
 * bucket of two-byte-or-longer ones, or one with a number this high: see `bucketOf`.
 */
const NO_BUCKET = 255;

/** Marks every pair starting with `b0` (keeping the buckets' numbers). */
function fillRow(pair: Uint8Array, b0: number): void {
  for (let key = b0 << 8; key < (b0 + 1) << 8; key++) if (pair[key] === 0) pair[key] = NO_BUCKET;
}

/**
 * What a job's secrets change in a base's tables, cached: the pair table, `first`, and `bucketOf`
 * (new buckets numbered after the base's, in the order of their pairs), all a function of the
 * base and the changes (see {@linkcode changesOf}). Read only.
 */
interface Merged {
  readonly base: number;
  readonly changes: readonly number[];
  readonly pair: Uint8Array;
  readonly first: Uint8Array;
  readonly bucketOf: Map<number, number>;
}

/**
 * Merged tables, by the base and the changes, most recently used first. The jobs of one project
 * mask the same variables, whose first two bytes are all these tables hold of them, so a job's
 * masker usually finds its tables here instead of allocating and filling 64 KiB; when the
 * secrets change nothing (the job token's `gl` is also a prefix's) the base's tables are used as
 * they are.
 */
const MERGED: Merged[] = [];
/** At most this many are kept (1 MiB). */
const MAX_MERGED = 16;

/** A change to the base: a pair of a secret's first two bytes, that no bucket of the base has. */
const NEW_PAIR = 0;
/** A change: every pair starting with `b0` (a one-byte secret). */
const NEW_LEAD = 0x10000;
/** A change: `first[b0] |= 1` (a secret of two or more bytes starts with `b0`). */
const NEW_FIRST = 0x20000;
/** A change: `first[b0] |= 2` (a one-byte secret). */
const NEW_SINGLE = 0x30000;

/** What `secrets` change in `base`'s tables, sorted (`NEW_*` plus the pair or the byte). */
function changesOf(base: Base, secrets: readonly Uint8Array[]): number[] | undefined {
  let changes: number[] | undefined;
  for (const bytes of secrets) {
    const b0 = bytes[0];
    for (let c = 0; c < 2; c++) {
      let change = -1;
      if (bytes.length === 1) {
        // (The row may be full already, a URL parameter's: filled again.)
        if ((base.first[b0] & 2) === 0) change = (c === 0 ? NEW_LEAD : NEW_SINGLE) | b0;
      } else if (c === 0) {
        const key = (b0 << 8) | bytes[1];
        // (Also a pair the pair table has, from a lead's row, needs a bucket.)
        if (!base.bucketOf.has(key)) change = NEW_PAIR | key;
      } else if ((base.first[b0] & 1) === 0) change = NEW_FIRST | b0;
      if (change < 0) continue;
      if (changes === undefined) changes = [change];
      else if (!changes.includes(change)) changes.push(change);
    }
  }
  if (changes !== undefined && changes.length > 1) changes.sort((a, b) => a - b);
  return changes;
}

/** The base's tables with `changes` (sorted) made: from {@linkcode MERGED}, or built. */
function merged(base: Base, changes: readonly number[]): Merged {
  const n = changes.length;
  search: for (let i = 0; i < MERGED.length; i++) {
    const entry = MERGED[i];
    if (entry.base !== base.id || entry.changes.length !== n) continue;
    for (let k = 0; k < n; k++) if (entry.changes[k] !== changes[k]) continue search;
    if (i !== 0) {
      // Most recently used first: the last goes when the cache is full.
      MERGED.splice(i, 1);
      MERGED.unshift(entry);
    }
    return entry;
  }
  const pair = base.pair.slice();
  const first = base.first.slice();
  let bucketOf = base.bucketOf;
  for (const change of changes) {
    const kind = change & 0x30000;
    const b0 = change & 0xff;
    if (kind === NEW_PAIR) {
      if (bucketOf === base.bucketOf) bucketOf = new Map(bucketOf);
      bucketOf.set(change, bucketOf.size + 1);
      pair[change] = pairValue(bucketOf.size);
    } else if (kind === NEW_LEAD) fillRow(pair, b0); // (after the pairs: they sort first)
    else first[b0] |= kind === NEW_FIRST ? 1 : 2;
  }
  const entry = { base: base.id, changes, pair, first, bucketOf };
  if (MERGED.length >= MAX_MERGED) MERGED.pop();
  MERGED.unshift(entry);
  return entry;
}

/**
 * Lookup tables of one option set: its {@linkcode Base} with the secrets added (the parts the
 * secrets change from {@linkcode MERGED}, the buckets they join copied, the rest shared); shared by
 * a masker and its one-shot scans.
 */
class Tables {
  /**
   * Non-zero when some pattern (or a URL parameter) may start with these two bytes: the number of
   * their bucket, or {@linkcode NO_BUCKET}. Shared between maskers with the same pairs: read only.
   */
  readonly pair: Uint8Array;
  /**
   * Bit 1: a pattern of two or more bytes starts with this byte; bit 2: a one-byte pattern is it.
   * Shared: read only.
   */
  readonly first: Uint8Array;
  /** Bucket number + 1 of the patterns (two or more bytes) starting with these two bytes. Shared. */
  readonly bucketOf: Map<number, number>;
  /** Patterns sharing their first two bytes, longest first. */
  readonly buckets: readonly Pattern[][];
  /** One-byte patterns by their byte. */
  readonly single: readonly (Pattern[] | undefined)[];
  readonly urlParameters: boolean;
  /** See {@linkcode Base.cPrefix}. */
  readonly cPrefix: number[];
  /** How many secrets are long (see {@linkcode LONG_SECRET}). */
  readonly longCount: number;

  constructor(options: MaskerOptions) {
    const base = baseOf(options);
    const secrets = encodeAll(unique(options.secrets ?? []));
    const changes = secrets.length === 0 ? undefined : changesOf(base, secrets);
    const m = changes === undefined ? base : merged(base, changes);
    let buckets = base.buckets as Pattern[][];
    let single = base.single;
    let longCount = 0;
    for (const bytes of secrets) {
      const long = bytes.length >= LONG_SECRET ? longCount++ : -1;
      const p: Pattern = { bytes, secret: true, long, fail: undefined, solo: 0 };
      const b0 = bytes[0];
      if (bytes.length === 1) {
        if (single === base.single) single = base.single.slice();
        const list = single[b0];
        (single as (Pattern[] | undefined)[])[b0] = list === undefined ? [p] : [...list, p];
        continue;
      }
      if (buckets === base.buckets) buckets = buckets.slice();
      const id = m.bucketOf.get((b0 << 8) | bytes[1])!;
      let bucket = buckets[id - 1];
      if (bucket === undefined) bucket = buckets[id - 1] = [];
      // A base's bucket is copied, never changed.
      else if (bucket === base.buckets[id - 1]) bucket = buckets[id - 1] = bucket.slice();
      let at = bucket.length;
      while (at > 0 && bucket[at - 1].bytes.length < bytes.length) at--;
      bucket.splice(at, 0, p);
    }
    for (const bucket of longCount === 0 ? [] : buckets) {
      const p = bucket[0];
      if (bucket.length !== 1 || p.long < 0) continue;
      const b0 = p.bytes[0];
      const v = m.pair[(b0 << 8) | p.bytes[1]];
      // (A one-byte pattern starting with b0 needs no check: it starts where the run ahead
      // would start too, which then opens a region or a token run and skips nothing.)
      const lead = base.urlParameters && (b0 === 0x3f || b0 === 0x26);
      if (v !== NO_BUCKET && !lead) p.solo = v;
    }
    this.pair = m.pair;
    this.first = m.first;
    this.bucketOf = m.bucketOf;
    this.buckets = buckets;
    this.single = single;
    this.urlParameters = base.urlParameters;
    this.cPrefix = base.cPrefix;
    this.longCount = longCount;
  }
}

/**
 * UTF-8 bytes of each of `texts`: views of one array (one allocation for a job's secrets; ASCII
 * text without the encoder's call).
 */
function encodeAll(texts: readonly string[]): Uint8Array[] {
  if (texts.length === 0) return [];
  let total = 0;
  for (const text of texts) total += text.length;
  const all = new Uint8Array(total);
  const out: Uint8Array[] = [];
  let o = 0;
  for (const text of texts) {
    const n = text.length;
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) break;
      all[o + i++] = c;
    }
    out.push(i === n ? all.subarray(o, o + n) : ENCODER.encode(text));
    o += n;
  }
  return out;
}

/** `fail` of {@linkcode Pattern}: the prefix function of `bytes`, one entry per length 0 to m. */
function failureOf(bytes: Uint8Array): Int32Array {
  const m = bytes.length;
  const fail = new Int32Array(m + 1);
  let k = 0;
  for (let i = 1; i < m; i++) {
    while (k > 0 && bytes[i] !== bytes[k]) k = fail[k];
    if (bytes[i] === bytes[k]) k++;
    fail[i + 1] = k;
  }
  return fail;
}

/**
 * Bytes of the input compared with long secrets so far, in all scanners: what a test can bound
 * (see {@linkcode LONG_SECRET}). One number that never allocates.
 */
const COMPARED = new Float64Array(1);

/**
 * Internal, for tests: how many bytes of input all maskers have compared with the bytes of long
 * secrets past their first two (a measure of the work the scan did).
 *
 * @returns The count since the module was loaded.
 */
export function comparedBytes(): number {
  return COMPARED[0];
}

/**
 * Internal, for tests: how many entries the shared table caches hold now (each is bounded).
 *
 * @returns The number of bases and of merged tables kept.
 */
export function cachedTables(): { bases: number; merged: number } {
  return { bases: BASES.size, merged: MERGED.length };
}

/** Whether `c` is a UTF-16 code unit of `GO_SPACE_EDGES`. */
function isGoSpace(c: number): boolean {
  return (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0x85 || c === 0xa0 || c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f ||
    c === 0x205f || c === 0x3000;
}

/** The values trimmed as Go's `strings.TrimSpace`, without the empty ones and the duplicates. */
function unique(values: readonly string[]): string[] {
  const out: string[] = [];
  // A few values (a job's): a search of the list is cheaper than a set.
  const seen = values.length > 8 ? new Set<string>() : undefined;
  for (const value of values) {
    const text = String(value);
    // Only values with white space at an edge need the trimming expression.
    const trimmed = text !== "" && !isGoSpace(text.charCodeAt(0)) &&
        !isGoSpace(text.charCodeAt(text.length - 1))
      ? text
      : text.replace(GO_SPACE_EDGES, "");
    if (trimmed === "") continue;
    if (seen === undefined) {
      if (!out.includes(trimmed)) out.push(trimmed);
    } else if (!seen.has(trimmed)) {
      seen.add(trimmed);
      out.push(trimmed);
    }
  }
  return out;
}

/** Whether a URL parameter value ends at `j`: 1 yes, 0 no, -1 cannot tell before more bytes come. */
function paramEnd(buf: Uint8Array, j: number, end: number, final: boolean): number {
  const b = buf[j];
  if (b < 0x80) return PARAM_END_ASCII[b];
  // C1 controls U+0080..U+009F (incl. NEL U+0085) and NBSP U+00A0: C2 80..C2 A0
  if (b === 0xc2) {
    if (j + 1 >= end) return final ? 0 : -1;
    const c = buf[j + 1];
    return c >= 0x80 && c <= 0xa0 ? 1 : 0;
  }
  // U+1680 (E1 9A 80), U+2000..U+200A, U+2028, U+2029, U+202F (E2 80 xx), U+205F (E2 81 9F),
  // U+3000 (E3 80 80)
  if (b < 0xe1 || b > 0xe3) return 0;
  if (j + 1 >= end) return final ? 0 : -1;
  const c1 = buf[j + 1];
  if (b === 0xe1 ? c1 !== 0x9a : b === 0xe2 ? c1 !== 0x80 && c1 !== 0x81 : c1 !== 0x80) return 0;
  if (j + 2 >= end) return final ? 0 : -1;
  const c2 = buf[j + 2];
  if (b !== 0xe2) return c2 === 0x80 ? 1 : 0;
  if (c1 === 0x81) return c2 === 0x9f ? 1 : 0;
  return (c2 >= 0x80 && c2 <= 0x8a) || c2 === 0xa8 || c2 === 0xa9 || c2 === 0xaf ? 1 : 0;
}

/** Whether `buf[start, end)` is one of the sensitive parameter keys (ASCII case-insensitive). */
function isSensitiveKey(buf: Uint8Array, start: number, end: number): boolean {
  const length = end - start;
  outer: for (const key of URL_PARAMETERS) {
    if (key.length !== length) continue;
    for (let i = 0; i < length; i++) {
      let c = buf[start + i];
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (c !== key[i]) continue outer;
    }
    return true;
  }
  return false;
}

/** First bytes of the sensitive URL parameter keys, both cases: `?`/`&` before any other byte starts none. */
const KEY_FIRST = new Uint8Array(256);
for (const key of URL_PARAMETERS) KEY_FIRST[key[0]] = KEY_FIRST[key[0] & ~0x20] = 1;

/** After this many bytes a scanner builds its {@linkcode Rejects} (chatty logs only pay for them). */
const REJECTS_AFTER = 256 * 1024;

/**
 * What lets the scan go past most positions the pair table stops at (on real log text, one byte
 * in 60: common pairs like `33` or `ra` that begin a secret, `&` in URLs) without looking at the
 * patterns: derived from the {@linkcode Tables}, read only.
 */
interface Rejects {
  /**
   * By pair (as the pair table): 0 the patterns must be looked at; 1 only patterns of three or
   * more bytes start with it, so none starts here unless {@linkcode Rejects.next} has the next
   * pair; 2 nothing can start with it (`?`/`&` before a byte that begins no parameter key); 3 like
   * 1, for a pair that starts with `?`/`&` (2 and 3 only where a key could not reach past the
   * buffer's end: there `#evaluate` holds the bytes back).
   */
  readonly pair: Uint8Array;
  /** Non-zero for the second and third bytes of a pattern of three or more bytes. */
  readonly next: Uint8Array;
}

/**
 * Rejects already built, by what they hold: the jobs of one GitLab mostly mask the same values,
 * so 16 chatty jobs share one pair of tables instead of holding 128 KiB each (bench 3g).
 */
const REJECTS = new Map<string, Rejects>();
/** At most this many are kept (2 MiB). */
const MAX_REJECTS = 8;

function buildRejects(t: Tables): Rejects {
  const leads = (t.urlParameters ? [0x3f, 0x26] : []).filter((b0) => t.single[b0] === undefined);
  const pairs: number[] = [];
  const nexts = new Set<number>();
  for (const [key, id] of t.bucketOf) {
    const b0 = key >>> 8;
    const lead = t.urlParameters && (b0 === 0x3f || b0 === 0x26);
    let r = lead ? 3 : 1;
    if (t.single[b0] !== undefined) r = 0;
    else if (lead && KEY_FIRST[key & 0xff] === 1) r = 0;
    for (const p of t.buckets[id - 1]) {
      if (p.bytes.length < 3) r = 0;
      else nexts.add((p.bytes[1] << 8) | p.bytes[2]);
    }
    pairs.push(key, r);
  }
  const next = [...nexts].sort((a, b) => a - b);
  const key = `${leads.join(",")}/${pairs.join(",")}/${next.join(",")}`;
  let rejects = REJECTS.get(key);
  if (rejects !== undefined) return rejects;
  rejects = { pair: new Uint8Array(65536), next: new Uint8Array(65536) };
  for (const b0 of leads) {
    for (let b1 = 0; b1 < 256; b1++) rejects.pair[(b0 << 8) | b1] = KEY_FIRST[b1] === 1 ? 0 : 2;
  }
  for (let i = 0; i < pairs.length; i += 2) rejects.pair[pairs[i]] = pairs[i + 1];
  for (const n of next) rejects.next[n] = 1;
  if (REJECTS.size >= MAX_REJECTS) REJECTS.delete(REJECTS.keys().next().value!);
  REJECTS.set(key, rejects);
  return rejects;
}

/**
 * The output the scanner writing now builds: pairs (start, end) of buffer ranges to copy, start -1
 * meaning the mask. One for all scanners: a write fills and reads it within the call.
 */
let OPS = new Int32Array(64);
const NO_POSITIONS = new Float64Array(0);
const NO_LENGTHS = new Int32Array(0);
/** Above this many entries (256 KiB), {@linkcode OPS} is not kept for the next write. */
const MAX_KEPT_OPS = 65536;

/**
 * The scanning state machine. Positions are absolute stream offsets between calls and relative to
 * the working buffer during one. Invariant: an open interval (secret, token run, parameter value)
 * always lies inside the open masked region.
 */
class Scanner {
  readonly #t: Tables;
  #held: Uint8Array = EMPTY;
  /** Absolute offset of `#held[0]`. */
  #base = 0;
  /** A masked region covers the last byte decided. */
  #inRegion = false;
  /** End (exclusive) of the farthest secret occurrence seen. */
  #secretEnd = 0;
  /** A token run is open (the last byte decided belongs to it). */
  #tokenOpen = false;
  /** A URL parameter value is open. */
  #urlOpen = false;
  /** Where a sensitive parameter value starts (just after `=`), or -1. */
  #urlStart = -1;
  /** Where token runs will start (just after a prefix seen). */
  #tokenStarts: number[] = [];

  // Results of #evaluate.
  #cSecret = 0;
  #cPrefixCount = 0;
  readonly #cPrefix: number[];
  #cUrl = -1;
  /** Set by `#evaluate` (else 0): nothing starts before this position after the one evaluated. */
  #cSkip = 0;

  /** {@linkcode OPS} as this scanner's write found it: a field is quicker to read. */
  #ops: Int32Array = OPS;
  /** Entries of {@linkcode OPS} this write filled. */
  #opCount = 0;
  /** Reused buffer joining the held tail to the next chunk (never returned: outputs are copies or views). */
  #join: Uint8Array = EMPTY;
  /** Reused output buffer of transient writes. */
  #scratch: Uint8Array = EMPTY;
  /**
   * For each long secret (see {@linkcode LONG_SECRET}): the absolute position before which it
   * cannot start, and how many of its bytes are known to match there.
   */
  readonly #kmpAt: Float64Array;
  readonly #kmpKnown: Int32Array;
  /** Built once {@linkcode REJECTS_AFTER} bytes were scanned. */
  #rejects: Rejects | undefined;
  #scanned = 0;

  constructor(tables: Tables) {
    this.#t = tables;
    this.#cPrefix = tables.cPrefix;
    const longs = tables.longCount;
    this.#kmpAt = longs === 0 ? NO_POSITIONS : new Float64Array(longs);
    this.#kmpKnown = longs === 0 ? NO_LENGTHS : new Int32Array(longs);
  }

  get pending(): number {
    return this.#held.length;
  }

  /**
   * Masks the next bytes. Neither `chunk` nor any buffer handed out is kept. With `transient`, the
   * result may be a view of `chunk` or of a buffer the next write reuses: the caller must be done
   * with it before then; otherwise it is a new array.
   */
  write(chunk: Uint8Array, final: boolean, transient = false): Uint8Array {
    const held = this.#held;
    let buf: Uint8Array;
    if (held.length === 0) buf = chunk;
    else if (chunk.length === 0) buf = held;
    else {
      buf = this.#reuse(held.length + chunk.length, false);
      buf.set(held);
      buf.set(chunk, held.length);
    }
    this.#opCount = 0;
    this.#ops = OPS;
    const stop = this.#run(buf, final);
    const out = this.#build(buf, transient);
    if (final) {
      this.#held = EMPTY;
      this.#base = 0;
      this.#inRegion = this.#tokenOpen = this.#urlOpen = false;
      this.#secretEnd = 0;
      this.#urlStart = -1;
      this.#tokenStarts.length = 0;
      this.#kmpAt.fill(0);
      this.#kmpKnown.fill(0);
    } else {
      this.#held = stop < buf.length ? buf.slice(stop) : EMPTY;
      this.#base += stop;
    }
    return out;
  }

  /** A buffer of `length` bytes: the reused join or scratch buffer when not too big, else a new one. */
  #reuse(length: number, scratch: boolean): Uint8Array {
    if (length > MAX_REUSED) return new Uint8Array(length);
    let buffer = scratch ? this.#scratch : this.#join;
    if (buffer.length < length) {
      buffer = new Uint8Array(Math.min(MAX_REUSED, Math.max(length, 2 * buffer.length)));
      if (scratch) this.#scratch = buffer;
      else this.#join = buffer;
    }
    return buffer.subarray(0, length);
  }

  #copy(start: number, end: number): void {
    const n = this.#opCount;
    const ops = this.#ops;
    if (n !== 0 && ops[n - 1] === start && ops[n - 2] !== -1) {
      ops[n - 1] = end;
      return;
    }
    this.#push(start, end);
  }

  #mask(): void {
    this.#push(-1, 0);
  }

  #push(a: number, b: number): void {
    let ops = this.#ops;
    if (this.#opCount + 2 > ops.length) {
      const grown = new Int32Array(ops.length * 2);
      grown.set(ops);
      OPS = this.#ops = ops = grown;
    }
    ops[this.#opCount++] = a;
    ops[this.#opCount++] = b;
  }

  #build(buf: Uint8Array, transient: boolean): Uint8Array {
    const ops = this.#ops;
    const n = this.#opCount;
    // A write that masked much leaves no large buffer behind.
    if (n > MAX_KEPT_OPS) OPS = this.#ops = new Int32Array(64);
    let total = 0;
    for (let i = 0; i < n; i += 2) total += ops[i] === -1 ? MASK.length : ops[i + 1] - ops[i];
    if (total === 0) return transient ? EMPTY : new Uint8Array(0);
    if (n === 2 && ops[0] !== -1) {
      if (!transient) return buf.slice(ops[0], ops[1]);
      // All of it (a line without a match): no view to make. (One copy starts at 0: each byte
      // before it would have been copied or masked.)
      return ops[1] === buf.length ? buf : buf.subarray(0, ops[1]);
    }
    const out = transient ? this.#reuse(total, true) : new Uint8Array(total);
    let o = 0;
    for (let i = 0; i < n; i += 2) {
      if (ops[i] === -1) {
        out.set(MASK, o);
        o += MASK.length;
      } else {
        out.set(buf.subarray(ops[i], ops[i + 1]), o);
        o += ops[i + 1] - ops[i];
      }
    }
    return out;
  }

  /**
   * Finds the patterns starting at `j`: the longest secret, the token prefixes, a sensitive URL
   * parameter key. Returns false when this needs bytes not written yet.
   */
  #evaluate(buf: Uint8Array, j: number, end: number, final: boolean): boolean {
    const t = this.#t;
    const b0 = buf[j];
    const avail = end - j;
    let secret = 0;
    let prefixes = 0;
    let url = -1;
    this.#cSkip = 0;
    if (avail >= 2) {
      const key = (b0 << 8) | buf[j + 1];
      let id = t.pair[key];
      if (id === NO_BUCKET) id = t.bucketOf.get(key) ?? 0;
      if (id !== 0) {
        const bucket = t.buckets[id - 1];
        for (let i = 0; i < bucket.length; i++) {
          const p = bucket[i];
          const bytes = p.bytes;
          const length = bytes.length;
          const n = length <= avail ? length : avail;
          let k = 2;
          if (p.long < 0) {
            while (k < n && buf[j + k] === bytes[k]) k++;
          } else {
            k = this.#matchLong(p, buf, j, n, end, final);
            if (k < 0) continue; // it cannot start here
          }
          if (k < n) continue;
          if (length > avail) {
            if (!final) return false;
            continue;
          }
          if (p.secret) {
            if (length > secret) secret = length;
          } else this.#cPrefix[prefixes++] = length;
        }
      }
    } else if (!final && (t.first[b0] & 1) !== 0) return false;
    const singles = t.single[b0];
    if (singles !== undefined) {
      for (const p of singles) {
        if (p.secret) {
          if (secret === 0) secret = 1;
        } else this.#cPrefix[prefixes++] = 1;
      }
    }
    if (t.urlParameters && (b0 === 0x3f || b0 === 0x26)) {
      const limit = j + 1 + MAX_KEY_LENGTH; // last index where the '=' may be
      let e = j + 1;
      while (e < end && e <= limit) {
        const c = buf[e];
        if (c === 0x3d || c === 0x3f || c === 0x26) break;
        e++;
      }
      if (e < end && e <= limit) {
        if (buf[e] === 0x3d && isSensitiveKey(buf, j + 1, e)) url = e + 1;
      } else if (e >= end && e <= limit && !final) return false;
    }
    this.#cSecret = secret;
    this.#cPrefixCount = prefixes;
    this.#cUrl = url;
    return true;
  }

  /**
   * How many bytes of the long secret `p` match at `j` (of the `n` that may), or -1 when it cannot
   * start there; keeps where it can start next, and how much of it matches there (after a
   * mismatch or a match, shifted by the longest border of the bytes that matched; when the bytes
   * end inside it, here again, or at the end of the stream nowhere).
   */
  #matchLong(
    p: Pattern,
    buf: Uint8Array,
    j: number,
    n: number,
    end: number,
    final: boolean,
  ): number {
    const long = p.long;
    const bytes = p.bytes;
    const at = this.#kmpAt[long] - this.#base;
    if (j < at) return -1;
    let k = 2;
    if (j === at) {
      const known = this.#kmpKnown[long];
      if (known > 2) k = known;
    }
    const from = k;
    while (k < n && buf[j + k] === bytes[k]) k++;
    COMPARED[0] += k - from;
    if (k < n || k === bytes.length) {
      const border = (p.fail ??= failureOf(bytes))[k];
      this.#kmpAt[long] = this.#base + j + k - border;
      this.#kmpKnown[long] = border;
      // Alone here, and a part of it still matching: it may go on past the next positions by
      // itself.
      if (k < n && border !== 0 && p.solo !== 0) this.#cSkip = this.#runAhead(p, buf, j, k, end);
    } else {
      this.#kmpAt[long] = this.#base + (final ? end : j);
      this.#kmpKnown[long] = k;
    }
    return k;
  }

  /**
   * After the long secret `p`, alone at `j` (see {@linkcode Pattern.solo}), mismatched at
   * `j + k`: goes on matching it by its failure function over the next bytes, for as long as
   * every position it passes starts nothing else and a part of it matches, up to its next
   * occurrence or the end of the buffer. Records where it may start next (and how much of it
   * matches there), and returns the position up to which nothing starts: what `#run` copies at
   * once instead of position by position.
   */
  #runAhead(p: Pattern, buf: Uint8Array, j: number, k: number, end: number): number {
    const bytes = p.bytes;
    const m = bytes.length;
    const fail = p.fail!;
    const solo = p.solo;
    const { pair, first } = this.#t;
    let q = k; // bytes of `p` matched up to i, ending before buf[i]
    let i = j + k;
    let x = j + 1; // the next position to check for other patterns
    let steps = 0;
    while (i < end) {
      const c = buf[i++];
      while (q > 0 && c !== bytes[q]) {
        q = fail[q];
        steps++;
      }
      if (c === bytes[q]) q++;
      // It cannot start before i - q: what else may start there?
      const start = i - q;
      while (x < start) {
        // (The last byte, with no pair: whatever may start with it.)
        const other = x + 1 < end ? pair[(buf[x] << 8) | buf[x + 1]] : first[buf[x]] && -1;
        if (other !== 0 && other !== solo) break;
        x++;
      }
      if (x < start || q === m || q === 0) {
        // Something else at x, `p` itself at start, or no part of `p` open any more (the scan's
        // own loop is quicker from here).
        this.#kmpAt[p.long] = this.#base + start;
        this.#kmpKnown[p.long] = q;
        COMPARED[0] += i - j - k + steps;
        return x;
      }
    }
    this.#kmpAt[p.long] = this.#base + end - q;
    this.#kmpKnown[p.long] = q;
    COMPARED[0] += i - j - k + steps;
    return x;
  }

  /** Decides bytes from the start of `buf`; returns the index of the first byte held back. */
  #run(buf: Uint8Array, final: boolean): number {
    const { pair, first } = this.#t;
    const end = buf.length;
    if (this.#rejects === undefined && (this.#scanned += end) > REJECTS_AFTER) {
      this.#rejects = buildRejects(this.#t);
    }
    const rejects = this.#rejects;
    const base = this.#base;
    let inRegion = this.#inRegion;
    let secretEnd = this.#secretEnd - base;
    let tokenOpen = this.#tokenOpen;
    let urlOpen = this.#urlOpen;
    let urlStart = this.#urlStart < 0 ? -1 : this.#urlStart - base;
    const starts = this.#tokenStarts;
    for (let i = 0; i < starts.length; i++) starts[i] -= base;

    let j = 0;
    while (j < end) {
      if (!inRegion) {
        // Outside any match: copy up to the next position where a pattern may start, or where a
        // token run or a parameter value announced by a prefix or key may begin.
        let limit = end;
        if (urlStart >= 0 && urlStart < limit) limit = urlStart;
        for (let r = 0; r < starts.length; r++) if (starts[r] < limit) limit = starts[r];
        const stop = limit < end - 1 ? limit : end - 1; // positions before `stop` have a next byte
        let k = j;
        let prev = buf[k];
        if (rejects === undefined) {
          while (k < stop) {
            const next = buf[k + 1];
            if (pair[(prev << 8) | next] !== 0) break;
            prev = next;
            k++;
          }
        } else {
          // The same, going on past pairs at which no pattern can start (see Rejects).
          const { pair: reject, next: second } = rejects;
          while (k < stop) {
            // Two positions a turn while neither stops the pair table.
            while (k + 1 < stop) {
              const n1 = buf[k + 1];
              const n2 = buf[k + 2];
              if ((pair[(prev << 8) | n1] | pair[(n1 << 8) | n2]) !== 0) break;
              prev = n2;
              k += 2;
            }
            if (k >= stop) break;
            const next = buf[k + 1];
            const key = (prev << 8) | next;
            if (pair[key] !== 0) {
              const r = reject[key];
              if (r === 0) break;
              // Where `#evaluate` would hold the bytes back for a parameter key (at the end of
              // the buffer), it still must.
              if (r >= 2 && k + MAX_KEY_LENGTH + 1 >= end) break;
              if (r !== 2 && (k + 2 >= end || second[(next << 8) | buf[k + 2]] !== 0)) break;
            }
            prev = next;
            k++;
          }
        }
        if (k === end - 1 && k < limit && first[prev] === 0) k = end;
        if (k > j) {
          this.#copy(j, k);
          j = k;
          if (j >= end) break;
        }
      } else if (starts.length === 0 && urlStart < 0) {
        // Inside a token run or a parameter value: drop bytes that continue it and start nothing.
        let k = j;
        if (tokenOpen && !urlOpen) {
          while (
            k + 1 < end && TOKEN_ALPHABET[buf[k]] === 1 && pair[(buf[k] << 8) | buf[k + 1]] === 0
          ) {
            k++;
          }
        } else if (urlOpen && !tokenOpen) {
          while (k + 1 < end) {
            const c = buf[k];
            if (c >= 0x80 || PARAM_END_ASCII[c] === 1 || pair[(c << 8) | buf[k + 1]] !== 0) break;
            k++;
          }
        }
        j = k;
      }

      // Decide the byte at j.
      const b = buf[j];
      let pend = false;
      if (urlOpen || urlStart === j) {
        const r = paramEnd(buf, j, end, final);
        if (r < 0) break;
        pend = r === 1;
      }
      let secret = 0;
      let prefixes = 0;
      let url = -1;
      let skip = 0;
      if (j + 1 < end ? pair[(b << 8) | buf[j + 1]] !== 0 : first[b] !== 0) {
        if (!this.#evaluate(buf, j, end, final)) break;
        secret = this.#cSecret;
        prefixes = this.#cPrefixCount;
        url = this.#cUrl;
        skip = this.#cSkip;
      }
      const alpha = TOKEN_ALPHABET[b] === 1;
      // The open region goes on if an interval covering j-1 also covers j.
      const continues = inRegion && (secretEnd > j || (tokenOpen && alpha) || (urlOpen && !pend));
      if (inRegion && !continues) {
        this.#mask();
        inRegion = false;
      }
      if (!alpha) tokenOpen = false;
      if (pend) urlOpen = false;
      if (urlStart === j) {
        urlStart = -1;
        if (!pend) urlOpen = true;
        else if (!continues) this.#mask(); // empty value: still masked, as the official runner does
      }
      if (starts.length !== 0) {
        let w = 0;
        let hit = false;
        for (let r = 0; r < starts.length; r++) {
          if (starts[r] === j) hit = true;
          else starts[w++] = starts[r];
        }
        starts.length = w;
        if (hit && alpha) tokenOpen = true;
      }
      if (j + secret > secretEnd) secretEnd = j + secret;
      for (let r = 0; r < prefixes; r++) {
        const s = j + this.#cPrefix[r];
        if (!starts.includes(s)) starts.push(s);
      }
      if (url >= 0) urlStart = url;
      if (secretEnd > j || tokenOpen || urlOpen) inRegion = true;
      else this.#copy(j, j + 1);
      j++;
      // Up to `skip` nothing starts (a long secret ran ahead): copied if no match goes on here.
      if (skip > j && !inRegion && starts.length === 0 && urlStart < 0) {
        this.#copy(j, skip);
        j = skip;
      }
    }

    if (final) {
      if (inRegion) this.#mask();
      if (urlStart === end) this.#mask(); // "?private_token=" at the very end
      return end;
    }
    this.#inRegion = inRegion;
    this.#secretEnd = secretEnd > j ? secretEnd + base : 0;
    this.#tokenOpen = tokenOpen;
    this.#urlOpen = urlOpen;
    this.#urlStart = urlStart < 0 ? -1 : urlStart + base;
    for (let i = 0; i < starts.length; i++) starts[i] += base;
    return j;
  }
}

/**
 * Internal: the key of {@linkcode Masker}'s transient write, the job log's way in (see
 * {@linkcode writeTransient}). Not exported from the package.
 */
export const WRITE_TRANSIENT: unique symbol = Symbol("writeTransient");

/**
 * A streaming masker over UTF-8 bytes: masked variable values, GitLab token prefixes and sensitive
 * URL parameters become `[MASKED]` (see the module documentation for the exact rules).
 *
 * {@linkcode Masker.write} returns the masked bytes that are final now and holds back only a tail
 * that could still become part of a match: never more than the longest secret or prefix (and
 * 21 bytes for a URL parameter key). Matches split across writes, even inside a multi-byte
 * character, are found: concatenating the outputs of any chunking, plus {@linkcode Masker.flush},
 * gives the same bytes as masking the whole input at once.
 *
 * @example Masking a log written in pieces
 * ```ts
 * import { strictEqual } from "node:assert";
 * const masker = new Masker({ secrets: ["hunter22"] });
 * const decoder = new TextDecoder();
 * const encoder = new TextEncoder();
 * let log = decoder.decode(masker.write(encoder.encode("password: hun")), { stream: true });
 * log += decoder.decode(masker.write(encoder.encode("ter22, token glpat-AbC123 done\n")), { stream: true });
 * log += decoder.decode(masker.flush());
 * strictEqual(log, "password: [MASKED], token glpat-[MASKED] done\n");
 * ```
 */
export class Masker {
  readonly #tables: Tables;
  readonly #scanner: Scanner;

  /**
   * Internal: {@linkcode writeTransient}, for the job log (not part of the package's API).
   *
   * @param chunk The next bytes of the log.
   * @returns The masked bytes that are final now, valid until the next write or flush.
   */
  [WRITE_TRANSIENT](chunk: Uint8Array): Uint8Array {
    return this.#scanner.write(chunk, false, true);
  }

  /**
   * Compiles the options into lookup tables (once; the masker then scans in a single pass).
   *
   * @param options Secrets, extra token prefixes, and which default rules apply.
   */
  constructor(options: MaskerOptions = {}) {
    this.#tables = new Tables(options);
    this.#scanner = new Scanner(this.#tables);
  }

  /**
   * Masks the next piece of the stream.
   *
   * @param chunk The next bytes of the log. It is not kept: it may be reused after the call.
   * @returns The masked bytes that are final now (a new array, possibly empty).
   *
   * @example Holding back a possible secret
   * ```ts
   * import { strictEqual } from "node:assert";
   * const masker = new Masker({ secrets: ["s3cr3t-value"] });
   * const out = masker.write(new TextEncoder().encode("key=s3cr3t"));
   * strictEqual(new TextDecoder().decode(out), "key=");
   * strictEqual(masker.pending, 6);
   * ```
   */
  write(chunk: Uint8Array): Uint8Array {
    return this.#scanner.write(chunk, false);
  }

  /**
   * Ends the stream: masks and returns what was held back. The masker can then be used for a new
   * stream.
   *
   * @returns The remaining masked bytes.
   *
   * @example Ending a stream inside a token
   * ```ts
   * import { strictEqual } from "node:assert";
   * const masker = new Masker();
   * const head = masker.write(new TextEncoder().encode("token: glrt-abc"));
   * const tail = masker.flush();
   * strictEqual(new TextDecoder().decode(head), "token: glrt-");
   * strictEqual(new TextDecoder().decode(tail), "[MASKED]");
   * ```
   */
  flush(): Uint8Array {
    return this.#scanner.write(EMPTY, true);
  }

  /**
   * How many bytes are held back now, waiting to see whether they are part of a match.
   *
   * @example
   * ```ts
   * import { strictEqual } from "node:assert";
   * const masker = new Masker({ secrets: ["abcdef"] });
   * masker.write(new TextEncoder().encode("xyzabc"));
   * strictEqual(masker.pending, 3);
   * ```
   */
  get pending(): number {
    return this.#scanner.pending;
  }

  /**
   * Masks a whole string at once with the same rules, independently of the stream state (for the
   * runner's own diagnostics).
   *
   * @param text The text to mask.
   * @returns The masked text.
   *
   * @example Masking a diagnostic line
   * ```ts
   * import { strictEqual } from "node:assert";
   * const masker = new Masker({ secrets: ["hunter22"] });
   * strictEqual(
   *   masker.mask("GET /api?private_token=abc&x=1 with hunter22"),
   *   "GET /api?private_token=[MASKED]&x=1 with [MASKED]",
   * );
   * ```
   */
  mask(text: string): string {
    return DECODER.decode(new Scanner(this.#tables).write(ENCODER.encode(text), true));
  }
}

/**
 * Internal (for the job log): {@linkcode Masker.write} without its new array. The result may be a
 * view of `chunk` or of a buffer the masker reuses on its next write, so the caller must be done
 * with it (copy it) before writing again; like `write`, the masker keeps nothing of `chunk`.
 *
 * @param masker The masker.
 * @param chunk The next bytes of the log.
 * @returns The masked bytes that are final now, valid until the masker's next write or flush.
 */
export function writeTransient(masker: Masker, chunk: Uint8Array): Uint8Array {
  return masker[WRITE_TRANSIENT](chunk);
}

/**
 * A {@linkcode TransformStream} that masks a byte stream with a {@linkcode Masker}: pipe job
 * output through it before it reaches the job log.
 *
 * @example Masking a stream
 * ```ts
 * import { strictEqual } from "node:assert";
 * const source = ReadableStream.from(["run with glpat-", "Xy12z and hunter", "22\n"])
 *   .pipeThrough(new TextEncoderStream());
 * const masked = source
 *   .pipeThrough(new MaskingStream({ secrets: ["hunter22"] }))
 *   .pipeThrough(new TextDecoderStream());
 * let text = "";
 * for await (const piece of masked) text += piece;
 * strictEqual(text, "run with glpat-[MASKED] and [MASKED]\n");
 * ```
 */
export class MaskingStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Creates the stream.
   *
   * @param options The masking rules, as for {@linkcode Masker}.
   */
  constructor(options: MaskerOptions = {}) {
    const masker = new Masker(options);
    super({
      transform(chunk, controller) {
        const out = masker.write(chunk);
        if (out.length !== 0) controller.enqueue(out);
      },
      flush(controller) {
        const out = masker.flush();
        if (out.length !== 0) controller.enqueue(out);
      },
    });
  }
}
