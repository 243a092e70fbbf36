import { Buffer } from "node:buffer";
import zlib from "node:zlib";
import { BlobReader, type Entry, type FileEntry, ZipReader } from "@zip.js/zip.js";
import { assert } from "./_deps.ts";
import {
  type ArchiveEntry,
  artifactFileName,
  compressionLevelFromVariable,
  gzipArchive,
  rawArchive,
  zipArchive,
} from "../src/artifacts/archive.ts";
import { ArtifactError } from "../src/artifacts/errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytesEntry(path: string, data: Uint8Array, extra: Partial<ArchiveEntry> = {}) {
  return { path, open: () => new Blob([data as Uint8Array<ArrayBuffer>]).stream(), ...extra };
}

function textEntry(path: string, text: string, extra: Partial<ArchiveEntry> = {}) {
  return bytesEntry(path, encoder.encode(text), extra);
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(
    await new Response(stream as ReadableStream<Uint8Array<ArrayBuffer>>)
      .arrayBuffer(),
  );
}

async function* asyncEntries(list: ArchiveEntry[]): AsyncGenerator<ArchiveEntry> {
  for (const entry of list) {
    await Promise.resolve();
    yield entry;
  }
}

async function readZip(data: Uint8Array): Promise<Map<string, Entry>> {
  const reader = new ZipReader(new BlobReader(new Blob([data as Uint8Array<ArrayBuffer>])), {
    useWebWorkers: false,
  });
  const entries = await reader.getEntries();
  await reader.close();
  return new Map(entries.map((e) => [e.filename, e]));
}

async function zipText(entry: Entry | undefined): Promise<string> {
  assert.ok(entry !== undefined && !entry.directory);
  const data = await (entry as FileEntry).arrayBuffer({ useWebWorkers: false });
  return decoder.decode(data);
}

/** A compressible text of `size` bytes. */
function sampleText(size: number, seed = "line"): string {
  let out = "";
  for (let i = 0; out.length < size; i++) out += `${seed} ${i} the quick brown fox\n`;
  return out.slice(0, size);
}

/** An endless source of random (incompressible) bytes that records its cancellation. */
function endless(): { stream: ReadableStream<Uint8Array>; cancelled: Promise<unknown> } {
  let resolve!: (reason: unknown) => void;
  const cancelled = new Promise((r) => resolve = r);
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(crypto.getRandomValues(new Uint8Array(16 * 1024)));
    },
    cancel(reason) {
      resolve(reason ?? "cancelled");
    },
  }, { highWaterMark: 0 });
  return { stream, cancelled };
}

/** A source that errors after one chunk. */
function failing(error: Error): ReadableStream<Uint8Array> {
  let n = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (n++ === 0) controller.enqueue(encoder.encode("partial"));
      else controller.error(error);
    },
  }, { highWaterMark: 0 });
}

async function expectStreamError(stream: ReadableStream<Uint8Array>): Promise<ArtifactError> {
  try {
    await collect(stream);
  } catch (err) {
    assert.ok(err instanceof ArtifactError, `expected an ArtifactError, got ${err}`);
    return err;
  }
  throw new Error("The stream did not fail");
}

/**
 * The RSS growth allowed while archiving 64 MiB. Streaming measured 15–27 MiB for zip (garbage
 * that V8 collects lazily) and under 10 MiB for gzip; reading the file into memory first grows
 * RSS by 70 to 200 MiB.
 */
const MAX_GROWTH = 40 * 1024 * 1024;

/**
 * Archives a generated stream of `size` compressible bytes in a child process (RSS is
 * process-wide, and `deno test --parallel` runs other test files in the same process), and
 * returns the child's peak RSS growth while the archive was read, and the archive itself.
 */
