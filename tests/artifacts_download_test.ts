import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, FakeClock } from "./_deps.ts";
import { Client } from "../src/api/client.ts";
import type { JobPayload } from "../src/api/payload.ts";
import { ApiError } from "../src/errors.ts";
import { gzipArchive, zipArchive } from "../src/artifacts/archive.ts";
import { type Artifact, createDependencies, type Dependency } from "../src/artifacts/download.ts";
import { ArtifactError } from "../src/artifacts/errors.ts";
import type { UploadableFile } from "../src/artifacts/files.ts";
import { uploadArtifacts } from "../src/artifacts/upload.ts";
import { GitLabMock, type MockJob, type MockOptions } from "../src/mock/mod.ts";
import { buildZip, type RawEntry } from "./_zip.ts";
import { random } from "./_data.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const FEATURES = { upload_multiple_artifacts: true, artifacts_exclude: true };

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(
    await new Response(stream as ReadableStream<Uint8Array<ArrayBuffer>>).arrayBuffer(),
  );
}

async function textOf(stream: ReadableStream<Uint8Array>): Promise<string> {
  return decoder.decode(await bytesOf(stream));
}

function blobFile(path: string, content: string | Uint8Array, extra: Partial<UploadableFile> = {}) {
  const data = typeof content === "string" ? encoder.encode(content) : content;
  return {
    path,
    open: () => new Blob([data as Uint8Array<ArrayBuffer>]).stream(),
    size: data.length,
    ...extra,
  };
}

async function zipOf(files: UploadableFile[], level?: number): Promise<Uint8Array> {
  return await bytesOf(zipArchive(files, level === undefined ? {} : { level }));
}

interface Setup {
  mock: GitLabMock;
  clock: FakeClock;
  client: Client;
  payload: JobPayload;
  dependencies: Dependency[];
  buildDir: string;
  lines: string[];
  /** Runs a download to its end on the fake clock. */
  download(dep?: Dependency): Promise<Artifact | undefined>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A mock with a finished dependency job holding `archive`, and a running job depending on it,
 * taken by a client with one attempt per call (the counts below are the downloader's own tries).
 */
async function setup(
  archive: Uint8Array | undefined,
  options: {
    mock?: MockOptions;
    fetch?: (mock: GitLabMock) => typeof fetch;
    memoryLimit?: number;
    artifacts?: boolean;
    prepare?: (mock: GitLabMock) => MockJob;
  } = {},
): Promise<Setup> {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, ...options.mock });
  let dep: MockJob;
  if (options.prepare) {
    dep = options.prepare(mock);
  } else {
    let builder = mock.job().name("build").state("success");
    if (archive) builder = builder.artifactsFile(archive);
    dep = builder.enqueue();
  }
  mock.job().name("test").dependency(dep, options.artifacts === false ? { artifacts: false } : {})
    .enqueue();
  const client = new Client(mock.url, {
    fetch: options.fetch?.(mock) ?? mock.fetch,
    clock,
    maxAttempts: 1,
  });
  const taken = await client.requestJob(mock.runnerToken, { info: { features: FEATURES } });
  if (taken.type !== "job" || !taken.job.ok) throw new Error("The mock did not hand out the job");
  const payload = taken.job.payload;
  const buildDir = await mkdtemp(join(tmpdir(), "dl-build-"));
  const lines: string[] = [];
  const dependencies = createDependencies({
    client,
    dependencies: payload.dependencies,
    buildDir,
    clock,
    log: (line) => lines.push(line),
    ...(options.memoryLimit !== undefined ? { memoryLimit: options.memoryLimit } : {}),
  });
  return {
    mock,
    clock,
    client,
    payload,
    dependencies,
    buildDir,
    lines,
    async download(d = dependencies[0]) {
      const running = d.download();
      let done = false;
      running.then(() => (done = true), () => (done = true));
      await clock.runUntil(() => done, 3600_000);
      const result = await running;
      for (const line of lines) {
        for (const dependency of payload.dependencies) {
          assert.ok(!line.includes(dependency.token), `token in log: ${line}`);
        }
      }
      return result;
    },
    async [Symbol.asyncDispose]() {
      await rm(buildDir, { recursive: true, force: true });
      await rm(`${buildDir}.tmp`, { recursive: true, force: true });
    },
  };
}

