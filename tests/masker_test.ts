import { concat } from "./_data.ts";
import { assert } from "./_deps.ts";
import {
  cachedTables,
  comparedBytes,
  DEFAULT_TOKEN_PREFIXES,
  Masker,
  type MaskerOptions,
  MaskingStream,
  writeTransient,
} from "../src/log/masker.ts";
import { maskParts, mulberry32, pick, referenceMask, streamParts } from "./_masker_reference.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// C4.8: masked values

Deno.test("C4.8 masked variable values become [MASKED] (official masker cases)", () => {
  const cases: [string[], string, string][] = [
    [[""], "empty secrets have no affect", "empty secrets have no affect"],
    [[], "no escaping at all", "no escaping at all"],
    [["secrets"], "secrets", "[MASKED]"],
    [["secrets"], "secret|s", "[MASKED]"],
    [["secrets"], "s|ecrets", "[MASKED]"],
    [["secrets"], "secretssecrets", "[MASKED][MASKED]"],
    [["secrets"], "ssecrets", "s[MASKED]"],
    [["secrets"], "s|secrets", "s[MASKED]"],
    [["at"], "at the start of the buffer", "[MASKED] the start of the buffer"],
    [["middle"], "in the middle of the buffer", "in the [MASKED] of the buffer"],
    [["buffer"], "at the end of the buffer", "at the end of the [MASKED]"],
    [
      ["all", "values", "are", "masked"],
      "all values are masked",
      "[MASKED] [MASKED] [MASKED] [MASKED]",
    ],
    [
      ["foo", "bar"],
      "prefix|ed, su|ffi|xed |and split|:| xfo|ox y|bary ffo|o ba|rr ffooo b|barr",
      "prefixed, suffixed and split: x[MASKED]x y[MASKED]y f[MASKED] [MASKED]r f[MASKED]o b[MASKED]r",
    ],
    [
      ["split", "all", "values", "are", "masked"],
      "sp|lit al|l val|ues ar|e |mask|ed",
      "[MASKED] [MASKED] [MASKED] [MASKED] [MASKED]",
    ],
    [
      ["mask", "prefix_mask"],
      "prefix_mask mask prefix_|mask prefix_ma|sk mas|k",
      "[MASKED] [MASKED] [MASKED] [MASKED] [MASKED]",
    ],
    [
      ["this is the end", "en foobar", "en"],
      "overlap: this is the en| foobar",
      "overlap: this is the [MASKED]",
    ],
    // A value that needs the restart the official runner's per-phrase writer misses.
    [["aab"], "aa|ab", "a[MASKED]"],
  ];
  for (const [secrets, input, expected] of cases) {
    assert.equal(maskParts({ secrets }, input), expected, `${JSON.stringify(secrets)} ${input}`);
  }
});

Deno.test("C4.8 a large secret split across writes is masked", () => {
  // The official runner's case at a sixteenth of its size (the full 16000 bytes are in
  // masker_large_test.ts): a run of one byte makes every position a candidate, the scan is
  // quadratic in the secret's length, and this file runs for every mutant.
  const big = "_".repeat(1000);
  assert.equal(
    maskParts({ secrets: [big] }, `large secret: ${"_".repeat(500)}|${"_".repeat(500)}`),
    "large secret: [MASKED]",
  );
  // One byte short of the secret: nothing is masked, everything comes out.
  assert.equal(
    maskParts({ secrets: [big] }, `short: ${"_".repeat(500)}|${"_".repeat(499)}.`),
    `short: ${"_".repeat(999)}.`,
  );
});

Deno.test("C4.8 secrets are trimmed like Go strings.TrimSpace and deduplicated; no URL-encoded forms", () => {
  const masker = new Masker({
    secrets: ["  pa ss\n", "pa ss", "\u0085x1\u00a0", "   ", ""],
    defaultTokenPrefixes: false,
  });
  assert.equal(masker.mask("a pa ss b x1 c"), "a [MASKED] b [MASKED] c");
  // Only the exact value is masked, as in the official runner: no encoded variants.
  assert.equal(
    new Masker({ secrets: ["p@ss word"] }).mask("p%40ss%20word p@ss word"),
    "p%40ss%20word [MASKED]",
  );
  // U+FEFF is not white space for Go: kept in the value.
  assert.equal(new Masker({ secrets: ["\ufeffab"] }).mask("ab \ufeffab"), "ab [MASKED]");
});

