/**
 * Benchmark 1, throughput: 1000 trivial jobs (3 lines of output each) run 16 at once.
 *
 * - `sockets`: the runner in this process, the GitLab mock in another (`_mock_process.ts`),
 *   talking HTTP over 127.0.0.1; each has a core of its own on a 2-core machine.
 * - `inprocess`: the runner and the mock in this process, through `mock.fetch` (no sockets):
 *   the runner's own ceiling, with the mock's work on the same thread.
 *
 * The baseline of each is a bare client loop against the same kind of mock: 16 workers doing
 * with plain `fetch` exactly the three requests a short job needs (`POST /jobs/request`, one
 * `PATCH /trace`, the final `PUT`), without the runner: the floor the HTTP stack and the mock
 * set. Both are measured after a warm-up of 100 jobs, 3 times (the median is the figure).
 *
 * Run: `deno run -A bench/throughput.ts` (both, each in a process of its own) or with
 * `sockets` or `inprocess` (one, in this process); the last line is the `BENCH_RESULT`.
 *
 * @module
 */
import { ALL_FEATURES, LIBRARY_FEATURES, outputln, type Phase, RunnerBuilder } from "../mod.ts";
import { bareJob } from "./_bare.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import {
  cpuMs,
  emit,
  type Figure,
  isDriver,
  MockProcess,
  type MockStats,
  runChild,
  tempBuildDir,
} from "./_lib.ts";

const JOBS = Number(Deno.env.get("BENCH_JOBS") ?? 1000);
const WARMUP = 100;
const REPEATS = 3;
const CONCURRENCY = 16;
const SPEC = { script: ["echo one", "echo two", "echo three"] };

/** The mock as the benchmark drives it, in this process or in another one. */
interface Target {
  url: string;
  token: string;
  fetch?: typeof fetch;
  enqueue(count: number): Promise<void>;
  finished(): Promise<void>;
  stats(): Promise<Pick<MockStats, "counts" | "statuses" | "cpuMs">>;
  close(): Promise<void>;
}

async function socketTarget(): Promise<Target> {
  const mock = await MockProcess.start();
  return {
    url: mock.url,
    token: mock.token,
    enqueue: async (count) => void await mock.enqueue(count, SPEC),
    finished: () => mock.allFinished(),
    stats: () => mock.stats(),
    close: () => mock.close(),
  };
}

function inProcessTarget(): Target {
  const mock = new GitLabMock({ recordRequests: false });
  const statuses: Record<string, number> = {};
  mock.onRequest((r) => {
    const key = `${r.route} ${r.status}`;
    statuses[key] = (statuses[key] ?? 0) + 1;
  });
  return {
    url: mock.url,
    token: mock.runnerToken,
    fetch: mock.fetch,
    enqueue: (count) => {
      for (let i = 0; i < count; i++) mock.addJob(SPEC);
      return Promise.resolve();
    },
    finished: () =>
      mock.waitFor((m) => m.jobs.every((j) => j.state === "success" || j.state === "failed"), {
        timeoutMs: Infinity,
      }),
    stats: () => {
      const counts: Record<string, number> = {};
      for (const route of ["request", "trace", "update"] as const) {
        counts[route] = mock.requestCount(route);
      }
      return Promise.resolve({ counts, statuses: { ...statuses }, cpuMs: 0 });
    },
    close: () => Promise.resolve(),
  };
}

function total(record: Record<string, number>): number {
  return Object.values(record).reduce((a, b) => a + b, 0);
}

interface Phase1 {
  seconds: number;
  requests: number;
  polls: number;
  cpuMs: number;
  mockCpuMs: number;
  byRoute: Record<string, number>;
}

