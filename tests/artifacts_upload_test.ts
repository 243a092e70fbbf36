import { Buffer } from "node:buffer";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import zlib from "node:zlib";
import { assert, FakeClock } from "./_deps.ts";
import { Client } from "../src/api/client.ts";
import type { JobPayload } from "../src/api/payload.ts";
import { ApiError } from "../src/errors.ts";
import { ArtifactError } from "../src/artifacts/errors.ts";
import { filesUnder, readFileStream, type UploadableFile } from "../src/artifacts/files.ts";
import { ZipArtifact } from "../src/artifacts/reader.ts";
import {
  uploadArtifacts,
  type UploadArtifactsOptions,
  type UploadArtifactsResult,
} from "../src/artifacts/upload.ts";
import {
  GitLabMock,
  type MockArtifactSpec,
  type MockJob,
  type MockOptions,
} from "../src/mock/mod.ts";
import { random } from "./_data.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const FEATURES = { upload_multiple_artifacts: true, artifacts_exclude: true };

/** A file offered by the handler; counts how often it was opened. */
interface TestFile extends UploadableFile {
  opened: number;
}

function file(path: string, content: string | Uint8Array, extra: Partial<UploadableFile> = {}) {
  const data = typeof content === "string" ? encoder.encode(content) : content;
  const f: TestFile = {
    path,
    opened: 0,
    open: () => {
      f.opened++;
      return new Blob([data as Uint8Array<ArrayBuffer>]).stream();
    },
    size: data.length,
    ...extra,
  };
  return f;
}

interface Setup {
  mock: GitLabMock;
  clock: FakeClock;
  client: Client;
  job: MockJob;
  payload: JobPayload;
  lines: string[];
  upload(options: Partial<UploadArtifactsOptions>): Promise<UploadArtifactsResult>;
}

async function setup(
  artifacts: MockArtifactSpec[],
  options: { mock?: MockOptions; fetch?: (mock: GitLabMock) => typeof fetch } = {},
): Promise<Setup> {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, ...options.mock });
  let builder = mock.job();
  for (const a of artifacts) builder = builder.artifact(a);
  const job = builder.enqueue();
  // One attempt per call: the counts below are the uploader's own tries. No response deadlines
  // within the run (these tests are not about them, tests/liveness_test.ts is): `runUntil` jumps
  // the fake clock to the next timer while real work (deflating) runs, which on a loaded machine
  // could reach a 10-minute header deadline.
  const client = new Client(mock.url, {
    fetch: options.fetch?.(mock) ?? mock.fetch,
    clock,
    maxAttempts: 1,
    headerTimeoutMs: 48 * 3600_000,
    idleTimeoutMs: 48 * 3600_000,
  });
  const taken = await client.requestJob(mock.runnerToken, { info: { features: FEATURES } });
  if (taken.type !== "job" || !taken.job.ok) throw new Error("The mock did not hand out the job");
  const payload = taken.job.payload;
  const lines: string[] = [];
  return {
    mock,
    clock,
    client,
    job,
    payload,
    lines,
    async upload(overrides) {
      const running = uploadArtifacts({
        client,
        jobId: payload.id,
        token: payload.token,
        specs: payload.artifacts,
        files: () => [],
        scriptFailed: false,
        log: (line) => lines.push(line),
        clock,
        ...overrides,
      });
      let done = false;
      running.then(() => (done = true), () => (done = true));
      await clock.runUntil(() => done, 3600_000);
      const result = await running;
      for (const line of lines) assert.ok(!line.includes(payload.token), `token in log: ${line}`);
      return result;
    },
  };
}

async function zipEntries(data: Uint8Array) {
  const artifact = new ZipArtifact(data);
  const entries = await artifact.entries();
  const texts = new Map<string, string>();
  for (const e of entries) {
    if (!e.isDirectory) texts.set(e.path, decoder.decode(await artifact.bytes(e.path)));
  }
  await artifact.close();
  return { entries, texts };
}

