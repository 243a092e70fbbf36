// Liveness (CONFORMANCE C8, M11, M12): every wait is bounded, every job ends. The GitLab here
// misbehaves like real networks do: requests accepted and never answered, bodies that stall,
// outages of many minutes, 409 storms, lost answers.
import { assert, FakeClock } from "./_deps.ts";
import { atOnce, type Harness, harness, until } from "./_harness.ts";
import { type Job, type JobHandler, RequestError, RunnerBuilder, systemClock } from "../mod.ts";
import { Client } from "../src/client.ts";
import { JobLog } from "../src/log/job_log.ts";
import { GitLabMock } from "../src/mock/mod.ts";

const ok: JobHandler = { step: async () => {} };
const ended = (state: string) => !["pending", "running", "canceling"].includes(state);

/** Runs the queued jobs with `factory` until they all ended, then stops the runner. */
async function runAll(
  h: Harness,
  factory: (job: Job) => JobHandler | Promise<JobHandler>,
  builder = h.builder,
  limitMs = 6 * 3600_000,
) {
  const runner = await builder.build();
  const stop = new AbortController();
  const done = runner.run(factory, 4, { signal: stop.signal });
  await until(
    h.clock,
    () => h.mock.jobs.every((j) => ended(j.state)) && runner.running === 0,
    limitMs,
  );
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  return runner;
}

// ------------------------------------------------------------------------------------- C8.1

Deno.test("C8.1 a PATCH accepted and never answered is aborted at the header deadline and retried", async () => {
  await using h = await harness();
  h.mock.fault({ route: "trace", hang: true, times: 1 });
  const job = h.mock.job().script(["echo hi"]).enqueue();
  const t0 = h.clock.now();
  const runner = await runAll(h, () => ({
    step: async () => {
      // Output, so that the pump PATCHes during the job.
      const { outputln } = await import("../mod.ts");
      outputln("some output");
    },
  }));
  assert.equal(job.state, "success");
  assert.match(job.logText, /some output/);
  assert.equal(runner.outcomes[0].state, "success");
  // The hanging PATCH held the job for the 10 min header deadline, not forever.
  const traces = h.mock.requests.filter((r) => r.route === "trace");
  assert.ok(traces.length >= 2);
  assert.ok(traces[1].at - traces[0].at >= 10 * 60_000, "retried after the deadline");
  assert.ok(h.clock.now() - t0 < 30 * 60_000);
});

Deno.test("C8.1 a final PUT accepted and never answered is retried until GitLab takes it", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).enqueue();
  h.mock.onRequest((r) => {
    // Once the job is picked, its final PUTs hang twice.
    if (r.route === "request" && r.status === 201) {
      h.mock.fault({ route: "update", jobId: job.id, hang: true, times: 2 });
    }
  });
  const runner = await runAll(h, () => ok);
  assert.equal(job.state, "success");
  assert.equal(runner.outcomes[0].state, "success");
});

Deno.test("C8.1 verify against a GitLab that never answers fails with RequestError at the deadline", async () => {
  await using h = await harness();
  h.mock.fault({ route: "verify", hang: true, times: Infinity });
  const runner = await h.builder.deadlines({ headerTimeoutMs: 30_000 }).build();
  const t0 = h.clock.now();
  let error: unknown;
  const p = runner.verify({ retry: { attempts: 1 } }).catch((e) => (error = e));
  await until(h.clock, () => error !== undefined);
  await p;
  assert.ok(error instanceof RequestError, String(error));
  assert.match((error as Error).message, /runners\/verify failed: No answer within 30000 ms/);
  assert.equal(h.clock.now() - t0, 30_000);
});

Deno.test("C8.1 a 201 whose body stalls fails the job it names, at the idle deadline", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).enqueue();
  // The first 2/3 of the payload arrive (id and token first, like GitLab's), then nothing.
  h.mock.fault({ route: "request", stallBody: true, times: 1 });
  const runner = await runAll(h, () => ok);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.match(job.logText, /job payload could not be read: .*No data for 120000 ms/);
  assert.equal(runner.outcomes[0].id, job.id);
});