/** Runs `jobs` jobs through `work` and measures time, CPU and requests. */
async function measure(
  target: Target,
  jobs: number,
  work: () => Promise<void>,
): Promise<Phase1> {
  const before = await target.stats();
  await target.enqueue(jobs);
  const cpu0 = cpuMs();
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuMs() - cpu0;
  const after = await target.stats();
  const byRoute: Record<string, number> = {};
  for (const [route, n] of Object.entries(after.counts)) {
    byRoute[route] = n - (before.counts[route] ?? 0);
  }
  const polls = (after.statuses["request 204"] ?? 0) - (before.statuses["request 204"] ?? 0);
  return {
    seconds,
    requests: total(after.counts) - total(before.counts),
    polls,
    cpuMs: cpu,
    mockCpuMs: after.cpuMs - before.cpuMs,
    byRoute,
  };
}

/** The runner: `run(factory, 16)` until the mock has finished every job. */
async function runnerPhase(target: Target, jobs: number): Promise<Phase1> {
  let builder = new RunnerBuilder(target.url, target.token, await tempBuildDir());
  if (target.fetch) builder = builder.fetch(target.fetch);
  const runner = await builder.build();
  const stop = new AbortController();
  let run: Promise<void> | undefined;
  const result = await measure(target, jobs, async () => {
    const finished = target.finished();
    run = runner.run(
      () => ({
        step(script: readonly string[], _phase: Phase): Promise<void> {
          for (const line of script) outputln(line);
          return Promise.resolve();
        },
      }),
      CONCURRENCY,
      { signal: stop.signal },
    );
    await finished;
  });
  stop.abort();
  await run;
  return result;
}

const features = Object.fromEntries(ALL_FEATURES.map((f) => [f, LIBRARY_FEATURES.includes(f)]));

/**
 * The baseline: 16 workers doing the three requests of a short job with plain fetch. With
 * `buildRoot`, each also makes and removes the job's build directory as the runner does (a
 * `mkdir`, then a recursive remove of it and of `<dir>.tmp`, with Deno's own calls): the floor
 * of a runner that keeps C3.1.
 */
function barePhase(target: Target, jobs: number, buildRoot?: string): Promise<Phase1> {
  const job = bareJob({
    api: `${target.url}/api/v4`,
    token: target.token,
    systemId: "s_bench",
    features,
    buildRoot,
    fetch: target.fetch,
  });
  const worker = async () => {
    while (await job() !== undefined);
  };
  return measure(target, jobs, async () => {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  });
}

/** Runs a measurement REPEATS times. */
async function repeat(measure: () => Promise<Phase1>): Promise<Phase1[]> {
  const runs: Phase1[] = [];
  for (let i = 0; i < REPEATS; i++) runs.push(await measure());
  return runs;
}

/** The run with the median time. */
function median(runs: Phase1[]): Phase1 {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)];
}

