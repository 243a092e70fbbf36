// Artifacts in the job lifecycle: uploads after the steps, dependencies for the handler.
import { assert } from "./_deps.ts";
import { type Harness, harness, until } from "./_harness.ts";
import { type Job, type JobHandler, LIBRARY_FEATURES, ScriptFailure } from "../mod.ts";
import { zipArchive } from "../src/artifacts/archive.ts";
import { ZipArtifact } from "../src/artifacts/reader.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function runAll(h: Harness, factory: (job: Job) => JobHandler | Promise<JobHandler>) {
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(factory, 4, { signal: stop.signal });
  await until(
    h.clock,
    () =>
      h.mock.jobs.every((j) => !["pending", "running", "canceling"].includes(j.state)) &&
      runner.running === 0,
  );
  stop.abort();
  await done;
}

async function zipOf(files: Record<string, string>): Promise<Uint8Array> {
  const stream = zipArchive(
    Object.entries(files).map(([path, text]) => ({
      path,
      open: () => new Blob([text]).stream(),
    })),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("C1.3 the artifact features are announced", () => {
  for (
    const f of [
      "artifacts",
      "upload_multiple_artifacts",
      "upload_raw_artifacts",
      "artifacts_exclude",
    ]
  ) {
    assert.ok(LIBRARY_FEATURES.includes(f), f);
  }
});

Deno.test("C6.2 files the job wrote in its build dir are uploaded after the steps, per entry", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["make"])
    .artifact({ name: "bin", paths: ["out/"], exclude: ["out/*.tmp"], when: "on_success" })
    .artifact({
      name: "junit.xml",
      paths: ["reports/*.xml"],
      when: "always",
      artifactType: "junit",
      artifactFormat: "gzip",
    })
    .artifact({ name: "only-on-failure", paths: ["out/"], when: "on_failure" })
    .enqueue();
  await runAll(h, (j) => ({
    step: async () => {
      await Deno.mkdir(`${j.buildDir}/out/sub`, { recursive: true });
      await Deno.mkdir(`${j.buildDir}/reports`, { recursive: true });
      await Deno.writeTextFile(`${j.buildDir}/out/app`, "binary");
      await Deno.writeTextFile(`${j.buildDir}/out/sub/lib`, "library");
      await Deno.writeTextFile(`${j.buildDir}/out/x.tmp`, "scratch");
      await Deno.writeTextFile(`${j.buildDir}/reports/a.xml`, "<a/>");
      await Deno.writeTextFile(`${j.buildDir}/reports/b.xml`, "<b/>");
    },
  }));
  assert.equal(job.state, "success", job.logText);
  assert.deepEqual(job.artifacts.map((a) => [a.filename, a.type, a.format]), [
    ["bin.zip", "archive", "zip"],
    ["junit.xml.gz", "junit", "gzip"],
  ]);
  const zip = new ZipArtifact(job.artifacts[0].data);
  const entries = (await zip.entries()).filter((e) => !e.isDirectory).map((e) => e.path).sort();
  assert.deepEqual(entries, ["out/app", "out/sub/lib"]);
  assert.equal(dec.decode(await zip.bytes("out/sub/lib")), "library");
  assert.match(job.logText, /Uploading artifacts/);
});

Deno.test("C6.2 on_failure artifacts go up when the script failed; on_success ones do not", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["make"])
    .artifact({ name: "bin", paths: ["out/"], when: "on_success" })
    .artifact({ name: "logs", paths: ["logs/"], when: "on_failure" })
    .enqueue();
  await runAll(h, (j) => ({
    step: async () => {
      await Deno.mkdir(`${j.buildDir}/logs`, { recursive: true });
      await Deno.mkdir(`${j.buildDir}/out`, { recursive: true });
      await Deno.writeTextFile(`${j.buildDir}/out/app`, "binary");
      await Deno.writeTextFile(`${j.buildDir}/logs/build.log`, "error: …");
      throw new ScriptFailure(2);
    },
  }));
  assert.equal(job.state, "failed");
  assert.equal(job.exitCode, 2);
  assert.deepEqual(job.artifacts.map((a) => a.filename), ["logs.zip"]);
});

Deno.test("C6.2 the handler's uploadableFiles() replaces the build dir walk", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["x"])
    .artifact({
      name: "report",
      paths: ["report.txt"],
      artifactType: "dotenv",
      artifactFormat: "gzip",
    })
    .enqueue();
  await runAll(h, () => ({
    step: async () => {},
    uploadableFiles: () => [{ path: "report.txt", open: () => new Blob(["A=1\n"]).stream() }],
  }));
  assert.equal(job.state, "success", job.logText);
  assert.equal(job.artifacts.length, 1);
  assert.equal(job.artifacts[0].format, "gzip");
});