Deno.test("C4.8 longest secret first: a longer secret wins over a shorter one at the same place", () => {
  const masker = new Masker({ secrets: ["pass", "password123"] });
  assert.equal(
    masker.mask("password123 and pass and password"),
    "[MASKED] and [MASKED] and [MASKED]word",
  );
  // Partly overlapping secrets: one [MASKED] over both, no byte of either leaks.
  assert.equal(new Masker({ secrets: ["ab", "bcdef"] }).mask("xabcdefx"), "x[MASKED]x");
  // A shorter secret inside a longer one never splits it.
  assert.equal(new Masker({ secrets: ["cd", "abcdef"] }).mask("abcdef"), "[MASKED]");
});

Deno.test("C4.8 secrets with multi-byte characters split inside a character are masked", () => {
  const secret = "pässwörd€";
  const bytes = enc.encode(`x ${secret} y`);
  for (let cut = 1; cut < bytes.length; cut++) {
    const result = streamParts(new Masker({ secrets: [secret] }), [
      bytes.subarray(0, cut),
      bytes.subarray(cut),
    ]);
    assert.equal(result.text, "x [MASKED] y", `cut at ${cut}`);
  }
});

// ---------------------------------------------------------------------------------------------
// C4.8: token prefixes

Deno.test("C4.8 glpat- tokens are masked, prefix kept (official tokensanitizer cases)", () => {
  const cases: [string, string][] = [
    [
      "Lorem ipsum dolor sit amet, ex ea commodo glpat-imperdiet in voluptate velit esse",
      "Lorem ipsum dolor sit amet, ex ea commodo glpat-[MASKED] in voluptate velit esse",
    ],
    ["velit esseglpat-imperdiet", "velit esseglpat-[MASKED]"],
    ["glpat-imperdiet Lorem", "glpat-[MASKED] Lorem"],
    ["esseglpat-imperdiet=_-. end Lorem", "esseglpat-[MASKED] end Lorem"],
    ["glpat-impglpat-erdiet Lorem", "glpat-[MASKED] Lorem"],
    [
      "glpat|-imperdiet Lorem ipsum gl|pat-imperdiet in",
      "glpat-[MASKED] Lorem ipsum glpat-[MASKED] in",
    ],
    ["glpat| -imperdiet Lorem ipsum dolor sit amet", "glpat -imperdiet Lorem ipsum dolor sit amet"],
    ["Lorglpat- ipsu dolor sit amglpat-t, cons", "Lorglpat- ipsu dolor sit amglpat-[MASKED], cons"],
    [
      "laborglpat-=_ glpat-t dolorglpat-=_ magna",
      "laborglpat-[MASKED] glpat-[MASKED] dolorglpat-[MASKED] magna",
    ],
  ];
  for (const [input, expected] of cases) {
    assert.equal(maskParts({ defaultTokenPrefixes: false }, input), expected, input);
  }
});

Deno.test("C4.8 glpat- is masked even with the default prefixes turned off; the others are not", () => {
  const off = new Masker({ defaultTokenPrefixes: false });
  assert.equal(off.mask("glpat-abc glrt-abc gldt-abc"), "glpat-[MASKED] glrt-abc gldt-abc");
  const on = new Masker();
  assert.equal(
    on.mask("glpat-abc glrt-abc gldt-abc"),
    "glpat-[MASKED] glrt-[MASKED] gldt-[MASKED]",
  );
});

Deno.test("C4.8 every default token prefix is masked, _gitlab_session= included", () => {
  assert.equal(DEFAULT_TOKEN_PREFIXES[0], "glpat-");
  const masker = new Masker();
  for (const prefix of DEFAULT_TOKEN_PREFIXES) {
    assert.equal(masker.mask(`x ${prefix}Ab1_.=-z9 y`), `x ${prefix}[MASKED] y`, prefix);
  }
  assert.equal(
    masker.mask("Cookie: _gitlab_session=0a1b2c; path=/"),
    "Cookie: _gitlab_session=[MASKED]; path=/",
  );
});

