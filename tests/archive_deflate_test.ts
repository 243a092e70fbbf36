// The native deflate zip.js is given for the levels other than 6 (src/artifacts/_deflate.ts).
import zlib from "node:zlib";
import { Buffer } from "node:buffer";
import { assert } from "./_deps.ts";
import { DeflateRawStream, hasNativeDeflate } from "../src/artifacts/_deflate.ts";
import { zipArchive } from "../src/artifacts/archive.ts";
import { ZipArtifact } from "../src/artifacts/reader.ts";

/** `chunks` through a {@link DeflateRawStream} at `level`, joined. */
async function deflate(chunks: Uint8Array[], level: number): Promise<Uint8Array> {
  const source = ReadableStream.from(chunks);
  const out = source.pipeThrough(new DeflateRawStream("deflate-raw", { level }));
  return new Uint8Array(await new Response(out as ReadableStream<Uint8Array<ArrayBuffer>>).bytes());
}

/** Bytes that do not compress: more deflate output than one output buffer per input chunk. */
function noise(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function text(size: number): Uint8Array {
  let s = "";
  for (let i = 0; s.length < size; i++) s += `line ${i} the quick brown fox\n`;
  return new TextEncoder().encode(s.slice(0, size));
}

Deno.test("DeflateRawStream is available on this runtime", () => {
  assert.equal(hasNativeDeflate(), true);
});

Deno.test("DeflateRawStream output inflates back, across chunks and output buffers", async () => {
  const cases: [string, Uint8Array[]][] = [
    ["nothing", []],
    ["an empty chunk", [new Uint8Array(0)]],
    ["one byte", [new Uint8Array([7])]],
    ["text in small chunks", Array.from({ length: 300 }, (_, i) => text(1000 + i))],
    // One 300 KiB chunk of noise deflates to more than the 64 KiB output buffer at once.
    ["noise in one chunk", [noise(300 * 1024)]],
    ["noise and text", [noise(100_000, 3), text(500_000), noise(70_000, 5)]],
  ];
  for (const level of [0, 1, 9]) {
    for (const [name, chunks] of cases) {
      const input = Buffer.concat(chunks);
      const out = await deflate(chunks, level);
      assert.deepEqual(zlib.inflateRawSync(out), input, `${name} at level ${level}`);
    }
  }
});

Deno.test("DeflateRawStream honours the level", async () => {
  const input = text(400_000);
  const stored = await deflate([input], 0);
  const fast = await deflate([input], 1);
  const best = await deflate([input], 9);
  assert.ok(stored.length > input.length, `level 0 stores (${stored.length} bytes)`);
  assert.ok(fast.length < input.length / 4, `level 1 compresses (${fast.length} bytes)`);
  assert.ok(best.length <= fast.length, `level 9 ${best.length} vs level 1 ${fast.length}`);
});

Deno.test("DeflateRawStream refuses formats other than deflate-raw", () => {
  assert.throws(() => new DeflateRawStream("gzip"), TypeError);
  assert.throws(() => new DeflateRawStream("deflate"), TypeError);
});

Deno.test("C6.4 zip: level 1 archives of several large entries read back", async () => {
  const files = [noise(200_000, 9), text(1_000_000), new Uint8Array(0), noise(65_536, 11)];
  const zip = await new Response(
    zipArchive(
      files.map((data, i) => ({
        path: `f${i}`,
        open: () => new Blob([data as Uint8Array<ArrayBuffer>]).stream(),
      })),
      { level: 1 },
    ) as ReadableStream<Uint8Array<ArrayBuffer>>,
  ).bytes();
  const artifact = new ZipArtifact(zip);
  const entries = await artifact.entries();
  assert.deepEqual(entries.map((e) => [e.path, e.size]), files.map((f, i) => [`f${i}`, f.length]));
  for (let i = 0; i < files.length; i++) {
    assert.deepEqual(await artifact.bytes(`f${i}`), files[i], `f${i}`);
  }
  assert.ok(entries[1].compressedSize < 1_000_000 / 4, "the text entry is deflated");
  // Deflated by node:zlib, not by zip.js's own WebAssembly zlib, whose output differs (here
  // 87 747 bytes against node:zlib's 140 576 in Deno, whose zlib is zlib-ng); the chunks'
  // boundaries may move a byte or two.
  const native = zlib.deflateRawSync(files[1], { level: 1 }).length;
  assert.ok(
    Math.abs(entries[1].compressedSize - native) <= native / 1000,
    `${entries[1].compressedSize} bytes, node:zlib ${native}`,
  );
  await artifact.close();
});
