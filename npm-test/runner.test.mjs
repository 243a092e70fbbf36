// The built npm package on Node: a runner processing jobs end to end against the GitLab mock
// served over HTTP by node:http (`mock.listen()` picks the Node listener when there is no Deno).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  currentJobLog,
  JobFailure,
  outputln,
  RunnerBuilder,
  ScriptFailure,
} from "@x/gitlab-runner";
import { Client, mapFailureReason, parseJobPayloadText } from "@x/gitlab-runner/client";
import { delay, served } from "./_helpers.mjs";

const FINAL = new Set(["success", "failed", "canceled"]);
const LOG_HEADER = "Running with @x/gitlab-runner 0.1.0\n  on runner s_0123456789ab\n";
const STAGE = '\x1b[32;1mExecuting "step_script" stage of the job script\x1b[0;m\n';
const SUCCEEDED = "\x1b[32;1mJob succeeded\x1b[0;m\n";

/**
 * Runs `runner.run` (after it, `meanwhile()`) until `predicate(mock)` holds, then stops the
 * runner and waits for it to drain.
 */
async function runUntil(ctx, runner, factory, predicate, maximum = 2, meanwhile = undefined) {
  const stop = new AbortController();
  const done = runner.run(factory, maximum, { signal: stop.signal });
  try {
    await meanwhile?.();
    await ctx.mock.waitFor(predicate, { timeoutMs: 10_000 });
  } finally {
    stop.abort();
    await done;
  }
}

