// The masker on long logs: after 256 KiB a scanner goes past most pair-table stops without looking
// at the patterns (src/log/masker.ts, `Rejects`). These tests compare what it then emits, chunk by
// chunk and held back, with a scanner that has not scanned that far.
import { concat } from "./_data.ts";
import { assert } from "./_deps.ts";
import { Masker, type MaskerOptions, writeTransient } from "../src/log/masker.ts";
import { mulberry32, pick } from "./_masker_reference.ts";

const enc = new TextEncoder();

/** Bytes secrets and text are made of (`~` is not among them: it is the filler). */
const ATOMS = ["a", "b", "c", "ab", "é", "-", "_", "=", ".", " ", "\n", "?", "&", "x", "p", "r"];
const FRAGMENTS = [
  "glpat-",
  "gl",
  "glp",
  "_gitlab_session=",
  "?private_token=",
  "&private_tok",
  "&X-AMZ-Signature=",
  "?rss_token",
  "&authenticity_token=",
  "&a",
  "?p",
  "&=",
  "tok-",
];

function randomWord(rnd: () => number, max: number): string {
  let s = "";
  const n = 1 + Math.floor(rnd() * max);
  for (let i = 0; i < n; i++) s += pick(rnd, ATOMS);
  return s;
}

/** 300 KiB of `~`: matches nothing, and takes a scanner past the point where it builds its rejects. */
const FILLER = new Uint8Array(300 * 1024).fill(0x7e);

/** Outputs of writing `parts` then flushing, each copied, and the `pending` after each write. */
function stream(masker: Masker, parts: readonly Uint8Array[], transient: boolean) {
  const outs: Uint8Array[] = [];
  const pending: number[] = [];
  for (const part of parts) {
    outs.push((transient ? writeTransient(masker, part) : masker.write(part)).slice());
    pending.push(masker.pending);
  }
  outs.push(masker.flush());
  return { outs, pending };
}

Deno.test("C4.8 past 256 KiB a masker emits and holds back the same bytes, chunk by chunk, as a fresh one", () => {
  const rnd = mulberry32(0x10c);
  for (let round = 0; round < 300; round++) {
    const secrets = Array.from({ length: Math.floor(rnd() * 6) }, () => randomWord(rnd, 6));
    const options: MaskerOptions = {
      secrets,
      tokenPrefixes: rnd() < 0.5 ? [] : [randomWord(rnd, 3), "tok-"],
      defaultTokenPrefixes: rnd() < 0.8,
      urlParameters: rnd() < 0.9,
    };
    let text = "";
    for (let i = 0, n = Math.floor(rnd() * 60); i < n; i++) {
      const r = rnd();
      if (r < 0.3 && secrets.length) {
        const s = pick(rnd, secrets);
        text += rnd() < 0.6 ? s : s.slice(0, Math.floor(rnd() * s.length)) + randomWord(rnd, 2);
      } else if (r < 0.6) text += pick(rnd, FRAGMENTS);
      else text += randomWord(rnd, 4);
    }
    const bytes = enc.encode(text);
    const long = new Masker(options);
    assert.deepEqual(concat([long.write(FILLER), long.flush()]), FILLER);
    for (let c = 0; c < 4; c++) {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < bytes.length;) {
        const n = c === 0 ? 1 : 1 + Math.floor(rnd() * (c === 1 ? 4 : c === 2 ? 30 : 200));
        parts.push(bytes.subarray(i, i + n));
        i += n;
      }
      const transient = c % 2 === 1;
      const fresh = stream(new Masker(options), parts, transient);
      const after = stream(long, parts, transient);
      const what = `chunking ${c} ${JSON.stringify({ text, options })}`;
      assert.deepEqual(after.outs, fresh.outs, what);
      assert.deepEqual(after.pending, fresh.pending, what);
    }
  }
});

Deno.test("C4.8 past 256 KiB secrets, tokens and URL parameters in a long log are masked as in a short one", () => {
  const secrets = ["33lkjhgfd", "raZ9q", "ce", "oc-x", "&ab"];
  const options = { secrets };
  const line = enc.encode(
    "33 ra ce oc 33lkjhgf 33lkjhgfd raZ9 raZ9q oce oc-x ?private_tok &private_token=v1&b " +
      "&ab &a?rss_token=v2 glpat-abc glp && apt-get ?p &= x\n",
  );
  const lines: Uint8Array[] = [];
  for (let i = 0; i < 6000; i++) lines.push(line);
  const log = concat(lines);
  const masker = new Masker(options);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < log.length; i += 65536) parts.push(masker.write(log.subarray(i, i + 65536)));
  parts.push(masker.flush());
  const expected = new Masker(options).mask(new TextDecoder().decode(line));
  const out = new TextDecoder().decode(concat(parts));
  assert.equal(out, expected.repeat(6000));
  assert.equal(
    expected,
    "33 ra [MASKED] oc 33lkjhgf [MASKED] raZ9 [MASKED] o[MASKED] [MASKED] ?private_tok " +
      "&private_token=[MASKED]&b [MASKED] &a?rss_token=[MASKED] glpat-[MASKED] glp && apt-get ?p &= x\n",
  );
});

Deno.test("C4.8 C9.4 long logs of maskers with similar secrets: each masks its own, whatever the other built first", () => {
  const filler = new TextDecoder().decode(FILLER);
  const cases: [string[], string[], string][] = [
    // Same pair, other third bytes.
    [["abX1"], ["abY1"], " abY1 abX1 "],
    // Same pair and third bytes; one of them also masks the pair alone.
    [["xbc"], ["xbc", "xb"], " xb xbc "],
    // With and without URL parameters.
    [["qq1"], ["qq1"], " ?private_token=v &rss_token=w "],
  ];
  for (const [first, second, text] of cases) {
    for (const urlParameters of [true, false]) {
      const a = new Masker({ secrets: first, urlParameters: !urlParameters });
      a.mask(filler + text);
      const b = new Masker({ secrets: second, urlParameters });
      const expected = new Masker({ secrets: second, urlParameters }).mask(text);
      assert.equal(b.mask(filler + text), filler + expected, JSON.stringify({ second, text }));
      for (const secret of second) assert.ok(!expected.includes(secret), expected);
    }
  }
});

Deno.test("C9.4 past 256 KiB, maskers whose patterns differ never share their rejects, even when the pairs after their first read alike", () => {
  // Both maskers' patterns start with the pair "x\0"; their second and third bytes are
  // 0x0001, 0x0002, 0x0003 against 0x0001, 0x0017: as decimal numbers 1 2 3 / 1 23, the same
  // digits. Each masker, past the point where it builds its rejects, must still find its own.
  const a = ["x\0\x01a", "x\0\x02a", "x\0\x03a"];
  const b = ["x\0\x01a", "x\0\x17a"];
  for (const [first, second] of [[a, b], [b, a]]) {
    const options = (secrets: string[]): MaskerOptions => ({
      secrets,
      defaultTokenPrefixes: false,
      urlParameters: false,
    });
    const warm = new Masker(options(first));
    warm.write(FILLER);
    warm.flush();
    const masker = new Masker(options(second));
    const out: Uint8Array[] = [masker.write(FILLER).slice()];
    for (const secret of second) out.push(masker.write(enc.encode(` ${secret} `)).slice());
    out.push(masker.flush());
    const text = new TextDecoder().decode(concat(out)).slice(FILLER.length);
    assert.equal(text, second.map(() => " [MASKED] ").join(""), JSON.stringify(second));
  }
});
