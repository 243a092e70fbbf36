/**
 * Benchmark 5, idle footprint: the RSS of a runner process (the GitLab mock runs in another one).
 *
 * - `bare`: the baseline, a Deno process that has imported the library and does nothing (its
 *   detail: what Deno alone and Deno with the `node:` modules the library imports take, in
 *   processes of their own that import nothing else);
 * - `polling`: `runner.run()` asking for jobs every 3 s (the default check interval, no long
 *   polling) with none to run, for 30 s;
 * - `quiet`: 16 jobs running at once, each a `runScript(["sleep 10"])` that prints nothing
 *   (the RSS is read over 6 s once all 16 have started).
 *
 * Each in a process of its own. RSS is sampled every 100 ms; the figure is the last sample, the
 * detail gives the peak and the CPU time used.
 *
 * Run: `deno run -A bench/idle.ts` (all three), or one with `bare`, `polling` or `quiet`.
 *
 * @module
 */
import { type Job, RunnerBuilder, runScript, ScriptFailure } from "../mod.ts";
import { staticImports } from "../scripts/static_imports.ts";
import {
  cpuMs,
  emit,
  type Figure,
  isDriver,
  mb,
  MockProcess,
  rss,
  type RssParts,
  rssParts,
  runChild,
  sleep,
  tempBuildDir,
} from "./_lib.ts";

const POLL_SECONDS = Number(Deno.env.get("BENCH_IDLE_SECONDS") ?? 30);

/** Samples RSS every 100 ms for `ms`; returns the last and the peak. */
async function sample(ms: number): Promise<{ last: number; peak: number }> {
  let peak = rss();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await sleep(100);
    peak = Math.max(peak, rss());
  }
  return { last: rss(), peak };
}

async function bare(): Promise<void> {
  await sleep(500);
  const { last, peak } = await sample(2000);
  emit({ figures: [], data: { last, peak } });
}

async function polling(): Promise<void> {
  const mock = await MockProcess.start();
  const runner = await new RunnerBuilder(mock.url, mock.token, await tempBuildDir()).build();
  const stop = new AbortController();
  const cpu0 = cpuMs();
  const run = runner.run(() => ({ step: () => Promise.resolve() }), 16, { signal: stop.signal });
  const { last, peak } = await sample(POLL_SECONDS * 1000);
  const cpu = cpuMs() - cpu0;
  const parts = rssParts();
  const { heapTotal, heapUsed } = Deno.memoryUsage();
  stop.abort();
  await run;
  const stats = await mock.stats();
  await mock.close();
  emit({
    figures: [],
    data: {
      last,
      peak,
      cpuMs: cpu,
      requests: stats.counts.request ?? 0,
      parts,
      heapTotal,
      heapUsed,
    },
  });
}

async function quiet(): Promise<void> {
  const mock = await MockProcess.start();
  const runner = await new RunnerBuilder(mock.url, mock.token, await tempBuildDir()).build();
  let started = 0;
  const factory = (job: Job) => ({
    async step(script: readonly string[], _phase: string, signal: AbortSignal) {
      started++;
      const code = await runScript(script, {
        cwd: job.buildDir,
        variables: job.variables,
        signal,
        echo: false,
      });
      if (code !== 0) throw new ScriptFailure(code);
    },
  });
  await mock.enqueue(16, { script: ["sleep 10"] });
  const stop = new AbortController();
  const before = rss();
  const run = runner.run(factory, 16, { signal: stop.signal });
  while (started < 16) await sleep(10);
  await sleep(1000);
  const cpu0 = cpuMs();
  const { last, peak } = await sample(6000);
  const cpu = cpuMs() - cpu0;
  await mock.allFinished();
  stop.abort();
  await run;
  const stats = await mock.stats();
  await mock.close();
  if (stats.states.success !== 16) throw new Error(`Jobs ended ${JSON.stringify(stats.states)}`);
  emit({ figures: [], data: { last, peak, before, cpuMs: cpu } });
}

