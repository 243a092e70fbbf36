/**
 * Benchmark 2, pick-up latency: the time from a job being enqueued in GitLab (the mock, in a
 * process of its own) to the handler's `step` starting in the runner (this process).
 *
 * - `longpoll`: the mock holds `/jobs/request` like Workhorse (50 s). Before each job the
 *   benchmark waits until the runner is idle, i.e. its request has been held for 20 ms, then
 *   enqueues one job. 50 jobs.
 * - `polling`: no long polling, the default 3 s check interval; 20 jobs enqueued at random
 *   moments (uniform over 15 s), so each meets the runner somewhere in its polling cycle.
 * - `longpoll-busy`: long polling, 20 jobs enqueued at random moments over 15 s, whatever the
 *   runner is doing then (e.g. still finishing the previous job).
 *
 * Each enqueue time is read just before the command is written to the mock's stdin, so the
 * figure includes the pipe to the mock (tens of microseconds).
 *
 * Run: `deno run -A bench/pickup_latency.ts` (all three, each in a process of its own), or with
 * `longpoll`, `polling` or `longpoll-busy` (one, in this process).
 *
 * @module
 */
import { RunnerBuilder } from "../mod.ts";
import {
  emit,
  type Figure,
  isDriver,
  MockProcess,
  mulberry32,
  percentile,
  runChild,
  sleep,
  tempBuildDir,
} from "./_lib.ts";

const SPEC = { script: ["true"] };

async function series(mode: string): Promise<number[]> {
  const longPoll = mode !== "polling";
  const mock = await MockProcess.start({ longPollMs: longPoll ? 50_000 : 0 });
  const runner = await new RunnerBuilder(mock.url, mock.token, await tempBuildDir()).build();
  const started = new Map<number, number>();
  const stop = new AbortController();
  const run = runner.run(
    (job) => ({
      step: () => {
        started.set(job.id, performance.now());
        return Promise.resolve();
      },
    }),
    16,
    { signal: stop.signal },
  );
  const enqueued = new Map<number, number>();
  const latencies: number[] = [];
  try {
    if (mode === "longpoll") {
      for (let i = 0; i < 50; i++) {
        await mock.held();
        const t0 = performance.now();
        const { ids } = await mock.enqueue(1, SPEC) as { ids: number[] };
        enqueued.set(ids[0], t0);
        while (!started.has(ids[0])) await sleep(1);
      }
    } else {
      // Let the runner settle into its cycle first.
      await sleep(longPoll ? 3500 : 1000);
      const rnd = mulberry32(mode === "polling" ? 11 : 12);
      const at = Array.from({ length: 20 }, () => rnd() * 15_000).sort((a, b) => a - b);
      const base = performance.now();
      for (const t of at) {
        await sleep(Math.max(0, base + t - performance.now()));
        const t0 = performance.now();
        const { ids } = await mock.enqueue(1, SPEC) as { ids: number[] };
        enqueued.set(ids[0], t0);
      }
      while (started.size < enqueued.size) await sleep(10);
    }
    await mock.allFinished();
  } finally {
    stop.abort();
    // Closing the mock first answers the runner's held long poll, which `run()` lets finish.
    await mock.close();
    await run;
  }
  for (const [id, t0] of enqueued) latencies.push(started.get(id)! - t0);
  return latencies;
}

async function driver(): Promise<void> {
  const figures: Figure[] = [];
  const data: Record<string, unknown> = {};
  for (const mode of ["polling", "longpoll", "longpoll-busy"]) {
    const result = await runChild("pickup_latency.ts", [mode], { profile: true });
    figures.push(...result.figures);
    data[mode] = result.data;
  }
  const polling = data.polling as { p50: number; p99: number };
  const a = figures.find((f) => f.id === "2a")!;
  const b = figures.find((f) => f.id === "2b")!;
  a.baseline = { label: "plain polling every 3 s (2c)", value: polling.p50, unit: "ms" };
  b.baseline = { label: "plain polling every 3 s", value: polling.p99, unit: "ms" };
  figures.sort((x, y) => x.id.localeCompare(y.id));
  emit({ figures, data });
}

async function measureMode(mode: string): Promise<void> {
  if (!["longpoll", "polling", "longpoll-busy"].includes(mode)) {
    throw new Error(`Unknown mode ${mode}`);
  }
  const latencies = await series(mode);
  const p50 = percentile(latencies, 50);
  const p99 = percentile(latencies, 99);
  const max = Math.max(...latencies);
  const figures: Figure[] = [];
  const detail = `${latencies.length} jobs: p50 ${p50.toFixed(1)} ms, p99 ${
    p99.toFixed(1)
  } ms, max ${max.toFixed(1)} ms`;
  if (mode === "longpoll") {
    figures.push({
      id: "2a",
      name: "pick-up latency p50, idle runner, long polling",
      value: p50,
      unit: "ms",
      target: { op: "<", value: 50 },
      detail: `${detail}; the runner's request held by the mock when each job is enqueued`,
    }, {
      id: "2b",
      name: "pick-up latency p99, idle runner, long polling",
      value: p99,
      unit: "ms",
    });
  } else if (mode === "polling") {
    figures.push({
      id: "2c",
      name: "pick-up latency p50, plain polling every 3 s",
      value: p50,
      unit: "ms",
      detail: `${detail}; jobs enqueued at random moments`,
    });
  } else {
    figures.push({
      id: "2d",
      name: "pick-up latency p50, long polling, jobs at random times",
      value: p50,
      unit: "ms",
      detail: `${detail}; jobs enqueued at random moments, whatever the runner is doing`,
    });
  }
  emit({ figures, data: { mode, latencies, p50, p99 } });
}

if (import.meta.main) {
  if (isDriver()) await driver();
  else await measureMode(Deno.args[0]);
}
