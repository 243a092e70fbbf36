/**
 * Benchmark 4, artifacts: a job whose artifact is 512 MiB in 1024 files (pseudo-random words:
 * compressible, not trivially) is zipped and uploaded by the runner, with
 * `ARTIFACT_COMPRESSION_LEVEL=fast` (deflate level 1), to an upload sink in a process of its own
 * (`_sink_process.ts`, which drains and counts; the GitLab mock, in another process, answers the
 * rest of the job). The baseline is `zip -r -1` of the same files into a file, then
 * `curl -T` of that file to the same sink: what the official runner does (archive, then upload).
 * For reference, `zip -r -1 - … | curl -T -` (both at once, streamed) is timed too.
 *
 * Runs, each in a process of its own: `prepare DIR` (writes the files), `baseline DIR` (zip and
 * curl, with their peak RSS read from `/proc/<pid>/status`), `runner DIR` (the job; a 1 MiB
 * artifact job first warms the code up). The baseline and the runner run twice each, alternating,
 * and the faster run of each is compared. `zip` and `curl` come from Debian when missing.
 *
 * Run: `deno run -A bench/artifacts.ts` (everything).
 *
 * @module
 */
import { filesUnder, type Job, RunnerBuilder } from "../mod.ts";
import {
  cpuMs,
  emit,
  type Figure,
  isDriver,
  mb,
  MiB,
  MockProcess,
  mulberry32,
  PeakRss,
  runChild,
  SinkProcess,
  tempBuildDir,
  watchChildPeak,
} from "./_lib.ts";

const TOTAL = 512 * MiB;
const FILES = 1024;

/** 8 MiB of text made of 4096 pseudo-random words, in lines of 4 to 16 words. */
function wordPool(rnd: () => number): Uint8Array {
  const letters = "etaoinshrdlucmfwypvbgkjqxz";
  const words = Array.from({ length: 4096 }, () => {
    const n = 2 + Math.floor(rnd() * 9);
    let w = "";
    for (let i = 0; i < n; i++) w += letters[Math.floor(rnd() * rnd() * letters.length)];
    return w;
  });
  const lines: string[] = [];
  let size = 0;
  while (size < 8 * MiB) {
    const n = 4 + Math.floor(rnd() * 13);
    const line = Array.from({ length: n }, () => words[Math.floor(rnd() * words.length)]).join(
      " ",
    );
    lines.push(line);
    size += line.length + 1;
  }
  return new TextEncoder().encode(lines.join("\n"));
}

async function prepare(dir: string): Promise<void> {
  const rnd = mulberry32(4);
  const pool = wordPool(rnd);
  await Deno.mkdir(`${dir}/warm`, { recursive: true });
  await Deno.writeFile(`${dir}/warm/warm.txt`, pool.subarray(0, MiB));
  // Sizes from 1/4 to 7/4 of the mean, scaled to add up to TOTAL exactly.
  const raw = Array.from({ length: FILES }, () => 0.25 + rnd() * 1.5);
  const sum = raw.reduce((a, b) => a + b, 0);
  const sizes = raw.map((r) => Math.floor(r / sum * TOTAL));
  sizes[0] += TOTAL - sizes.reduce((a, b) => a + b, 0);
  for (let i = 0; i < FILES; i++) {
    const sub = `${dir}/data/d${String(i % 32).padStart(2, "0")}`;
    if (i < 32) await Deno.mkdir(sub, { recursive: true });
    const start = Math.floor(rnd() * (pool.length - sizes[i] % pool.length));
    const out = new Uint8Array(sizes[i]);
    for (let o = 0, s = start; o < out.length;) {
      const n = Math.min(out.length - o, pool.length - s);
      out.set(pool.subarray(s, s + n), o);
      o += n;
      s = 0;
    }
    await Deno.writeFile(`${sub}/f${String(i).padStart(4, "0")}.txt`, out);
  }
  emit({ figures: [] });
}

