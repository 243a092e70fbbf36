import { assert } from "./_deps.ts";
import { harness, until } from "./_harness.ts";
import { type JobHandler, outputln, type Phase, RunnerBuilder } from "../mod.ts";

/** A handler whose script step runs until aborted; records what happened. */
function blocking() {
  const seen = { phases: [] as Phase[], aborted: 0, cleanup: 0 };
  const handler = (): JobHandler => ({
    step: (_script, phase, signal) => {
      seen.phases.push(phase);
      if (phase !== "script") return Promise.resolve();
      return new Promise<void>((_, reject) => {
        outputln("working…");
        signal.addEventListener("abort", () => {
          seen.aborted++;
          reject(signal.reason);
        }, { once: true });
      });
    },
    cleanup: () => {
      seen.cleanup++;
    },
  });
  return { seen, handler };
}

for (const style of ["bare-forbidden", "forbidden", "job-status"] as const) {
  Deno.test(`C5.2 hard cancel (${style}) aborts the step; no after_script, cleanup runs, no final state`, async () => {
    await using h = await harness({ cancelResponse: style });
    const runner = await new RunnerBuilder(h.mock.url, h.mock.runnerToken, h.dir)
      .fetch(h.mock.fetch).clock(h.clock).systemId("s_0123456789ab").build();
    // Without cancel_gracefully announced GitLab cancels hard.
    const job = h.mock.job().script(["sleep 1000"]).afterScript(["echo after"]).enqueue();
    const { seen, handler } = blocking();
    assert.equal(await runner.requestJob(handler), true);
    await until(h.clock, () => seen.phases.length === 1);
    h.mock.cancel(job.id, { graceful: false });
    await until(h.clock, () => runner.running === 0);
    assert.equal(seen.aborted, 1);
    assert.deepEqual(seen.phases, ["script"]);
    assert.equal(seen.cleanup, 1);
    assert.equal(job.state, "canceled");
    assert.equal(job.finalUpdates.length, 0);
    assert.equal(runner.outcomes[0].state, "aborted");
  });
}

Deno.test("C5.3 graceful cancel: script aborted, after_script runs, final PUT, job canceled", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  assert.equal(runner.features.cancel_gracefully, true);
  const job = h.mock.job().script(["sleep 1000"]).afterScript(["echo after"]).enqueue();
  const { seen, handler } = blocking();
  assert.equal(await runner.requestJob(handler), true);
  await until(h.clock, () => seen.phases.length === 1);
  h.mock.cancel(job.id); // graceful: the runner announced cancel_gracefully
  assert.equal(job.state, "canceling");
  await until(h.clock, () => runner.running === 0);
  assert.equal(seen.aborted, 1);
  assert.deepEqual(seen.phases, ["script", "after_script"]);
  assert.equal(seen.cleanup, 1);
  assert.equal(job.finalUpdates.length, 1);
  assert.equal(job.finalUpdates[0].state, "failed");
  assert.equal(job.state, "canceled");
  assert.match(job.logText, /Job is being canceled/);
});

Deno.test("C5.2 a cancel seen on the keep-alive PUT aborts a quiet job", async () => {
  await using h = await harness();
  const runner = await new RunnerBuilder(h.mock.url, h.mock.runnerToken, h.dir)
    .fetch(h.mock.fetch).clock(h.clock).systemId("s_0123456789ab").build();
  const job = h.mock.job().script(["sleep 1000"]).enqueue();
  const seen = { aborted: false };
  await runner.requestJob(() => ({
    step: (_s, _p, signal) =>
      new Promise<void>((_, reject) =>
        signal.addEventListener("abort", () => {
          seen.aborted = true;
          reject(signal.reason);
        })
      ),
  }));
  // The log's header lines, the stage line included, reach GitLab; after them the job is quiet
  // (waiting for the first PATCH only raced the stage line's PATCH, which then saw the cancel).
  await until(h.clock, () => h.mock.jobs[0].logText.includes('Executing "step_script" stage'));
  h.mock.cancel(job.id, { graceful: false });
  await until(h.clock, () => runner.running === 0);
  assert.equal(seen.aborted, true);
  assert.ok(h.mock.requests.some((r) => r.route === "update" && r.status === 403));
  assert.equal(job.state, "canceled");
});
