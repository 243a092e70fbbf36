/**
 * Benchmark 7, side by side with the Rust crate this library ports: the crate's runner
 * (`peer-runner`) and ours, 1000 trivial jobs at 16 at once, first on the crate's own mock
 * (`peer-mock`, a 7.9 KB payload with 76 predefined variables), then both on our mock (in a
 * process of its own, `_mock_process.ts`, ~10.9 KB payloads with 86 variables). The binaries
 * are those of `../shared/peer/bin` (see its README), or of `$BENCH_PEER_BIN`; without them the
 * group is skipped with a line saying so.
 *
 * Each runner runs in a process of its own, alternately, `BENCH_PEER_ROUNDS` times (default 3;
 * the median is the figure). Both runners are measured the same way:
 * - jobs/s: N jobs over the time from the runner's start of work to its N-th job's end (the
 *   crate's runner prints its own; ours is `bench/peer.ts ours …`, timing the same span);
 * - CPU per job: the runner process's whole user + system time (`/proc/self/stat` `cutime` +
 *   `cstime` of this process, which waits for it), start-up included, over N;
 * - peak RSS: the process's `VmHWM` (`/proc/<pid>/status`, sampled every 5 ms; ours also reads
 *   its own at the end).
 * Each step of a job writes 3 lines (`outputln`), as the crate's runner does. Our runner
 * announces `refspecs`, without which `peer-mock` hands out no job.
 *
 * The floor of our runner's peak RSS (7g) is a bare fetch loop in a process of its own
 * (`bench/peer.ts bare …`, measured like ours): the work of 1f, without the library, on the
 * crate's mock (16 workers, each job its 3 requests and its build directory's mkdir + 2
 * removes). This module loads the library only in `ours` mode, so that loop never loads it.
 *
 * Run: `deno run -A bench/peer.ts` (the group), or `deno run -A bench/peer.ts ours|bare URL
 * TOKEN CONCURRENCY N` (our runner, or the bare loop, alone, as the group runs it).
 *
 * @module
 */
import { existsSync } from "node:fs";
import type { Phase } from "../mod.ts";
import { bareJob } from "./_bare.ts";
import {
  benchFile,
  cpuMs,
  emit,
  type Figure,
  isDriver,
  mb,
  MockProcess,
  RESULT_PREFIX,
  type RssParts,
  rssParts,
  tempBuildDir,
  vmHwm,
  watchChildPeak,
} from "./_lib.ts";

const JOBS = Number(Deno.env.get("BENCH_PEER_JOBS") ?? 1000);
const ROUNDS = Number(Deno.env.get("BENCH_PEER_ROUNDS") ?? 3);
const CONCURRENCY = 16;
const SPEC = { script: ["echo job"] };
/** V8 flags of the information-only run of 7f. */
const SEMI_FLAGS = ["--max-semi-space-size=1"];
/**
 * How long one runner process may take, start to exit (`BENCH_PEER_TIMEOUT_S`, default 300 s:
 * 1000 jobs take 1–10 s): a runner that hangs is killed and the group fails with a line saying
 * so, instead of hanging the bench.
 */
const RUNNER_TIMEOUT_MS = Number(Deno.env.get("BENCH_PEER_TIMEOUT_S") ?? 300) * 1000;

/** Where the crate's binaries are. */
function peerBin(): string {
  const dir = Deno.env.get("BENCH_PEER_BIN") ?? benchFile("../../shared/peer/bin");
  return dir.replace(/\/+$/, "");
}

/** One runner's run. */
interface Run {
  jobsPerS: number;
  /** Whole-process CPU (start-up included), ms. */
  cpuMs: number;
  /** Peak RSS, bytes. */
  peak: number;
  /** Deno processes only (ours, the bare loop): CPU of the job phase, ms, and at start-up. */
  jobCpuMs?: number;
  startCpuMs?: number;
  failed?: number;
  /** Deno processes only: `Deno.memoryUsage()` after the N-th job, bytes. */
  memory?: { rss: number; heapTotal: number; heapUsed: number; external: number };
  /** Deno processes only: where the RSS is after the N-th job ({@linkcode rssParts}), bytes. */
  parts?: RssParts;
  /** Deno processes only: the same at start-up (ours: the library imported). */
  startParts?: RssParts;
}