Deno.test("C8.1 a job request held ~50 s by long polling is not cut by the deadline", async () => {
  await using h = await harness({ longPollMs: 50_000 });
  const runner = await h.builder.build();
  // First ask: an immediate 204 with the queue value; the second is held for 50 s.
  assert.equal(await runner.requestJob(() => ok), false);
  const held = runner.requestJob(() => ok);
  await h.clock.advance(50_000);
  assert.equal(await held, false);
  const requests = h.mock.requests.filter((r) => r.route === "request");
  assert.deepEqual(requests.map((r) => r.status), [204, 204]);
});

Deno.test("C8.1 a hard stop while every PATCH hangs still ends the job and run()", async () => {
  await using h = await harness();
  h.mock.fault({ route: "trace", hang: true, times: Infinity });
  const job = h.mock.job().script(["sleep"]).enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const hard = new AbortController();
  let finished = false;
  const done = runner.run(
    () => ({
      step: async (_script, _phase, signal) => {
        const { outputln } = await import("../mod.ts");
        outputln("working");
        await new Promise((_, reject) =>
          signal.addEventListener("abort", () => reject(signal.reason))
        );
      },
    }),
    1,
    { signal: stop.signal, cancelSignal: hard.signal },
  ).then(() => (finished = true));
  await until(h.clock, () => job.state === "running" && h.mock.requestCount("trace") > 0);
  stop.abort();
  hard.abort();
  await until(h.clock, () => finished, 3 * 3600_000);
  await done;
  // The log could not be sent: the final state went without it (C8.5).
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
});

// ------------------------------------------------------------------------------------- C8.2

Deno.test("C8.2 the system clock sleeps past 2^31-1 ms instead of firing at once", async () => {
  const ctl = new AbortController();
  let woke = false;
  const sleep = systemClock.sleep(30 * 86_400_000, ctl.signal).then(() => (woke = true), () => {});
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(woke, false);
  ctl.abort();
  await sleep;
  assert.equal(woke, false);
});

Deno.test("C8.2 a job timeout of 30 days and a step timeout of 25 days do not fire at once", async () => {
  const mock = new GitLabMock();
  const dir = await Deno.makeTempDir();
  try {
    const job = mock.job().script(["true"]).timeout(30 * 86_400).payload((p) => {
      (p.steps as Record<string, unknown>[])[0].timeout = 25 * 86_400;
      return p;
    }).enqueue();
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, dir)
      .fetch(mock.fetch).build();
    await runner.requestJob(() => ({
      step: () => new Promise<void>((resolve) => setTimeout(resolve, 100)),
    }));
    await runner.drain();
    assert.equal(job.state, "success", job.logText);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------------------------- C8.3

Deno.test("C8.3 the job timeout reaches the factory through job.signal", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).timeout(60).enqueue();
  let reason: unknown;
  await runAll(h, (j) =>
    new Promise<JobHandler>((_, reject) => {
      j.signal.addEventListener("abort", () => {
        reason = j.signal.reason;
        reject(j.signal.reason);
      });
    }));
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "job_execution_timeout");
  assert.match(String((reason as Error).message), /longer than 60 seconds/);
});

Deno.test("C8.3 a factory that ignores the signal is left behind after the abort grace", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).timeout(60).enqueue();
  const t0 = h.clock.now();
  let stepRan = false;
  await runAll(h, () =>
    new Promise<JobHandler>(() => {
      // Never settles.
    }).then(() => ({ step: async () => void (stepRan = true) })), h.builder.abortGrace(5_000));
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "job_execution_timeout");
  assert.equal(stepRan, false);
  assert.ok(job.finishedAt! - t0 >= 65_000 && job.finishedAt! - t0 < 70_000);
});

