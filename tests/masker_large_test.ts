// The masker on large inputs at full size. tests/masker_test.ts has the same cases smaller: this
// file is not mapped for mutation testing (scripts/mutate.ts), where its tests would take most of
// each mutant's run (the large secret's scan is quadratic) and kill nothing the smaller ones do not.

import { concat } from "./_data.ts";
import { assert } from "./_deps.ts";
import { Masker } from "../src/log/masker.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function stream(masker: Masker, parts: readonly string[]) {
  const out: Uint8Array[] = [];
  let maxPending = 0;
  for (const part of parts) {
    out.push(masker.write(enc.encode(part)));
    maxPending = Math.max(maxPending, masker.pending);
  }
  out.push(masker.flush());
  return { text: dec.decode(concat(out)), maxPending };
}

Deno.test("C4.8 a 16000-byte secret split across writes is masked (the official runner's case)", () => {
  const big = "_".repeat(16000);
  const result = stream(new Masker({ secrets: [big] }), [
    `large secret: ${"_".repeat(8000)}`,
    "_".repeat(8000),
  ]);
  assert.equal(result.text, "large secret: [MASKED]");
});

Deno.test("C4.8 a 2.4 MB token run is masked whole and pending stays bounded inside it", () => {
  const parts = [
    "start glpat-",
    ...Array.from({ length: 2000 }, () => "A1b2C3d4-_.=".repeat(100)),
    " end",
  ];
  const result = stream(new Masker(), parts);
  assert.equal(result.text, "start glpat-[MASKED] end");
  assert.ok(result.maxPending <= 1, `pending ${result.maxPending}`);
});