/**
 * The `node:` modules the library's main entry loads at start-up: those its static imports
 * reach (`deno info`; what only a job needs is imported dynamically, with the first job).
 */
async function startupNodeModules(): Promise<string[]> {
  const reached = await staticImports(new URL("../mod.ts", import.meta.url).pathname);
  return reached.filter((s) => s.startsWith("node:")).sort();
}

/** The RSS, bytes, of a Deno process that imports `modules` (and nothing else) and waits 1.5 s. */
async function denoWith(modules: string[]): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "bench-idle-" });
  try {
    const file = `${dir}/main.js`;
    await Deno.writeTextFile(
      file,
      modules.map((m) => `import ${JSON.stringify(m)};\n`).join("") +
        "await new Promise((r) => setTimeout(r, 1500));\nconsole.log(Deno.memoryUsage().rss);\n",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file],
      cwd: dir,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`deno run of ${modules.join(", ") || "nothing"} failed`);
    return Number(new TextDecoder().decode(out.stdout).trim());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function driver(): Promise<void> {
  const denoAlone = await denoWith([]);
  const nodeModules = await startupNodeModules();
  const denoNode = await denoWith(nodeModules);
  const base = (await runChild("idle.ts", ["bare"])).data as Record<string, number>;
  const poll = (await runChild("idle.ts", ["polling"], { profile: true })).data as Record<
    string,
    number
  >;
  const jobs = (await runChild("idle.ts", ["quiet"], { profile: true })).data as Record<
    string,
    number
  >;
  const footprint = `Deno alone ${mb(denoAlone).toFixed(1)} MB, with the node: modules the ` +
    `library imports at start (${nodeModules.map((m) => m.slice(5)).join(", ")}) ${
      mb(denoNode).toFixed(1)
    } MB, with the library ${mb(base.last).toFixed(1)} MB`;
  const parts = poll.parts as unknown as RssParts | undefined;
  const where = parts
    ? `; by mapping (MB): deno executable ${mb(parts.binary).toFixed(0)}, C heap of the main ` +
      `thread ${mb(parts.cHeap).toFixed(0)}, anonymous (V8 heap, other threads) ${
        mb(parts.anon).toFixed(0)
      }, other ${mb(parts.other).toFixed(0)}; ${parts.threads} threads; V8 heap ${
        mb(poll.heapTotal).toFixed(0)
      } MB (${mb(poll.heapUsed).toFixed(0)} MB used)`
    : "";
  const baseline = { label: "Deno with the library imported", value: mb(base.last), unit: "MB" };
  const figures: Figure[] = [
    {
      id: "5a",
      name: `idle runner RSS, polling every 3 s for ${POLL_SECONDS} s`,
      value: mb(poll.last),
      unit: "MB",
      baseline,
      target: { op: "<=", value: 55 },
      detail: `peak ${mb(poll.peak).toFixed(0)} MB; ${poll.requests} job requests; CPU ${
        poll.cpuMs.toFixed(0)
      } ms in ${POLL_SECONDS} s; ${footprint}${where}`,
    },
    {
      id: "5b",
      name: "runner RSS with 16 quiet jobs running",
      value: mb(jobs.last),
      unit: "MB",
      baseline,
      detail: `peak ${mb(jobs.peak).toFixed(0)} MB, ${
        mb((jobs.last - poll.last) / 16).toFixed(1)
      } MB per job over the idle runner; CPU ${jobs.cpuMs.toFixed(0)} ms in 6 s`,
    },
  ];
  emit({ figures, data: { denoAlone, denoNode, bare: base, polling: poll, quiet: jobs } });
}

if (import.meta.main) {
  if (isDriver()) await driver();
  else if (Deno.args[0] === "bare") await bare();
  else if (Deno.args[0] === "polling") await polling();
  else if (Deno.args[0] === "quiet") await quiet();
  else throw new Error(`Unknown mode ${Deno.args[0]}`);
}