Deno.test("C8.3 a cancel by GitLab and a hard stop reach the factory", async () => {
  await using h = await harness();
  const canceled = h.mock.job().script(["true"]).enqueue();
  const signals: AbortSignal[] = [];
  const runner = await h.builder.build();
  const stop = new AbortController();
  const hard = new AbortController();
  const done = runner.run(
    (j) => {
      signals.push(j.signal);
      return new Promise<JobHandler>((_, reject) =>
        j.signal.addEventListener("abort", () => reject(j.signal.reason))
      );
    },
    2,
    { signal: stop.signal, cancelSignal: hard.signal },
  );
  await until(h.clock, () => signals.length === 1);
  h.mock.cancel(canceled.id);
  // The factory writes nothing: the cancel is seen by the keep-alive.
  await until(h.clock, () => signals[0].aborted);
  await until(h.clock, () => runner.running === 0);
  assert.equal(canceled.state, "canceled");
  const second = h.mock.job().script(["true"]).enqueue();
  await until(h.clock, () => signals.length === 2);
  stop.abort();
  hard.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  assert.equal(signals[1].aborted, true);
  assert.equal(second.state, "failed");
  assert.equal(second.failureReason, "runner_system_failure");
});

// ------------------------------------------------------------------------------------- C8.4

Deno.test("C8.4 the final update outlasts a 20-minute GitLab outage", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).enqueue();
  let outageFrom = 0;
  h.mock.onRequest((r) => {
    if (r.route === "request" && r.status === 201) {
      // Once the job is handed out, every job route fails for 20 minutes.
      outageFrom = h.clock.now();
      h.mock.fault({ route: "update", status: 502, times: Infinity });
      h.mock.fault({ route: "trace", status: 502, times: Infinity });
    }
  });
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => outageFrom > 0);
  await h.clock.advance(20 * 60_000);
  assert.equal(job.state, "running");
  assert.ok(h.mock.requests.filter((r) => r.route === "update").length > 10);
  h.mock.clearFaults();
  await until(h.clock, () => ended(job.state) && runner.running === 0);
  stop.abort();
  await done;
  assert.equal(runner.outcomes[0].state, "success");
  assert.equal(job.state, "success");
  // The log came back whole: the flush is tried again in every round, not given up for good.
  assert.match(job.logText, /Job succeeded/);
  const final = job.finalUpdates.at(-1)! as { output: { bytesize: number; checksum: string } };
  assert.equal(final.output.bytesize, job.logSize);
  assert.equal(final.output.checksum, job.logChecksum);
  // Delivered within a minute of the end of the outage (backoff is capped at 60 s).
  assert.ok(job.finishedAt! - outageFrom - 20 * 60_000 <= 60_000);
});

Deno.test("C8.4 past the final-update deadline the job is reported lost, not retried forever", async () => {
  await using h = await harness({ stuckAfterMs: 0 });
  const job = h.mock.job().script(["true"]).enqueue();
  h.mock.fault({ route: "update", jobId: job.id, status: 503, times: Infinity });
  const runner = await h.builder.deadlines({ finalUpdateMs: 10 * 60_000 }).build();
  await runner.requestJob(() => ({ step: async () => {} }));
  await until(h.clock, () => runner.running === 0);
  assert.equal(runner.outcomes[0].state, "lost");
  // From the first final update GitLab saw (fake time may pass while the job does real I/O
  // before it, e.g. removing the build directory on a loaded machine).
  const t0 = h.mock.requests.find((r) => r.route === "update")!.at;
  const elapsed = h.clock.now() - t0;
  assert.ok(elapsed >= 9 * 60_000 && elapsed <= 10 * 60_000, `${elapsed} ms`);
  // Retried all along: far more than the old 10 tries.
  assert.ok(h.mock.requestCount("update") > 20);
});

// ------------------------------------------------------------------------------------- C8.5

Deno.test("C8.5 with PATCH failing for good the final state goes with the size GitLab acknowledged", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).enqueue();
  const warnings: string[] = [];
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(
    () => ({
      step: async () => {
        const { outputln } = await import("../mod.ts");
        outputln("first part");
        // Let the pump send it (GitLab holds it: not a fixed fake-time wait, which a loaded
        // machine can outrun), then PATCH fails for good.
        while (!job.logText.includes("first part")) await h.clock.sleep(1_000);
        h.mock.fault({ route: "trace", status: 500, times: Infinity });
        outputln("second part, never delivered");
      },
    }),
    1,
    { signal: stop.signal },
  );
  await until(h.clock, () => ended(job.state));
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  void warnings;
  assert.equal(job.state, "success");
  assert.match(job.logText, /first part/);
  assert.doesNotMatch(job.logText, /second part/);
  const final = job.finalUpdates.at(-1)! as { output: { bytesize: number; checksum: string } };
  // The PUT's size and checksum are those of what GitLab holds, so GitLab sees no mismatch.
  assert.equal(final.output.bytesize, job.logSize);
  assert.equal(final.output.checksum, job.logChecksum);
});