/** The members of a multi-member gzip: [FNAME, FCOMMENT, content]. */
function gzipMembers(data: Uint8Array): [string, string, string][] {
  const out: [string, string, string][] = [];
  let offset = 0;
  while (offset < data.length) {
    assert.deepEqual([...data.subarray(offset, offset + 3)], [0x1f, 0x8b, 8]);
    const flags = data[offset + 3];
    let i = offset + 10;
    const cstr = () => {
      const end = data.indexOf(0, i);
      const s = decoder.decode(data.subarray(i, end));
      i = end + 1;
      return s;
    };
    const name = flags & 0x08 ? cstr() : "";
    const comment = flags & 0x10 ? cstr() : "";
    const result = zlib.inflateRawSync(Buffer.from(data.subarray(i)), {
      info: true,
    }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    out.push([name, comment, decoder.decode(result.buffer)]);
    offset = i + result.engine.bytesWritten + 8;
  }
  return out;
}

// ------------------------------------------------------------------ formats

Deno.test("C6.4 zip: the uploaded archive holds every matched file, entry by entry", async () => {
  const s = await setup([{ paths: ["out/"] }]);
  const text = "hello world\n".repeat(2000);
  const bin = random(10_000);
  const mtime = new Date("2025-06-01T12:00:00Z");
  const files = [
    file("out/app.sh", "#!/bin/sh\necho hi\n", { mode: 0o100755, mtime }),
    file("./out//docs/readme.txt", text, { mode: 0o100644 }),
    file("out/data.bin", bin),
    file("src/main.c", "int main;"),
    file("README", "top"),
  ];
  const result = await s.upload({ files: () => files });
  assert.equal(result.ok, true);
  assert.equal(s.job.artifacts.length, 1);
  const uploaded = s.job.artifacts[0];
  assert.equal(uploaded.filename, "default.zip");
  assert.equal(uploaded.type, "archive");
  assert.equal(uploaded.format, "zip");
  const artifact = new ZipArtifact(uploaded.data);
  const entries = await artifact.entries();
  assert.deepEqual(entries.map((e) => e.path), [
    "out/app.sh",
    "out/data.bin",
    "out/docs/readme.txt",
  ]);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  assert.equal(decoder.decode(await artifact.bytes("out/app.sh")), "#!/bin/sh\necho hi\n");
  assert.deepEqual(await artifact.bytes("out/data.bin"), bin);
  assert.equal(decoder.decode(await artifact.bytes("out/docs/readme.txt")), text);
  assert.equal(byPath.get("out/app.sh")!.mode, 0o755);
  assert.equal(byPath.get("out/docs/readme.txt")!.mode, 0o644);
  assert.equal(byPath.get("out/app.sh")!.mtime.getTime(), mtime.getTime());
  // Real compression: the text shrinks a lot.
  const readme = byPath.get("out/docs/readme.txt")!;
  assert.ok(readme.compressedSize < readme.size / 10, `${readme.compressedSize} of ${readme.size}`);
  await artifact.close();
  // Only matched files were opened, each once.
  assert.deepEqual(files.map((f) => f.opened), [1, 1, 1, 0, 0]);
  assert.deepEqual(result.uploaded, [{
    name: "archive",
    filename: "default.zip",
    type: "archive",
    format: "zip",
    files: 3,
    bytes: uploaded.data.length,
    tries: 1,
  }]);
  assert.deepEqual(s.lines, [
    "Uploading artifacts...",
    "out: found 3 matching artifact files and directories",
    `Uploading artifacts as "archive" to coordinator... 201 Created  id=${s.job.id} ` +
    `responseStatus=201 Created files=3 bytes=${uploaded.data.length}`,
  ]);
});

Deno.test("C6.4 zip: ARTIFACT_COMPRESSION_LEVEL fastest stores, slowest deflates", async () => {
  const text = "compress me please ".repeat(5000);
  const sizes: number[] = [];
  for (const level of ["fastest", "slowest"]) {
    const s = await setup([{ paths: ["a.txt"] }]);
    const result = await s.upload({
      files: () => [file("a.txt", text)],
      variables: new Map([["ARTIFACT_COMPRESSION_LEVEL", level]]),
    });
    assert.equal(result.ok, true, `${level}: ${s.lines.join("\n")}`);
    const [entry] = await new ZipArtifact(s.job.artifacts[0].data).entries();
    assert.equal(entry.size, text.length);
    sizes.push(entry.compressedSize);
  }
  assert.equal(sizes[0], text.length, "fastest stores the data");
  assert.ok(sizes[1] < text.length / 20, `slowest deflates: ${sizes[1]}`);
});

Deno.test("C6.4 gzip: a report is one gzip member per file, concatenated", async () => {
  const s = await setup([{ artifactType: "junit", paths: ["reports/*.xml"] }]);
  const result = await s.upload({
    files: () => [
      file("reports/b.xml", "<b/>"),
      file("reports/a.xml", "<a/>"),
      file("reports/notes.txt", "no"),
    ],
  });
  assert.equal(result.ok, true);
  const uploaded = s.job.artifacts[0];
  assert.equal(uploaded.type, "junit");
  assert.equal(uploaded.format, "gzip");
  assert.equal(uploaded.filename, "junit.xml.gz.gz"); // GitLab's default name + ".gz", as upstream
  assert.deepEqual(gzipMembers(uploaded.data), [
    ["a.xml", "reports/a.xml", "<a/>"],
    ["b.xml", "reports/b.xml", "<b/>"],
  ]);
  // Any gunzip reads it as the concatenation.
  assert.equal(decoder.decode(zlib.gunzipSync(Buffer.from(uploaded.data))), "<a/><b/>");
});

Deno.test("C6.4 raw: exactly one file's bytes; several fail with no request", async () => {
  const one = await setup([{ artifactType: "sast", paths: ["gl-sast-report.json"] }]);
  const ok = await one.upload({ files: () => [file("gl-sast-report.json", '{"v":1}')] });
  assert.equal(ok.ok, true);
  assert.equal(one.job.artifacts[0].format, "raw");
  assert.equal(one.job.artifacts[0].filename, "gl-sast-report.json");
  assert.equal(decoder.decode(one.job.artifacts[0].data), '{"v":1}');

  const two = await setup([{ artifactType: "sast", paths: ["*.json"] }]);
  const files = [file("a.json", "{}"), file("b.json", "{}")];
  const failed = await two.upload({ files: () => files });
  assert.equal(failed.ok, false);
  assert.equal(two.mock.requestCount("upload"), 0);
  assert.ok(failed.failures[0].error instanceof ArtifactError);
  assert.match(
    failed.failures[0].error.message,
    /Only one file can be sent as raw artifact, got 2/,
  );
  assert.deepEqual(files.map((f) => f.opened), [0, 0]);
  assert.match(two.lines.at(-1)!, /^FATAL: Only one file can be sent as raw artifact/);
});

// ------------------------------------------------------------------ request shape

Deno.test("C6.3 one multipart part named file, parameters in the query string, JOB-TOKEN", async () => {
  const bodies: string[] = [];
  const s = await setup([{ name: "my/bin", paths: ["out/"], expireIn: "1 week" }], {
    fetch: (mock) => async (input, init) => {
      const request = new Request(input, init);
      if (request.method === "POST" && request.url.includes("/artifacts")) {
        bodies.push(await request.clone().text());
      }
      return mock.fetch(request);
    },
  });
  const result = await s.upload({ files: () => [file("out/x", "x")] });
  assert.equal(result.ok, true);
  const [request] = s.mock.requests.filter((r) => r.route === "upload");
  const url = new URL(request.url);
  assert.equal(url.searchParams.get("artifact_format"), "zip");
  assert.equal(url.searchParams.get("artifact_type"), "archive");
  assert.equal(url.searchParams.get("expire_in"), "1 week");
  assert.equal(url.searchParams.get("token"), null);
  assert.equal(request.headers.get("job-token"), s.payload.token);
  assert.match(request.headers.get("content-type")!, /^multipart\/form-data; boundary=/);
  const artifact = s.job.artifacts[0];
  assert.deepEqual(artifact.paramsFrom, { type: "query", format: "query" });
  assert.equal(artifact.filename, "bin.zip");
  assert.equal(artifact.expireIn, "1 week");
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].match(/Content-Disposition/gi)?.length, 1);
  assert.match(bodies[0], /Content-Disposition: form-data; name="file"; filename="bin.zip"/);
});

