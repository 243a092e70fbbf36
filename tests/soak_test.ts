// A soak run: 200 jobs at concurrency 16 against the in-process mock while it injects random
// faults on every route. Every job must end in the right state with its log intact, once.
import { assert, FakeClock } from "./_deps.ts";
import { until } from "./_harness.ts";
import { RunnerBuilder, ScriptFailure } from "../mod.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { mulberry32 } from "../src/mock/_util.ts";

const JOBS = Number(Deno.env.get("SOAK_JOBS") ?? 200);

Deno.test("C4.3 C5.1 C1.6 C8.1 C8.4 C8.6 C8.8 M11 soak: 200 jobs at concurrency 16 under random faults, hangs, an outage and 409 storms", async () => {
  const random = mulberry32(20261127);
  const clock = new FakeClock();
  // The stuck-job sweeper is on (1 h, GitLab's default): a job the runner stops reaching fails.
  const mock = new GitLabMock({ clock, random: mulberry32(7), stuckAfterMs: 3600_000 });
  const dir = await Deno.makeTempDir({ prefix: "glr-soak-" });
  try {
    const p = 0.04;
    const addFaults = () => {
      mock.fault({ route: "*", status: 500, probability: p, times: Infinity });
      mock.fault({ route: "*", status: 502, probability: p / 2, times: Infinity });
      mock.fault({ route: "request", status: 409, probability: p, times: Infinity });
      mock.fault({ route: "trace", status: 409, probability: p, times: Infinity });
      mock.fault({
        route: "*",
        status: 429,
        headers: { "Retry-After": "1" },
        probability: p,
        times: Infinity,
      });
      mock.fault({ route: "request", drop: "before", probability: p, times: Infinity });
      mock.fault({ route: "trace", drop: true, probability: p, times: Infinity });
      mock.fault({ route: "update", drop: true, probability: p, times: Infinity });
      // Requests accepted and never answered (until the runner's header deadline).
      mock.fault({ route: "*", hang: true, probability: p / 2, times: Infinity });
      // Applied, but the answer is lost: 416s with a non-zero Range, final states already taken.
      mock.fault({ route: "trace", drop: "after", probability: p, times: Infinity });
      mock.fault({ route: "update", drop: "after", probability: p, times: Infinity });
    };
    addFaults();

    const expected = new Map<number, { text: string; fail?: number }>();
    for (let i = 0; i < JOBS; i++) {
      const job = mock.job().name(`soak-${i}`).script([`job ${i}`]).enqueue();
      const lines: string[] = [];
      const n = 1 + Math.floor(random() * 40);
      for (let l = 0; l < n; l++) {
        lines.push(`job ${job.id} line ${l} ${"x".repeat(Math.floor(random() * 200))}\n`);
      }
      expected.set(job.id, { text: lines.join(""), fail: i % 5 === 0 ? 1 + (i % 7) : undefined });
    }

    const runs = new Map<number, number>();
    const inStep = new Set<number>();
    // Logs must arrive whole through the 20 minute outage plus hangs of 10 min (the header
    // deadline) on top: the flush deadline is set above that
    // (with the default 5 min, a job ending in the outage may send its state without the end of
    // its log, C8.5, tested in liveness_test.ts).
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, dir)
      .fetch(mock.fetch).clock(clock).random(random).systemId("s_0123456789ab")
      .deadlines({ flushMs: 55 * 60_000 }).build();
    const stop = new AbortController();
    const done = runner.run(
      (job) => {
        runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
        const want = expected.get(job.id)!;
        return {
          step: async () => {
            inStep.add(job.id);
            const lines = want.text.split(/(?<=\n)/);
            for (const line of lines) {
              job.trace(line);
              if (random() < 0.2) await clock.sleep(Math.floor(random() * 5000));
            }
            inStep.delete(job.id);
            if (want.fail) throw new ScriptFailure(want.fail);
          },
        };
      },
      16,
      { signal: stop.signal },
    );

    // Now and then GitLab loses a running job's log (416 Range: 0-0 on the next PATCH). Only
    // while the job's script runs: a loss after the last PATCH cannot be seen by any runner
    // (GitLab only logs a checksum mismatch on the final update).
    let losses = 0;
    let outage: { from: number; to: number } | undefined;
    let storms = 0;
    const chaos = (async () => {
      while (!stop.signal.aborted) {
        await clock.sleep(2000).catch(() => {});
        const ended = mock.jobs.filter((j) => j.state === "success" || j.state === "failed");
        if (!outage && ended.length >= JOBS / 3) {
          // A GitLab outage of 20 minutes in the middle: every route answers 502 or nothing.
          outage = { from: clock.now(), to: clock.now() + 20 * 60_000 };
          mock.clearFaults();
          mock.fault({ route: "*", status: 502, probability: 0.5, times: Infinity });
          mock.fault({ route: "*", drop: true, times: Infinity });
          await clock.sleep(20 * 60_000);
          mock.clearFaults();
          addFaults();
        }
        if (storms < 3 && ended.length >= ((storms + 1) * JOBS) / 4) {
          // A 409 storm on the job queue, three times in the run.
          mock.fault({ route: "request", status: 409, times: 30 });
          storms++;
        }
        const running = mock.jobs.filter((j) => j.state === "running" && inStep.has(j.id));
        if (running.length && random() < 0.3) {
          mock.loseTrace(running[Math.floor(random() * running.length)].id);
          losses++;
        }
      }
    })();

    const progress = setInterval(() => {
      if (!Deno.env.get("SOAK_DEBUG")) return;
      const states = new Map<string, number>();
      for (const j of mock.jobs) states.set(j.state, (states.get(j.state) ?? 0) + 1);
      console.log(new Date(clock.now()).toISOString(), [...states], runner.running, outage);
      console.log(
        mock.requests.filter((r) => r.route === "request").slice(-3).map((r) =>
          `${r.status}${r.faulted ? "F" : ""}${r.done ? "" : "…"}@${new Date(r.at).toISOString()}`
        ),
        clock.pending,
      );
    }, 2000);
    try {
      await until(
        clock,
        () => mock.jobs.every((j) => j.state === "success" || j.state === "failed"),
        48 * 3600_000,
      );
    } finally {
      clearInterval(progress);
    }
    stop.abort();
    // The last poll may be waiting out a fault's backoff: let fake time run until run() ends.
    let finished = false;
    done.then(() => (finished = true));
    await until(clock, () => finished);
    let chaosEnded = false;
    chaos.then(() => (chaosEnded = true));
    await until(clock, () => chaosEnded);

    assert.ok(losses > 0, "the chaos loop lost no log");
    assert.ok(outage, "no outage happened");
    assert.ok(storms > 0, "no 409 storm happened");
    const faulted = mock.requests.filter((r) => r.faulted).length;
    assert.ok(faulted > 100, `only ${faulted} faults injected`);
    const hung = mock.requests.filter((r) => r.faulted && r.status === 0).length;
    assert.ok(hung > 10, `only ${hung} requests hung or dropped`);
    // 416 resyncs to a non-zero offset happened (PATCHes applied whose answers were lost).
    const resyncs = mock.requests.filter((r) =>
      r.route === "trace" && r.status === 416 && !r.faulted
    ).length;
    assert.ok(resyncs > 0, "no 416 resync happened");
    for (const job of mock.jobs) {
      const want = expected.get(job.id)!;
      assert.equal(runs.get(job.id), 1, `job ${job.id} ran ${runs.get(job.id)} times`);
      assert.equal(job.state, want.fail ? "failed" : "success", `job ${job.id}`);
      if (want.fail) {
        assert.equal(job.exitCode, want.fail);
        assert.equal(job.failureReason, "script_failure", `job ${job.id}`);
      }
      const log = job.logText;
      // The final PUT's checksum and size are those of the log GitLab holds.
      const final = job.finalUpdates.at(-1) as { output?: { checksum: string; bytesize: number } };
      assert.equal(final.output?.bytesize, job.logSize, `job ${job.id}: bytesize`);
      assert.equal(final.output?.checksum, job.logChecksum, `job ${job.id}: checksum`);
      // The runner's own lines are intact too, around the job's output.
      assert.ok(log.startsWith("Running with @x/gitlab-runner"), `job ${job.id}: first line`);
      const RESET = "\x1b[0;m\n";
      assert.ok(
        want.fail
          ? log.endsWith(`ERROR: Job failed: exit code ${want.fail}${RESET}`)
          : log.endsWith(`Job succeeded${RESET}`),
        `job ${job.id}: last line: ${JSON.stringify(log.slice(-200))}`,
      );
      const start = log.indexOf(want.text);
      if (start <= 0) {
        console.log(JSON.stringify(
          {
            id: job.id,
            log: log.slice(0, 400),
            len: log.length,
            want: want.text.length,
            reqs: mock.requests.filter((r) => r.jobId === job.id).map((r) =>
              `${r.route}:${r.status}${r.faulted ? "F" : ""}:${
                r.headers.get("content-range") ?? ""
              }@${r.at}`
            ),
          },
          null,
          1,
        ));
      }
      assert.ok(start > 0, `job ${job.id}: its output is not in the log intact`);
      assert.equal(log.split(want.text).length, 2, `job ${job.id}: output twice`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