Deno.test("C4.8 job-supplied token prefixes (features.token_mask_prefixes) are masked too", () => {
  const cases: [string[], string, string][] = [
    [["token-"], "token-imperdiet Lorem ipsum", "token-[MASKED] Lorem ipsum"],
    [
      ["tok-"],
      "Lortok-ipsu dolor sit amt|ok-t, cons-ctg|lpat-tur adipiscing tok-lit, stok-|d gltok-test do",
      "Lortok-[MASKED] dolor sit amtok-[MASKED], cons-ctglpat-[MASKED] adipiscing tok-[MASKED], stok-[MASKED] gltok-[MASKED] do",
    ],
    // More than 15 prefixes: all apply here (the official runner keeps only the 15 shortest).
    [
      Array.from({ length: 20 }, (_, i) => `mask${i}-`),
      "a mask1-x b mask19-y c mask7-|z",
      "a mask1-[MASKED] b mask19-[MASKED] c mask7-[MASKED]",
    ],
    [[" spaced- ", ""], "spaced-abc", "spaced-[MASKED]"],
  ];
  for (const [tokenPrefixes, input, expected] of cases) {
    assert.equal(maskParts({ tokenPrefixes }, input), expected, input);
  }
});

Deno.test("C4.8 a token run has no maximum length and pending stays bounded inside it", () => {
  const masker = new Masker();
  const parts = [
    "start glpat-",
    // 240 KB of token in 1200-byte writes (masker_large_test.ts writes 2.4 MB).
    ...Array.from({ length: 200 }, () => "A1b2C3d4-_.=".repeat(100)),
    " end",
  ];
  const result = streamParts(masker, parts);
  assert.equal(result.text, "start glpat-[MASKED] end");
  assert.ok(result.maxPending <= 1, `pending ${result.maxPending}`);
});

// ---------------------------------------------------------------------------------------------
// C4.8: URL parameters

Deno.test("C4.8 sensitive URL parameters are masked up to ?, &, space or control", () => {
  const masker = new Masker();
  const cases: [string, string][] = [
    [
      "https://gitlab.example.com/api/v4/projects?private_token=abc123&per_page=5",
      "https://gitlab.example.com/api/v4/projects?private_token=[MASKED]&per_page=5",
    ],
    [
      "POST /users/sign_in?authenticity_token=r4nd0m+/==?next",
      "POST /users/sign_in?authenticity_token=[MASKED]?next",
    ],
    ["feed?rss_token=x y", "feed?rss_token=[MASKED] y"],
    [
      "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Security-Token=FQo//+a=&X-Amz-Signature=deadbeef\n",
      "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[MASKED]&X-Amz-Date=20240101T000000Z&X-Amz-Security-Token=[MASKED]&X-Amz-Signature=[MASKED]\n",
    ],
    ["?PRIVATE_TOKEN=abc\tz", "?PRIVATE_TOKEN=[MASKED]\tz"],
    ["?private_token=", "?private_token=[MASKED]"],
    ["?private_token=&a=b", "?private_token=[MASKED]&a=b"],
    ["?private_token=é€x\u2028y", "?private_token=[MASKED]\u2028y"],
    ["?private_token=a\u00a0b \u0085", "?private_token=[MASKED]\u00a0b \u0085"],
    ["?private_token=a\u3000b", "?private_token=[MASKED]\u3000b"],
    ["?private_token=a\u0007b", "?private_token=[MASKED]\u0007b"],
    // Not a parameter: no ? or & before the key, another separator inside the key, or the key is not listed.
    ["private_token=abc", "private_token=abc"],
    ["? private_token=abc", "? private_token=abc"],
    ["?x&private_token=abc", "?x&private_token=[MASKED]"],
    ["?my_private_token=abc", "?my_private_token=abc"],
    ["?a=b?private_token=abc", "?a=b?private_token=[MASKED]"],
  ];
  for (const [input, expected] of cases) assert.equal(masker.mask(input), expected, input);
  assert.equal(
    new Masker({ urlParameters: false }).mask("?private_token=abc"),
    "?private_token=abc",
  );
});