function downloads(mock: GitLabMock) {
  return mock.requests.filter((r) => r.route === "download");
}

const SAMPLE = [
  blobFile("out/app.sh", "#!/bin/sh\necho hi\n", { mode: 0o100755 }),
  blobFile("out/docs/readme.txt", "read me\n", { mode: 0o100644 }),
  blobFile("top.txt", "top"),
];

// ------------------------------------------------------------------ gitlab-runner-rs

Deno.test("C6.7 (RS upload_download) one job's artifact is downloaded by the next", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const upload = mock.job().name("upload artifact").artifact({
    paths: ["dir", "./*2", "test/"],
  }).enqueue();
  const download = mock.job().name("download artifact").dependency(upload).enqueue();
  const client = new Client(mock.url, { fetch: mock.fetch, clock, maxAttempts: 1 });
  const buildDir = await mkdtemp(join(tmpdir(), "rs-"));
  try {
    // The upload job comes first.
    const first = await client.requestJob(mock.runnerToken, { info: { features: FEATURES } });
    if (first.type !== "job" || !first.job.ok) throw new Error("no upload job");
    const up = first.job.payload;
    assert.equal(up.id, upload.id);
    const uploaded = await uploadArtifacts({
      client,
      jobId: up.id,
      token: up.token,
      specs: up.artifacts,
      files: () => [
        blobFile("test", "testdata"),
        blobFile("./test2", "testdata2"),
        blobFile("dir/test", "testdata-dir"),
      ],
      scriptFailed: false,
      log: () => {},
      clock,
    });
    assert.equal(uploaded.ok, true);
    await client.updateJob(up.id, up.token, { state: "success" });
    assert.equal(upload.state, "success");

    // Two failed downloads before the good one (RS: set_inject_artifact_download_failures(2)).
    mock.fault({ route: "download", status: 500, times: 2 });
    const second = await client.requestJob(mock.runnerToken, { info: { features: FEATURES } });
    if (second.type !== "job" || !second.job.ok) throw new Error("no download job");
    assert.equal(second.job.payload.id, download.id);
    const deps = createDependencies({
      client,
      dependencies: second.job.payload.dependencies,
      buildDir,
      clock,
    });
    assert.equal(deps.length, 1);
    const running = deps[0].download();
    let done = false;
    running.then(() => (done = true), () => (done = true));
    await clock.runUntil(() => done);
    const artifact = await running;
    if (!artifact) throw new Error("No artifacts to download");
    const names = (await artifact.entries()).map((e) => e.path).sort();
    assert.deepEqual(names, ["dir/test", "test", "test2"]);
    for (
      const [name, expected] of [["test", "testdata"], ["test2", "testdata2"], [
        "dir/test",
        "testdata-dir",
      ]]
    ) {
      assert.equal(await textOf(await artifact.read(name)), expected);
    }
    // Reading the first file a second time.
    assert.equal(await textOf(await artifact.read("test")), "testdata");
    assert.equal(mock.requestCount("download"), 3);
    await artifact.close?.();
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------ the request

Deno.test("C6.7 the first try asks for direct_download=true, later tries do not", async () => {
  await using s = await setup(await zipOf(SAMPLE));
  s.mock.fault({ route: "download", drop: true });
  const artifact = await s.download();
  assert.ok(artifact);
  const urls = downloads(s.mock).map((r) => new URL(r.url).searchParams.get("direct_download"));
  assert.deepEqual(urls, ["true", "false"]);
  const dep = s.payload.dependencies[0];
  for (const r of downloads(s.mock)) assert.equal(r.headers.get("job-token"), dep.token);
  assert.ok(s.lines.some((l) => l.startsWith("WARNING: Retrying...")));
  await artifact.close?.();
});

Deno.test("C6.7 a redirect to another origin is followed without JOB-TOKEN", async () => {
  const archive = await zipOf(SAMPLE);
  await using s = await setup(archive, { mock: { downloadRedirect: true } });
  const artifact = await s.download();
  assert.ok(artifact);
  const [gitlab] = downloads(s.mock);
  assert.equal(gitlab.status, 302);
  assert.equal(new URL(gitlab.url).searchParams.get("direct_download"), "true");
  assert.equal(gitlab.headers.get("job-token"), s.payload.dependencies[0].token);
  const objects = s.mock.requests.filter((r) => r.route === "object");
  assert.equal(objects.length, 1);
  assert.equal(new URL(objects[0].url).origin, s.mock.objectsUrl);
  assert.notEqual(new URL(objects[0].url).origin, new URL(s.mock.url).origin);
  assert.equal(objects[0].status, 200);
  assert.equal(objects[0].headers.get("job-token"), null);
  for (const [, value] of objects[0].headers) {
    assert.ok(
      !value.includes(s.payload.dependencies[0].token),
      "the token reached the object store",
    );
  }
  assert.equal(await textOf(await artifact.read("top.txt")), "top");
  assert.ok(s.lines.some((l) => l.includes("ok  id=") && l.includes("host=objects.mock")));
  await artifact.close?.();
});

Deno.test("C6.7 a body cut midway is downloaded again from zero: the file is intact", async () => {
  const big = random(300_000, 5);
  const archive = await zipOf([blobFile("big.bin", big), blobFile("small.txt", "small")], 0);
  let cuts = 0;
  await using s = await setup(archive, {
    memoryLimit: 1024,
    fetch: (mock) => async (input, init) => {
      const response = await mock.fetch(input, init);
      if (cuts > 0 || response.status !== 200 || response.body === null) return response;
      cuts++;
      // Half of the body arrives, then the connection breaks.
      const body = await bytesOf(response.body);
      let sent = 0;
      const broken = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= body.length / 2) {
            controller.error(new TypeError("error reading a body from connection"));
            return;
          }
          controller.enqueue(body.slice(sent, sent + 10_000));
          sent += 10_000;
        },
      });
      return new Response(broken, { status: 200, headers: response.headers });
    },
  });
  const artifact = await s.download();
  assert.ok(artifact);
  assert.equal(cuts, 1);
  assert.equal(s.mock.requestCount("download"), 2);
  const onDisk = new Uint8Array(
    await readFile(`${s.buildDir}.tmp/artifact-${s.dependencies[0].id}.download`),
  );
  assert.equal(onDisk.length, archive.length);
  assert.deepEqual(onDisk, archive);
  assert.deepEqual(await bytesOf(await artifact.read("big.bin")), big);
  assert.equal(await textOf(await artifact.read("small.txt")), "small");
  assert.ok(
    s.lines.some((l) => l.startsWith("ERROR: Downloading artifacts from coordinator... error")),
  );
  await artifact.close?.();
});

