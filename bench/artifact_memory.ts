/**
 * Peak memory of artifact transfers (C6.6): a 256 MiB artifact built from a generated stream is
 * uploaded through `uploadArtifacts` (zip, default deflate level, then stored), and a 256 MiB zip
 * is downloaded through `Dependency.download()` (to disk under the build directory) and its
 * entry read back through. The in-process GitLab mock answers everything else; the artifact
 * requests go to a `fetch` wrapper that drains and counts the upload body (the mock would keep
 * the whole upload in memory) and serves the download body from a generator.
 *
 * Each case runs in its own process; the peak RSS during the transfer (sampled every 5 ms, and
 * the kernel's VmHWM where available) is printed against the RSS of the same process just
 * before, after a 1 MiB warm-up transfer has loaded all code paths.
 *
 * Run: `deno run -A bench/artifact_memory.ts` (or with `upload-zip`, `upload-stored`,
 * `download` to run one case in this process). `ARTIFACT_BENCH_MIB=1024` changes the size: the
 * growth stays about the same (measured: +70 to +90 MiB for 64 MiB, 256 MiB and 1 GiB, most of
 * it garbage the collector has not reclaimed yet), i.e. it does not follow the artifact size.
 *
 * @module
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "../src/api/client.ts";
import { systemClock } from "../src/clock.ts";
import { zipArchive } from "../src/artifacts/archive.ts";
import { createDependencies } from "../src/artifacts/download.ts";
import type { UploadableFile } from "../src/artifacts/files.ts";
import { uploadArtifacts } from "../src/artifacts/upload.ts";
import { GitLabMock } from "../src/mock/mod.ts";

const MiB = 1024 * 1024;
const SIZE = Number(Deno.env.get("ARTIFACT_BENCH_MIB") ?? 256) * MiB;
const CHUNK = 64 * 1024;
const CASES = ["upload-zip", "upload-stored", "download"] as const;
type Case = typeof CASES[number];

/** 64 KiB of pseudo-random bytes, varied per chunk so that deflate has real work to do. */
function block(seed: number): Uint8Array {
  const out = new Uint8Array(CHUNK);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < CHUNK; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    // Half random, half text-like: compresses to about 60 %.
    out[i] = x & 0xff;
    out[i + 1] = (x >>> 8) & 0xff;
    out[i + 2] = 0x61 + ((x >>> 16) % 8);
    out[i + 3] = 0x20;
  }
  return out;
}

const BLOCKS = Array.from({ length: 16 }, (_, i) => block(i + 1));

/** A generated file of `size` bytes, produced only as fast as it is read. */
function generated(path: string, size: number): UploadableFile {
  return {
    path,
    size,
    open: () => {
      let produced = 0;
      let n = 0;
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (produced >= size) return controller.close();
          const chunk = BLOCKS[n++ % BLOCKS.length].slice(0, Math.min(CHUNK, size - produced));
          produced += chunk.length;
          controller.enqueue(chunk);
        },
      }, { highWaterMark: 0 });
    },
  };
}

function rss(): number {
  return Deno.memoryUsage().rss;
}

async function vmHwm(): Promise<number | undefined> {
  try {
    const status = await readFile("/proc/self/status", "utf8");
    const m = status.match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples RSS every 5 ms while `work` runs; returns the peak. */
async function peakDuring(work: () => Promise<void>): Promise<number> {
  let peak = rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, rss());
  }, 5);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rss());
}

async function uploadCase(size: number, level: string): Promise<number> {
  const mock = new GitLabMock();
  mock.job().artifact({ paths: ["big.bin"] }).enqueue();
  let received = 0;
  const drain: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    if (request.method !== "POST" || !request.url.includes("/artifacts")) {
      return mock.fetch(request);
    }
    for await (const part of request.body!) received += part.length;
    return new Response("201", { status: 201 });
  };
  const client = new Client(mock.url, { fetch: drain });
  const taken = await client.requestJob(mock.runnerToken);
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  const payload = taken.job.payload;
  const result = await uploadArtifacts({
    client,
    jobId: payload.id,
    token: payload.token,
    specs: payload.artifacts,
    files: () => [generated("big.bin", size)],
    scriptFailed: false,
    variables: new Map([["ARTIFACT_COMPRESSION_LEVEL", level]]),
    log: () => {},
    clock: systemClock,
  });
  if (!result.ok) throw result.failures[0].error;
  return received;
}