Deno.test("C8.5 with PATCH answered 416 forever the final state is still sent", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).enqueue();
  h.mock.fault({
    route: "trace",
    jobId: job.id,
    status: 416,
    headers: { Range: "0-0" },
    times: Infinity,
  });
  const runner = await runAll(h, () => ok);
  assert.equal(job.state, "success");
  assert.equal(runner.outcomes[0].state, "success");
  const final = job.finalUpdates.at(-1)! as { output: { bytesize: number } };
  assert.equal(final.output.bytesize, 0);
});

// ------------------------------------------------------------------------------------- C8.6

Deno.test("C8.6 a GitLab that sends a new X-GitLab-Last-Update on every 204 gets no hot loop", async () => {
  await using h = await harness();
  let n = 0;
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const response = await h.mock.fetch(input, init);
    if (response.status !== 204) return response;
    const headers = new Headers(response.headers);
    headers.set("X-GitLab-Last-Update", `value-${n++}`);
    return new Response(null, { status: 204, headers });
  };
  const runner = await h.builder.fetch(fetch).build();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await h.clock.advance(30_000);
  stop.abort();
  await done;
  // At most two asks per 3 s check interval: the re-ask for a new value, then a wait.
  assert.ok(n <= 22, `${n} requests in 30 s`);
});

// ------------------------------------------------------------------------------------- C8.7

Deno.test("C8.7 a job returned by a request in flight at a hard stop starts aborted and fails", async () => {
  await using h = await harness();
  // The job request takes 10 s to be answered (GitLab busy assigning).
  h.mock.fault({ route: "request", delayMs: 10_000, times: 1 });
  const runner = await h.builder.build();
  const stop = new AbortController();
  const hard = new AbortController();
  let stepRan = false;
  const done = runner.run(() => ({ step: async () => void (stepRan = true) }), 1, {
    signal: stop.signal,
    cancelSignal: hard.signal,
  });
  await until(h.clock, () => h.mock.requestCount("request") === 1);
  // Both stops fire while the request is in flight; then GitLab assigns it a job.
  stop.abort();
  hard.abort();
  const job = h.mock.job().script(["true"]).enqueue();
  await until(h.clock, () => ended(job.state) && runner.running === 0);
  await done;
  assert.equal(stepRan, false);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.equal(h.mock.requestCount("request"), 1);
});

Deno.test("C8.7 retries of /jobs/request stop at the stop signal", async () => {
  await using h = await harness();
  h.mock.fault({ route: "request", status: 500, times: Infinity });
  const runner = await h.builder.build();
  const stop = new AbortController();
  let finished = false;
  const done = runner.run(() => ok, 1, { signal: stop.signal }).then(() => (finished = true));
  await until(h.clock, () => h.mock.requestCount("request") === 2);
  // Now inside the client's backoff between two attempts of one request.
  stop.abort();
  await atOnce(() => finished);
  await done;
  assert.equal(h.mock.requestCount("request"), 2);
});

// ------------------------------------------------------------------------------------- C8.8

Deno.test("C8.8 a final PUT applied but whose answer was lost is delivered, not a cancel", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).enqueue();
  h.mock.onRequest((r) => {
    if (r.route === "request" && r.status === 201) {
      h.mock.fault({ route: "update", jobId: job.id, drop: "after", times: 1 });
    }
  });
  const runner = await runAll(h, () => ok);
  assert.equal(job.state, "success");
  assert.equal(runner.outcomes[0].state, "success");
});