Deno.test("C6.5 a failed upload (403) fails the job with script_failure and a log line", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["x"]).artifact({ name: "bin", paths: ["a"] }).enqueue();
  h.mock.fault({ route: "upload", status: 403, times: Infinity });
  await runAll(h, () => ({
    step: async () => {},
    uploadableFiles: () => [{ path: "a", open: () => new Blob(["x"]).stream() }],
  }));
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "script_failure");
  assert.match(job.logText, /uploading artifacts failed/);
  assert.equal(h.mock.requestCount("upload"), 1);
});

Deno.test("C6.5 nothing matched: no request, a log line, the job still succeeds", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["x"]).artifact({ name: "bin", paths: ["nothing/"] }).enqueue();
  await runAll(h, () => ({ step: async () => {} }));
  assert.equal(job.state, "success");
  assert.equal(h.mock.requestCount("upload"), 0);
  assert.match(job.logText, /no matching files/);
});

Deno.test("C5.2 after a hard cancel no artifact is uploaded", async () => {
  await using h = await harness({ cancelResponse: "bare-forbidden" });
  const job = h.mock.job().script(["x"]).artifact({ name: "bin", paths: ["a"], when: "always" })
    .enqueue();
  const runner = await h.builder.features([]).build();
  let started = false;
  await runner.requestJob(() => ({
    step: (_s, _p, signal) => {
      started = true;
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason))
      );
    },
    uploadableFiles: () => [{ path: "a", open: () => new Blob(["x"]).stream() }],
  }));
  await until(h.clock, () => started);
  h.mock.cancel(job.id, { graceful: false });
  await until(h.clock, () => runner.running === 0);
  assert.equal(job.state, "canceled");
  assert.equal(h.mock.requestCount("upload"), 0);
});

Deno.test("C5.3 after a graceful cancel always/on_failure artifacts are uploaded", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["x"])
    .artifact({ name: "debug", paths: ["a"], when: "on_failure" })
    .artifact({ name: "bin", paths: ["a"], when: "on_success" })
    .enqueue();
  const runner = await h.builder.build();
  let started = false;
  await runner.requestJob(() => ({
    step: (_s, phase, signal) => {
      if (phase !== "script") return Promise.resolve();
      started = true;
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason))
      );
    },
    uploadableFiles: () => [{ path: "a", open: () => new Blob(["x"]).stream() }],
  }));
  await until(h.clock, () => started);
  h.mock.cancel(job.id);
  await until(h.clock, () => runner.running === 0);
  assert.equal(job.state, "canceled");
  assert.deepEqual(job.artifacts.map((a) => a.filename), ["debug.zip"]);
});

Deno.test("C6.7 the handler downloads a dependency's artifact and extracts it into the build dir", async () => {
  await using h = await harness({ downloadRedirect: true });
  const producer = h.mock.addJob({
    name: "build",
    state: "success",
    artifactsFile: await zipOf({ "out/app": "binary", "out/README": "read me" }),
  });
  const job = h.mock.job().name("test").dependency(producer).script(["./out/app"]).enqueue();
  let extracted: string[] = [];
  let content = "";
  await runAll(h, (j) => ({
    step: async () => {
      const [dep] = j.dependencies();
      assert.equal(dep.id, producer.id);
      assert.equal(dep.name, "build");
      const artifact = await dep.download();
      assert.ok(artifact);
      extracted = (await artifact.extractTo(j.buildDir)).sort();
      content = await Deno.readTextFile(`${j.buildDir}/out/app`);
    },
  }));
  assert.equal(job.state, "success", job.logText);
  assert.deepEqual(extracted.filter((p) => !p.endsWith("/")), ["out/README", "out/app"]);
  assert.equal(content, "binary");
  const object = h.mock.requests.find((r) => r.route === "object")!;
  assert.equal(object.headers.get("job-token"), null);
  void enc;
});

Deno.test("C6.1 C12.3 $CI_PROJECT_DIR in artifact paths and names is this runner's build dir, not the one GitLab describes", async () => {
  await using h = await harness();
  // The mock, like GitLab, sends CI_PROJECT_DIR=/builds/<project path> for its own layout.
  const job = h.mock.job().script(["make"])
    .artifact({ name: "bin-$CI_JOB_ID", paths: ["$CI_PROJECT_DIR/out/"], when: "on_success" })
    .enqueue();
  let buildDir = "";
  await runAll(h, (j) => ({
    step: async () => {
      buildDir = j.buildDir;
      await Deno.mkdir(`${j.buildDir}/out`, { recursive: true });
      await Deno.writeTextFile(`${j.buildDir}/out/app`, "binary");
    },
  }));
  assert.equal(job.state, "success", job.logText);
  assert.notEqual(buildDir, "/builds/mock/project");
  assert.deepEqual(job.artifacts.map((a) => a.filename), [`bin-${job.id}.zip`]);
  const zip = new ZipArtifact(job.artifacts[0].data);
  const entries = (await zip.entries()).filter((e) => !e.isDirectory).map((e) => e.path);
  assert.deepEqual(entries, ["out/app"]);
});
