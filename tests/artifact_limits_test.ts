// Bounded resources for dependency artifacts (C10.1, C10.2, C10.5) and URL schemes of downloads
// (C9.2), with hostile archives built byte by byte (tests/_zip.ts).
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, FakeClock } from "./_deps.ts";
import { Client } from "../src/api/client.ts";
import { createDependencies } from "../src/artifacts/download.ts";
import { ArtifactError } from "../src/artifacts/errors.ts";
import { ZipArtifact } from "../src/artifacts/reader.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { hostileZip, manyEntries, writeHostileZip } from "./_zip.ts";

const MiB = 1024 * 1024;
const MAX_GROWTH = 64 * MiB;

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream as ReadableStream<Uint8Array<ArrayBuffer>>).text();
}

function isLimit(name: string, value?: number) {
  return (err: unknown) =>
    err instanceof ArtifactError && err.limit?.name === name &&
    (value === undefined || err.limit.value === value) && err.message.includes(name);
}

/** Runs tests/_artifact_memory_child.ts on a zip written by `write`; returns its report. */
async function inChild(
  mode: "list" | "extract" | "read",
  write: (path: string) => Promise<unknown>,
): Promise<{ growth: number; ms: number; files: number; bytes: number }> {
  const dir = await mkdtemp(join(tmpdir(), "mem-"));
  try {
    await write(join(dir, "a.zip"));
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        new URL("./_artifact_memory_child.ts", import.meta.url).pathname,
        mode,
        join(dir, "a.zip"),
        join(dir, "work"),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    return JSON.parse(out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ C10.1 memory

Deno.test("C10.1 extracting a zip with one 256 MiB entry keeps memory bounded", async () => {
  const r = await inChild(
    "extract",
    (p) => writeHostileZip(p, [{ name: "z.bin", zeros: 256 * MiB }]),
  );
  assert.equal(r.files, 1);
  assert.ok(r.growth < MAX_GROWTH, `RSS grew by ${(r.growth / MiB).toFixed(1)} MiB`);
});

Deno.test("C10.1 reading a 256 MiB entry through read() keeps memory bounded", async () => {
  const r = await inChild("read", (p) => writeHostileZip(p, [{ name: "z.bin", zeros: 256 * MiB }]));
  assert.equal(r.bytes, 256 * MiB);
  assert.ok(r.growth < MAX_GROWTH, `RSS grew by ${(r.growth / MiB).toFixed(1)} MiB`);
});

Deno.test("C10.1 listing and extracting a zip with 40 000 small entries keeps memory bounded", async () => {
  // Before the packed index and the synchronous small-file writes: +47 MB listing, +118 MB
  // extracting (and 2 to 4 times the time of `unzip -q`; see bench/extract.ts).
  const write = (p: string) => writeHostileZip(p, manyEntries(40_000));
  const listed = await inChild("list", write);
  assert.equal(listed.files, 40_000);
  assert.ok(
    listed.growth < MAX_GROWTH,
    `listing: RSS grew by ${(listed.growth / MiB).toFixed(1)} MiB`,
  );
  const extracted = await inChild("extract", write);
  assert.equal(extracted.files, 40_000);
  assert.ok(
    extracted.growth < MAX_GROWTH,
    `extracting: RSS grew by ${(extracted.growth / MiB).toFixed(1)} MiB`,
  );
});

// ------------------------------------------------------------------ hostile archives

Deno.test("C10.1 data descriptors, Zip64 fields and stored entries read back", async () => {
  const zip = await hostileZip([
    { name: "dd.txt", data: "descriptor", dataDescriptor: true },
    { name: "z64.txt", data: "zip64 data", zip64: true },
    { name: "z64dd.txt", data: "both", zip64: true, dataDescriptor: true },
    { name: "stored.txt", data: "stored", method: 0 },
  ], { zip64End: true });
  const artifact = new ZipArtifact(zip);
  assert.deepEqual((await artifact.entries()).map((e) => [e.path, e.size]), [
    ["dd.txt", 10],
    ["z64.txt", 10],
    ["z64dd.txt", 4],
    ["stored.txt", 6],
  ]);
  assert.equal(await text(await artifact.read("dd.txt")), "descriptor");
  assert.equal(await text(await artifact.read("z64.txt")), "zip64 data");
  assert.equal(await text(await artifact.read("z64dd.txt")), "both");
  assert.equal(await text(await artifact.read("stored.txt")), "stored");
});

Deno.test("C10.1 a truncated zip is an ArtifactError, not a hang", async () => {
  const zip = await hostileZip([...manyEntries(10)]);
  for (const cut of [zip.length - 1, zip.length - 30, Math.floor(zip.length / 2), 10]) {
    const artifact = new ZipArtifact(zip.subarray(0, cut));
    await assert.rejects(artifact.entries(), ArtifactError, `cut at ${cut}`);
  }
});

Deno.test("C10.2 a central directory understating a size stops the entry at that size", async () => {
  const zip = await hostileZip([{ name: "bomb.bin", zeros: 8 * MiB, central: { size: 1000 } }]);
  const artifact = new ZipArtifact(zip);
  let got = 0;
  await assert.rejects(
    (async () => {
      for await (const chunk of await artifact.read("bomb.bin")) got += chunk.length;
    })(),
    (err: unknown) =>
      err instanceof ArtifactError && /larger than the 1000 bytes/.test(err.message),
  );
  assert.ok(got <= 1000, `${got} bytes came out`);
  // Overstated: the entry ends early, which is an error too.
  const over = new ZipArtifact(
    await hostileZip([{ name: "a", data: "abc", central: { size: 9 } }]),
  );
  await assert.rejects(text(await over.read("a")), /3 bytes, the archive states 9/);
  // A wrong CRC-32.
  const crc = new ZipArtifact(await hostileZip([{ name: "a", data: "abc", central: { crc: 1 } }]));
  await assert.rejects(text(await crc.read("a")), /CRC-32 mismatch/);
});

Deno.test("C10.2 entries sharing data (an overlapping zip bomb) are refused", async () => {
  const zip = await hostileZip([
    { name: "a", zeros: MiB },
    { name: "b", zeros: MiB, central: { offset: 0 } },
  ]);
  await assert.rejects(new ZipArtifact(zip).entries(), /overlap/);
});

Deno.test("C10.2 entries pointing outside the archive, encrypted or with other methods", async () => {
  const outside = await hostileZip([{ name: "a", data: "x", central: { compressedSize: 1e9 } }]);
  await assert.rejects(new ZipArtifact(outside).entries(), /lies outside the archive/);
  const enc = new ZipArtifact(await hostileZip([{ name: "a", data: "x", flags: 1 }]));
  await assert.rejects(enc.read("a"), /encrypted/);
  const bz = new ZipArtifact(await hostileZip([{ name: "a", data: "x", method: 12 }]));
  await assert.rejects(bz.read("a"), /compression method 12/);
});

Deno.test("C10.2 a central directory stating a huge entry count is refused before it is read", async () => {
  const zip = await hostileZip([{ name: "a", data: "x" }], { entryCount: 2 ** 40 });
  await assert.rejects(new ZipArtifact(zip).entries(), isLimit("maxEntries"));
  const many = await hostileZip(manyEntries(50));
  await assert.rejects(
    new ZipArtifact(many, { maxEntries: 49 }).entries(),
    isLimit("maxEntries", 49),
  );
  assert.equal((await new ZipArtifact(many, { maxEntries: 50 }).entries()).length, 50);
});

// ------------------------------------------------------------------ downloads

interface Setup {
  mock: GitLabMock;
  buildDir: string;
  lines: string[];
  dependency: ReturnType<typeof createDependencies>[number];
  [Symbol.asyncDispose](): Promise<void>;
}

async function setup(
  archive: Uint8Array,
  options: { fetch?: (mock: GitLabMock) => typeof fetch; url?: string; mock?: GitLabMock } = {},
  extra: Partial<Parameters<typeof createDependencies>[0]> = {},
): Promise<Setup> {
  const mock = options.mock ?? new GitLabMock();
  const build = mock.job().name("build").state("success").artifactsFile(archive).enqueue();
  mock.job().name("test").dependency(build).enqueue();
  const client = new Client(options.url ?? mock.url, {
    fetch: options.fetch?.(mock) ?? mock.fetch,
    maxAttempts: 1,
  });
  const taken = await client.requestJob(mock.runnerToken);
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  const buildDir = await mkdtemp(join(tmpdir(), "limits-"));
  const lines: string[] = [];
  const [dependency] = createDependencies({
    client,
    dependencies: taken.job.payload.dependencies,
    buildDir,
    clock: new FakeClock(),
    log: (line) => lines.push(line),
    ...extra,
  });
  return {
    mock,
    buildDir,
    lines,
    dependency,
    async [Symbol.asyncDispose]() {
      await rm(buildDir, { recursive: true, force: true });
      await rm(`${buildDir}.tmp`, { recursive: true, force: true });
    },
  };
}

/** A body that never ends (a zip's start, then zeros forever), counting what was pulled. */
function endless(counter: { bytes: number; cancelled: boolean }): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(64 * 1024);
  chunk.set([0x50, 0x4b, 0x03, 0x04]);
  return new ReadableStream({
    pull(controller) {
      counter.bytes += chunk.length;
      controller.enqueue(chunk.slice());
    },
    cancel() {
      counter.cancelled = true;
    },
  }, { highWaterMark: 0 });
}

Deno.test("C10.2 a body that never ends stops at the size GitLab stated, clearly, without retry", async () => {
  const archive = await hostileZip([{ name: "a.txt", data: "small" }]);
  const counter = { bytes: 0, cancelled: false };
  await using s = await setup(archive, {
    fetch: (mock) => async (input, init) => {
      const request = new Request(input, init);
      if (!new URL(request.url).pathname.endsWith("/artifacts")) return mock.fetch(request);
      await mock.fetch(request);
      return new Response(endless(counter), { status: 200 });
    },
  });
  await assert.rejects(s.dependency.download(), isLimit("artifacts_file.size", archive.length));
  assert.ok(counter.cancelled, "the body was cancelled");
  assert.ok(counter.bytes <= 2 * 64 * 1024, `${counter.bytes} bytes pulled`);
  assert.equal(s.mock.requestCount("download"), 1);
  assert.ok(s.lines.some((l) => l.includes("artifacts_file.size")), s.lines.join("\n"));
  await assert.rejects(stat(`${s.buildDir}.tmp/artifact-${s.dependency.id}.download`));
});

Deno.test("C10.2 without a stated size the download stops at limits.maxDownloadSize", async () => {
  const archive = await hostileZip([{ name: "a.txt", data: "small" }]);
  const mock = new GitLabMock();
  const build = mock.job().name("build").state("success").artifactsFile(archive).enqueue();
  // GitLab states no `artifacts_file.size`: the configured cap applies.
  mock.job().name("test").dependency(build).payload((p) => ({
    ...p,
    dependencies: (p.dependencies as { artifacts_file?: Record<string, unknown> }[]).map((d) => {
      const { size: _size, ...file } = d.artifacts_file ?? {};
      return { ...d, artifacts_file: file };
    }),
  })).enqueue();
  const counter = { bytes: 0, cancelled: false };
  const client = new Client(mock.url, {
    fetch: async (input, init) => {
      const request = new Request(input, init);
      if (!new URL(request.url).pathname.endsWith("/artifacts")) return mock.fetch(request);
      await mock.fetch(request);
      return new Response(endless(counter), { status: 200 });
    },
    maxAttempts: 1,
  });
  const taken = await client.requestJob(mock.runnerToken);
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  assert.equal(taken.job.payload.dependencies[0].artifactsFile?.size ?? 0, 0);
  const buildDir = await mkdtemp(join(tmpdir(), "limits-"));
  try {
    const [dependency] = createDependencies({
      client,
      dependencies: taken.job.payload.dependencies,
      buildDir,
      clock: new FakeClock(),
      limits: { maxDownloadSize: 1024 * 1024 },
    });
    await assert.rejects(dependency.download(), isLimit("maxDownloadSize", 1024 * 1024));
    assert.ok(counter.cancelled, "the body was cancelled");
    assert.ok(counter.bytes <= MiB + 2 * 64 * 1024, `${counter.bytes} bytes pulled`);
    assert.equal(mock.requestCount("download"), 1);
    // Nothing is left on disk: no download file, no extraction.
    assert.deepEqual(await readdir(`${buildDir}.tmp`).catch(() => []), []);
    assert.deepEqual(await readdir(buildDir), []);
  } finally {
    await rm(buildDir, { recursive: true, force: true });
    await rm(`${buildDir}.tmp`, { recursive: true, force: true });
  }
});

Deno.test("C10.2 extraction stops at maxEntries and maxExtractSize before writing anything", async () => {
  const zip = await hostileZip([...manyEntries(20), { name: "big", zeros: 2 * MiB }]);
  await using s = await setup(zip, {}, { limits: { maxExtractSize: MiB } });
  const artifact = await s.dependency.download();
  assert.ok(artifact);
  const target = join(s.buildDir, "out");
  await assert.rejects(artifact.extractTo(target, { maxEntries: 10 }), isLimit("maxEntries", 10));
  await assert.rejects(artifact.extractTo(target), isLimit("maxExtractSize", MiB));
  await assert.rejects(stat(target));
  const written = await artifact.extractTo(target, { maxSize: 4 * MiB });
  assert.equal(written.length, 21);
  assert.equal((await stat(join(target, "big"))).size, 2 * MiB);
  await artifact.close?.();
});

Deno.test("C10.5 a large download is kept outside the build dir and removed on close", async () => {
  const zip = await hostileZip([{
    name: "r.bin",
    data: crypto.getRandomValues(new Uint8Array(60_000)),
    method: 0,
  }, {
    name: "s.bin",
    data: crypto.getRandomValues(new Uint8Array(60_000)),
    method: 0,
  }]);
  await using s = await setup(zip);
  const artifact = await s.dependency.download();
  assert.ok(artifact);
  assert.deepEqual(await readdir(s.buildDir), []);
  assert.deepEqual(await readdir(`${s.buildDir}.tmp`), [`artifact-${s.dependency.id}.download`]);
  await artifact.close?.();
  assert.deepEqual(await readdir(`${s.buildDir}.tmp`), []);
});

// ------------------------------------------------------------------ C9.2 over real sockets

/** A GitLab in front of the mock, on a socket, that answers the download with `redirect`. */
async function front(mock: GitLabMock, redirect: (url: URL) => string | undefined) {
  const seen: { url: string; token: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    seen.push({ url: request.url, token: request.headers.get("job-token") });
    const location = url.pathname.endsWith("/artifacts") ? redirect(url) : undefined;
    if (location !== undefined) return new Response(null, { status: 302, headers: { location } });
    const forwarded = new URL(url.pathname + url.search, mock.url);
    return mock.fetch(new Request(forwarded, request));
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, server };
}

Deno.test("C9.2 a dependency redirected to a file: or data: URL fails; nothing is read or extracted", async () => {
  const dir = await mkdtemp(join(tmpdir(), "c92-"));
  try {
    const local = await hostileZip([{ name: "stolen.txt", data: "local file" }]);
    await Deno.writeFile(join(dir, "local.zip"), local);
    const dataUrl = `data:application/zip;base64,${btoa(String.fromCharCode(...local))}`;
    for (const target of [`file://${join(dir, "local.zip")}`, dataUrl]) {
      const mock = new GitLabMock();
      const f = await front(mock, () => target);
      try {
        const build = mock.job().name("build").state("success").artifactsFile(local).enqueue();
        mock.job().name("test").dependency(build).enqueue();
        const client = new Client(f.url, { maxAttempts: 1 });
        const taken = await client.requestJob(mock.runnerToken);
        if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
        const lines: string[] = [];
        const [dependency] = createDependencies({
          client,
          dependencies: taken.job.payload.dependencies,
          buildDir: join(dir, "build"),
          clock: new FakeClock(),
          log: (line) => lines.push(line),
        });
        await assert.rejects(
          dependency.download(),
          (err: unknown) => err instanceof ArtifactError && /only http and https/.test(err.message),
        );
        assert.ok(!lines.some((l) => /responseStatus=200/.test(l)), lines.join("\n"));
        await assert.rejects(stat(join(dir, "build")));
      } finally {
        await f.server.shutdown();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("C9.2 a redirect to another origin (another port) is followed without JOB-TOKEN", async () => {
  const zip = await hostileZip([{ name: "a.txt", data: "from the object store" }]);
  const objects: { token: string | null; auth: string | null }[] = [];
  const store = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    objects.push({
      token: request.headers.get("job-token"),
      auth: request.headers.get("authorization"),
    });
    return new Response(zip.slice());
  });
  const mock = new GitLabMock();
  // GitLab redirects to itself first (same origin: the token is kept), then to the store.
  const f = await front(
    mock,
    (url) =>
      url.searchParams.has("hop")
        ? `http://localhost:${store.addr.port}/bucket/a.zip?X-Amz-Signature=x`
        : `${url.pathname}?hop=1&direct_download=true`,
  );
  try {
    await using s = await setup(zip, { url: f.url, fetch: () => fetch, mock });
    const artifact = await s.dependency.download();
    assert.ok(artifact);
    assert.equal(await text(await artifact.read("a.txt")), "from the object store");
    const hops = f.seen.filter((r) => r.url.includes("/artifacts"));
    assert.equal(hops.length, 2);
    for (const hop of hops) assert.ok(hop.token, "GitLab's own hops carry the token");
    assert.deepEqual(objects, [{ token: null, auth: null }]);
    await artifact.close?.();
  } finally {
    await f.server.shutdown();
    await store.shutdown();
  }
});