async function withTarget<T>(
  make: () => Promise<Target> | Target,
  fn: (t: Target) => Promise<T>,
): Promise<T> {
  const target = await make();
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

async function driver(): Promise<void> {
  const figures: Figure[] = [];
  const data: Record<string, unknown> = {};
  for (const mode of ["sockets", "inprocess"]) {
    const result = await runChild("throughput.ts", [mode], { profile: true });
    figures.push(...result.figures);
    data[mode] = result.data;
  }
  emit({ figures, data });
}

async function measureMode(mode: string): Promise<void> {
  if (mode !== "sockets" && mode !== "inprocess") throw new Error(`Unknown mode ${mode}`);
  const make = mode === "sockets" ? socketTarget : inProcessTarget;
  const bareRuns = await withTarget(make, async (t) => {
    await barePhase(t, WARMUP);
    return await repeat(() => barePhase(t, JOBS));
  });
  const root = mode === "sockets" ? await tempBuildDir() : undefined;
  const dirRuns = root === undefined ? [] : await withTarget(make, async (t) => {
    await barePhase(t, WARMUP, root);
    return await repeat(() => barePhase(t, JOBS, root));
  });
  const runnerRuns = await withTarget(make, async (t) => {
    await runnerPhase(t, WARMUP);
    return await repeat(() => runnerPhase(t, JOBS));
  });
  const bare = median(bareRuns);
  const runner = median(runnerRuns);
  const rate = JOBS / runner.seconds;
  const bareRate = JOBS / bare.seconds;
  const range = (runs: Phase1[]) =>
    runs.map((r) => (JOBS / r.seconds).toFixed(0)).sort((a, b) => Number(a) - Number(b)).join(
      ", ",
    );
  const perJob = (runner.requests - runner.polls) / JOBS;
  const where = mode === "sockets" ? "sockets (mock in another process)" : "in-process mock.fetch";
  const id = mode === "sockets" ? "1a" : "1c";
  const figures: Figure[] = [
    {
      id,
      name: `throughput, ${where}, ${CONCURRENCY} at once`,
      value: rate,
      unit: "jobs/s",
      baseline: { label: "bare fetch loop, same 3 requests", value: bareRate, unit: "jobs/s" },
      target: mode === "sockets" ? { op: ">=", value: 1000 } : undefined,
      detail: `median of ${REPEATS} runs of ${JOBS} jobs (${range(runnerRuns)} jobs/s; bare loop ${
        range(bareRuns)
      }); runner CPU ${(runner.cpuMs / JOBS).toFixed(2)} ms/job${
        mode === "sockets"
          ? `, mock CPU ${(runner.mockCpuMs / JOBS).toFixed(2)} ms/job (bare loop: client ${
            (bare.cpuMs / JOBS).toFixed(2)
          }, mock ${(bare.mockCpuMs / JOBS).toFixed(2)} ms/job)`
          : ` (runner and mock on one thread; bare loop ${(bare.cpuMs / JOBS).toFixed(2)} ms/job)`
      }`,
    },
  ];
  if (mode === "sockets") {
    figures.push({
      id: "1b",
      name: "HTTP requests per short job",
      value: perJob,
      unit: "req/job",
      digits: 2,
      baseline: { label: "request + 1 patch + final update", value: 3, unit: "req/job" },
      target: { op: "<=", value: 3 },
      detail: `${runner.requests - runner.polls} requests for ${JOBS} jobs (${
        Object.entries(runner.byRoute).map(([r, n]) => `${r} ${n}`).join(", ")
      }), plus ${runner.polls} request(s) answered 204 once the queue was empty`,
    }, {
      id: "1d",
      name: "runner CPU per trivial job, realistic payload (~86 variables, 11 KB)",
      value: runner.cpuMs / JOBS,
      unit: "ms",
      digits: 2,
      baseline: { label: "bare fetch loop", value: bare.cpuMs / JOBS, unit: "ms" },
      target: { op: "<=", value: 0.8 },
      detail: `the bare loop with the build directory's mkdir and 2 removes (1f): ${
        (median(dirRuns).cpuMs / JOBS).toFixed(2)
      } ms/job`,
    }, {
      id: "1f",
      name: "CPU per job of the bare fetch loop with the build directory (mkdir, 2 removes)",
      value: median(dirRuns).cpuMs / JOBS,
      unit: "ms",
      digits: 2,
      baseline: { label: "bare fetch loop", value: bare.cpuMs / JOBS, unit: "ms" },
      detail: `the floor of a runner keeping C3.1 (a build directory made before the factory, ` +
        `removed with its .tmp after the job); median of ${REPEATS} runs of ${JOBS} jobs, ` +
        `${range(dirRuns)} jobs/s`,
    }, {
      id: "1e",
      name: "1a relative to the bare fetch loop doing the same 3 requests",
      value: rate / bareRate,
      unit: "×",
      digits: 2,
      target: { op: ">=", value: 0.6 },
    });
  }
  emit({ figures, data: { mode, runner: runnerRuns, bare: bareRuns } });
}

if (import.meta.main) {
  if (isDriver()) await driver();
  else await measureMode(Deno.args[0]);
}
