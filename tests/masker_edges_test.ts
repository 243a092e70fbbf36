// The masker's edge cases, each checked one-shot, at every cut into two writes and one byte per
// write: the classes of characters that end a URL parameter value, the key length limit, what
// `pending` holds back, and one-byte patterns. Expected results come from the brute-force
// reference (tests/_masker_reference.ts) or are written out.

import { assert } from "./_deps.ts";
import { Masker, type MaskerOptions, MaskingStream, writeTransient } from "../src/log/masker.ts";
import { mulberry32, pick, REF_KEYS, referenceMask, streamParts } from "./_masker_reference.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Masks `input` one-shot, cut in two at every position (unless `cuts` is false), and one byte per
 * write, with one masker reused after each flush: all must give the same bytes, returned as text.
 */
function maskEveryWay(options: MaskerOptions, input: string | Uint8Array, cuts = true): string {
  const bytes = typeof input === "string" ? enc.encode(input) : input;
  const masker = new Masker(options);
  const whole = streamParts(masker, [bytes]).bytes;
  for (let cut = 0; cuts && cut <= bytes.length; cut++) {
    const parts = [bytes.subarray(0, cut), bytes.subarray(cut)];
    assert.deepEqual(streamParts(masker, parts).bytes, whole, `cut at ${cut}`);
  }
  const single = [...bytes].map((b) => Uint8Array.of(b));
  assert.deepEqual(streamParts(masker, single).bytes, whole, "byte by byte");
  return dec.decode(whole);
}

Deno.test("C4.8 pending holds a possible URL parameter key of up to 20 bytes, and no more", () => {
  // `?` and up to 20 key bytes may still be followed by `=`: held. With 21 the key is too long.
  for (let n = 0; n <= 24; n++) {
    const m = new Masker();
    const out = dec.decode(m.write(enc.encode(`x?${"k".repeat(n)}`)));
    const held = n <= 20 ? n + 1 : 0;
    assert.equal(m.pending, held, `key of ${n} bytes`);
    assert.equal(out, `x?${"k".repeat(n)}`.slice(0, n + 2 - held), `key of ${n} bytes`);
    assert.equal(dec.decode(m.flush()), `x?${"k".repeat(n)}`.slice(n + 2 - held));
  }
  // The longest key, 20 bytes, right up to its '=' in the first write.
  const m = new Masker();
  assert.equal(dec.decode(m.write(enc.encode("u?x-amz-security-token"))), "u");
  assert.equal(m.pending, 21);
  assert.equal(dec.decode(m.write(enc.encode("=abc"))), "?x-amz-security-token=");
  assert.equal(m.pending, 0);
  assert.equal(dec.decode(m.write(enc.encode("def&n=1"))), "[MASKED]&n=1");
  // A `?` or `&` ends a key too: only the last one can still start a parameter.
  for (const [text, held] of [["x?ab&cd", 3], ["x?ab?c", 2], ["x&a&b?", 1]] as const) {
    const keys = new Masker();
    assert.equal(dec.decode(keys.write(enc.encode(text))), text.slice(0, text.length - held));
    assert.equal(keys.pending, held, text);
  }
  // A `=` ends the key: nothing is held after a key that is not sensitive.
  const other = new Masker();
  assert.equal(dec.decode(other.write(enc.encode("?page=2"))), "?page=2");
  assert.equal(other.pending, 0);
  // With URL parameters off, `?` holds nothing.
  const off = new Masker({ urlParameters: false });
  assert.equal(dec.decode(off.write(enc.encode("a?private_token"))), "a?private_token");
  assert.equal(off.pending, 0);
  assert.equal(dec.decode(off.write(enc.encode("b?"))), "b?");
  assert.equal(off.pending, 0);
  assert.equal(dec.decode(off.write(enc.encode("c&"))), "c&");
  assert.equal(off.pending, 0);
});