Deno.test("C6.7 a body shorter than its Content-Length is downloaded again", async () => {
  const archive = await zipOf(SAMPLE);
  let cuts = 0;
  await using s = await setup(archive, {
    fetch: (mock) => async (input, init) => {
      const response = await mock.fetch(input, init);
      if (cuts > 0 || response.status !== 200 || response.body === null) return response;
      cuts++;
      const body = await bytesOf(response.body);
      // The connection closes cleanly, but early.
      return new Response(body.slice(0, 100), { status: 200, headers: response.headers });
    },
  });
  const artifact = await s.download();
  assert.ok(artifact);
  assert.equal(cuts, 1);
  assert.equal(s.mock.requestCount("download"), 2);
  assert.ok(s.lines.some((l) => l.includes("The body ended after 100 of")));
  assert.equal(await textOf(await artifact.read("top.txt")), "top");
  await artifact.close?.();
});

Deno.test("C6.7 404 means no artifact; no artifacts_file means no request", async () => {
  await using erased = await setup(await zipOf(SAMPLE));
  erased.mock.eraseArtifacts(erased.payload.dependencies[0].id);
  assert.equal(erased.dependencies[0].hasArtifacts, true);
  assert.equal(await erased.download(), undefined);
  assert.equal(erased.mock.requestCount("download"), 1);
  assert.ok(
    erased.lines.some((l) =>
      l.startsWith("ERROR: Downloading artifacts from coordinator... not found")
    ),
  );

  await using none = await setup(await zipOf(SAMPLE), { artifacts: false });
  assert.equal(none.dependencies[0].hasArtifacts, false);
  assert.equal(await none.download(), undefined);
  assert.equal(none.mock.requestCount("download"), 0);
});

