// Run by tests (and bench/extract.ts) in a process of its own, because RSS is process-wide:
// downloads the zip at ZIP_PATH as a dependency's artifact (from an in-process GitLab mock set
// up before the measurement starts) and then lists it (`list`), extracts it (`extract`) or reads
// every file entry through `read()` (`read`), printing one JSON line: {"growth": peak RSS growth
// in bytes, "ms": time of the download and the listing, extraction or reads, "files": entries
// listed, written or read, "bytes": bytes read, "cpu": {"user", "system"} CPU time of the process
// over the same span, in ms}.
//
//   deno run -A --v8-flags=--expose-gc tests/_artifact_memory_child.ts list|extract|read ZIP DIR
import process from "node:process";
import { peakRssGrowth } from "./_peak_rss.ts";
import { Client } from "../src/api/client.ts";
import { systemClock } from "../src/clock.ts";
import { createDependencies } from "../src/artifacts/download.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { hostileZip, manyEntries } from "./_zip.ts";

const [mode, zipPath, dir] = Deno.args;

/**
 * A GitLab mock serving `zip` as the artifact of a dependency, and the job that depends on it,
 * taken: set up before the measurement (the mock is not what is measured).
 */
async function setUp(zip: Uint8Array) {
  const mock = new GitLabMock();
  const build = mock.job().name("build").state("success").artifactsFile(zip).enqueue();
  mock.job().name("test").dependency(build).enqueue();
  const client = new Client(mock.url, { fetch: mock.fetch });
  const taken = await client.requestJob(mock.runnerToken);
  if (taken.type !== "job" || !taken.job.ok) throw new Error("no job");
  return { client, dependencies: taken.job.payload.dependencies };
}

async function dependencyArtifact(job: Awaited<ReturnType<typeof setUp>>, buildDir: string) {
  const [dependency] = createDependencies({ ...job, buildDir, clock: systemClock });
  const artifact = await dependency.download();
  if (!artifact) throw new Error("no artifact");
  return artifact;
}

async function work(
  job: Awaited<ReturnType<typeof setUp>>,
  target: string,
): Promise<{ files: number; bytes: number }> {
  await Deno.mkdir(target, { recursive: true });
  const artifact = await dependencyArtifact(job, target);
  try {
    if (mode === "list") return { files: (await artifact.entries()).length, bytes: 0 };
    if (mode === "extract") {
      const written = await artifact.extractTo(`${target}/out`);
      return { files: written.length, bytes: 0 };
    }
    let files = 0;
    let bytes = 0;
    for (const entry of await artifact.entries()) {
      if (entry.isDirectory || entry.isSymlink) continue;
      for await (const chunk of await artifact.read(entry.path)) {
        bytes += chunk.length;
        // Every chunk read() hands out is garbage once counted; V8 collects external memory only
        // after ~64 MB of it, so without this the figure measures V8's heuristic, not what the
        // reader holds (C10.1 is about the latter). Reads still allocate per chunk: see the note.
        if (bytes % (16 * 1024 * 1024) < chunk.length) (globalThis as { gc?: () => void }).gc?.();
      }
      files++;
    }
    return { files, bytes };
  } finally {
    await artifact.close?.();
  }
}

// Warm up every code path with a small archive first.
await work(
  await setUp(await hostileZip([...manyEntries(20), { name: "z.bin", zeros: 1 << 20 }])),
  `${dir}/warm`,
);
await Deno.remove(`${dir}/warm`, { recursive: true });
const job = await setUp(await Deno.readFile(zipPath));
const { result, growth } = await peakRssGrowth(async () => {
  const start = performance.now();
  const cpu = process.cpuUsage();
  const outcome = await work(job, `${dir}/run`);
  const { user, system } = process.cpuUsage(cpu);
  return {
    ms: performance.now() - start,
    cpu: { user: user / 1000, system: system / 1000 },
    outcome,
  };
});
console.log(JSON.stringify({ growth, ms: result.ms, cpu: result.cpu, ...result.outcome }));