Deno.test("C4.8 URL parameters split across writes at every byte are masked", () => {
  const input = "GET https://h/p?x=1&X-Amz-Security-Token=Ab/c+d\u2003rest?private_token=z";
  const expected =
    "GET https://h/p?x=1&X-Amz-Security-Token=[MASKED]\u2003rest?private_token=[MASKED]";
  const bytes = enc.encode(input);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const result = streamParts(new Masker(), [bytes.subarray(0, cut), bytes.subarray(cut)]);
    assert.equal(result.text, expected, `cut at ${cut}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Streaming properties

Deno.test("C4.8 a secret split across two writes at every position is masked", () => {
  const input = "before hunter22-secret after glpat-tok3n ok";
  const expected = "before [MASKED] after glpat-[MASKED] ok";
  const bytes = enc.encode(input);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const m = new Masker({ secrets: ["hunter22-secret"] });
    assert.equal(
      streamParts(m, [bytes.subarray(0, cut), bytes.subarray(cut)]).text,
      expected,
      `cut ${cut}`,
    );
  }
  // One byte per write.
  const m = new Masker({ secrets: ["hunter22-secret"] });
  assert.equal(streamParts(m, [...bytes].map((b) => Uint8Array.of(b))).text, expected);
});

Deno.test("C4.8 pending holds back only what can still become a match, and is bounded", () => {
  const m = new Masker({ secrets: ["abcdefgh"] });
  assert.equal(dec.decode(m.write(enc.encode("plain text "))), "plain text ");
  assert.equal(m.pending, 0);
  assert.equal(dec.decode(m.write(enc.encode("xxabcdef"))), "xx");
  assert.equal(m.pending, 6);
  assert.equal(dec.decode(m.write(enc.encode("gX"))), "abcdefgX");
  assert.equal(m.pending, 0);
  assert.equal(dec.decode(m.write(enc.encode("abcdefgh!"))), "[MASKED]!");
  assert.equal(dec.decode(m.write(enc.encode("gl"))), "");
  assert.equal(m.pending, 2);
  assert.equal(dec.decode(m.flush()), "gl");
  assert.equal(m.pending, 0);

  // Bound: less than the longest pattern (here the 40-byte secret; a URL parameter key needs at
  // most 21 bytes), whatever is written.
  const secret = "S".repeat(40);
  const bounded = new Masker({ secrets: [secret] });
  let max = 0;
  const rnd = mulberry32(7);
  for (let i = 0; i < 3000; i++) {
    const piece = pick(rnd, [
      "S".repeat(39),
      "S",
      "?private_toke",
      "_gitlab_sess",
      "glpat-",
      "x",
      "&",
    ]);
    bounded.write(enc.encode(piece));
    max = Math.max(max, bounded.pending);
  }
  assert.ok(max <= 39, `pending reached ${max}`);
});

Deno.test("C4.8 mask() is independent of the stream state", () => {
  const m = new Masker({ secrets: ["secret"] });
  m.write(enc.encode("sec"));
  assert.equal(m.mask("a secret"), "a [MASKED]");
  assert.equal(m.pending, 3);
  assert.equal(dec.decode(m.write(enc.encode("ret!"))), "[MASKED]!");
});

Deno.test("C4.8 the masker can be reused after flush", () => {
  const m = new Masker({ secrets: ["secret"] });
  m.write(enc.encode("x glpat-abc"));
  assert.equal(dec.decode(m.flush()), "[MASKED]");
  assert.equal(dec.decode(m.write(enc.encode("secret y"))), "[MASKED] y");
  assert.equal(dec.decode(m.flush()), "");
});

Deno.test("C4.8 write() output never aliases the input chunk", () => {
  const m = new Masker();
  const chunk = enc.encode("plain line\n");
  const out = m.write(chunk);
  chunk.fill(0x21);
  assert.equal(dec.decode(out), "plain line\n");
});

Deno.test("C7.3 MaskingStream masks a byte stream written in arbitrary pieces", async () => {
  const pieces = [
    "$ echo $TOKEN\nglp",
    "at-AAAA",
    "BBBB hunt",
    "er2",
    "2\n?private_to",
    "ken=x&y=1",
  ];
  const stream = ReadableStream.from(pieces.map((p) => enc.encode(p)))
    .pipeThrough(new MaskingStream({ secrets: ["hunter22"] }));
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(
    dec.decode(concat(chunks)),
    "$ echo $TOKEN\nglpat-[MASKED] [MASKED]\n?private_token=[MASKED]&y=1",
  );
});

// ---------------------------------------------------------------------------------------------
// Property test against the brute-force reference

const ATOMS = [
  "a",
  "b",
  "c",
  "ab",
  "é",
  "€",
  "-",
  "_",
  "=",
  ".",
  " ",
  "\n",
  "?",
  "&",
  "\u2028",
  "\u00a0",
  "x",
];

function randomWord(rnd: () => number, max: number): string {
  let s = "";
  const n = 1 + Math.floor(rnd() * max);
  for (let i = 0; i < n; i++) s += pick(rnd, ATOMS);
  return s;
}

Deno.test("C4.8 property: any chunking gives the same bytes as one-shot masking and the reference", () => {
  const rnd = mulberry32(0x5eed);
  const fragments = [
    "glpat-",
    "gl",
    "pat-",
    "_gitlab_session=",
    "?private_token=",
    "&X-AMZ-Signature=",
    "?rss_token",
    "=",
    "tok-",
  ];
  for (let round = 0; round < 400; round++) {
    const secrets = Array.from({ length: Math.floor(rnd() * 5) }, () => randomWord(rnd, 6));
    const tokenPrefixes = rnd() < 0.5 ? [] : [randomWord(rnd, 3), "tok-"];
    const options: MaskerOptions = {
      secrets,
      tokenPrefixes,
      defaultTokenPrefixes: rnd() < 0.8,
      urlParameters: rnd() < 0.9,
    };
    let text = "";
    const pieces = Math.floor(rnd() * 30);
    for (let i = 0; i < pieces; i++) {
      const r = rnd();
      if (r < 0.3 && secrets.length) {
        const s = pick(rnd, secrets);
        text += rnd() < 0.7 ? s : s.slice(0, Math.floor(rnd() * s.length));
      } else if (r < 0.6) text += pick(rnd, fragments);
      else text += randomWord(rnd, 4);
    }
    const bytes = enc.encode(text);
    const masker = new Masker(options);
    const expected = referenceMask(bytes, options);
    const oneShot = enc.encode(masker.mask(text));
    assert.deepEqual(oneShot, expected, `one-shot ${JSON.stringify({ text, options })}`);
    for (let c = 0; c < 4; c++) {
      const parts: Uint8Array[] = [];
      let i = 0;
      while (i < bytes.length) {
        const n = c === 0 ? 1 : 1 + Math.floor(rnd() * (c === 1 ? 4 : 24));
        parts.push(bytes.subarray(i, i + n));
        if (rnd() < 0.1) parts.push(new Uint8Array(0));
        i += n;
      }
      const streamed = streamParts(masker, parts).bytes;
      assert.deepEqual(streamed, expected, `chunked ${c} ${JSON.stringify({ text, options })}`);
    }
  }
});

Deno.test("C4.8 writeTransient (the job log's write) gives write()'s bytes and keeps nothing of its input", () => {
  const rnd = mulberry32(0x7a11);
  const secrets = ["s3cr3t-value", "hunter22", "äöü-secret"];
  const fragments = [...secrets, "glpat-", "gl", "?private_token=", "&x=1 ", "plain text ", "\n"];
  for (let round = 0; round < 200; round++) {
    let text = "";
    for (let i = 0; i < 40; i++) text += pick(rnd, fragments);
    const bytes = enc.encode(text);
    const expected = streamParts(new Masker({ secrets }), [bytes]).bytes;
    const masker = new Masker({ secrets });
    // One buffer reused for every write, like runScript's pipe reads into the job log.
    const reused = new Uint8Array(64);
    const out: Uint8Array[] = [];
    for (let i = 0; i < bytes.length;) {
      const n = Math.min(bytes.length - i, 1 + Math.floor(rnd() * 40));
      reused.set(bytes.subarray(i, i + n));
      const result = writeTransient(masker, reused.subarray(0, n));
      out.push(result.slice()); // the caller copies before the next write
      reused.fill(0x21); // and reuses its buffer
      i += n;
    }
    out.push(masker.flush());
    assert.deepEqual(concat(out), expected, JSON.stringify(text));
  }
});

Deno.test("C4.8 write() results stay intact across later writes that reuse the masker's buffers", () => {
  const masker = new Masker({ secrets: ["abcdefgh"] });
  const outputs: Uint8Array[] = [];
  // Each write ends inside a possible secret, so the held tail is joined to the next chunk.
  for (let i = 0; i < 50; i++) outputs.push(masker.write(enc.encode(`line ${i} abcd`)));
  outputs.push(masker.flush());
  let expected = "";
  for (let i = 0; i < 50; i++) expected += `line ${i} abcd`;
  assert.equal(dec.decode(concat(outputs)), expected);
  const mixed = new Masker({ secrets: ["abcdefgh"] });
  const kept = [mixed.write(enc.encode("x abcd")), mixed.write(enc.encode("efgh y abc"))];
  kept.push(writeTransient(mixed, enc.encode("defgh z")).slice(), mixed.flush());
  assert.equal(dec.decode(kept[0]), "x ");
  assert.equal(dec.decode(concat(kept)), "x [MASKED] y [MASKED] z");
});

Deno.test("C9.4 maskers sharing lookup tables still mask only their own secrets, across table evictions", () => {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const run = (m: Masker, text: string) =>
    dec.decode(m.write(enc.encode(text))) + dec.decode(m.flush());
  // More distinct secret sets than the table cache holds, each used again after the others.
  const maskers = Array.from({ length: 40 }, (_, i) => {
    const secret = `${String.fromCharCode(0x41 + (i % 26))}${i}-secret-value`;
    return { secret, masker: new Masker({ secrets: [secret] }) };
  });
  const plain = new Masker();
  for (const { secret, masker } of [...maskers, ...maskers.reverse()]) {
    assert.equal(run(masker, `a ${secret} b glpat-xyz`), "a [MASKED] b glpat-[MASKED]");
    assert.equal(run(plain, `a ${secret} b`), `a ${secret} b`);
  }
  for (let i = 1; i < maskers.length; i++) {
    const other = maskers[i - 1].secret;
    assert.equal(run(maskers[i].masker, `x ${other} y`), `x ${other} y`);
  }
});

Deno.test("C4.8 property: long secrets that repeat themselves are masked as the reference masks them, at any chunking", () => {
  // Secrets of 64 bytes and more are matched by their failure function, and one alone where it
  // may start runs ahead of the scan: periodic secrets, in text made of their own pieces, next to
  // patterns that share their first bytes, start inside them, or follow them.
  const rnd = mulberry32(0x10ad);
  const ab = (n: number) => Array.from({ length: n }, () => pick(rnd, ["a", "b"])).join("");
  const kinds = [
    (n: number) => "a".repeat(n) + "b",
    (n: number) => "a".repeat(n),
    (n: number) => "ab".repeat(n >> 1),
    (n: number) => "aab".repeat(n / 3 + 1) + "a",
    (n: number) => "a".repeat(n >> 1) + "b" + "a".repeat(n >> 1),
    (n: number) => ab(n),
    (n: number) => `?${"a".repeat(n)}`, // starts with `?`: not alone (URL parameters)
    (n: number) => `b${"a".repeat(n)}b`,
    (n: number) => `en=${"a".repeat(n)}`, // starts inside a URL parameter key
  ];
  const others = [
    "ab",
    "ba",
    "b",
    "aab",
    "abba",
    "glpat-",
    "?private_token=",
    "?authenticity_token=", // `?a`, a secret's start above
    "baa", // a token prefix below, ending where a secret starts
    "x",
  ];
  const cases: [MaskerOptions, string][] = [
    // A URL parameter, a token prefix and a URL key, each where a long secret mismatched just
    // before: its run ahead must stop for them.
    [{ secrets: [`?${"a".repeat(70)}`] }, "?aaa?authenticity_token=xyz &?aaa?aaa"],
    [{ secrets: [`en=${"a".repeat(70)}`] }, "?private_token=aaaaa b en=aaa"],
    [{ secrets: ["en=".repeat(25)] }, "?private_token=en=en=x b"],
    [{ secrets: [`${"a".repeat(70)}b`], tokenPrefixes: ["baa"] }, "xbaaaaaaa y baa"],
    // A secret starting with `?` is never alone (a URL parameter may start there too).
    [{ secrets: ["?a".repeat(35)] }, "?a?a?authenticity_token=xyz &?a?a?a"],
    // A run ahead that ends at the last byte of a write, where another secret starts.
    [{ secrets: [`${"a".repeat(70)}b`, "cdef-secret"] }, "xaaaaacdef-secret y"],
  ];
  for (const [options, text] of cases) {
    const expected = referenceMask(enc.encode(text), options);
    assert.deepEqual(enc.encode(new Masker(options).mask(text)), expected, text);
    assert.deepEqual(streamParts(new Masker(options), [...text]).bytes, expected, text);
  }
  for (let round = 0; round < 120; round++) {
    const secrets = Array.from(
      { length: 1 + Math.floor(rnd() * 3) },
      () => pick(rnd, kinds)(63 + Math.floor(rnd() * 90)),
    );
    if (rnd() < 0.4) secrets.push(pick(rnd, others)); // a short one beside them
    const options: MaskerOptions = {
      secrets,
      tokenPrefixes: rnd() < 0.4 ? [pick(rnd, ["aab", "b", "ba-", "baa"])] : [],
      urlParameters: rnd() < 0.7,
    };
    let text = "";
    for (let i = 0, n = Math.floor(rnd() * 25); i < n; i++) {
      const r = rnd();
      const s = pick(rnd, secrets);
      if (r < 0.3) text += s;
      else if (r < 0.6) {
        text += s.slice(Math.floor(rnd() * s.length >> 1), Math.floor(rnd() * s.length));
      } else if (r < 0.8) text += "a".repeat(Math.floor(rnd() * 200));
      else if (r < 0.9) text += pick(rnd, others);
      else text += ab(Math.floor(rnd() * 40));
    }
    const bytes = enc.encode(text);
    const expected = referenceMask(bytes, options);
    const masker = new Masker(options);
    assert.deepEqual(
      enc.encode(masker.mask(text)),
      expected,
      `one-shot ${JSON.stringify({ text, options })}`,
    );
    for (let c = 0; c < 3; c++) {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < bytes.length;) {
        const n = 1 + Math.floor(rnd() * [8, 90, 700][c]);
        parts.push(bytes.subarray(i, i + n));
        i += n;
      }
      const streamed = streamParts(masker, parts);
      assert.deepEqual(
        streamed.bytes,
        expected,
        `chunked ${c} ${JSON.stringify({ text, options })}`,
      );
    }
  }
});

Deno.test("C4.8 a long secret that repeats itself costs a bounded number of comparisons per byte of log", () => {
  // The worst case of comparing a secret again at every position: `aaa…ab` in a log of `a`s
  // (and `aaa…a`, `abab…` where it matches at every position) took one comparison per byte of
  // the secret per byte of log (0.15 MiB/s for 4096 bytes). Counted, not timed.
  const size = 256 * 1024;
  const cases = [
    { secret: "a".repeat(1023) + "b", log: "a", masked: false },
    { secret: "a".repeat(4095) + "b", log: "a", masked: false },
    { secret: "a".repeat(1024), log: "a", masked: true },
    { secret: "ab".repeat(512), log: "ab", masked: true },
    { secret: "aab".repeat(300), log: "aab", masked: true },
  ];
  for (const { secret, log, masked } of cases) {
    const masker = new Masker({ secrets: [secret] });
    const data = enc.encode(log.repeat(size / log.length));
    const before = comparedBytes();
    const out: Uint8Array[] = [];
    for (let o = 0; o < data.length; o += 65536) {
      out.push(masker.write(data.subarray(o, o + 65536)));
    }
    out.push(masker.flush());
    const compared = comparedBytes() - before;
    assert.ok(compared <= 4 * data.length, `${secret.slice(0, 8)}…: ${compared} comparisons`);
    assert.ok(compared >= data.length / 2, `${secret.slice(0, 8)}…: counted ${compared}`);
    const text = dec.decode(concat(out));
    assert.equal(text, masked ? "[MASKED]" : dec.decode(data), secret.slice(0, 8));
  }
});

Deno.test("C9.4 the maskers' shared tables stay bounded in entries whatever the jobs' secrets and prefixes", () => {
  // 4 prefix sets and 16 merged tables at most (each 64 KiB): 40 jobs with secrets of their own
  // first bytes and 10 sets of extra prefixes, each masker still masking its own values.
  for (let i = 0; i < 40; i++) {
    const secret = `${String.fromCharCode(0x21 + i)}${String.fromCharCode(0x5e - i)}-value`;
    const tokenPrefixes = [`p${i % 10}-`];
    const masker = new Masker({ secrets: [secret, "\0\0nul"], tokenPrefixes });
    assert.equal(
      masker.mask(`a ${secret} \0\0nul p${i % 10}-tok`),
      `a [MASKED] [MASKED] p${i % 10}-[MASKED]`,
    );
    const { bases, merged } = cachedTables();
    assert.ok(bases <= 4 && merged <= 16, `after ${i + 1}: ${bases} bases, ${merged} merged`);
    if (i >= 16) assert.equal(merged, 16, `after ${i + 1}`);
    if (i >= 4) assert.equal(bases, 4, `after ${i + 1}`);
  }
});