Deno.test("C4.8 pending holds exactly the tail that can still become a secret or a token prefix", () => {
  const m = new Masker({ secrets: ["abcdef"] });
  const steps: [string, string, number][] = [
    ["xa", "x", 1],
    ["b", "", 2],
    ["cde", "", 5],
    ["x", "abcdex", 0],
    ["gl", "", 2],
    ["pa", "", 4],
    ["t", "", 5],
    ["-", "glpat-", 0],
    ["Z9", "", 0], // inside the token run: dropped, nothing to hold
    [" ", "[MASKED] ", 0],
    ["zzabcdef!", "zz[MASKED]!", 0],
    ["abcdef ab", "[MASKED] ", 2],
  ];
  for (const [input, output, pending] of steps) {
    assert.equal(dec.decode(m.write(enc.encode(input))), output, input);
    assert.equal(m.pending, pending, input);
  }
  assert.equal(dec.decode(m.flush()), "ab");
  assert.equal(m.pending, 0);
  // A match complete at the end of a write holds nothing back (its [MASKED] may come with the
  // next output: a token run can go on).
  const complete: [MaskerOptions, string[], number[], string][] = [
    [{ secrets: ["abcdef"] }, ["x abcdef", "!"], [0, 0], "x [MASKED]!"],
    [{}, ["x glpat-", "ab", "!"], [0, 0, 0], "x glpat-[MASKED]!"],
    [{}, ["x ?private_token=", "ab", " c"], [0, 0, 0], "x ?private_token=[MASKED] c"],
    [{ secrets: ["x"] }, ["ax", "x", "b"], [0, 0, 0], "a[MASKED][MASKED]b"],
    [{ secrets: ["x", "xy"] }, ["ax", "y", "x"], [1, 0, 1], "a[MASKED][MASKED]"],
  ];
  for (const [options, parts, pendings, expected] of complete) {
    const masker = new Masker(options);
    let text = "";
    for (const [i, part] of parts.entries()) {
      text += dec.decode(masker.write(enc.encode(part)));
      assert.equal(masker.pending, pendings[i], `${parts} ${i}`);
    }
    assert.equal(text + dec.decode(masker.flush()), expected);
  }
  // A byte that starts no pattern is never held, also as the last byte of a write.
  const plain = new Masker({ secrets: ["abcdef"] });
  for (const text of ["zzz", "x", "b", "f", "é"]) {
    assert.equal(dec.decode(plain.write(enc.encode(text))), text, text);
    assert.equal(plain.pending, 0, text);
  }
  // Outside a URL parameter value a multi-byte character cut short is not held either: after
  // plain text, a secret or a token run.
  const before: [MaskerOptions, string, string][] = [
    [{}, "a", "a"],
    [{ secrets: ["ab"] }, "ab", "[MASKED]"],
    [{}, "glpat-x", "glpat-[MASKED]"],
  ];
  for (const [options, text, masked] of before) {
    for (const char of ["\u00a0", "\u2003", "\u3000", "\u1680"]) {
      const bytes = enc.encode(`${text}${char}`);
      const m2 = new Masker(options);
      const head = m2.write(bytes.subarray(0, bytes.length - 1));
      assert.equal(m2.pending, 0, `${text} ${char}`);
      const rest = concatAll([head, m2.write(bytes.subarray(bytes.length - 1)), m2.flush()]);
      assert.equal(dec.decode(rest), `${masked}${char}`);
    }
  }
});

Deno.test("C4.8 one-byte secrets and one-byte token prefixes are masked, also next to longer ones", () => {
  const cases: [MaskerOptions, string, string][] = [
    [{ secrets: ["x"] }, "axbxx x", "a[MASKED]b[MASKED][MASKED] [MASKED]"],
    [{ secrets: ["x", "xyz"] }, "xy xyz xx", "[MASKED]y [MASKED] [MASKED][MASKED]"],
    [{ secrets: ["é"] }, "café é", "caf[MASKED] [MASKED]"],
    [{ tokenPrefixes: ["#"] }, "a #Ab1 #  ## #-x", "a #[MASKED] #  ## #[MASKED]"],
    [{ tokenPrefixes: ["#"], secrets: ["#"] }, "a #b c # d", "a [MASKED][MASKED] c [MASKED] d"],
    [{ tokenPrefixes: ["#", "#x-"] }, "#x-ab #xy", "#[MASKED] #[MASKED]"],
    [{ secrets: ["="], defaultTokenPrefixes: false }, "a=b glpat-c=d", "a[MASKED]b glpat-[MASKED]"],
  ];
  for (const [options, input, expected] of cases) {
    assert.equal(maskEveryWay(options, input), expected, `${JSON.stringify(options)} ${input}`);
    assert.deepEqual(
      enc.encode(new Masker(options).mask(input)),
      referenceMask(enc.encode(input), options),
      `${input} reference`,
    );
  }
});