Deno.test("C8.8 a failed final state applied but whose answer was lost is delivered as failed", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["false"]).enqueue();
  h.mock.onRequest((r) => {
    if (r.route === "request" && r.status === 201) {
      h.mock.fault({ route: "update", jobId: job.id, drop: "after", times: 1 });
    }
  });
  const runner = await runAll(h, () => ({
    step: () => Promise.reject(new Error("boom")),
  }));
  assert.equal(job.state, "failed");
  assert.equal(runner.outcomes[0].state, "failed");
  assert.equal(runner.outcomes[0].failureReason, "script_failure");
});

// ------------------------------------------------------------------------------------- C8.9

Deno.test("C8.9 an X-GitLab-Last-Update over 1 KiB is not echoed", async () => {
  await using h = await harness();
  const huge = "x".repeat(40 * 1024);
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const response = await h.mock.fetch(input, init);
    if (response.status !== 204) return response;
    const headers = new Headers(response.headers);
    headers.set("X-GitLab-Last-Update", huge);
    return new Response(null, { status: 204, headers });
  };
  const runner = await h.builder.fetch(fetch).build();
  assert.equal(await runner.requestJob(() => ok), false);
  const job = h.mock.job().script(["true"]).enqueue();
  assert.equal(await runner.requestJob(() => ok), true);
  await runner.drain();
  assert.equal(job.state, "success");
  const bodies = h.mock.requests.filter((r) => r.route === "request")
    .map((r) => r.body as Record<string, unknown>);
  assert.equal(bodies.length, 2);
  assert.equal(bodies[1].last_update, undefined);
  assert.equal(h.mock.requests.filter((r) => r.status === 413).length, 0);
});

// ------------------------------------------------------------------------------------- C8.10

Deno.test("C8.10 a writer held by backpressure wakes as soon as the log has room, also across a keep-alive", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const client = new Client(mock.url, { fetch: mock.fetch, clock, random: () => 0.5 });
  const mj = mock.job().script(["true"]).enqueue();
  await client.requestJob(mock.runnerToken);
  const log = new JobLog({
    client,
    clock,
    jobId: mj.id,
    token: mj.token,
    keepAliveMs: 1_000,
    updateIntervalMs: 3_000,
    outputLimit: 64 * 1024 * 1024,
  });
  log.start();
  // The keep-alive at 3 s takes 10 s to be answered.
  mock.fault({ route: "update", jobId: mj.id, delayMs: 10_000, times: 1 });
  await clock.advance(3_000);
  assert.equal(mock.requestCount("update"), 1);
  // While it is in flight, a writer fills the log past its high-water mark and waits.
  const writer = log.writable.getWriter();
  let written = false;
  writer.write(new Uint8Array(10 * 1024 * 1024).fill(0x61)).then(() => (written = true));
  await clock.advance(10_000);
  // The keep-alive came back at 13 s: the pump sends at once, the writer is released, with no
  // more fake time passing (the patches' spool writes take real time: waited for in real time).
  await clock.advance(1);
  await atOnce(() => written);
  assert.ok(mj.logSize >= 1024 * 1024);
  assert.equal(clock.now() - Date.UTC(2026, 0, 1), 13_001);
  writer.releaseLock();
  await log.finish({ state: "success" });
  assert.equal(mj.logSize, 10 * 1024 * 1024);
});

// ------------------------------------------------------------------------------------- M11, M12

Deno.test("M11 the mock's sweeper fails a running job without contact for an hour", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const client = new Client(mock.url, { fetch: mock.fetch, clock });
  const quiet = mock.job().enqueue();
  const talking = mock.job().enqueue();
  await client.requestJob(mock.runnerToken);
  await client.requestJob(mock.runnerToken);
  for (let i = 0; i < 6; i++) {
    await clock.advance(15 * 60_000);
    await client.updateJob(talking.id, talking.token, { state: "running" });
  }
  assert.equal(quiet.state, "failed");
  assert.equal(quiet.failureReason, "stuck_or_timeout_failure");
  assert.equal(talking.state, "running");
  // Its token is no longer accepted: 403 with the job's status.
  const answer = await client.updateJob(quiet.id, quiet.token, { state: "success" });
  assert.equal(answer.status, 403);
  assert.equal(answer.jobStatus, "failed");
});