/** CPU ticks (1/100 s) of the children this process has waited for. */
function childTicks(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return f[13] + f[14]; // cutime cstime
}

/** Lines of a child's stdout, one by one. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) yield rest;
}

/** Runs a runner process to its end and measures it. */
async function measureRunner(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ out: string[]; cpuMs: number; peak: number }> {
  const ticks0 = childTicks();
  const child = new Deno.Command(cmd, {
    args,
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const peak = watchChildPeak(child.pid, child.status);
  // Bounded: a runner that does not exit in time is killed (its stdout then ends).
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited meanwhile.
    }
  }, RUNNER_TIMEOUT_MS);
  const out: string[] = [];
  let status: Deno.CommandStatus;
  try {
    for await (const line of lines(child.stdout)) out.push(line);
    status = await child.status;
  } finally {
    clearTimeout(deadline);
  }
  if (timedOut) {
    await peak;
    throw new Error(
      `${cmd} ${args.join(" ")} did not finish within ${RUNNER_TIMEOUT_MS / 1000} s: killed`,
    );
  }
  if (!status.success) throw new Error(`${cmd} ${args.join(" ")} exited with ${status.code}`);
  return { out, cpuMs: (childTicks() - ticks0) * 10, peak: await peak };
}

async function crateRunner(url: string, token: string): Promise<Run> {
  const r = await measureRunner(`${peerBin()}/peer-runner`, [
    url,
    token,
    String(CONCURRENCY),
    String(JOBS),
  ], { PEER_POLL_SLEEP_MS: "100" });
  const line = r.out.find((l) => l.startsWith("RS_RUNNER "));
  const rate = Number(line?.match(/jobs_per_s=([\d.]+)/)?.[1]);
  if (!Number.isFinite(rate)) throw new Error(`peer-runner said: ${r.out.join(" | ")}`);
  return { jobsPerS: rate, cpuMs: r.cpuMs, peak: r.peak };
}

function ourRunner(
  url: string,
  token: string,
  label: string,
  v8Flags: string[] = [],
): Promise<Run> {
  return denoProcess("ours", url, token, label, v8Flags);
}

/** The bare fetch loop ({@linkcode bare}) in a process of its own, measured like ours. */
function bareLoop(url: string, token: string): Promise<Run> {
  return denoProcess("bare", url, token, "crate-mock");
}

/** `bench/peer.ts <mode> …` (our runner, or the bare loop) run and measured. */
async function denoProcess(
  mode: "ours" | "bare",
  url: string,
  token: string,
  label: string,
  v8Flags: string[] = [],
): Promise<Run> {
  const flags: string[] = v8Flags.length > 0 ? [`--v8-flags=${v8Flags.join(",")}`] : [];
  const profDir = Deno.env.get("BENCH_CPU_PROF");
  if (profDir) flags.push("--cpu-prof", `--cpu-prof-dir=${profDir}/peer-${mode}-${label}`);
  const r = await measureRunner(Deno.execPath(), [
    "run",
    "-A",
    ...flags,
    benchFile("peer.ts"),
    mode,
    url,
    token,
    String(CONCURRENCY),
    String(JOBS),
  ]);
  const line = r.out.find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) throw new Error(`bench/peer.ts ${mode} said: ${r.out.join(" | ")}`);
  const d = JSON.parse(line.slice(RESULT_PREFIX.length)).data as Record<string, number>;
  return {
    jobsPerS: d.jobsPerS,
    cpuMs: r.cpuMs,
    peak: Math.max(r.peak, d.peak),
    jobCpuMs: d.jobCpuMs,
    startCpuMs: d.startCpuMs,
    failed: d.failed,
    memory: d.memory as unknown as Run["memory"],
    parts: d.parts as unknown as Run["parts"],
    startParts: d.startParts as unknown as Run["parts"],
  };
}