Deno.test("C4.8 after flush in any state the masker starts the next stream afresh", () => {
  const m = new Masker({ secrets: ["abcdef"] });
  // Each first stream ends in another state: inside a secret, a token run, a URL value, right
  // after a prefix or a key, holding a possible match.
  const ends = [
    "x abcdef",
    "x glpat-abc",
    "x glpat-",
    "x ?private_token=",
    "x ?private_token=ab",
    "x ?private_tok",
    "x abc",
    "x gl",
  ];
  for (const end of ends) {
    const first = dec.decode(m.write(enc.encode(end))) + dec.decode(m.flush());
    assert.deepEqual(enc.encode(first), referenceMask(enc.encode(end), { secrets: ["abcdef"] }));
    for (const next of ["abc def", "Ab9 x", "=b&c d", "cdef"]) {
      assert.equal(dec.decode(m.write(enc.encode(next))) + dec.decode(m.flush()), next, end);
      assert.equal(m.pending, 0, end);
    }
  }
});

Deno.test("C4.8 an empty URL parameter value inside or after a secret gets one [MASKED]", () => {
  const cases: [string[], string][] = [
    [["en=&a"], "?private_token=&ab"],
    [["token="], "?private_token=&ab"],
    [["private"], "?private_token= x"],
    [["&"], "x?private_token=&y"],
  ];
  for (const [secrets, input] of cases) {
    const expected = dec.decode(referenceMask(enc.encode(input), { secrets }));
    assert.equal(maskEveryWay({ secrets }, input), expected, `${secrets} ${input}`);
  }
});

Deno.test("C4.8 a secret or prefix starting inside a token run or a URL value and ending after it is masked with it", () => {
  const cases: [MaskerOptions, string][] = [
    [{ secrets: ["xy z"] }, "glpat-axy z!"],
    [{ secrets: ["b-c d"] }, "a glrt-ab-c d e"],
    [{ secrets: ["b&c"] }, "?private_token=ab&cd e"],
    [{ secrets: ["b c"] }, "?rss_token=ab c d"],
    [{ secrets: ["é x"] }, "?rss_token=aé x d"],
    [{ tokenPrefixes: ["ab"] }, "?rss_token=xab!cd ok"],
    [{ secrets: ["bcd!x"] }, "glpat-abcd!x y"],
    [{ tokenPrefixes: ["b-"] }, "glpat-ab-cd!ef ok"],
    // Two token runs announced before either starts: the nearer one starts first.
    [{ tokenPrefixes: ["ab-", "b-cd-"] }, "ab-cd-x y"],
    [{}, "glpat-x?private_token=y z"],
    [{}, "?private_token=glpat-abc&glrt-d e"],
    [{ secrets: ["t-a"] }, "glpat-abc glpat-a b"],
  ];
  for (const [options, input] of cases) {
    const expected = dec.decode(referenceMask(enc.encode(input), options));
    assert.equal(maskEveryWay(options, input), expected, input);
  }
});

Deno.test("C9.4 maskers whose patterns differ never share a lookup table, even when their byte pairs read alike", () => {
  // Pattern starts 0x0167 and 0x3521 ("\x01g", "5!") against 0x0e07 and 0x0e11: written as
  // decimal numbers both sets read 3591 3601 / 359 13601, the same digits. One-byte patterns
  // 1, 4, 56 against 14, 56 likewise. Each masker must still find its own patterns.
  const pairs = [["\x01g1", "5!x"], ["\x0e\x07a", "\x0e\x11b"]];
  const leads = [["\x01", "\x04", "8"], ["\x0e", "8"]];
  for (const sets of [pairs, leads]) {
    const maskers = sets.map((secrets) =>
      new Masker({ secrets, defaultTokenPrefixes: false, urlParameters: false })
    );
    for (const [i, secrets] of sets.entries()) {
      for (const secret of secrets) {
        assert.equal(maskers[i].mask(`a ${secret} b`), "a [MASKED] b", JSON.stringify(secret));
      }
    }
  }
});