async function ensureTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of ["zip", "curl"]) {
    const { success } = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
    }).output();
    if (!success) missing.push(tool);
  }
  if (missing.length === 0) return;
  const sh = (cmd: string) =>
    new Deno.Command("sh", { args: ["-c", cmd], stdout: "null", stderr: "inherit" }).output();
  console.error(`Installing ${missing.join(" ")} from Debian`);
  if (!(await sh(`apt-get install -y ${missing.join(" ")}`)).success) {
    await sh("apt-get update");
    if (!(await sh(`apt-get install -y ${missing.join(" ")}`)).success) {
      throw new Error(`Cannot install ${missing.join(" ")}`);
    }
  }
}

/** Runs `cmd` with `args` in `cwd`; returns its time, its peak RSS and its stdout. */
async function timed(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ seconds: number; peak: number; stdout: string }> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "inherit" }).spawn();
  const output = child.output();
  const peak = await watchChildPeak(child.pid, output);
  const { success, stdout } = await output;
  if (!success) throw new Error(`${cmd} ${args.join(" ")} failed`);
  return {
    seconds: (performance.now() - t0) / 1000,
    peak,
    stdout: new TextDecoder().decode(stdout),
  };
}

async function baseline(dir: string): Promise<void> {
  await ensureTools();
  const sink = await SinkProcess.start();
  const zipFile = `${dir}/baseline.zip`;
  try {
    const curlArgs = ["-sS", "-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/zip"];
    const zip = await timed("zip", ["-r", "-1", "-q", zipFile, "data"], dir);
    const zipBytes = (await Deno.stat(zipFile)).size;
    const curl = await timed("curl", [...curlArgs, "-T", zipFile, `${sink.url}/upload`], dir);
    const received = JSON.parse(curl.stdout).bytes;
    if (received !== zipBytes) throw new Error(`The sink got ${received} of ${zipBytes} bytes`);
    // Streamed: zip and curl at once, through a pipe.
    const t0 = performance.now();
    const piped = await new Deno.Command("bash", {
      args: [
        "-c",
        `set -o pipefail; zip -r -1 -q - data | curl ${
          curlArgs.map((a) => `'${a}'`).join(" ")
        } -T - '${sink.url}/upload'`,
      ],
      cwd: dir,
      stdout: "null",
    }).output();
    if (!piped.success) throw new Error("zip | curl failed");
    const pipedSeconds = (performance.now() - t0) / 1000;
    emit({
      figures: [],
      data: {
        zipSeconds: zip.seconds,
        zipPeak: zip.peak,
        zipBytes,
        curlSeconds: curl.seconds,
        curlPeak: curl.peak,
        pipedSeconds,
      },
    });
  } finally {
    await Deno.remove(zipFile).catch(() => {});
    await sink.close();
  }
}

async function runnerRun(dir: string): Promise<void> {
  const mock = await MockProcess.start();
  const sink = await SinkProcess.start();
  const uploads: { bytes: number; ms: number }[] = [];
  const routed: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (init?.method === "POST" && url.pathname.endsWith("/artifacts")) {
      const response = await fetch(`${sink.url}${url.pathname}${url.search}`, init);
      const text = await response.text();
      uploads.push(JSON.parse(text));
      return new Response(text, { status: response.status, headers: response.headers });
    }
    return fetch(input, init);
  };
  const runner = await new RunnerBuilder(mock.url, mock.token, await tempBuildDir())
    .fetch(routed)
    .build();
  const factory = (_job: Job) => ({
    step: () => Promise.resolve(),
    uploadableFiles: () => filesUnder(dir),
  });
  const spec = (path: string) => ({
    script: ["true"],
    variables: [{ key: "ARTIFACT_COMPRESSION_LEVEL", value: "fast" }],
    artifacts: [{ name: "bench", paths: [path] }],
  });
  await mock.enqueue(1, spec("warm/"));
  if (!(await runner.requestJob(factory))) throw new Error("no warm-up job");
  await runner.drain();

  await mock.enqueue(1, spec("data/"));
  const peak = new PeakRss();
  const cpu0 = cpuMs();
  const t0 = performance.now();
  if (!(await runner.requestJob(factory))) throw new Error("no job");
  await runner.drain();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuMs() - cpu0;
  const peakRss = peak.stop();
  await mock.close();
  await sink.close();
  const outcome = runner.outcomes.at(-1);
  if (outcome?.state !== "success") throw new Error(`The job ended ${JSON.stringify(outcome)}`);
  const upload = uploads.at(-1)!;
  emit({
    figures: [],
    data: {
      seconds,
      peakRss,
      rssBefore: peak.before,
      cpuMs: cpu,
      archiveBytes: upload.bytes,
      uploadMs: upload.ms,
    },
  });
}