Deno.test("C6.7 403 is final, other failures are tried three times, 1 s apart", async () => {
  await using forbidden = await setup(await zipOf(SAMPLE));
  forbidden.mock.fault({ route: "download", status: 403, times: Infinity });
  await assert.rejects(
    forbidden.download(),
    (err) => err instanceof ApiError && err.status === 403,
  );
  assert.equal(forbidden.mock.requestCount("download"), 1);

  await using failing = await setup(await zipOf(SAMPLE));
  failing.mock.fault({ route: "download", status: 502, times: Infinity });
  const start = failing.clock.now();
  await assert.rejects(failing.download(), (err) => err instanceof ApiError && err.status === 502);
  assert.equal(failing.mock.requestCount("download"), 3);
  assert.equal(failing.clock.now() - start, 2000);
  // A failed download is not kept: the next call tries again.
  failing.mock.clearFaults();
  const artifact = await failing.download();
  assert.ok(artifact);
  await artifact.close?.();
});

Deno.test("C6.7 the artifact is kept per dependency until closed", async () => {
  await using s = await setup(await zipOf(SAMPLE));
  const [a, b] = await Promise.all([s.download(), s.dependencies[0].download()]);
  const c = await s.dependencies[0].download();
  assert.ok(a);
  assert.equal(a, b);
  assert.equal(a, c);
  assert.equal(s.mock.requestCount("download"), 1);
  await a.close?.();
  const d = await s.download();
  assert.ok(d && d !== a);
  assert.equal(s.mock.requestCount("download"), 2);
  await d.close?.();
});

// ------------------------------------------------------------------ storage and formats

Deno.test("C10.5 a small artifact stays in memory, a large one goes to <buildDir>.tmp, outside the build dir", async () => {
  await using small = await setup(await zipOf(SAMPLE));
  const a = await small.download();
  assert.ok(a);
  await assert.rejects(stat(`${small.buildDir}.tmp`), /No such file|ENOENT|not found/i);
  await a.close?.();

  const big = random(200_000, 9);
  const archive = await zipOf([blobFile("big.bin", big)], 0);
  await using large = await setup(archive);
  const b = await large.download();
  assert.ok(b);
  const path = `${large.buildDir}.tmp/artifact-${large.dependencies[0].id}.download`;
  assert.equal((await stat(path)).size, archive.length);
  // Nothing in the build directory: an artifact with `paths: ["."]` or `untracked` cannot
  // pick the download up.
  assert.deepEqual(await readdir(large.buildDir), []);
  assert.deepEqual(await bytesOf(await b.read("big.bin")), big);
  await b.close?.();
  await assert.rejects(stat(path), /No such file|ENOENT|not found/i);
});

Deno.test("C6.7 entries are listable, readable twice and extractable", async () => {
  await using s = await setup(await zipOf(SAMPLE));
  const artifact = await s.download();
  assert.ok(artifact);
  assert.equal(artifact.format, "zip");
  assert.deepEqual((await artifact.entries()).map((e) => e.path), [
    "out/app.sh",
    "out/docs/readme.txt",
    "top.txt",
  ]);
  assert.equal(await textOf(await artifact.read("top.txt")), "top");
  assert.equal(await textOf(await artifact.read("top.txt")), "top");
  const target = join(s.buildDir, "extracted");
  const written = await artifact.extractTo(target);
  assert.deepEqual(written, ["out/app.sh", "out/docs/readme.txt", "top.txt"]);
  assert.equal(await readFile(join(target, "out", "docs", "readme.txt"), "utf8"), "read me\n");
  assert.equal((await stat(join(target, "out", "app.sh"))).mode & 0o777, 0o755);
  assert.equal((await stat(join(target, "out", "docs", "readme.txt"))).mode & 0o777, 0o644);
  // Extracting again replaces the files.
  assert.deepEqual(await artifact.extractTo(target), written);
  await artifact.close?.();
});