Deno.test("C9.4 maskers made one after another each mask exactly their own patterns, whatever the others held", () => {
  // Maskers share what their token prefixes and flags make, and the tables their secrets' first
  // bytes change (a few kept, the oldest dropped): more option sets than are kept, with secrets
  // that join a prefix's bucket (`gl`), start a new one, are one byte, start with `?`/`&` (a URL
  // parameter's row) or with a one-byte prefix, made in turn while earlier maskers are mid-stream.
  const rnd = mulberry32(1604);
  const word = (n: number) =>
    Array.from({ length: n }, () => pick(rnd, [..."abgl-xyz019?&=_q"])).join("");
  const secretPool = [
    () => `glcbt-${word(12)}`,
    () => `gldt-${word(8)}`,
    () => `gl${word(3)}`,
    () => `?${word(4)}`,
    () => `&${word(2)}`,
    () => pick(rnd, ["a", "q", "?", "&", "g", "z"]),
    () => `ab${word(5)}`,
    () => `xy${word(6)}`,
    () => `ü${word(3)}`,
    () => ` ${word(5)}\t`,
    () => word(1 + Math.floor(rnd() * 6)),
  ];
  const prefixPool: string[][] = [[], ["x"], ["?q"], ["gl", "tok-"], ["a", "ab"], [" sp "], ["ü-"]];
  const made: {
    options: MaskerOptions;
    masker: Masker;
    parts: Uint8Array[];
    input: Uint8Array;
    rest: Uint8Array;
  }[] = [];
  for (let i = 0; i < 60; i++) {
    const options: MaskerOptions = {
      secrets: Array.from({ length: Math.floor(rnd() * 6) }, () => pick(rnd, secretPool)()),
      tokenPrefixes: pick(rnd, prefixPool),
      defaultTokenPrefixes: rnd() < 0.7,
      urlParameters: rnd() < 0.7,
    };
    // Its own patterns, and the others' secrets.
    const pieces = [...options.secrets!, ...options.tokenPrefixes!, "glpat-", "?private_token="];
    for (const other of made.slice(-6)) pieces.push(...other.options.secrets!);
    let text = "";
    for (let k = 0; k < 30; k++) text += rnd() < 0.5 ? pick(rnd, pieces) : word(3);
    const input = enc.encode(text);
    const masker = new Masker(options);
    // Half the input now, the rest after the next maskers were made.
    const cut = Math.floor(rnd() * input.length);
    const parts = [masker.write(input.subarray(0, cut))];
    made.push({ options, masker, parts, input, rest: input.subarray(cut) });
    if (i >= 3) {
      const earlier = made[i - 3];
      earlier.parts.push(earlier.masker.write(earlier.rest), earlier.masker.flush());
    }
  }
  for (const [i, { options, masker, parts, input, rest }] of made.entries()) {
    if (i >= made.length - 3) parts.push(masker.write(rest), masker.flush());
    const expected = dec.decode(referenceMask(input, options));
    assert.equal(dec.decode(concatAll(parts)), expected, JSON.stringify(options));
    // And the same masker again, one-shot, after all the others.
    assert.equal(masker.mask(dec.decode(input)), expected, JSON.stringify(options));
  }
  // Nor does a masker hold back bytes for another's secrets: `x` and `?` (URL parameters off)
  // start none of its patterns, whatever the masker before it had.
  for (const secrets of [["x1"], ["x"], ["?a"], ["?"]]) {
    const options = { defaultTokenPrefixes: false, urlParameters: false };
    const before = new Masker({ ...options, secrets });
    const after = new Masker(options);
    for (const tail of ["x", "?"]) {
      assert.equal(dec.decode(after.write(enc.encode(`a${tail}`))), `a${tail}`, tail);
      assert.equal(after.pending, 0, `${secrets} then ${tail}`);
      assert.equal(before.mask(`a${secrets[0]}`), "a[MASKED]");
    }
  }
});

