// C13.3: scale-out. Several example-runner processes (distinct system ids) share one GitLab's
// queue over sockets; a rolling restart (SIGTERM each in turn, a new one started) loses no job,
// runs none twice and leaves none running; every process exits 0 after draining.
import { assert } from "./_deps.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { listenerUrl, type RunnerProcess, startRunner } from "./_fleet.ts";

const JOBS = 400;
const PROCESSES = 4;
const CONCURRENCY = 4;

/** A seeded PRNG (mulberry32): the same durations every run. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Spawned {
  name: string;
  systemId: string;
  process: RunnerProcess;
  url: string;
}

const FINAL = new Set(["success", "failed", "canceled"]);

Deno.test("C13.3 four runner processes share the queue; a rolling restart loses no job and runs none twice", async () => {
  const started = Date.now();
  const mock = new GitLabMock({ recordRequests: false });
  const gitlab = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir({ prefix: "glr-scale-" });
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(tokenFile, mock.runnerToken);
  const random = prng(17);
  const expected = new Map<number, { state: string; exitCode?: number }>();
  for (let i = 0; i < JOBS; i++) {
    const ms = Math.floor(random() * 300);
    const fails = i % 10 === 7;
    const job = mock.job().variable("GIT_STRATEGY", "none").name(`j${i}`)
      .script([`sleep ${(ms / 1000).toFixed(3)}`, ...(fails ? ["exit 3"] : [])])
      .enqueue();
    expected.set(job.id, fails ? { state: "failed", exitCode: 3 } : { state: "success" });
  }

  const all: Spawned[] = [];
  let n = 0;
  const spawn = async (): Promise<Spawned> => {
    const name = `runner-${n++}`;
    const stateDir = `${dir}/${name}`;
    await Deno.mkdir(stateDir);
    // A distinct system id per process, as each pod has its own state volume.
    const systemId = `r_${name.replace("-", "").padEnd(12, "x")}`;
    await Deno.writeTextFile(`${stateDir}/.runner_system_id`, systemId);
    const process = startRunner({
      url: gitlab.url,
      tokenFile,
      buildDir: `${stateDir}/builds`,
      stateDir,
      concurrency: CONCURRENCY,
      listenAddress: "127.0.0.1:0",
      extra: ["--name", name],
    });
    const spawned = { name, systemId, process, url: "" };
    all.push(spawned);
    spawned.url = await listenerUrl(process);
    await process.line(/^Waiting for jobs/);
    return spawned;
  };
  const finished = () => mock.jobs.filter((j) => FINAL.has(j.state)).length;
  const waitFinished = async (count: number, ms: number) => {
    const end = Date.now() + ms;
    while (finished() < count) {
      if (Date.now() > end) throw new Error(`Only ${finished()} of ${count} jobs finished`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const stopAndDrain = async (s: Spawned) => {
    s.process.kill("SIGTERM");
    await s.process.line(/^Stopping/);
    // While it drains, it is not ready (a process with nothing to drain may be gone already).
    const ready = await fetch(`${s.url}/health/ready`).then(async (r) => {
      await r.body?.cancel();
      return r.status;
    }, () => "closed");
    assert.ok(ready === 503 || ready === "closed", `${s.name} is not ready while it drains`);
    const code = await s.process.exited;
    assert.equal(code, 0, `${s.name} exits 0 after draining: ${await s.process.stderr}`);
  };

  try {
    const first = await Promise.all(Array.from({ length: PROCESSES }, () => spawn()));
    await waitFinished(40, 40_000);
    // Rolling restart while jobs run: each old process in turn is stopped (SIGTERM) and a
    // new one takes its place.
    const drainedWithJobs: string[] = [];
    for (const old of first) {
      const replacement = spawn();
      const running = old.process.lines.filter((l) => / started$/.test(l)).length -
        old.process.lines.filter((l) => /^job \d+ \S+ (success|failed|canceled)/.test(l)).length;
      if (running > 0) drainedWithJobs.push(old.name);
      await stopAndDrain(old);
      await replacement;
    }
    assert.ok(finished() < JOBS, "the restart happened while jobs were still queued");
    assert.ok(drainedWithJobs.length >= 1, "at least one process was stopped with jobs running");
    await waitFinished(JOBS, 40_000);
    // A scrape of a replacement before it stops: its metrics count what its log says it ran.
    const last = all[all.length - 1];
    const text = await (await fetch(`${last.url}/metrics`)).text();
    const total = /^gitlab_runner_jobs_total\{runner="mock-runn",system_id="([^"]+)"\} (\d+)$/m
      .exec(text);
    assert.ok(total, text);
    assert.equal(total[1], last.systemId);
    assert.equal(
      Number(total[2]),
      last.process.lines.filter((l) => / started$/.test(l)).length,
    );
    await Promise.all(all.slice(PROCESSES).map(stopAndDrain));
  } finally {
    for (const s of all) s.process.kill("SIGKILL");
    await Promise.all(all.map((s) => s.process.exited));
    await gitlab.close();
  }
  const elapsed = Date.now() - started;

  // Every job ended once, with the right state; none is left running.
  for (const job of mock.jobs) {
    const want = expected.get(job.id)!;
    assert.equal(job.state, want.state, `job ${job.id} ${job.name}`);
    if (want.exitCode) {
      assert.equal(job.failureReason, "script_failure");
      assert.equal(job.exitCode, want.exitCode);
    }
  }
  // None ran twice: each job started once, in one process, and ended there.
  const startedBy = new Map<number, string>();
  const endedBy = new Map<number, string>();
  for (const s of all) {
    for (const line of s.process.lines) {
      const start = /^job (\d+) \S+ started$/.exec(line);
      const end = /^job (\d+) \S+ (success|failed|canceled)/.exec(line);
      for (const [m, map] of [[start, startedBy], [end, endedBy]] as const) {
        if (!m) continue;
        const id = Number(m[1]);
        assert.ok(!map.has(id), `job ${id} in ${map.get(id)} and ${s.name}`);
        map.set(id, s.name);
      }
    }
  }
  assert.equal(startedBy.size, JOBS);
  assert.deepEqual([...endedBy].sort(), [...startedBy].sort(), "each job ended where it started");
  // The queue was shared: the first four and the replacements all ran jobs; 8 system ids.
  assert.equal(new Set(all.map((s) => s.systemId)).size, PROCESSES * 2);
  for (const s of all.slice(0, PROCESSES)) {
    assert.ok([...startedBy.values()].includes(s.name), `${s.name} ran jobs`);
  }
  assert.ok(
    all.slice(PROCESSES).some((s) => [...startedBy.values()].includes(s.name)),
    "the replacements ran jobs",
  );
  await Deno.remove(dir, { recursive: true });
  console.log(`${JOBS} jobs, ${all.length} processes, rolling restart: ${elapsed} ms`);
  assert.ok(elapsed < 60_000, `under a minute: ${elapsed} ms`);
});