async function archiveInChild(
  format: "zip" | "gzip",
  size: number,
): Promise<{ growth: number; archive: Uint8Array }> {
  const out = await Deno.makeTempFile({ suffix: `.${format}` });
  const script = `
    import { gzipArchive, zipArchive } from ${
    JSON.stringify(import.meta.resolve("../src/artifacts/archive.ts"))
  };
    const archive = ${format === "zip" ? "zipArchive" : "gzipArchive"};
    // The same 16 KiB chunk again and again: the source itself allocates nothing.
    const chunk = new TextEncoder().encode(
      Array.from({ length: 800 }, (_, i) => \`generated \${i} the quick brown fox\n\`).join("")
        .slice(0, 16384),
    );
    function generated(total) {
      let sent = 0;
      return new ReadableStream({
        pull(controller) {
          if (sent >= total) return controller.close();
          const n = Math.min(chunk.length, total - sent);
          controller.enqueue(n === chunk.length ? chunk : chunk.subarray(0, n));
          sent += n;
        },
      }, { highWaterMark: 0 });
    }
    // Warm up the compressor first, so that only the streaming is measured.
    await new Response(archive([{ path: "warm", open: () => generated(1 << 20) }])).arrayBuffer();
    const chunks = [];
    const before = Deno.memoryUsage().rss;
    let peak = before;
    for await (const c of archive([{ path: "big.txt", open: () => generated(${size}) }])) {
      chunks.push(c);
      peak = Math.max(peak, Deno.memoryUsage().rss);
    }
    await Deno.writeFile(${
    JSON.stringify(out)
  }, new Uint8Array(await new Blob(chunks).arrayBuffer()));
    console.log(JSON.stringify({ growth: peak - before }));
  `;
  try {
    const child = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--config",
        new URL(import.meta.resolve("../deno.json")).pathname,
        `--allow-write=${out}`,
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(child.stdout);
    assert.ok(child.success, `child failed: ${new TextDecoder().decode(child.stderr)}`);
    const { growth } = JSON.parse(stdout.trim().split("\n").at(-1)!);
    return { growth, archive: await Deno.readFile(out) };
  } finally {
    await Deno.remove(out);
  }
}

// ---------------------------------------------------------------------------------------------
// zip

Deno.test("C6.4 zip: every entry reads back with its content, deflated", async () => {
  const big = sampleText(200_000);
  const mtime = new Date("2024-05-06T07:08:10Z");
  const zip = await collect(zipArchive([
    textEntry("out/app.txt", big, { mode: 0o755, mtime }),
    textEntry("out/empty", ""),
    textEntry("out/sub/résumé ☃.txt", "unicode"),
    textEntry("./notes//readme.md", "# hi", { size: 4 }),
  ]));
  const entries = await readZip(zip);
  assert.deepEqual([...entries.keys()], [
    "out/app.txt",
    "out/empty",
    "out/sub/résumé ☃.txt",
    "notes/readme.md",
  ]);
  const app = entries.get("out/app.txt")!;
  assert.equal(await zipText(app), big);
  assert.equal(app.compressionMethod, 8, "deflate");
  assert.equal(app.uncompressedSize, 200_000);
  assert.ok(app.compressedSize < 20_000, `compressed to ${app.compressedSize} bytes`);
  assert.equal((app.unixMode ?? 0) & 0o777, 0o755);
  assert.equal(app.lastModDate.getTime(), mtime.getTime());
  assert.equal(await zipText(entries.get("out/empty")), "");
  assert.equal(await zipText(entries.get("out/sub/résumé ☃.txt")), "unicode");
  assert.equal(await zipText(entries.get("notes/readme.md")), "# hi");
});

Deno.test("C6.4 zip: entries can come from an async iterable, opened one at a time", async () => {
  const opened: string[] = [];
  const list = ["a", "b", "c"].map((name) => ({
    path: `dir/${name}`,
    open() {
      opened.push(name);
      return new Blob([name.repeat(3)]).stream();
    },
  }));
  const stream = zipArchive(asyncEntries(list));
  assert.deepEqual(opened, [], "nothing is opened before the stream is read");
  const entries = await readZip(await collect(stream));
  assert.deepEqual(opened, ["a", "b", "c"]);
  assert.equal(await zipText(entries.get("dir/b")), "bbb");
});