Deno.test("M11 stuckAfterMs: 0 turns the sweeper off", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, stuckAfterMs: 0 });
  const client = new Client(mock.url, { fetch: mock.fetch, clock });
  const job = mock.job().enqueue();
  await client.requestJob(mock.runnerToken);
  await clock.advance(5 * 3600_000);
  assert.equal(job.state, "running");
});

Deno.test("M12 mock.fetch yields to the event loop on every call", async () => {
  const mock = new GitLabMock();
  let timerRan = false;
  setTimeout(() => (timerRan = true), 0);
  let calls = 0;
  const loop = (async () => {
    while (!timerRan && calls < 10_000) {
      calls++;
      await mock.fetch(`${mock.url}/api/v4/jobs/request`, { method: "POST", body: "{}" });
    }
  })();
  await loop;
  assert.equal(timerRan, true);
  assert.ok(calls < 100, `${calls} calls before a timer could run`);
});

// ------------------------------------------------------------------------------------- C10.3

Deno.test("C10.3 a job payload over the cap is refused without being read whole; the job is failed", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["true"]).variable("BIG", "x".repeat(200 * 1024)).enqueue();
  const runner = await runAll(h, () => ok, h.builder.payloadLimit(64 * 1024));
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.match(job.logText, /job payload exceeds the limit of 65536 bytes/);
  assert.equal(runner.outcomes[0].id, job.id);
});

Deno.test("C10.3 an endless job payload stops at the cap (and a declared size over it is not read)", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const job = mock.job().script(["true"]).enqueue();
  let pulled = 0;
  let declared = false;
  let text = "";
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const request = new Request(input, init);
    if (!request.url.endsWith("/jobs/request")) return mock.fetch(request);
    // The job's real payload (asked for once; the second ask gets the same).
    if (!text) text = await (await mock.fetch(request)).text();
    // The real head of the payload (id and token first, like GitLab's), then spaces forever.
    const head = new TextEncoder().encode(text.slice(0, text.indexOf('"job_info"')));
    const filler = new Uint8Array(64 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = pulled === 0 ? head : filler;
        pulled += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const headers = new Headers({ "content-type": "application/json" });
    if (declared) headers.set("content-length", String(10 * 1024 * 1024 * 1024));
    return new Response(body, { status: 201, headers });
  };
  const client = new Client(mock.url, { fetch, clock, maxPayloadBytes: 1024 * 1024 });
  for (declared of [false, true]) {
    pulled = 0;
    const got = await client.requestJob(mock.runnerToken);
    assert.equal(got.type, "job");
    if (got.type !== "job" || got.job.ok) throw new Error("the payload was taken");
    assert.equal(got.job.id, job.id);
    assert.equal(got.job.token, job.token);
    assert.match(got.job.error, /exceeds the limit of 1048576 bytes/);
    assert.ok(pulled <= (declared ? 256 * 1024 : 1024 * 1024 + 256 * 1024), `${pulled} bytes read`);
    mock.getJob(job.id); // the mock keeps the job running; the runner would fail it
  }
});

Deno.test("C8.1 a dependency download that hangs, or whose body stalls, is retried and the job ends", async () => {
  for (const fault of [{ hang: true }, { stallBody: 100 }]) {
    await using h = await harness();
    const build = h.mock.job().name("build").state("success")
      .artifactsFile(new TextEncoder().encode("not a zip, raw bytes"))
      .enqueue();
    const test = h.mock.job().name("test").dependency(build).enqueue();
    h.mock.fault({ route: "download", ...fault, times: 1 });
    let fetched: number | undefined;
    await runAll(h, async (job) => {
      const [dependency] = job.dependencies();
      await dependency.download().catch(() => undefined);
      fetched = h.mock.requestCount("download");
      return ok;
    });
    assert.equal(test.state, "success", JSON.stringify(fault));
    // The first try hung (header deadline 10 min, or body idle 2 min); the second one answered.
    assert.ok(fetched! >= 2, `${fetched} download requests`);
  }
});
