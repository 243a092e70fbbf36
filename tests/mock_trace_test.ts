import { assert } from "./_deps.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { crc32, maskSecret, tableCrc32 } from "../src/mock/_util.ts";

/** Bit-by-bit CRC-32 (IEEE), the definition. */
function bitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** `length` pseudo-random bytes without `x` (so no job or runner token can appear in them). */
function noise(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    out[i] = 0x21 + ((seed >>> 24) % 0x50);
  }
  return out;
}

Deno.test("M9 the mock's crc32 (native where the runtime has it) equals its table and the definition, continued at any cut", () => {
  const data = noise(20_000, 5);
  const whole = bitwise(data);
  assert.equal(tableCrc32(data), whole);
  assert.equal(crc32(data), whole);
  for (const cut of [1, 63, 64, 65, 999, 19_990]) {
    const head = crc32(data.subarray(0, cut));
    assert.equal(head, bitwise(data.subarray(0, cut)), `head ${cut}`);
    assert.equal(crc32(data.subarray(cut), head), whole, `cut ${cut}`);
    assert.equal(tableCrc32(data.subarray(cut), head), whole, `table cut ${cut}`);
  }
});

Deno.test("M9 the log checksum of large PATCHes is the CRC-32 of the whole stored log", async () => {
  const mock = new GitLabMock();
  const job = mock.job().enqueue();
  const taken = await mock.fetch(
    new Request(`${mock.url}/api/v4/jobs/request`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: mock.runnerToken }),
    }),
  );
  assert.equal(taken.status, 201);
  const { token } = await taken.json();
  const parts = [noise(70_000, 1), noise(5, 2), noise(300_001, 3)];
  let offset = 0;
  for (const part of parts) {
    const res = await mock.fetch(
      new Request(`${mock.url}/api/v4/jobs/${job.id}/trace`, {
        method: "PATCH",
        headers: {
          "job-token": token,
          "content-range": `${offset}-${offset + part.length - 1}`,
          "content-type": "text/plain",
        },
        body: part,
      }),
    );
    assert.equal(res.status, 202);
    await res.body?.cancel();
    offset += part.length;
  }
  const all = new Uint8Array(offset);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  assert.deepEqual(job.log, all);
  assert.equal(job.logChecksum, `crc32:${bitwise(all).toString(16).padStart(8, "0")}`);
});

/** `Gitlab::Ci::MaskSecret.mask!` step by step: at each position, left to right, in place. */
function maskReference(data: Uint8Array, secret: Uint8Array): number {
  let count = 0;
  for (let i = 0; secret.length > 0 && i + secret.length <= data.length;) {
    if (secret.every((b, k) => data[i + k] === b)) {
      data.fill(0x78, i, i + secret.length);
      count++;
      i += secret.length;
    } else i++;
  }
  return count;
}

Deno.test("M9 the trace's token masking (Horspool) replaces what a left-to-right search replaces, overlaps and x included", () => {
  const enc = new TextEncoder();
  const secrets = ["a", "aa", "aba", "abab", "xa", "axa", "ba", "abaab", "bbbbbbbb", "abxab"];
  let seed = 77;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  let replaced = 0;
  for (let round = 0; round < 300; round++) {
    const data = new Uint8Array(next() % 64);
    for (let i = 0; i < data.length; i++) data[i] = enc.encode("abx")[next() % 3];
    for (const s of secrets) {
      const secret = enc.encode(s);
      const expected = data.slice();
      const count = maskReference(expected, secret);
      const actual = data.slice();
      assert.equal(maskSecret(actual, secret), count, `${s} in ${new TextDecoder().decode(data)}`);
      assert.deepEqual(actual, expected, `${s} in ${new TextDecoder().decode(data)}`);
      replaced += count;
    }
  }
  assert.ok(replaced > 1000);
  const token = enc.encode("glrt-t0ken_Xyz");
  const log = enc.encode("glrt-t0ken_Xy glrt-t0ken_Xyzglrt-t0ken_Xyz!glrt-t0ken_Xy");
  assert.equal(maskSecret(log, token), 2);
  assert.equal(
    new TextDecoder().decode(log),
    "glrt-t0ken_Xy xxxxxxxxxxxxxxxxxxxxxxxxxxxx!glrt-t0ken_Xy",
  );
  assert.equal(maskSecret(new Uint8Array(0), token), 0);
  assert.equal(maskSecret(log, new Uint8Array(0)), 0);
});
