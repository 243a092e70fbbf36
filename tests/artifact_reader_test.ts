import { assert } from "./_deps.ts";
import { zipArchive } from "../src/artifacts/archive.ts";
import { ArtifactError } from "../src/artifacts/errors.ts";
import {
  detectFormat,
  safeEntryPath,
  safeSymlinkTarget,
  ZipArtifact,
} from "../src/artifacts/reader.ts";
import { buildZip } from "./_zip.ts";

const encoder = new TextEncoder();

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream as ReadableStream<Uint8Array<ArrayBuffer>>).text();
}

Deno.test("C6.7 detectFormat tells zip, gzip and zstd apart by magic bytes", () => {
  const cases: Array<[number[], string]> = [
    [[0x50, 0x4b, 0x03, 0x04, 0x14], "zip"],
    [[0x50, 0x4b, 0x05, 0x06], "zip"], // an empty archive
    [[0x50, 0x4b, 0x07, 0x08], "zip"], // spanned
    [[0x1f, 0x8b, 0x08, 0x00], "gzip"],
    [[0x28, 0xb5, 0x2f, 0xfd, 0x04], "zstd"],
    [[0x50, 0x4b], "unknown"], // too short to tell
    [[0x50, 0x4b, 0x01, 0x02], "unknown"],
    [[], "unknown"],
    [[...encoder.encode("<!DOCTYPE html>")], "unknown"],
    [[...encoder.encode('{"message":"404 Not found"}')], "unknown"],
  ];
  for (const [head, format] of cases) {
    assert.equal(detectFormat(new Uint8Array(head)), format, JSON.stringify(head));
  }
});

Deno.test("C6.7 ZipArtifact lists entries with their kind, size and mode", async () => {
  const zip = await buildZip([
    { name: "out/", directory: true },
    { name: "out/app", text: "#!/bin/sh\necho hi\n", unixMode: 0o100755 },
    { name: "out/link", text: "app", unixMode: 0o120777 },
    { name: "out/data.txt", text: "x".repeat(10_000) },
  ]);
  assert.equal(detectFormat(zip.subarray(0, 4)), "zip");
  const artifact = new ZipArtifact(new Blob([zip as Uint8Array<ArrayBuffer>]));
  const entries = await artifact.entries();
  assert.deepEqual(
    entries.map((e) => [e.path, e.isDirectory, e.isSymlink, e.size]),
    [
      ["out", true, false, 0],
      ["out/app", false, false, 18],
      ["out/link", false, true, 3],
      ["out/data.txt", false, false, 10_000],
    ],
  );
  assert.equal(entries[1].mode, 0o755);
  assert.ok(entries[3].compressedSize < 1000);
  assert.ok(entries[3].mtime instanceof Date);
  assert.equal(await text(await artifact.read("out/link")), "app", "a symlink's content");
  await artifact.close();
});

Deno.test("C6.7 ZipArtifact reads an entry as a stream, any number of times", async () => {
  const big = "0123456789abcdef".repeat(40_000);
  const zip = zipArchive([
    { path: "a.txt", open: () => new Blob(["alpha"]).stream() },
    { path: "dir/big.txt", open: () => new Blob([big]).stream() },
  ]);
  const artifact = new ZipArtifact(await new Response(zip).blob());
  assert.equal(await text(await artifact.read("dir/big.txt")), big);
  assert.equal(await text(await artifact.read("dir/big.txt")), big);
  // Two reads at the same time.
  const [x, y] = await Promise.all([artifact.read("a.txt"), artifact.read("dir/big.txt")]);
  assert.deepEqual(await Promise.all([text(x), text(y)]), ["alpha", big]);
  assert.deepEqual(await artifact.bytes("a.txt"), encoder.encode("alpha"));
  // Cancelling a read part way is fine, and later reads still work.
  const partial = (await artifact.read("dir/big.txt")).getReader();
  await partial.read();
  await partial.cancel();
  assert.equal(await text(await artifact.read("a.txt")), "alpha");
  await artifact.close();
});

Deno.test("C6.7 ZipArtifact errors are ArtifactErrors", async () => {
  const zip = await buildZip([
    { name: "dir/", directory: true },
    { name: "dir/file.txt", text: "hello hello hello hello hello" },
  ]);
  const artifact = new ZipArtifact(zip);
  await assert.rejects(
    artifact.read("missing.txt"),
    (err: unknown) =>
      err instanceof ArtifactError && err.path === "missing.txt" && /No entry/.test(err.message),
  );
  await assert.rejects(
    artifact.read("dir"),
    (err: unknown) => err instanceof ArtifactError && /directory/.test(err.message),
  );
  await artifact.close();

  const notZip = new ZipArtifact(encoder.encode("<html>Sign in</html>"));
  await assert.rejects(
    notZip.entries(),
    (err: unknown) => err instanceof ArtifactError && /Invalid zip artifact/.test(err.message),
  );
  await notZip.close();

  // Corrupt the stored data of the file: the read fails (CRC-32 or inflate error).
  const corrupt = zip.slice();
  const name = encoder.encode("dir/file.txt");
  let header = -1;
  for (let i = 0; i < corrupt.length - 4 && header < 0; i++) {
    if (corrupt[i] === 0x50 && corrupt[i + 1] === 0x4b && corrupt[i + 2] === 3) {
      const nameLength = corrupt[i + 26] | (corrupt[i + 27] << 8);
      const stored = new TextDecoder().decode(corrupt.subarray(i + 30, i + 30 + nameLength));
      if (stored === "dir/file.txt") header = i;
    }
  }
  assert.ok(header >= 0, "local header found");
  const dataStart = header + 30 + name.length +
    (corrupt[header + 28] | (corrupt[header + 29] << 8));
  for (let i = 0; i < 4; i++) corrupt[dataStart + i] ^= 0xff;
  const broken = new ZipArtifact(corrupt);
  await assert.rejects(
    text(await broken.read("dir/file.txt")),
    (err: unknown) => err instanceof ArtifactError && err.path === "dir/file.txt",
  );
  await broken.close();

  // A broken local header (the central directory is fine): the read fails, it does not hang.
  const badHeader = zip.slice();
  badHeader[header] = 0;
  const headless = new ZipArtifact(badHeader);
  assert.equal((await headless.entries()).length, 2);
  await assert.rejects(
    text(await headless.read("dir/file.txt")),
    (err: unknown) => err instanceof ArtifactError && err.path === "dir/file.txt",
  );
  await headless.close();
});