Deno.test("C4.8 a masker with hundreds of secrets of different first bytes masks each of them, and only them", () => {
  // More buckets than the pair table can number (254): the later ones are found by their pair.
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const secrets: string[] = [];
  for (const a of letters.slice(0, 20)) {
    for (const b of letters.slice(20, 40)) secrets.push(`${a}${b}-s3cret`);
  }
  const options = { secrets };
  const masker = new Masker(options);
  // Each secret, then a decoy with its first bytes.
  const text = secrets.map((s) => `${s} ${s.slice(0, 3)}x `).join("");
  const expected = dec.decode(referenceMask(enc.encode(text), options));
  assert.equal(masker.mask(text), expected);
  assert.equal(expected.split("[MASKED]").length - 1, secrets.length);
  assert.equal(dec.decode(streamParts(masker, text.match(/.{1,7}/gs)!).bytes), expected);
});

Deno.test("C4.8 secrets are trimmed of each Go white space character at either edge alone", () => {
  const spaces = [
    0x09,
    0x0a,
    0x0b,
    0x0c,
    0x0d,
    0x20,
    0x85,
    0xa0,
    0x1680,
    0x2000,
    0x2005,
    0x200a,
    0x2028,
    0x2029,
    0x202f,
    0x205f,
    0x3000,
  ];
  for (const cp of spaces) {
    const c = String.fromCodePoint(cp);
    for (const secret of [`${c}s3cr3t`, `s3cr3t${c}`, `${c}${c}s3cr3t${c}`]) {
      const masker = new Masker({ secrets: [secret] });
      assert.equal(masker.mask("a s3cr3t b"), "a [MASKED] b", `U+${cp.toString(16)}`);
    }
  }
  // Not white space for Go: kept as part of the value, at either edge.
  for (const cp of [0x08, 0x0e, 0x1f, 0x84, 0x86, 0x9f, 0xa1, 0x200b, 0x2027, 0x202a, 0xfeff]) {
    const c = String.fromCodePoint(cp);
    for (const secret of [`${c}s3cr3t`, `s3cr3t${c}`]) {
      const masker = new Masker({ secrets: [secret] });
      assert.equal(masker.mask("a s3cr3t b"), "a s3cr3t b", `U+${cp.toString(16)}`);
      assert.equal(masker.mask(`a ${secret} b`), "a [MASKED] b", `U+${cp.toString(16)}`);
    }
  }
});

Deno.test("C7.3 MaskingStream enqueues no empty chunks", async () => {
  // "glp" and "hunt" are held back whole, and flush has nothing left: no chunk for them.
  const pieces = ["glp", "at-x", "y ", "hunt", "er22", " plain"];
  const stream = ReadableStream.from(pieces.map((p) => enc.encode(p)))
    .pipeThrough(new MaskingStream({ secrets: ["hunter22"] }));
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(dec.decode(concatAll(chunks)), "glpat-[MASKED] [MASKED] plain");
  assert.ok(chunks.every((c) => c.length > 0), JSON.stringify(chunks.map((c) => c.length)));
  // What flush masks and returns reaches the stream too, and only when it is not empty.
  for (const [ending, expected] of [["x glpat-ab", "x glpat-[MASKED]"], ["x gl", "x gl"]]) {
    const tail: Uint8Array[] = [];
    const piped = ReadableStream.from([enc.encode(ending)]).pipeThrough(new MaskingStream());
    for await (const chunk of piped) tail.push(chunk);
    assert.equal(dec.decode(concatAll(tail)), expected);
    assert.ok(tail.every((c) => c.length > 0), ending);
  }
});