Deno.test("C6.7 links and directories inside the target are extracted as such", async () => {
  const zip = await buildZip([
    { name: "./", directory: true },
    { name: "lib/", directory: true, unixMode: 0o40755 },
    { name: "lib/libx.so.1", text: "elf", unixMode: 0o100644 },
    { name: "lib/libx.so", text: "libx.so.1", unixMode: 0o120777 },
    { name: "current", text: "lib", unixMode: 0o120777 },
  ]);
  await using s = await setup(zip);
  const artifact = await s.download();
  assert.ok(artifact);
  const target = join(s.buildDir, "x");
  assert.deepEqual(await artifact.extractTo(target), [
    "lib",
    "lib/libx.so.1",
    "lib/libx.so",
    "current",
  ]);
  assert.equal(await readlink(join(target, "lib", "libx.so")), "libx.so.1");
  assert.equal(await readFile(join(target, "lib", "libx.so"), "utf8"), "elf");
  assert.ok((await lstat(join(target, "current"))).isSymbolicLink());
  await artifact.close?.();
});

Deno.test("C6.7 a gzip artifact is recognised by its magic bytes and read member by member", async () => {
  const big = random(150_000, 11);
  const gz = await bytesOf(gzipArchive([
    blobFile("reports/b.xml", "<b/>"),
    blobFile("reports/a.xml", "<a/>"),
    blobFile("data/big.bin", big),
    blobFile("résumé.txt", "accents"),
  ]));
  for (const memoryLimit of [undefined, 100]) {
    await using s = await setup(gz, memoryLimit === undefined ? {} : { memoryLimit });
    const artifact = await s.download();
    assert.ok(artifact);
    assert.equal(artifact.format, "gzip");
    const entries = await artifact.entries();
    assert.deepEqual(entries.map((e) => [e.path, e.size]), [
      ["data/big.bin", big.length],
      ["reports/a.xml", 4],
      ["reports/b.xml", 4],
      ["résumé.txt", 7],
    ]);
    assert.equal(await textOf(await artifact.read("reports/b.xml")), "<b/>");
    assert.equal(await textOf(await artifact.read("reports/a.xml")), "<a/>");
    assert.deepEqual(await bytesOf(await artifact.read("data/big.bin")), big);
    assert.deepEqual(await bytesOf(await artifact.read("data/big.bin")), big);
    const target = join(s.buildDir, "x");
    await artifact.extractTo(target);
    assert.equal(await readFile(join(target, "résumé.txt"), "utf8"), "accents");
    assert.deepEqual(new Uint8Array(await readFile(join(target, "data", "big.bin"))), big);
    await artifact.close?.();
  }
});

Deno.test("C6.7 a corrupt gzip member and unknown formats are ArtifactErrors", async () => {
  const gz = await bytesOf(gzipArchive([blobFile("a.txt", "aaaaaaaaaaaaaaaaaaaa")]));
  const corrupt = gz.slice();
  corrupt[corrupt.length - 6] ^= 0xff; // the CRC-32 in the trailer
  await using s = await setup(corrupt);
  const artifact = await s.download();
  assert.ok(artifact);
  await assert.rejects(artifact.entries(), ArtifactError);
  await artifact.close?.();

  const zstd = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]);
  await using z = await setup(zstd);
  await assert.rejects(
    z.download(),
    (err) => err instanceof ArtifactError && /tar\.zst/.test(err.message),
  );
  assert.equal(z.mock.requestCount("download"), 1);

  await using html = await setup(encoder.encode("<html>login</html>"));
  await assert.rejects(html.download(), ArtifactError);
});