Deno.test("C6.8 safeEntryPath accepts and normalises entries inside the root", () => {
  const cases: Array<[string, string, string]> = [
    ["/builds/dep", "a.txt", "/builds/dep/a.txt"],
    ["/builds/dep/", "./out//a.txt", "/builds/dep/out/a.txt"],
    ["/builds/dep", "a/../b/c", "/builds/dep/b/c"],
    ["/builds/dep", "dir/", "/builds/dep/dir"],
    ["/builds/dep", "..a/b..", "/builds/dep/..a/b.."],
    ["/builds/dep", ".hidden", "/builds/dep/.hidden"],
    ["/builds/dep", "a\\b.txt", "/builds/dep/a\\b.txt"], // a file name on POSIX
    ["/", "etc/x", "/etc/x"],
    ["C:\\build\\", "a/b", "C:\\build/a/b"],
    ["rel", "x", "rel/x"],
    // Plain-looking paths (the fast path) and their near misses give what the long way gives.
    ["/builds/dep", "a/. b/c ", "/builds/dep/a/. b/c "],
    ["/builds/dep", "a/b/.", "/builds/dep/a/b"],
    ["/builds/dep//", "a/b/", "/builds/dep/a/b"],
  ];
  for (const [root, entry, expected] of cases) {
    assert.equal(safeEntryPath(root, entry), expected, `${root} + ${entry}`);
  }
});

Deno.test("C6.8 safeEntryPath rejects entries escaping the root", () => {
  const attacks = [
    "../evil",
    "..",
    "../",
    "a/../../evil",
    "a/b/../../../evil",
    "./../evil",
    "/etc/passwd",
    "//server/share/x",
    "\\evil",
    "\\\\server\\share\\evil",
    "..\\evil",
    "a\\..\\..\\evil",
    "a/..\\..\\evil",
    "C:/Windows/evil",
    "c:\\evil",
    "C:evil", // drive-relative
    ".. /evil", // Windows strips the trailing space: ".."
    "a/.../evil",
    "a/\0/b",
    "",
    ".",
    "./",
    "a/..",
    "a/ /b", // a segment of spaces only
    "a/. /b",
    "x/..../y",
    "/",
  ];
  for (const entry of attacks) {
    assert.throws(
      () => safeEntryPath("/builds/dep", entry),
      (err: unknown) => err instanceof ArtifactError && err.path === entry,
      JSON.stringify(entry),
    );
  }
});

Deno.test("C6.8 safeSymlinkTarget rejects links pointing out of the root", () => {
  assert.equal(safeSymlinkTarget("out/latest", "v2/app"), "v2/app");
  assert.equal(safeSymlinkTarget("a/b/link", "../c"), "../c");
  assert.equal(safeSymlinkTarget("a/b/link", "../../c"), "../../c"); // the root's c
  assert.equal(safeSymlinkTarget("link", "."), ".");
  for (
    const [entry, target] of [
      ["link", ".."],
      ["link", "../x"],
      ["a/b/link", "../../../x"],
      ["a/link", "b/../../../x"],
      ["a/link", "..\\..\\x"],
      ["link", "/etc/passwd"],
      ["link", "C:\\Windows"],
      ["link", "\\\\server\\share"],
      ["link", ""],
    ]
  ) {
    assert.throws(
      () => safeSymlinkTarget(entry, target),
      ArtifactError,
      `${entry} -> ${target}`,
    );
  }
});

Deno.test("C6.8 a hostile zip lists its entries; each is then refused", async () => {
  const zip = await buildZip([
    { name: "ok.txt", text: "fine" },
    { name: "../../evil.sh", text: "rm -rf ~" },
    { name: "/etc/cron.d/evil", text: "* * * * * root sh" },
    { name: "link", text: "/etc", unixMode: 0o120777 },
  ]);
  const artifact = new ZipArtifact(zip);
  const entries = await artifact.entries();
  assert.deepEqual(entries.map((e) => e.path), [
    "ok.txt",
    "../../evil.sh",
    "/etc/cron.d/evil",
    "link",
  ]);
  assert.equal(safeEntryPath("/builds/x", "ok.txt"), "/builds/x/ok.txt");
  assert.throws(() => safeEntryPath("/builds/x", entries[1].path), ArtifactError);
  assert.throws(() => safeEntryPath("/builds/x", entries[2].path), ArtifactError);
  assert.ok(entries[3].isSymlink);
  const target = await text(await artifact.read("link"));
  assert.throws(() => safeSymlinkTarget("link", target), ArtifactError);
  await artifact.close();
});