Deno.test("C4.8 a URL parameter value keeps bytes that are not valid UTF-8, also cut short at the end", () => {
  const head = enc.encode("?private_token=a");
  const cases: [number[], string][] = [
    [[0xc2], "?private_token=[MASKED]"],
    [[0xe2], "?private_token=[MASKED]"],
    [[0xe2, 0x80], "?private_token=[MASKED]"],
    [[0xe1, 0x9a], "?private_token=[MASKED]"],
    [[0xe3, 0x80], "?private_token=[MASKED]"],
    [[0xc2, 0x41, 0x20, 0x78], "?private_token=[MASKED] x"],
    [[0xe2, 0x80, 0x41, 0x20], "?private_token=[MASKED] "],
    [[0xe2, 0x81, 0x41, 0x20], "?private_token=[MASKED] "],
    [[0xe1, 0x80, 0x80, 0x20], "?private_token=[MASKED] "],
    [[0xe3, 0x81, 0x80, 0x20], "?private_token=[MASKED] "],
    [[0xff, 0xfe, 0x20], "?private_token=[MASKED] "],
    // Stray continuation bytes after a two-byte character or an overlong lead: not an end.
    [[0xd0, 0x80, 0x80, 0x20], "?private_token=[MASKED] "],
    [[0xe0, 0x80, 0x80, 0x20], "?private_token=[MASKED] "],
  ];
  for (const [tail, expected] of cases) {
    const bytes = new Uint8Array([...head, ...tail]);
    const label = tail.map((b) => b.toString(16)).join(" ");
    assert.deepEqual(enc.encode(maskEveryWay({}, bytes)), enc.encode(expected), label);
    assert.deepEqual(
      streamParts(new Masker(), [bytes]).bytes,
      referenceMask(bytes, {}),
      `${label} reference`,
    );
  }
});

Deno.test("C4.8 every sensitive URL parameter key is matched case-insensitively, and only whole", () => {
  for (const key of REF_KEYS) {
    for (const spelled of [key, key.toUpperCase()]) {
      assert.equal(maskEveryWay({}, `a?${spelled}=v1 b`), `a?${spelled}=[MASKED] b`, spelled);
      assert.equal(maskEveryWay({}, `a&${spelled}=v2&c`), `a&${spelled}=[MASKED]&c`, spelled);
      // One byte more or less, or a separator other than '=' after it: not the key.
      assert.equal(maskEveryWay({}, `?${spelled}x=v`), `?${spelled}x=v`, spelled);
      assert.equal(maskEveryWay({}, `?${spelled.slice(1)}=v`), `?${spelled.slice(1)}=v`, spelled);
      assert.equal(maskEveryWay({}, `?${spelled.slice(0, -1)}=v`), `?${spelled.slice(0, -1)}=v`);
      assert.equal(maskEveryWay({}, `?${spelled}&x=v`), `?${spelled}&x=v`, spelled);
    }
  }
  // ASCII case folding only: bytes next to A..Z do not fold.
  assert.equal(
    maskEveryWay({}, "?private_tokeN=v ?PRIVATE_TOKEZ=v"),
    "?private_tokeN=[MASKED] ?PRIVATE_TOKEZ=v",
  );
  assert.equal(maskEveryWay({}, "?x\u000damz-signature=v"), "?x\u000damz-signature=v");
  assert.equal(maskEveryWay({}, "?X-AMZ-SIGNATURE=v"), "?X-AMZ-SIGNATURE=[MASKED]");
});

Deno.test("C4.8 a URL parameter value ends at every ASCII control, space, DEL, ? and &, and at no other ASCII byte", () => {
  for (let b = 0; b < 128; b++) {
    const c = String.fromCharCode(b);
    const ends = b <= 0x20 || b === 0x7f || c === "?" || c === "&";
    const input = `?private_token=a${c}b`;
    const expected = ends ? `?private_token=[MASKED]${c}b` : "?private_token=[MASKED]";
    assert.equal(maskEveryWay({}, input, false), expected, `byte ${b}`);
  }
});

