// Shared by the masker tests: stream helpers and a brute-force reference implementation of the
// documented masking rules, written independently of the scanner.

import { concat } from "./_data.ts";
import { DEFAULT_TOKEN_PREFIXES, Masker, type MaskerOptions } from "../src/log/masker.ts";
import { mulberry32 } from "../src/mock/_util.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Writes `parts` one by one, then flushes; returns the text and the largest `pending` seen. */
export function streamParts(masker: Masker, parts: readonly (string | Uint8Array)[]) {
  const out: Uint8Array[] = [];
  let maxPending = 0;
  for (const part of parts) {
    out.push(masker.write(typeof part === "string" ? enc.encode(part) : part));
    maxPending = Math.max(maxPending, masker.pending);
  }
  out.push(masker.flush());
  return { text: dec.decode(concat(out)), bytes: concat(out), maxPending };
}

/** Splits on "|" like the official runner's tests do. */
function split(input: string): string[] {
  return input.split("|");
}

/** Masks `input` written in the pieces between its `|` characters. */
export function maskParts(options: MaskerOptions, input: string): string {
  return streamParts(new Masker(options), split(input)).text;
}

// ---------------------------------------------------------------------------------------------
// Reference: a brute-force implementation of the documented rules, written independently of the
// scanner (all intervals on the whole input, then one [MASKED] per group of overlapping ones).

/** The sensitive URL parameter keys, as the documentation lists them (gitlab-runner's). */
export const REF_KEYS: readonly string[] = [
  "private_token",
  "authenticity_token",
  "rss_token",
  "x-amz-signature",
  "x-amz-credential",
  "x-amz-security-token",
];

function refAlpha(c: number): boolean {
  return /[A-Za-z0-9._=-]/.test(String.fromCharCode(c)) && c < 0x80;
}

/** Decodes one rune at i as Go does (invalid → width 1); returns [codePoint, width]. */
function decodeRune(b: Uint8Array, i: number): [number, number] {
  const c = b[i];
  if (c < 0x80) return [c, 1];
  const need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? (c <= 0xef ? 3 : 0) : c >= 0xc2 ? 2 : 0;
  if (need === 0 || i + need > b.length) return [0xfffd, 1];
  const text = new TextDecoder("utf-8", { fatal: false }).decode(b.subarray(i, i + need));
  const cp = text.codePointAt(0)!;
  if (cp === 0xfffd || text.length > (cp > 0xffff ? 2 : 1)) return [0xfffd, 1];
  return [cp, need];
}

function goIsParamEnd(cp: number): boolean {
  const space =
    [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]
      .includes(cp) || (cp >= 0x2000 && cp <= 0x200a);
  const control = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
  return cp === 0x3f || cp === 0x26 || space || control;
}

function trimGo(s: string): string {
  return s.replace(
    /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/,
    "",
  )
    .replace(/[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/, "");
}

/** The documented rules applied to the whole input at once, by brute force. */
export function referenceMask(input: Uint8Array, options: MaskerOptions): Uint8Array {
  const n = input.length;
  const secrets = (options.secrets ?? []).map(trimGo).filter((s) => s !== "").map((s) =>
    enc.encode(s)
  );
  const prefixes = [
    ...(options.defaultTokenPrefixes === false ? ["glpat-"] : DEFAULT_TOKEN_PREFIXES),
    ...(options.tokenPrefixes ?? []),
  ].map(trimGo).filter((s) => s !== "").map((s) => enc.encode(s));
  const intervals: [number, number][] = [];
  const empties = new Set<number>();
  const at = (p: Uint8Array, i: number) =>
    i + p.length <= n && p.every((c, k) => input[i + k] === c);
  for (let i = 0; i < n; i++) {
    for (const s of secrets) if (at(s, i)) intervals.push([i, i + s.length]);
    for (const p of prefixes) {
      if (!at(p, i)) continue;
      let r = i + p.length;
      while (r < n && refAlpha(input[r])) r++;
      if (r > i + p.length) intervals.push([i + p.length, r]);
    }
    if (options.urlParameters !== false && (input[i] === 0x3f || input[i] === 0x26)) {
      let e = i + 1;
      while (e < n && ![0x3d, 0x3f, 0x26].includes(input[e])) e++;
      if (e < n && input[e] === 0x3d && e - i - 1 <= 20) {
        const key = dec.decode(input.subarray(i + 1, e)).replace(/[A-Z]/g, (c) => c.toLowerCase());
        if (REF_KEYS.includes(key)) {
          let w = e + 1;
          while (w < n) {
            const [cp, width] = decodeRune(input, w);
            if (goIsParamEnd(cp)) break;
            w += width;
          }
          if (w > e + 1) intervals.push([e + 1, w]);
          else empties.add(e + 1);
        }
      }
    }
  }
  const covered = new Array<boolean>(n).fill(false);
  const linked = new Array<boolean>(n + 1).fill(false); // an interval holds both i-1 and i
  for (const [a, b] of intervals) {
    for (let i = a; i < b; i++) covered[i] = true;
    for (let i = a + 1; i < b; i++) linked[i] = true;
  }
  const out: number[] = [];
  const MASK = [...enc.encode("[MASKED]")];
  let open = false;
  for (let i = 0; i <= n; i++) {
    const goesOn = open && i < n && linked[i];
    if (open && !goesOn) {
      out.push(...MASK);
      open = false;
    }
    if (empties.has(i) && !goesOn) out.push(...MASK);
    if (i === n) break;
    if (covered[i]) open = true;
    else out.push(input[i]);
  }
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** The mock's seeded PRNG (mulberry32): the same sequence for the same seed. */
export { mulberry32 };

/** One of `items`, chosen with `rnd`. */
export function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)];
}