// ------------------------------------------------------------------ extraction attacks

async function attack(entries: RawEntry[], message: RegExp) {
  await using s = await setup(await buildZip(entries));
  const artifact = await s.download();
  assert.ok(artifact);
  const target = join(s.buildDir, "deep", "target");
  await assert.rejects(
    artifact.extractTo(target),
    (err) => err instanceof ArtifactError && message.test(err.message),
  );
  // Every entry is checked before anything is written: nothing at all was created.
  assert.deepEqual(await readdir(s.buildDir), []);
  await artifact.close?.();
}

Deno.test("C6.8 extraction rejects ../ entries before writing anything", async () => {
  await attack([
    { name: "ok.txt", text: "fine" },
    { name: "../../evil.sh", text: "rm -rf ~" },
  ], /escapes the target directory/);
});

Deno.test("C6.8 extraction rejects absolute entries", async () => {
  await attack([{ name: "/etc/cron.d/evil", text: "* * * * * root sh" }], /absolute/);
  await attack([{ name: "C:\\Windows\\evil", text: "x" }], /absolute/);
});

Deno.test("C6.8 extraction rejects links pointing out of the target", async () => {
  await attack([{ name: "link", text: "../../../outside", unixMode: 0o120777 }], /escapes/);
  await attack([{ name: "abs", text: "/etc/passwd", unixMode: 0o120777 }], /absolute target/);
});

Deno.test("C6.8 extraction never writes through a link", async () => {
  // A link inside the target, then a file below it.
  await attack([
    { name: "d", text: "sub", unixMode: 0o120777 },
    { name: "d/x", text: "through the link" },
  ], /through the symbolic link d/);
  // A link whose target goes through another link (lexically inside, really outside).
  await attack([
    { name: "a/", directory: true },
    { name: "a/up", text: "..", unixMode: 0o120777 },
    { name: "esc", text: "a/up/../outside", unixMode: 0o120777 },
  ], /goes through another symbolic link/);
});

Deno.test("C6.8 extraction refuses a link already in the target directory", async () => {
  const { symlink, mkdir } = await import("node:fs/promises");
  await using s = await setup(await buildZip([{ name: "d/x", text: "payload" }]));
  const artifact = await s.download();
  assert.ok(artifact);
  const target = join(s.buildDir, "target");
  const outside = join(s.buildDir, "outside");
  await mkdir(target);
  await mkdir(outside);
  await symlink(outside, join(target, "d"));
  await assert.rejects(artifact.extractTo(target), /through a symbolic link/);
  assert.deepEqual(await readdir(outside), []);
  await artifact.close?.();
});

Deno.test("C6.7 over HTTP with the platform's fetch the download streams to disk", async () => {
  const big = random(400_000, 17);
  const archive = await zipOf([blobFile("big.bin", big)], 0);
  const mock = new GitLabMock();
  const build = mock.job().name("build").state("success").artifactsFile(archive).enqueue();
  mock.job().name("test").dependency(build).enqueue();
  await using server = await mock.listen();
  const client = new Client(server.url);
  const taken = await client.requestJob(mock.runnerToken, { info: { features: FEATURES } });
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  const buildDir = await mkdtemp(join(tmpdir(), "dl-http-"));
  try {
    const [dependency] = createDependencies({
      client,
      dependencies: taken.job.payload.dependencies,
      buildDir,
      clock: new FakeClock(),
    });
    const artifact = await dependency.download();
    assert.ok(artifact);
    assert.equal(
      (await stat(`${buildDir}.tmp/artifact-${build.id}.download`)).size,
      archive.length,
    );
    assert.deepEqual(await bytesOf(await artifact.read("big.bin")), big);
    await artifact.close?.();
  } finally {
    await rm(buildDir, { recursive: true, force: true });
    await rm(`${buildDir}.tmp`, { recursive: true, force: true });
  }
});