// ------------------------------------------------------------------ decisions

Deno.test("C6.2 when on_success, on_failure and always follow the script result", async () => {
  const specs: MockArtifactSpec[] = [
    { name: "ok", paths: ["f"], when: "on_success" },
    { name: "bad", artifactType: "junit", paths: ["f"], when: "on_failure" },
    { name: "any", artifactType: "dotenv", paths: ["f"], when: "always" },
  ];
  for (const scriptFailed of [false, true]) {
    const s = await setup(specs);
    const result = await s.upload({ files: () => [file("f", "data")], scriptFailed });
    assert.equal(result.ok, true);
    assert.deepEqual(
      result.uploaded.map((u) => u.name),
      scriptFailed ? ["bad", "any"] : ["ok", "any"],
    );
    assert.deepEqual(
      s.job.artifacts.map((a) => a.type),
      scriptFailed ? ["junit", "dotenv"] : ["archive", "dotenv"],
    );
  }
});

Deno.test("C6.1 exclude removes matches; $VAR and ${VAR} expand in name, paths and exclude", async () => {
  const s = await setup([{ name: "$NAME-bin", paths: ["${OUT}/"], exclude: ["$OUT/**/*.log"] }]);
  const result = await s.upload({
    files: () => [
      file("out/app", "a"),
      file("out/app.log", "l"),
      file("out/sub/x.log", "l"),
      file("out/sub/keep", "k"),
      file("other.log", "o"),
    ],
    variables: (key) => ({ NAME: "build", OUT: "out" } as Record<string, string>)[key],
  });
  assert.equal(result.ok, true);
  assert.equal(s.job.artifacts[0].filename, "build-bin.zip");
  const { entries } = await zipEntries(s.job.artifacts[0].data);
  assert.deepEqual(entries.map((e) => e.path), ["out/app", "out/sub/keep"]);
  assert.ok(s.lines.includes("out: found 2 matching artifact files and directories"));
  assert.ok(s.lines.includes("out/**/*.log: excluded 2 files"));
});