async function driver(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bench-artifacts-" });
  try {
    await runChild("artifacts.ts", ["prepare", dir]);
    // Twice each, alternating; the faster run of each is compared (the machine's noise only
    // ever adds time), and the higher peak RSS of the runner's two is kept.
    const bases: Record<string, number>[] = [];
    const runs: Record<string, number>[] = [];
    for (let i = 0; i < 2; i++) {
      bases.push(
        (await runChild("artifacts.ts", ["baseline", dir])).data as Record<string, number>,
      );
      runs.push(
        (await runChild("artifacts.ts", ["runner", dir], {
          profile: true,
          flags: ["--v8-flags=--expose-gc"],
          label: `artifacts-runner-${i + 1}`,
        })).data as Record<string, number>,
      );
    }
    const base = bases.reduce((a, b) =>
      a.zipSeconds + a.curlSeconds <= b.zipSeconds + b.curlSeconds ? a : b
    );
    const ours = { ...runs.reduce((a, b) => a.seconds <= b.seconds ? a : b) };
    ours.peakRss = Math.max(...runs.map((r) => r.peakRss));
    const baseSeconds = base.zipSeconds + base.curlSeconds;
    const baselinePeak = Math.max(...bases.map((b) => Math.max(b.zipPeak, b.curlPeak)));
    const times = (values: number[]) => values.map((v) => v.toFixed(1)).join(" and ");
    const figures: Figure[] = [
      {
        id: "4a",
        name: "512 MiB artifact (1024 files): zip level 1 + upload",
        value: TOTAL / 1e6 / ours.seconds,
        unit: "MB/s",
        baseline: {
          label: "zip -r -1, then curl -T",
          value: TOTAL / 1e6 / baseSeconds,
          unit: "MB/s",
        },
        detail: `faster of two runs each (runner ${times(runs.map((r) => r.seconds))} s, baseline ${
          times(bases.map((b) => b.zipSeconds + b.curlSeconds))
        } s); runner ${ours.seconds.toFixed(1)} s for the whole job (CPU ${
          (ours.cpuMs / 1000).toFixed(1)
        } s), archive ${(ours.archiveBytes / MiB).toFixed(0)} MiB; baseline zip ${
          base.zipSeconds.toFixed(1)
        } s + curl ${base.curlSeconds.toFixed(1)} s, archive ${
          (base.zipBytes / MiB).toFixed(0)
        } MiB; zip | curl streamed ${base.pipedSeconds.toFixed(1)} s`,
      },
      {
        id: "4b",
        name: "artifact time, relative to the baseline",
        value: ours.seconds / baseSeconds,
        unit: "×",
        digits: 2,
        baseline: { label: "zip -r -1, then curl -T", value: baseSeconds, unit: "s" },
        target: { op: "<=", value: 1.5 },
      },
      {
        id: "4c",
        name: "runner peak RSS during the artifact upload",
        value: mb(ours.peakRss),
        unit: "MB",
        baseline: { label: "zip / curl peak RSS", value: mb(baselinePeak), unit: "MB" },
        target: { op: "<", value: 200 },
        detail: `the higher of two runs; RSS before the job ${
          mb(ours.rssBefore).toFixed(0)
        } MB; zip ${mb(base.zipPeak).toFixed(1)} MB, curl ${mb(base.curlPeak).toFixed(1)} MB`,
      },
    ];
    emit({ figures, data: { baseline: bases, runner: runs } });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (isDriver()) {
    await driver();
  } else {
    const [mode, dir] = Deno.args;
    if (mode === "prepare") await prepare(dir);
    else if (mode === "baseline") await baseline(dir);
    else if (mode === "runner") await runnerRun(dir);
    else throw new Error(`Unknown mode ${mode}`);
  }
}