Deno.test("C6.4 zip: ARTIFACT_COMPRESSION_LEVEL maps to deflate levels", async () => {
  assert.equal(compressionLevelFromVariable("fastest"), 0);
  assert.equal(compressionLevelFromVariable("fast"), 1);
  assert.equal(compressionLevelFromVariable("default"), 6);
  assert.equal(compressionLevelFromVariable("slow"), 7);
  assert.equal(compressionLevelFromVariable("slowest"), 9);
  assert.equal(compressionLevelFromVariable(" Slowest "), 9);
  assert.equal(compressionLevelFromVariable(""), 6);
  assert.equal(compressionLevelFromVariable(undefined), 6);
  assert.equal(compressionLevelFromVariable("bogus"), 6);

  const text = sampleText(300_000);
  const sizes: Record<number, number> = {};
  for (const level of [0, 1, 9]) {
    const zip = await collect(zipArchive([textEntry("a.txt", text)], { level }));
    const entry = (await readZip(zip)).get("a.txt")!;
    assert.equal(await zipText(entry), text);
    assert.equal(entry.compressionMethod, level === 0 ? 0 : 8, `method at level ${level}`);
    sizes[level] = entry.compressedSize;
  }
  assert.equal(sizes[0], 300_000, "level 0 stores");
  assert.ok(sizes[9] <= sizes[1], `level 9 (${sizes[9]}) vs level 1 (${sizes[1]})`);
  assert.throws(() => zipArchive([], { level: 10 }), RangeError);
  assert.throws(() => zipArchive([], { level: 1.5 }), RangeError);
});

Deno.test("C6.4 zip: an empty entry list gives an empty zip", async () => {
  const zip = await collect(zipArchive([]));
  assert.deepEqual([...zip.subarray(0, 4)], [0x50, 0x4b, 0x05, 0x06]);
  assert.equal((await readZip(zip)).size, 0);
});

Deno.test("C6.4 zip: unsafe or duplicate paths are ArtifactErrors", async () => {
  for (const path of ["../x", "a/../../x", "/etc/passwd", "", ".", "a/\0b"]) {
    assert.throws(
      () => zipArchive([textEntry(path, "x")]),
      (err: unknown) => err instanceof ArtifactError && err.path === path,
      JSON.stringify(path),
    );
  }
  assert.throws(
    () => zipArchive([textEntry("a/b", "1"), textEntry("./a//b", "2")]),
    (err: unknown) => err instanceof ArtifactError && /Duplicate/.test(err.message),
  );
  // From an async iterable, the same errors arrive through the stream.
  const err = await expectStreamError(zipArchive(asyncEntries([textEntry("../x", "x")])));
  assert.equal(err.path, "../x");
});

Deno.test("C6.4 zip: a file that fails to read errors the stream with the cause", async () => {
  const cause = new Error("disk on fire");
  const err = await expectStreamError(zipArchive([
    textEntry("ok.txt", "fine"),
    { path: "bad.bin", open: () => failing(cause) },
  ]));
  assert.equal(err.path, "bad.bin");
  assert.equal(err.cause, cause);
  assert.match(err.message, /bad\.bin.*disk on fire/);

  const openErr = await expectStreamError(zipArchive([{
    path: "gone.txt",
    open: () => Promise.reject(new Error("ENOENT")),
  }]));
  assert.equal(openErr.path, "gone.txt");
  assert.match(openErr.message, /ENOENT/);
});

Deno.test("C6.6 zip: cancelling the archive cancels the file being read", async () => {
  const source = endless();
  const reader = zipArchive([{ path: "endless", open: () => source.stream }]).getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  await reader.cancel("stop");
  assert.equal(await source.cancelled, "stop");
});

Deno.test("C6.6 zip: memory does not grow with a 64 MiB entry", async () => {
  const size = 64 * 1024 * 1024;
  const { growth, archive } = await archiveInChild("zip", size);
  assert.ok(
    growth < MAX_GROWTH,
    `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB while zipping 64 MiB`,
  );
  const entry = (await readZip(archive)).get("big.txt") as FileEntry;
  assert.equal(entry.uncompressedSize, size);
  assert.equal(entry.compressionMethod, 8);
  // Read it back (checking the CRC-32) without keeping it.
  let read = 0;
  await entry.getData(
    new WritableStream({
      write(chunk: Uint8Array) {
        read += chunk.length;
      },
    }),
    { useWebWorkers: false, checkSignature: true },
  );
  assert.equal(read, size);
});

// ---------------------------------------------------------------------------------------------
// gzip

interface GzipMember {
  flags: number;
  mtime: number;
  xfl: number;
  os: number;
  name?: string;
  comment?: string;
  /** The whole member, header to trailer. */
  bytes: Uint8Array;
}

function cString(data: Uint8Array, start: number): [string, number] {
  const end = data.indexOf(0, start);
  assert.ok(end >= 0, "unterminated header string");
  // Header strings are ISO 8859-1.
  return [String.fromCharCode(...data.subarray(start, end)), end + 1];
}