Deno.test("C6.1 untracked adds every offered file, minus exclude", async () => {
  const s = await setup([{ untracked: true, paths: null, exclude: ["*.tmp"] }]);
  const result = await s.upload({
    files: () => [file("a", "1"), file("b.tmp", "2"), file("d/c", "3")],
  });
  assert.equal(result.ok, true);
  const { entries } = await zipEntries(s.job.artifacts[0].data);
  assert.deepEqual(entries.map((e) => e.path), ["a", "d/c"]);
  assert.ok(s.lines.includes("untracked: found 2 files"));
});

Deno.test("C6.5 nothing matched: no request, warnings in the log", async () => {
  const s = await setup([{ paths: ["nope/", "*.zip"] }]);
  const result = await s.upload({ files: () => [file("a.txt", "a")], projectDir: "/builds/p" });
  assert.equal(result.ok, true);
  assert.deepEqual(result.uploaded, []);
  assert.equal(s.mock.requestCount("upload"), 0);
  assert.deepEqual(s.lines, [
    "Uploading artifacts...",
    "WARNING: nope: no matching files. Ensure that the artifact path is relative to the working " +
    "directory (/builds/p)",
    "WARNING: *.zip: no matching files. Ensure that the artifact path is relative to the " +
    "working directory (/builds/p)",
    "ERROR: No files to upload",
  ]);
});

Deno.test("C6.5 an entry with neither paths nor untracked is skipped silently", async () => {
  const s = await setup([{ paths: [] }]);
  const result = await s.upload({ files: () => [file("a", "a")] });
  assert.equal(result.ok, true);
  assert.deepEqual(s.lines, []);
  assert.equal(s.mock.requestCount("upload"), 0);
});

// ------------------------------------------------------------------ retries

Deno.test("C6.5 503 is tried six times with the official 1 s→5 s backoff", async () => {
  const s = await setup([{ paths: ["f"] }]);
  s.mock.fault({ route: "upload", status: 503, times: Infinity });
  const f = file("f", "data");
  const start = s.clock.now();
  const result = await s.upload({ files: () => [f] });
  assert.equal(result.ok, false);
  assert.equal(s.mock.requestCount("upload"), 6);
  assert.equal(f.opened, 6);
  assert.equal(s.clock.now() - start, (1 + 2 + 4 + 5 + 5) * 1000);
  assert.equal(result.failureReason, "script_failure");
  assert.equal(result.exitCode, 1);
  assert.ok(result.failures[0].error instanceof ApiError);
  assert.equal((result.failures[0].error as ApiError).status, 503);
  assert.equal(s.lines.filter((l) => l.startsWith("WARNING: Retrying...")).length, 5);
  assert.ok(
    s.lines.includes(
      `ERROR: Uploading artifacts as "archive" to coordinator... service unavailable  ` +
        `id=${s.job.id} responseStatus=503 Service Unavailable status=503`,
    ),
  );
  assert.match(s.lines.at(-1)!, /^FATAL: GitLab answered 503/);
});