test("verify checks the runner token over HTTP", async () => {
  const ctx = await served();
  try {
    const runner = await ctx.builder.build();
    assert.deepEqual(await runner.verify(), { valid: true, id: 1, tokenExpiresAt: undefined });
    const bad = await new RunnerBuilder(ctx.server.url, "glrt-not-the-token", ctx.dir).build();
    assert.equal((await bad.verify()).valid, false);
    assert.match(ctx.server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(ctx.mock.requestCount("verify"), 2);
  } finally {
    await ctx.close();
  }
});

test("the ./client entry on Node: the low-level client takes a job over HTTP and ends it", async () => {
  const ctx = await served();
  try {
    const job = ctx.mock.job().script(["make test"]).enqueue();
    const client = new Client(ctx.server.url);
    const answer = await client.requestJob(ctx.mock.runnerToken);
    assert.equal(answer.type, "job");
    assert.equal(answer.job.ok, true);
    assert.equal(answer.job.payload.id, job.id);
    assert.deepEqual(answer.job.payload.steps[0].script, ["make test"]);
    const update = await client.updateJob(job.id, answer.job.payload.token, { state: "success" });
    assert.equal(update.outcome, "ok");
    assert.equal(job.state, "success");
    assert.equal(parseJobPayloadText('{"id": 7, "token": "glcbt-x", "vari').id, 7);
    assert.equal(mapFailureReason("runner_configuration_error", []), "script_failure");
  } finally {
    await ctx.close();
  }
});

test("runner processes jobs end to end: job log, masking, checksum, final update", async () => {
  const ctx = await served();
  try {
    const runner = await ctx.builder.build();
    const jobs = [1, 2, 3].map((n) =>
      ctx.mock.job().name(`job-${n}`).variable("SECRET", "hunter2-hunter2", { masked: true })
        .script([`make part-${n}`, "make check"]).enqueue()
    );
    const seen = [];
    const factory = (job) => ({
      async step(script, phase) {
        seen.push(`${job.id}:${phase}`);
        for (const line of script) outputln(`${phase}: ${line}`);
        // The three ways to write to the log: outputln, job.trace and the job.log stream.
        job.trace(`secret is ${job.variable("SECRET").value}\n`);
        const writer = job.log.getWriter();
        await writer.write(new TextEncoder().encode(`streamed from job ${job.id}\n`));
        writer.releaseLock();
        currentJobLog()?.write("through currentJobLog\n");
      },
    });
    await runUntil(ctx, runner, factory, () => jobs.every((j) => j.state === "success"));

    assert.deepEqual(seen.sort(), ["1:script", "2:script", "3:script"]);
    for (const [i, job] of jobs.entries()) {
      const n = i + 1;
      assert.equal(
        job.logText,
        LOG_HEADER + STAGE +
          `script: make part-${n}\nscript: make check\n` +
          `secret is [MASKED]\nstreamed from job ${job.id}\nthrough currentJobLog\n` +
          SUCCEEDED,
      );
      assert.equal(job.finalUpdates.length, 1);
      assert.equal(job.finalUpdates[0].state, "success");
      assert.deepEqual(job.finalUpdates[0].output, {
        checksum: job.logChecksum,
        bytesize: job.logSize,
      });
    }
    assert.deepEqual(
      runner.outcomes.map((o) => [o.id, o.state]).sort(),
      [[1, "success"], [2, "success"], [3, "success"]],
    );
    assert.equal(runner.running, 0);
    // Everything went over the socket.
    assert.ok(ctx.mock.requestCount("request") >= 3);
    assert.ok(ctx.mock.requestCount("trace") >= 3);
    assert.equal(ctx.mock.requestCount("update"), 3);
  } finally {
    await ctx.close();
  }
});

test("failing steps report the exit code and the failure reason", async () => {
  const ctx = await served();
  try {
    const runner = await ctx.builder.build();
    const exit3 = ctx.mock.job().name("exit3").script(["false"]).enqueue();
    const board = ctx.mock.job().name("board").script(["flash"]).enqueue();
    const factory = (job) => ({
      step: () =>
        Promise.reject(
          job.id === exit3.id
            ? new ScriptFailure(3)
            : new JobFailure("runner_system_failure", { message: "Board did not boot" }),
        ),
    });
    await runUntil(ctx, runner, factory, () => FINAL.has(exit3.state) && FINAL.has(board.state));
    assert.equal(exit3.state, "failed");
    assert.equal(exit3.failureReason, "script_failure");
    assert.equal(exit3.exitCode, 3);
    assert.equal(board.state, "failed");
    assert.equal(board.failureReason, "runner_system_failure");
  } finally {
    await ctx.close();
  }
});

/** A handler whose script step writes a line and then runs until aborted. */
function blocking() {
  const seen = { phases: [], aborted: 0, cleanup: 0 };
  const factory = () => ({
    step(_script, phase, signal) {
      seen.phases.push(phase);
      if (phase !== "script") return Promise.resolve();
      outputln("working…");
      return new Promise((_, reject) => {
        signal.addEventListener("abort", () => {
          seen.aborted++;
          reject(signal.reason);
        }, { once: true });
      });
    },
    cleanup() {
      seen.cleanup++;
    },
  });
  return { seen, factory };
}

test("hard cancel aborts the step; cleanup runs, no after_script, no final update", async () => {
  // GitLab's X-GitLab-Trace-Update-Interval is 60 s by default; 1 s keeps the test short.
  const ctx = await served({ traceUpdateInterval: 1 });
  try {
    const runner = await ctx.builder.build();
    const job = ctx.mock.job().script(["sleep 1000"]).afterScript(["echo after"]).enqueue();
    const { seen, factory } = blocking();
    const stop = new AbortController();
    const done = runner.run(factory, 1, { signal: stop.signal });
    try {
      // The step's output reached GitLab over HTTP before the cancel.
      await ctx.mock.waitFor(() => job.logText.includes("working…"), { timeoutMs: 5_000 });
      const started = Date.now();
      ctx.mock.cancel(job.id, { graceful: false });
      assert.equal(job.state, "canceled");
      while (runner.running > 0 && Date.now() - started < 5_000) await delay(10);
      assert.equal(runner.running, 0);
      assert.ok(Date.now() - started < 3_000, "the cancel was noticed within 3 s");
    } finally {
      stop.abort();
      await done;
    }
    assert.equal(seen.aborted, 1);
    assert.deepEqual(seen.phases, ["script"]);
    assert.equal(seen.cleanup, 1);
    assert.equal(job.finalUpdates.length, 0);
    assert.equal(runner.outcomes[0].state, "aborted");
    assert.match(job.logText, /working…\n/);
  } finally {
    await ctx.close();
  }
});

test("graceful cancel aborts the script, runs after_script and reports failed", async () => {
  const ctx = await served({ traceUpdateInterval: 1 });
  try {
    const runner = await ctx.builder.build();
    assert.equal(runner.features.cancel_gracefully, true);
    const job = ctx.mock.job().script(["sleep 1000"]).afterScript(["echo after"]).enqueue();
    const { seen, factory } = blocking();
    await runUntil(ctx, runner, factory, () => FINAL.has(job.state), 1, async () => {
      await ctx.mock.waitFor(() => job.logText.includes("working…"), { timeoutMs: 5_000 });
      ctx.mock.cancel(job.id); // graceful: the runner announced cancel_gracefully
      assert.equal(job.state, "canceling");
    });
    assert.equal(seen.aborted, 1);
    assert.deepEqual(seen.phases, ["script", "after_script"]);
    assert.equal(seen.cleanup, 1);
    assert.equal(job.state, "canceled");
    assert.equal(job.finalUpdates.length, 1);
    assert.equal(job.finalUpdates[0].state, "failed");
    assert.match(job.logText, /working…\n[\s\S]*Job is being canceled/);
  } finally {
    await ctx.close();
  }
});