/** The crate's mock with `JOBS` jobs: its URL and token, and a stop that checks its counts. */
async function peerMock(): Promise<{ url: string; token: string; stop(): Promise<string> }> {
  const child = new Deno.Command(`${peerBin()}/peer-mock`, {
    args: ["--jobs", String(JOBS)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const it = lines(child.stdout);
  let url = "";
  let token = "";
  for (;;) {
    const { value, done } = await it.next();
    if (done) throw new Error("peer-mock ended before it was ready");
    if (value.startsWith("PEER_MOCK_URI=")) url = value.slice(14);
    else if (value.startsWith("PEER_MOCK_TOKEN=")) token = value.slice(16);
    else if (value === "PEER_MOCK_READY") break;
  }
  let last = "";
  const rest = (async () => {
    for await (const line of it) if (line.startsWith("success=")) last = line;
  })();
  const stderr = new Response(child.stderr).text();
  return {
    url,
    token,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await rest;
      const err = await stderr;
      if (err.includes("panicked")) {
        console.log(`peer-mock: ${err.split("\n").slice(0, 3).join(" ")}`);
      }
      return last;
    },
  };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function summary(runs: Run[]) {
  return {
    jobsPerS: median(runs.map((r) => r.jobsPerS)),
    cpuPerJob: median(runs.map((r) => r.cpuMs / JOBS)),
    jobCpuPerJob: median(runs.map((r) => (r.jobCpuMs ?? NaN) / JOBS)),
    startCpuMs: median(runs.map((r) => r.startCpuMs ?? NaN)),
    peak: Math.max(...runs.map((r) => r.peak)),
    rates: runs.map((r) => r.jobsPerS.toFixed(0)).join(", "),
  };
}

async function onPeerMock(run: (url: string, token: string) => Promise<Run>): Promise<Run> {
  const mock = await peerMock();
  try {
    return await run(mock.url, mock.token);
  } finally {
    const counts = await mock.stop();
    if (!counts.includes(`success=${JOBS} `)) console.log(`peer-mock at the end: ${counts}`);
  }
}

async function onOurMock(run: (url: string, token: string) => Promise<Run>): Promise<Run> {
  const mock = await MockProcess.start();
  try {
    await mock.enqueue(JOBS, SPEC);
    const result = await run(mock.url, mock.token);
    await mock.allFinished();
    const stats = await mock.stats();
    if (stats.states.success !== JOBS) {
      console.log(`our mock at the end: ${JSON.stringify(stats.states)}`);
    }
    return result;
  } finally {
    await mock.close();
  }
}

async function driver(): Promise<void> {
  const bin = peerBin();
  const missing = ["peer-runner", "peer-mock"].filter((b) => !existsSync(`${bin}/${b}`));
  if (missing.length > 0) {
    const why = `skipped: the crate's ${missing.join(" and ")} not found in ${bin} ` +
      "(see ../shared/peer/README.md; BENCH_PEER_BIN=<dir> points elsewhere)";
    emit({ figures: [], data: { skipped: why } });
    return;
  }
  const runs: Record<string, Run[]> = {
    crateCrate: [],
    oursCrate: [],
    bareCrate: [],
    crateOurs: [],
    oursOurs: [],
  };
  for (let i = 0; i < ROUNDS; i++) {
    runs.crateCrate.push(await onPeerMock(crateRunner));
    runs.oursCrate.push(await onPeerMock((u, t) => ourRunner(u, t, "crate-mock")));
    runs.bareCrate.push(await onPeerMock(bareLoop));
    runs.crateOurs.push(await onOurMock(crateRunner));
    runs.oursOurs.push(await onOurMock((u, t) => ourRunner(u, t, "our-mock")));
  }
  // Information only (the library cannot set V8 flags for its users): the same run on the
  // crate's mock with V8's young generation capped at 1 MiB per semi-space.
  const semi = await onPeerMock((u, t) => ourRunner(u, t, "crate-mock-semi1", SEMI_FLAGS));
  const cc = summary(runs.crateCrate);
  const oc = summary(runs.oursCrate);
  const co = summary(runs.crateOurs);
  const oo = summary(runs.oursOurs);
  const bc = summary(runs.bareCrate);
  const crate = (s: typeof cc) => ({ label: "the crate's runner", value: s.jobsPerS });
  const each = `median of ${ROUNDS} alternating runs of ${JOBS} jobs, ${CONCURRENCY} at once`;
  const ours = (s: typeof cc) =>
    `ours ${s.rates} jobs/s, CPU ${s.cpuPerJob.toFixed(2)} ms/job whole process (${
      s.jobCpuPerJob.toFixed(2)
    } ms/job after start-up, ${s.startCpuMs.toFixed(0)} ms to start)`;
  const theirs = (s: typeof cc) =>
    `crate ${s.rates} jobs/s, CPU ${s.cpuPerJob.toFixed(2)} ms/job, peak RSS ${
      mb(s.peak).toFixed(1)
    } MB`;
  const figures: Figure[] = [
    {
      id: "7a",
      name: "jobs/s, ours / the crate's runner, on the crate's mock",
      value: oc.jobsPerS / cc.jobsPerS,
      unit: "×",
      digits: 2,
      baseline: { ...crate(cc), unit: "jobs/s" },
      target: { op: ">=", value: 1 },
      detail: `${each}: ${ours(oc)}; ${theirs(cc)}`,
    },
    {
      id: "7b",
      name: "runner CPU per job on the crate's mock, whole process",
      value: oc.cpuPerJob,
      unit: "ms",
      digits: 2,
      baseline: { label: "the crate's runner", value: cc.cpuPerJob, unit: "ms" },
      detail: `after start-up: ${oc.jobCpuPerJob.toFixed(2)} ms/job`,
    },
    {
      id: "7c",
      name: "runner peak RSS, 1000 jobs on the crate's mock",
      value: mb(oc.peak),
      unit: "MB",
      baseline: { label: "the crate's runner", value: mb(cc.peak), unit: "MB" },
      target: { op: "<=", value: 90 },
      detail: memoryDetail(runs.oursCrate),
    },
    {
      id: "7d",
      name: "jobs/s, ours / the crate's runner, on our mock",
      value: oo.jobsPerS / co.jobsPerS,
      unit: "×",
      digits: 2,
      baseline: { ...crate(co), unit: "jobs/s" },
      detail: `${each}: ${ours(oo)}, peak RSS ${mb(oo.peak).toFixed(1)} MB; ${theirs(co)}`,
    },
    {
      id: "7e",
      name: "runner CPU per job on our mock, whole process",
      value: oo.cpuPerJob,
      unit: "ms",
      digits: 2,
      baseline: { label: "the crate's runner", value: co.cpuPerJob, unit: "ms" },
      detail: `after start-up: ${oo.jobCpuPerJob.toFixed(2)} ms/job`,
    },
  ];
  figures.push({
    id: "7f",
    name: `7c with --v8-flags=${SEMI_FLAGS.join(",")} (information: not a setting of the library)`,
    value: mb(semi.peak),
    unit: "MB",
    baseline: { label: "7c, default flags", value: mb(oc.peak), unit: "MB" },
    detail: `one run, ${semi.jobsPerS.toFixed(0)} jobs/s, CPU ${
      (semi.cpuMs / JOBS).toFixed(2)
    } ms/job; ${memoryDetail([semi])}`,
  });
  // 7c and 7g are read at the same N: both peaks grow with it, as V8 doubles the young
  // generation each time the bytes surviving scavenges since its last growth exceed it, up to
  // its cap (a semi-space of 32 MiB on this machine), and promoted garbage waits in the old
  // generation for a full collection.
  figures.push({
    id: "7g",
    name: "bare fetch loop peak RSS, 1000 jobs on the crate's mock (information: 7c's floor)",
    value: mb(bc.peak),
    unit: "MB",
    baseline: { label: "7c, our runner", value: mb(oc.peak), unit: "MB" },
    detail: `the work of 1f without the library, the largest of ${ROUNDS} runs: ${CONCURRENCY} ` +
      "workers doing each job's 3 requests and its build directory's mkdir + 2 removes with " +
      `plain fetch and Deno.*, ${bc.rates} jobs/s, ` +
      `CPU ${bc.cpuPerJob.toFixed(2)} ms/job whole process (${
        bc.jobCpuPerJob.toFixed(2)
      } after start-up); ${memoryDetail(runs.bareCrate)}`,
  });
  emit({ figures, data: { ...runs, semi } });
}

/** Where the RSS of our runner's run with the largest peak was, at start-up and at the end. */
function memoryDetail(runs: Run[]): string {
  const run = runs.reduce((a, b) => (b.peak > a.peak ? b : a));
  const { memory: m, parts: p, startParts: s } = run;
  if (!m || !p || !s) return "no memory breakdown";
  const part = (k: keyof RssParts) => `${mb(s[k]).toFixed(0)} → ${mb(p[k]).toFixed(0)}`;
  return `RSS by mapping, start-up → after the last job (MB): deno executable ${
    part("binary")
  }, C heap of the main thread ${part("cHeap")}, anonymous (V8 heap, other threads) ${
    part("anon")
  }, other ${part("other")}; ${s.threads} → ${p.threads} threads; V8 heap ${
    mb(m.heapTotal).toFixed(0)
  } MB (${mb(m.heapUsed).toFixed(0)} MB used), external ${mb(m.external).toFixed(0)} MB`;
}

/** Our runner, as `peer-runner` runs: N jobs at `concurrency`, 3 lines per step, then exit. */
async function ours(url: string, token: string, concurrency: number, n: number): Promise<void> {
  // Imported here, not at the top, so that the bare loop's process never loads the library.
  const { outputln, RunnerBuilder } = await import("../mod.ts");
  const startCpuMs = cpuMs();
  const startParts = rssParts();
  const runner = await new RunnerBuilder(url, token, await tempBuildDir())
    .features(["refspecs"])
    .checkInterval(100)
    .build();
  const stop = new AbortController();
  let ended = 0;
  let failed = 0;
  let finished!: () => void;
  const all = new Promise<void>((resolve) => (finished = resolve));
  const cpu0 = cpuMs();
  const t0 = performance.now();
  const run = runner.run(
    () => ({
      step(script: readonly string[], _phase: Phase): Promise<void> {
        const text = script.join(" ");
        outputln(`${text} (1/3)`);
        outputln(`${text} (2/3)`);
        outputln(`${text} (3/3)`);
        return Promise.resolve();
      },
    }),
    concurrency,
    {
      signal: stop.signal,
      onJobEnd: (outcome) => {
        if (outcome.state !== "success") failed++;
        if (++ended === n) finished();
      },
    },
  );
  await all;
  const seconds = (performance.now() - t0) / 1000;
  const jobCpuMs = cpuMs() - cpu0;
  const memory = Deno.memoryUsage();
  const parts = rssParts();
  stop.abort();
  await run;
  emit({
    figures: [],
    data: {
      jobsPerS: n / seconds,
      jobCpuMs,
      startCpuMs,
      failed,
      peak: vmHwm() ?? 0,
      memory,
      parts,
      startParts,
    },
  });
}

/**
 * The bare fetch loop of `bench/throughput.ts` (1f) on the crate's mock: `concurrency` workers,
 * each asking for a job (announcing `refspecs`, as ours does), making and removing its build
 * directory (mkdir, then removes of it and of its `.tmp` sibling), sending one PATCH of a short
 * trace and the final PUT, until the mock answers 204; then it reports like {@linkcode ours}.
 */
async function bare(url: string, token: string, concurrency: number, n: number): Promise<void> {
  const startCpuMs = cpuMs();
  const startParts = rssParts();
  const buildRoot = await tempBuildDir();
  // `peer-mock` asserts a system id of 14 characters, as the library makes them (`s_` + 12 hex).
  const job = bareJob({
    api: `${url}/api/v4`,
    token,
    systemId: "s_0123456789ab",
    features: { refspecs: true },
    buildRoot,
  });
  let ended = 0;
  let failed = 0;
  const worker = async () => {
    for (let ok = await job(); ok !== undefined; ok = await job()) {
      if (!ok) failed++;
      ended++;
    }
  };
  const cpu0 = cpuMs();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const jobCpuMs = cpuMs() - cpu0;
  const memory = Deno.memoryUsage();
  const parts = rssParts();
  emit({
    figures: [],
    data: {
      jobsPerS: ended / seconds,
      jobCpuMs,
      startCpuMs,
      failed: failed + Math.max(0, n - ended),
      peak: vmHwm() ?? 0,
      memory,
      parts,
      startParts,
    },
  });
}

if (import.meta.main) {
  if (isDriver()) await driver();
  else if (Deno.args[0] === "ours" || Deno.args[0] === "bare") {
    const [mode, url, token, c, n] = Deno.args;
    await (mode === "ours" ? ours : bare)(url, token, Number(c), Number(n));
  } else throw new Error(`Unknown mode ${Deno.args[0]}`);
}