Deno.test("C6.5 500 and lost connections are tried three times", async () => {
  const s = await setup([{ paths: ["f"] }]);
  s.mock.fault({ route: "upload", status: 500, times: Infinity });
  const start = s.clock.now();
  const result = await s.upload({ files: () => [file("f", "data")] });
  assert.equal(result.ok, false);
  assert.equal(s.mock.requestCount("upload"), 3);
  assert.equal(s.clock.now() - start, 3000);

  const d = await setup([{ paths: ["f"] }]);
  d.mock.fault({ route: "upload", drop: true, times: Infinity });
  const dropped = await d.upload({ files: () => [file("f", "data")] });
  assert.equal(dropped.ok, false);
  assert.equal(d.mock.requestCount("upload"), 3);
  assert.equal(dropped.failures[0].error.name, "RequestError");
});

Deno.test("C6.5 403 and 413 are not retried", async () => {
  const forbidden = await setup([{ paths: ["f"] }]);
  forbidden.mock.fault({ route: "upload", status: 403, times: Infinity });
  const r1 = await forbidden.upload({ files: () => [file("f", "data")] });
  assert.equal(r1.ok, false);
  assert.equal(forbidden.mock.requestCount("upload"), 1);
  assert.ok(
    forbidden.lines.some((l) =>
      l.startsWith('ERROR: Uploading artifacts as "archive" to coordinator... forbidden')
    ),
  );

  const large = await setup([{ paths: ["f"] }], { mock: { maxArtifactSize: 100 } });
  const r2 = await large.upload({ files: () => [file("f", random(5000))] });
  assert.equal(r2.ok, false);
  assert.equal(large.mock.requestCount("upload"), 1);
  assert.equal((r2.failures[0].error as ApiError).status, 413);
  assert.ok(
    large.lines.some((l) =>
      l.startsWith('WARNING: Uploading artifacts as "archive" to coordinator... too large archive')
    ),
  );
  assert.ok(!large.lines.some((l) => l.startsWith("WARNING: Retrying")));
});

Deno.test("C6.5 a 503 then a success: uploaded on the third try", async () => {
  const s = await setup([{ paths: ["f"] }]);
  s.mock.fault({ route: "upload", status: 503, times: 2 });
  const result = await s.upload({ files: () => [file("f", "data")] });
  assert.equal(result.ok, true);
  assert.equal(result.uploaded[0].tries, 3);
  assert.equal(s.job.artifacts.length, 1);
});

Deno.test("C6.5 a connection dropped mid-upload is retried with a fresh archive stream", async () => {
  let cut = 0;
  const s = await setup([{ paths: ["out/"] }], {
    fetch: (mock) => async (input, init) => {
      const request = new Request(input, init);
      if (request.method === "POST" && request.url.includes("/artifacts") && cut === 0) {
        cut++;
        // Read part of the body, then lose the connection.
        const reader = request.body!.getReader();
        let read = 0;
        while (read < 20_000) {
          const { value, done } = await reader.read();
          if (done) break;
          read += value.length;
        }
        await reader.cancel();
        throw new TypeError("connection reset by peer");
      }
      return mock.fetch(request);
    },
  });
  const big = random(200_000, 7);
  const files = [file("out/big.bin", big), file("out/small.txt", "small")];
  const result = await s.upload({ files: () => files });
  assert.equal(result.ok, true);
  assert.equal(cut, 1);
  assert.equal(result.uploaded[0].tries, 2);
  assert.deepEqual(files.map((f) => f.opened), [2, 2]);
  const artifact = new ZipArtifact(s.job.artifacts[0].data);
  assert.deepEqual(await artifact.bytes("out/big.bin"), big);
  assert.equal(decoder.decode(await artifact.bytes("out/small.txt")), "small");
  await artifact.close();
  assert.ok(s.lines.some((l) => l.startsWith("WARNING: Retrying...  error=Request POST")));
});

Deno.test("C6.5 a file that cannot be read fails the artifact without retries", async () => {
  const s = await setup([{ paths: ["f"] }]);
  const result = await s.upload({
    files: () => [{
      path: "f",
      open: () =>
        new ReadableStream<Uint8Array>({
          pull: (c) => c.error(new Error("disk on fire")),
        }),
    }],
  });
  assert.equal(result.ok, false);
  assert.equal(s.mock.requestCount("upload"), 1);
  assert.ok(result.failures[0].error instanceof ArtifactError);
  assert.match(result.failures[0].error.message, /disk on fire/);
});