/** The size of the stored zip {@link downloadCase} serves (counted by making it once). */
async function zipSize(size: number): Promise<number> {
  let length = 0;
  for await (const chunk of zipArchive([generated("big.bin", size)], { level: 0 })) {
    length += chunk.length;
  }
  return length;
}

async function downloadCase(size: number): Promise<number> {
  const mock = new GitLabMock();
  // A placeholder archive gives the dependency an `artifacts_file`; the body comes from below.
  // Its stated size must be the real one: a download stops at the size GitLab states (C10.2).
  const stated = await zipSize(size);
  const build = mock.job().name("build").state("success").artifactsFile(new Uint8Array([1]))
    .enqueue();
  mock.job().name("test").dependency(build).payload((p) => ({
    ...p,
    dependencies: (p.dependencies as { artifacts_file?: Record<string, unknown> }[]).map((d) => ({
      ...d,
      artifacts_file: { ...d.artifacts_file, size: stated },
    })),
  })).enqueue();
  const serve: typeof fetch = (input, init) => {
    const request = new Request(input, init);
    if (request.method !== "GET" || !request.url.includes("/artifacts")) {
      return mock.fetch(request);
    }
    // Stored zip, so the body is as large as the data.
    const body = zipArchive([generated("big.bin", size)], { level: 0 });
    return Promise.resolve(new Response(body, { status: 200 }));
  };
  const client = new Client(mock.url, { fetch: serve });
  const taken = await client.requestJob(mock.runnerToken);
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  const buildDir = await mkdtemp(join(tmpdir(), "artifact-bench-"));
  try {
    const [dependency] = createDependencies({
      client,
      dependencies: taken.job.payload.dependencies,
      buildDir,
      clock: systemClock,
    });
    const artifact = await dependency.download();
    if (!artifact) throw new Error("no artifact");
    let read = 0;
    for await (const chunk of await artifact.read("big.bin")) read += chunk.length;
    await artifact.close?.();
    if (read !== size) throw new Error(`read ${read} of ${size} bytes`);
    return read;
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
}

function run(which: Case, size: number): Promise<number> {
  switch (which) {
    case "upload-zip":
      return uploadCase(size, "default");
    case "upload-stored":
      return uploadCase(size, "fastest");
    case "download":
      return downloadCase(size);
  }
}

const fmt = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

async function measure(which: Case): Promise<void> {
  await run(which, MiB); // warm-up: loads and compiles every code path
  (globalThis as { gc?: () => void }).gc?.();
  const baseline = rss();
  const start = performance.now();
  let moved = 0;
  const peak = await peakDuring(async () => {
    moved = await run(which, SIZE);
  });
  const seconds = (performance.now() - start) / 1000;
  const hwm = await vmHwm();
  console.log(
    `${which.padEnd(13)} ${fmt(SIZE)} artifact, ${fmt(moved)} on the wire, ${
      seconds.toFixed(1)
    } s | RSS before ${fmt(baseline)}, peak ${fmt(peak)} (+${fmt(peak - baseline)})${
      hwm === undefined ? "" : `, VmHWM ${fmt(hwm)} (+${fmt(hwm - baseline)})`
    }${peak - baseline < SIZE / 2 ? "" : " | NOT BOUNDED: grew by more than half the artifact"}`,
  );
}

if (import.meta.main) {
  const which = Deno.args[0] as Case | undefined;
  if (which !== undefined) {
    if (!CASES.includes(which)) throw new Error(`Unknown case ${which}: ${CASES.join(", ")}`);
    await measure(which);
  } else {
    for (const c of CASES) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--v8-flags=--expose-gc", new URL(import.meta.url).pathname, c],
        stdout: "inherit",
        stderr: "inherit",
      });
      const { code } = await child.output();
      if (code !== 0) Deno.exit(code);
    }
  }
}