/** Splits concatenated gzip members, parsing each header (RFC 1952) independently. */
function gzipMembers(data: Uint8Array): GzipMember[] {
  const members: GzipMember[] = [];
  let offset = 0;
  while (offset < data.length) {
    assert.deepEqual([...data.subarray(offset, offset + 3)], [0x1f, 0x8b, 8], "gzip magic");
    const flags = data[offset + 3];
    const view = new DataView(data.buffer, data.byteOffset + offset);
    const member: Omit<GzipMember, "bytes"> = {
      flags,
      mtime: view.getUint32(4, true),
      xfl: data[offset + 8],
      os: data[offset + 9],
    };
    let i = offset + 10;
    if (flags & 0x04) i += 2 + view.getUint16(i - offset, true);
    if (flags & 0x08) [member.name, i] = cString(data, i);
    if (flags & 0x10) [member.comment, i] = cString(data, i);
    if (flags & 0x02) i += 2;
    // Find where the deflate data ends: node:zlib reports the input bytes it consumed.
    const inflated = zlib.inflateRawSync(Buffer.from(data.subarray(i)), {
      info: true,
    }) as unknown as {
      engine: { bytesWritten: number };
    };
    const end = i + inflated.engine.bytesWritten + 8;
    members.push({ ...member, bytes: data.subarray(offset, end) });
    offset = end;
  }
  return members;
}