Deno.test("C6.2 several entries are separate uploads; the first failure stops the rest", async () => {
  const specs: MockArtifactSpec[] = [
    { name: "first", paths: ["a"] },
    { name: "second", artifactType: "junit", paths: ["a"] },
    { name: "third", artifactType: "dotenv", paths: ["a"] },
  ];
  const s = await setup(specs);
  const result = await s.upload({ files: () => [file("a", "a")] });
  assert.equal(result.ok, true);
  assert.equal(s.mock.requestCount("upload"), 3);
  assert.deepEqual(s.job.artifacts.map((a) => a.filename), ["first.zip", "second.gz", "third.gz"]);

  const f = await setup(specs);
  f.mock.fault({ route: "upload", status: 403 });
  const failed = await f.upload({ files: () => [file("a", "a")] });
  assert.equal(failed.ok, false);
  assert.equal(f.mock.requestCount("upload"), 1);
  assert.deepEqual(failed.failures.map((x) => x.name), ["first"]);
  assert.deepEqual(failed.uploaded, []);
});

Deno.test("C6.5 aborting rejects with the signal's reason", async () => {
  const s = await setup([{ paths: ["f"] }]);
  s.mock.fault({ route: "upload", status: 503, times: Infinity });
  const controller = new AbortController();
  const running = uploadArtifacts({
    client: s.client,
    jobId: s.payload.id,
    token: s.payload.token,
    specs: s.payload.artifacts,
    files: () => [file("f", "x")],
    scriptFailed: false,
    log: () => {},
    clock: s.clock,
    signal: controller.signal,
  });
  await s.mock.waitFor(() => s.mock.requestCount("upload") === 1);
  await s.clock.advance(0);
  controller.abort(new Error("job canceled"));
  await assert.rejects(running, /job canceled/);
});

// ------------------------------------------------------------------ streaming

Deno.test("C6.6 the archive is read only as fast as the request body is sent", async () => {
  const size = 24 * 1024 * 1024;
  const chunk = random(64 * 1024, 3);
  let produced = 0;
  let consumed = 0;
  let maxAhead = 0;
  const generated: UploadableFile = {
    path: "big.bin",
    open: () => {
      produced = 0;
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (produced >= size) return controller.close();
          produced += chunk.length;
          maxAhead = Math.max(maxAhead, produced - consumed);
          controller.enqueue(chunk.slice());
        },
      }, { highWaterMark: 0 });
    },
  };
  const s = await setup([{ paths: ["big.bin"] }], {
    fetch: (mock) => async (input, init) => {
      const request = new Request(input, init);
      if (!(request.method === "POST" && request.url.includes("/artifacts"))) {
        return mock.fetch(request);
      }
      // A slow server that drains the body and keeps nothing.
      for await (const part of request.body!) {
        consumed += part.length;
        await new Promise((r) => setTimeout(r, 0));
      }
      return new Response("201", { status: 201 });
    },
  });
  // Stored (level 0), so that body bytes and source bytes compare one to one.
  const result = await s.upload({
    files: () => [generated],
    variables: new Map([["ARTIFACT_COMPRESSION_LEVEL", "fastest"]]),
  });
  assert.equal(result.ok, true);
  assert.equal(produced, size);
  assert.ok(consumed > size, `the body carried the whole archive: ${consumed}`);
  assert.ok(maxAhead < 4 * 1024 * 1024, `the source ran ${maxAhead} bytes ahead of the body`);
});

// ------------------------------------------------------------------ files