Deno.test("C4.8 a token run is exactly [A-Za-z0-9._=-]: every other ASCII byte ends it", () => {
  for (let b = 0; b < 128; b++) {
    const c = String.fromCharCode(b);
    const inRun = /[A-Za-z0-9._=-]/.test(c);
    const input = `glpat-a${c}b`;
    const expected = inRun ? "glpat-[MASKED]" : `glpat-[MASKED]${c}b`;
    assert.equal(maskEveryWay({}, input, false), expected, `byte ${b}`);
    // The byte right after the prefix: a run starts only with an alphabet byte.
    assert.equal(
      maskEveryWay({}, `glpat-${c}z`, false),
      inRun ? "glpat-[MASKED]" : `glpat-${c}z`,
      `byte ${b} first`,
    );
  }
});

Deno.test("C4.8 a URL parameter value ends at each Go space or control character and at no neighbour of one", () => {
  // The ends: C0 controls, space, DEL, C1 controls (NEL among them), NBSP, U+1680, U+2000..U+200A,
  // U+2028, U+2029, U+202F, U+205F, U+3000. Their neighbours (same lead byte, next code points)
  // are part of the value.
  const ends = [
    0x00,
    0x09,
    0x0a,
    0x0d,
    0x1f,
    0x20,
    0x7f,
    0x80,
    0x85,
    0x9f,
    0xa0,
    0x1680,
    0x2000,
    0x2005,
    0x200a,
    0x2028,
    0x2029,
    0x202f,
    0x205f,
    0x3000,
  ];
  const others = [
    0x21,
    0x7e,
    0xa1,
    0xbf,
    0xc0,
    0x167f,
    0x1681,
    0x1640,
    0x16c0,
    0x1fff,
    0x200b,
    0x2027,
    0x202a,
    0x202e,
    0x2030,
    0x203f,
    0x205e,
    0x2060,
    0x2040,
    0x2080,
    0x2fff,
    0x3001,
    0x3040,
    0x0fff,
    0x4000,
    0xe000,
    0x1f600,
  ];
  for (const cp of [...ends, ...others]) {
    const c = String.fromCodePoint(cp);
    const input = `?private_token=a${c}b&rss_token=${c}z`;
    const expected = ends.includes(cp)
      ? `?private_token=[MASKED]${c}b&rss_token=[MASKED]${c}z`
      : `?private_token=[MASKED]&rss_token=[MASKED]`;
    const hex = cp.toString(16);
    assert.equal(maskEveryWay({}, input), expected, `U+${hex}`);
    assert.deepEqual(
      enc.encode(new Masker().mask(input)),
      referenceMask(enc.encode(input), {}),
      `U+${hex} reference`,
    );
  }
});

Deno.test("C4.8 one write with hundreds of matches, and writes of more than 1 MiB, are masked whole", () => {
  // Many masks and copies in one write.
  const secrets = ["s3cr3t", "hunter22"];
  let text = "";
  for (let i = 0; i < 300; i++) {
    text += `${i} s3cr3t ${i % 7 ? "glpat-x" : "hunter22"} ?rss_token=v&`;
  }
  const expected = referenceMask(enc.encode(text), { secrets });
  assert.deepEqual(streamParts(new Masker({ secrets }), [text]).bytes, expected);
  const transient = new Masker({ secrets });
  const out = writeAll(transient, [enc.encode(text)]);
  assert.deepEqual(out, expected);

  // More than 1 MiB in one write (more than the masker keeps for reuse), joined to a held tail,
  // through the job log's transient write (the write that reuses buffers).
  const big = new Uint8Array(1100 * 1024).fill(0x78); // "x"
  big.set(enc.encode("s3cr3t glpat-tok "), 500_000);
  big.set(enc.encode("?private_token=a b hunter"), big.length - 25);
  const input = [enc.encode("start hunt"), enc.encode("er22 s3c"), big, enc.encode("22 end")];
  const masked = "start [MASKED] s3c" + "x".repeat(500_000) + "[MASKED] glpat-[MASKED] " +
    "x".repeat(big.length - 25 - 500_017) + "?private_token=[MASKED] b [MASKED] end";
  assert.ok(dec.decode(writeAll(new Masker({ secrets }), input)) === masked);
});

/** Writes `parts` through the transient write (copying each result), then flushes. */
function writeAll(masker: Masker, parts: readonly Uint8Array[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const part of parts) out.push(writeTransient(masker, part).slice());
  out.push(masker.flush());
  return concatAll(out);
}

function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