async function gunzipMember(member: Uint8Array): Promise<string> {
  const stream = new Blob([member as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}

Deno.test("C6.4 gzip: one member per file, sorted, named like the official runner", async () => {
  const mtime = new Date("2024-01-02T03:04:05Z");
  const gz = await collect(gzipArchive([
    textEntry("reports/junit-b.xml", "<b/>"),
    textEntry("reports/junit-a.xml", sampleText(50_000), { mtime }),
    textEntry("empty.txt", ""),
    textEntry("Z.txt", "upper case sorts first"),
  ]));
  const members = gzipMembers(gz);
  assert.deepEqual(members.map((m) => m.comment), [
    "Z.txt",
    "empty.txt",
    "reports/junit-a.xml",
    "reports/junit-b.xml",
  ]);
  assert.deepEqual(members.map((m) => m.name), [
    "Z.txt",
    "empty.txt",
    "junit-a.xml",
    "junit-b.xml",
  ]);
  for (const m of members) {
    assert.equal(m.flags, 0x08 | 0x10, "FNAME and FCOMMENT only");
    assert.equal(m.os, 255);
    assert.equal(m.xfl, 0);
  }
  assert.equal(members[2].mtime, mtime.getTime() / 1000);
  assert.equal(members[0].mtime, 0, "no mtime given");
  // Each member is a complete gzip file (DecompressionStream checks CRC-32 and ISIZE).
  assert.equal(await gunzipMember(members[0].bytes), "upper case sorts first");
  assert.equal(await gunzipMember(members[1].bytes), "");
  assert.equal(await gunzipMember(members[2].bytes), sampleText(50_000));
  assert.equal(await gunzipMember(members[3].bytes), "<b/>");
  assert.ok(members[2].bytes.length < 10_000, "compressed");
  // gunzip of the whole artifact gives the files concatenated.
  assert.equal(
    zlib.gunzipSync(Buffer.from(gz)).toString(),
    "upper case sorts first" + sampleText(50_000) + "<b/>",
  );
});

Deno.test("C6.4 gzip: non-ASCII and % in header strings are escaped as e:…", async () => {
  const gz = await collect(gzipArchive(asyncEntries([
    textEntry("reports/résumé.xml", "1"),
    textEntry("100%/done.txt", "2"),
    textEntry("a b/it's (ok).txt", "3"),
  ])));
  const members = gzipMembers(gz);
  assert.deepEqual(
    members.map((m) => [m.name, m.comment]),
    [
      ["done.txt", "e:100%25%2Fdone.txt"],
      ["it's (ok).txt", "a b/it's (ok).txt"], // ASCII is kept as is
      ["e:r%C3%A9sum%C3%A9.xml", "e:reports%2Fr%C3%A9sum%C3%A9.xml"],
    ],
  );
  // Go's url.PathEscape keeps $&+:=@ and escapes the rest.
  const [special] = gzipMembers(await collect(gzipArchive([textEntry("é$&+:=@!*;,?#", "x")])));
  assert.equal(special.comment, "e:%C3%A9$&+:=@%21%2A%3B%2C%3F%23");
});

Deno.test("C6.4 gzip: paths are checked and read errors carry the cause", async () => {
  assert.throws(() => gzipArchive([textEntry("../up", "x")]), ArtifactError);
  assert.throws(
    () => gzipArchive([textEntry("a", "1"), textEntry("a", "2")]),
    ArtifactError,
  );
  const cause = new Error("EIO");
  const err = await expectStreamError(gzipArchive([{ path: "x/bad", open: () => failing(cause) }]));
  assert.equal(err.cause, cause);
  assert.equal(err.path, "x/bad");
});

Deno.test("C6.6 gzip: cancelling the archive cancels the file being read", async () => {
  const source = endless();
  const reader = gzipArchive([{ path: "endless", open: () => source.stream }]).getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  await reader.cancel("stop");
  assert.equal(await source.cancelled, "stop");
});

Deno.test("C6.6 gzip: memory does not grow with a 64 MiB file", async () => {
  const size = 64 * 1024 * 1024;
  const { growth, archive: gz } = await archiveInChild("gzip", size);
  assert.ok(
    growth < MAX_GROWTH,
    `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB while gzipping 64 MiB`,
  );
  assert.ok(gz.length < size / 10, `compressed to ${gz.length} bytes`);
  const [member] = gzipMembers(gz);
  assert.equal(member.comment, "big.txt");
  // ISIZE: the uncompressed size modulo 2^32.
  const view = new DataView(gz.buffer, gz.byteOffset + gz.length - 4);
  assert.equal(view.getUint32(0, true), size);
  assert.equal(zlib.gunzipSync(Buffer.from(member.bytes)).length, size);
});

// ---------------------------------------------------------------------------------------------
// raw

Deno.test("C6.4 raw: exactly one file's bytes", async () => {
  const data = encoder.encode(sampleText(100_000));
  assert.deepEqual(await collect(rawArchive([bytesEntry("gl-sast-report.json", data)])), data);
  assert.deepEqual(
    await collect(rawArchive(asyncEntries([bytesEntry("report.json", data)]))),
    data,
  );
});

Deno.test("C6.4 raw: zero or several files are a clear ArtifactError", async () => {
  assert.throws(
    () => rawArchive([]),
    (err: unknown) => err instanceof ArtifactError && /No file/.test(err.message),
  );
  assert.throws(
    () => rawArchive([textEntry("a", "1"), textEntry("b", "2")]),
    (err: unknown) =>
      err instanceof ArtifactError && /Only one file can be sent as raw artifact, got 2/.test(
        err.message,
      ),
  );
  const many = await expectStreamError(
    rawArchive(asyncEntries([textEntry("a", "1"), textEntry("b", "2"), textEntry("c", "3")])),
  );
  assert.match(many.message, /got 3: a, b, c/);
  const none = await expectStreamError(rawArchive(asyncEntries([])));
  assert.match(none.message, /No file/);
  const cause = new Error("EACCES");
  const failed = await expectStreamError(rawArchive([{ path: "r", open: () => failing(cause) }]));
  assert.equal(failed.cause, cause);
});

Deno.test("C6.6 raw: cancelling the artifact cancels the file being read", async () => {
  const source = endless();
  const reader = rawArchive([{ path: "endless", open: () => source.stream }]).getReader();
  await reader.read();
  await reader.cancel("stop");
  assert.equal(await source.cancelled, "stop");
});

// ---------------------------------------------------------------------------------------------

Deno.test("C6.3 artifactFileName follows the official runner", () => {
  assert.equal(artifactFileName("artifacts", "zip"), "artifacts.zip");
  assert.equal(artifactFileName("build/output/", "zip"), "output.zip");
  assert.equal(artifactFileName(undefined, "zip"), "default.zip");
  assert.equal(artifactFileName("", "gzip"), "default.gz");
  assert.equal(artifactFileName(".", "gzip"), "default.gz");
  assert.equal(artifactFileName("/", "zip"), "default.zip");
  assert.equal(artifactFileName("junit.xml", "gzip"), "junit.xml.gz");
  assert.equal(artifactFileName("reports/gl-sast-report.json", "raw"), "gl-sast-report.json");
  assert.equal(artifactFileName(undefined, "raw"), "default");
  assert.equal(artifactFileName("x", ""), "x.zip", "an empty format means zip");
  assert.equal(artifactFileName("x", "tarzstd"), "x.tar.zst");
});