Deno.test("C6.4 filesUnder offers files and links of a directory; zip keeps the links", async () => {
  const dir = await mkdtemp(join(tmpdir(), "files-under-"));
  try {
    await mkdir(join(dir, "out", "lib"), { recursive: true });
    await writeFile(join(dir, "out", "lib", "libx.so.1"), "elf");
    await symlink("libx.so.1", join(dir, "out", "lib", "libx.so"));
    await writeFile(join(dir, "out", "run.sh"), "#!/bin/sh\n", { mode: 0o755 });
    await writeFile(join(dir, "b.txt"), "b");
    await symlink("out", join(dir, "out-link"));
    const listed: UploadableFile[] = [];
    for await (const f of filesUnder(dir)) listed.push(f);
    assert.deepEqual(listed.map((f) => f.path), [
      "b.txt",
      "out/lib/libx.so",
      "out/lib/libx.so.1",
      "out/run.sh",
      "out-link",
    ]);
    const link = listed.find((f) => f.path === "out/lib/libx.so")!;
    assert.equal(link.mode! & 0o170000, 0o120000);
    assert.equal(await new Response(await link.open()).text(), "libx.so.1");
    assert.equal(listed.find((f) => f.path === "out/run.sh")!.mode! & 0o777, 0o755);
    assert.equal(await new Response(readFileStream(join(dir, "b.txt"))).text(), "b");
    assert.equal(
      await new Response(readFileStream(join(dir, "out", "run.sh"), { start: 2, end: 5 })).text(),
      "/bi",
    );

    const s = await setup([{ paths: ["out/"] }, {
      artifactType: "junit",
      paths: ["out/lib/"],
    }]);
    const result = await s.upload({ files: () => filesUnder(dir) });
    assert.equal(result.ok, true);
    const zip = new ZipArtifact(s.job.artifacts[0].data);
    const entries = await zip.entries();
    assert.deepEqual(entries.map((e) => [e.path, e.isSymlink]), [
      ["out/lib/libx.so", true],
      ["out/lib/libx.so.1", false],
      ["out/run.sh", false],
    ]);
    assert.equal(decoder.decode(await zip.bytes("out/lib/libx.so")), "libx.so.1");
    assert.equal(entries[2].mode, 0o755);
    await zip.close();
    // gzip cannot hold links: left out with a warning.
    assert.deepEqual(gzipMembers(s.job.artifacts[1].data).map((m) => m[1]), ["out/lib/libx.so.1"]);
    assert.ok(s.lines.some((l) => l.startsWith("WARNING: out/lib/libx.so: symbolic links")));
  } finally {
    await rm(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ gitlab-runner-rs

Deno.test("C6.2 (RS multiple_upload) an archive and a junit report upload separately", async () => {
  const s = await setup([
    { paths: ["*"], when: "on_success", artifactType: "archive", artifactFormat: "zip" },
    {
      name: "junit",
      paths: ["test2"],
      when: "always",
      artifactType: "junit",
      artifactFormat: "gzip",
    },
  ]);
  const files = () => [
    file("test", "testdata"),
    file("./test2", "testdata2"),
    file("dir/test", "testdata-dir"),
  ];
  const result = await s.upload({ files });
  assert.equal(result.ok, true);
  let sawZip = false;
  let sawGzip = false;
  for (const artifact of s.job.artifacts) {
    if (artifact.filename === "default.zip") {
      sawZip = true;
      assert.equal(artifact.format, "zip");
      assert.equal(artifact.type, "archive");
      const { texts } = await zipEntries(artifact.data);
      assert.deepEqual(
        Object.fromEntries(texts),
        { "dir/test": "testdata-dir", test: "testdata", test2: "testdata2" },
      );
    } else if (artifact.filename === "junit.gz") {
      sawGzip = true;
      assert.equal(artifact.format, "gzip");
      assert.equal(artifact.type, "junit");
      assert.equal(decoder.decode(zlib.gunzipSync(Buffer.from(artifact.data))), "testdata2");
    } else {
      assert.fail(`unknown artifact ${artifact.filename}`);
    }
  }
  assert.ok(sawZip, "No zip file was uploaded");
  assert.ok(sawGzip, "No gzip file was uploaded");
});

Deno.test("C6.3 over HTTP with the platform's fetch the streamed upload arrives whole", async () => {
  const mock = new GitLabMock();
  const job = mock.job().artifact({ paths: ["out/"] }).enqueue();
  await using server = await mock.listen();
  const client = new Client(server.url);
  const taken = await client.requestJob(mock.runnerToken, { info: { features: FEATURES } });
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  const payload = taken.job.payload;
  const big = random(500_000, 13);
  const result = await uploadArtifacts({
    client,
    jobId: payload.id,
    token: payload.token,
    specs: payload.artifacts,
    files: () => [file("out/big.bin", big), file("out/a.txt", "a")],
    scriptFailed: false,
    log: () => {},
    clock: new FakeClock(),
  });
  assert.equal(result.ok, true);
  const artifact = new ZipArtifact(job.artifacts[0].data);
  assert.deepEqual(await artifact.bytes("out/big.bin"), big);
  assert.equal(decoder.decode(await artifact.bytes("out/a.txt")), "a");
  await artifact.close();
});
