import { assert } from "./_deps.ts";
import { Crc32, crc32, tableCrc, updateCrc } from "../src/log/crc32.ts";

const enc = new TextEncoder();

/** Bit-by-bit CRC-32 (IEEE), the definition, to check the table-driven one against. */
function bitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

Deno.test("C4.5 crc32 test vectors (Go crc32.ChecksumIEEE)", () => {
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(enc.encode("a")), 0xe8b7be43);
  assert.equal(crc32(enc.encode("The quick brown fox jumps over the lazy dog")), 0x414fa339);
  assert.equal(crc32(new Uint8Array(32)), 0x190a55ad);
  assert.equal(crc32(new Uint8Array(32).fill(0xff)), 0xff6cab0b);
});

Deno.test("C4.5 Crc32 hex() is %08x and value is unsigned", () => {
  assert.equal(new Crc32().hex(), "00000000");
  assert.equal(new Crc32().value, 0);
  assert.equal(new Crc32().update(enc.encode("123456789")).hex(), "cbf43926");
  // A checksum with a leading zero nibble keeps its 8 digits.
  let found = false;
  for (let i = 0; i < 2000 && !found; i++) {
    const crc = new Crc32().update(enc.encode(`x${i}`));
    if (crc.value < 0x10000000) {
      assert.equal(crc.hex().length, 8);
      assert.equal(crc.hex(), crc.value.toString(16).padStart(8, "0"));
      assert.ok(crc.hex().startsWith("0"));
      found = true;
    }
  }
  assert.ok(found);
  const high = new Crc32().update(enc.encode("123456789"));
  assert.ok(high.value > 0x7fffffff, "unsigned, not negative");
});

Deno.test("C4.5 incremental Crc32 equals one-shot crc32 and the bitwise definition, any split", () => {
  let seed = 12345;
  const data = new Uint8Array(3000);
  for (let i = 0; i < data.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    data[i] = seed >>> 24;
  }
  const whole = crc32(data);
  assert.equal(whole, bitwise(data));
  for (let len = 0; len < 40; len++) {
    assert.equal(crc32(data.subarray(0, len)), bitwise(data.subarray(0, len)), `len ${len}`);
  }
  for (let cut = 0; cut <= 64; cut++) {
    const crc = new Crc32().update(data.subarray(0, cut)).update(data.subarray(cut));
    assert.equal(crc.value, whole, `cut ${cut}`);
  }
  const crc = new Crc32();
  for (let i = 0; i < data.length; i += 7) crc.update(data.subarray(i, i + 7));
  assert.equal(crc.value, whole);
  assert.equal(
    new Crc32().update(new Uint8Array(0)).update(data).update(new Uint8Array(0)).value,
    whole,
  );
});

Deno.test("C4.5 crc32 works on views with an offset into a larger buffer", () => {
  const buf = enc.encode("xx123456789yy");
  assert.equal(crc32(buf.subarray(2, 11)), 0xcbf43926);
});

Deno.test("C4.5 updateCrc (native where the runtime has it) equals the tables and the definition on long views, continued from any CRC", () => {
  let seed = 987;
  const data = new Uint8Array(70_000);
  for (let i = 0; i < data.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    data[i] = seed >>> 24;
  }
  const whole = bitwise(data);
  assert.equal(tableCrc(0, data), whole);
  assert.equal(updateCrc(0, data), whole);
  // Views at odd offsets, lengths around the native threshold, continued from a high CRC.
  for (const cut of [1, 63, 64, 65, 4097, 65_537]) {
    const head = updateCrc(0, data.subarray(0, cut));
    assert.equal(head, bitwise(data.subarray(0, cut)), `head ${cut}`);
    assert.equal(updateCrc(head, data.subarray(cut)), whole, `cut ${cut}`);
    assert.equal(tableCrc(head, data.subarray(cut)), whole, `table cut ${cut}`);
  }
  const high = crc32(enc.encode("123456789"));
  assert.ok(high > 0x7fffffff);
  assert.equal(updateCrc(high, data.subarray(3, 3003)), tableCrc(high, data.subarray(3, 3003)));
});
