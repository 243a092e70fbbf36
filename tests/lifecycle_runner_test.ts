// The runner's edges that the polling tests in runner_test.ts do not reach: the diagnostics a
// user reads (exact texts, levels, categories), the application's hooks, the outcome history,
// the metrics the runner records, readiness, and what a stop leaves behind (CONFORMANCE C1,
// C8.7, C13.1). Written for the mutation score of src/runner.ts (docs/MUTATION.md).
import type { LogRecord } from "@logtape/logtape";
import { assert } from "./_deps.ts";
import { atOnce, captureDiagnostics, type Harness, harness, until } from "./_harness.ts";
import { type JobHandler, RunnerBuilder, RunnerMetrics } from "../mod.ts";

const ok: JobHandler = { step: async () => {} };
const requests = (h: Harness) => h.sent.filter((r) => r.path.endsWith("/jobs/request"));

/** A diagnostic as a user's sink prints it: category, level, the message with its values. */
function line(record: LogRecord): string {
  const text = record.message.map((part, i) => i % 2 ? String(part) : part).join("");
  return `${record.category.join(".")} ${record.level}: ${text}`;
}

/** A step that runs until its signal aborts. */
function blockingStep(seen: { aborted: number; started?: number }): JobHandler["step"] {
  return (_script, _phase, signal) => {
    seen.started = (seen.started ?? 0) + 1;
    return new Promise<void>((_, reject) =>
      signal.addEventListener("abort", () => {
        seen.aborted++;
        reject(signal.reason);
      }, { once: true })
    );
  };
}

Deno.test("C1.6 a 403 is logged as an error naming the token, then as a pause; ready turns false", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const runner = await new RunnerBuilder(h.mock.url, "glrt-wrong", h.dir).fetch(h.mock.fetch)
    .clock(h.clock).random(() => 0.5).systemId("s_0123456789ab").checkInterval(3000)
    .unhealthy(2, 7_200_000).build();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => h.mock.requestCount("request") === 2);
  await atOnce(() => diagnostics.records.length === 2);
  assert.equal(runner.ready, false);
  assert.deepEqual(diagnostics.records.map(line), [
    "gitlab-runner.runner error: GitLab rejected the runner token (403): check the token; retrying",
    "gitlab-runner.runner error: GitLab rejected the runner token (403): check the token; pausing for 7200 s",
  ]);
  stop.abort();
  await done;
});

Deno.test("C1.6 a failed request is a warning with GitLab's answer and the backoff wait", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.fault({ route: "request", status: 500, times: 10 }); // two failed rounds of 5 attempts
  const job = h.mock.job().script(["a"]).enqueue();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => job.state === "success");
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  const error =
    'GitLab answered 500 to POST /api/v4/jobs/request: {"message":"500 Internal Server Error"}';
  const runnerLines = diagnostics.records.filter((r) => r.category[1] === "runner").map(line);
  assert.deepEqual(runnerLines, [
    `gitlab-runner.runner warning: Asking GitLab for a job failed: ${error}; retrying in 750 ms`,
    `gitlab-runner.runner warning: Asking GitLab for a job failed: ${error}; retrying in 1500 ms`,
  ]);
});

Deno.test("C1.7 a hook that throws is a warning; the job still runs and ends", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const a = h.mock.job().script(["a"]).enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, {
    signal: stop.signal,
    onJobStart: () => {
      throw new Error("start hook broke");
    },
    onJobEnd: () => {
      throw "end hook broke"; // not an Error
    },
  });
  await until(h.clock, () => a.state === "success" && runner.running === 0);
  stop.abort();
  await done;
  assert.deepEqual(runner.outcomes.map((o) => [o.id, o.state]), [[a.id, "success"]]);
  assert.deepEqual(diagnostics.records.filter((r) => r.category[1] === "runner").map(line), [
    "gitlab-runner.runner warning: A runner hook threw: start hook broke",
    "gitlab-runner.runner warning: A runner hook threw: end hook broke",
  ]);
});

Deno.test("C3.4 a job's diagnostics are in the gitlab-runner.job category with its id", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const runner = await h.builder.build();
  await runner.requestJob(() => {
    throw new Error("no board available");
  });
  await runner.drain();
  assert.equal(job.failureReason, "runner_system_failure");
  const [record] = diagnostics.records.filter((r) => r.category[1] === "job");
  assert.equal(line(record), "gitlab-runner.job error: The job factory failed: no board available");
  assert.equal(record.properties.jobId, job.id);
});

Deno.test("C1.7 outcomes holds the last 1000 jobs, oldest first", async () => {
  await using h = await harness();
  // Payloads without a token: each job ends at once as lost, without any request.
  let id = 0;
  const payloads: typeof fetch = () =>
    Promise.resolve(
      new Response(JSON.stringify({ id: ++id }), {
        status: 201,
        headers: { "content-type": "application/json" },
      }),
    );
  const runner = await h.builder.fetch(payloads).build();
  for (let i = 0; i < 1001; i++) assert.equal(await runner.requestJob(() => ok), true);
  await runner.drain();
  const outcomes = runner.outcomes;
  assert.equal(outcomes.length, 1000);
  assert.equal(outcomes[0].id, 2);
  assert.equal(outcomes[999].id, 1001);
  assert.ok(outcomes.every((o) => o.state === "lost"));
});

Deno.test("C13.1 run() records its maximum, every job started and how each ended", async () => {
  await using h = await harness();
  const metrics = new RunnerMetrics();
  const runner = await h.builder.metrics(metrics).build();
  const good = h.mock.job().script(["a"]).enqueue();
  const bad = h.mock.job().script(["b"]).enqueue();
  const stop = new AbortController();
  const done = runner.run(
    (job) => ({
      step: () => job.id === bad.id ? Promise.reject(new Error("x")) : Promise.resolve(),
    }),
    3,
    { signal: stop.signal },
  );
  await until(h.clock, () => good.state === "success" && bad.state === "failed");
  await until(h.clock, () => runner.running === 0);
  stop.abort();
  await done;
  const text = await metrics.metrics();
  assert.match(text, /^gitlab_runner_concurrent 3$/m);
  assert.match(text, /^gitlab_runner_jobs_total\{[^}]*\} 2$/m);
  assert.match(
    text,
    /^gitlab_runner_failed_jobs_total\{[^}]*failure_reason="script_failure"[^}]*\} 1$/m,
  );
  assert.match(text, /^gitlab_runner_job_duration_seconds_count\{[^}]*\} 2$/m);
});

Deno.test("C13.1 ready: only once GitLab answered and while run() polls", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  assert.equal(runner.ready, false);
  assert.equal((await runner.verify()).valid, true);
  assert.equal(runner.ready, false, "verified but not polling");
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  assert.equal(runner.ready, true);
  stop.abort();
  assert.equal(runner.ready, false, "draining");
  await until(h.clock, () => runner.running === 0);
  await done;
  assert.equal(runner.ready, false);

  // A job request answered counts as verified too.
  const fresh = await h.builder.build();
  const polling = new AbortController();
  const running = fresh.run(() => ok, 1, { signal: polling.signal });
  assert.equal(fresh.ready, false, "no answer yet");
  await until(h.clock, () => requests(h).length >= 2);
  assert.equal(fresh.ready, true);
  polling.abort();
  await running;
});

Deno.test("C1.8 run() with its stop signal already aborted asks nothing and resolves", async () => {
  await using h = await harness();
  h.mock.job().script(["a"]).enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  stop.abort();
  await runner.run(() => ok, 1, { signal: stop.signal });
  assert.equal(requests(h).length, 0);
  assert.equal(runner.ready, false);
});

Deno.test("C8.7 after a hard stop jobs still handed out start aborted and fail runner_system_failure", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const cancel = new AbortController();
  cancel.abort(); // already stopped hard when run() begins
  const seen = { aborted: 0, made: 0 };
  const done = runner.run(
    () => {
      seen.made++;
      return { step: blockingStep(seen) };
    },
    1,
    { signal: stop.signal, cancelSignal: cancel.signal },
  );
  await until(h.clock, () => job.state === "failed");
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  assert.equal(job.failureReason, "runner_system_failure");
  assert.equal(seen.aborted, 0, "no step ran");
  assert.match(job.logText, /ERROR: Job failed: the runner was stopped/);
});

Deno.test("C1.8 a hard stop cancels only the jobs running then; later ones run, and run() lets go of its signals", async () => {
  await using h = await harness();
  const first = h.mock.job().script(["a"]).enqueue();
  const runner = await h.builder.build();
  const seen = { aborted: 0, started: 0 };
  const stop = new AbortController();
  const cancel = new AbortController();
  const done = runner.run(() => ({ step: blockingStep(seen) }), 1, {
    signal: stop.signal,
    cancelSignal: cancel.signal,
  });
  await until(h.clock, () => seen.started === 1);
  runner.cancelAll();
  await until(h.clock, () => first.state === "failed");
  assert.equal(first.failureReason, "runner_system_failure");
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  // A job started after cancelAll() and after run() ended is not stopped by either: neither the
  // old hard stop nor run()'s cancel signal, which aborts only now.
  const second = h.mock.job().script(["b"]).enqueue();
  let release: (() => void) | undefined;
  assert.equal(
    await runner.requestJob(() => ({
      step: (_s, _p, signal) =>
        new Promise<void>((resolve, reject) => {
          release = resolve;
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        }),
    })),
    true,
  );
  await until(h.clock, () => release !== undefined);
  cancel.abort();
  await h.clock.advance(1000);
  release!();
  await until(h.clock, () => runner.running === 0);
  assert.equal(second.state, "success");
  assert.equal(seen.aborted, 1);
});

Deno.test("C1.7 waitForSpace() with an aborted signal rejects at once when full, resolves when not", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const reason = new Error("stopped already");
  stop.abort(reason);
  await runner.waitForSpace(1, { signal: stop.signal }); // room: resolves
  h.mock.job().script(["a"]).enqueue();
  let release: (() => void) | undefined;
  await runner.requestJob(() => ({ step: () => new Promise<void>((r) => (release = r)) }));
  await until(h.clock, () => release !== undefined);
  await assert.rejects(runner.waitForSpace(1, { signal: stop.signal }), reason);
  // A waiter whose signal never aborts is released when the job ends.
  const later = new AbortController();
  let released = false;
  const waiting = runner.waitForSpace(1, { signal: later.signal }).then(() => (released = true));
  release!();
  await until(h.clock, () => released);
  await waiting;
  later.abort(); // after it resolved: nothing rejects, nothing is left listening
  assert.equal(runner.running, 0);
});

Deno.test("C1.9 verify() sends the system id and the runner's info", async () => {
  await using h = await harness();
  const runner = await h.builder.name("farm-1").build();
  assert.equal((await runner.verify()).valid, true);
  const [sent] = h.sent.filter((r) => r.path.endsWith("/runners/verify"));
  const body = sent.body as { system_id: string; info: { name: string; features: object } };
  assert.equal(body.system_id, "s_0123456789ab");
  assert.equal(body.info.name, "farm-1");
  assert.equal(typeof body.info.features, "object");
});

Deno.test("C13.1 a job request answered by requestJob() makes run() ready before its first answer", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  assert.equal(await runner.requestJob(() => ok), false);
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  assert.equal(runner.ready, true);
  stop.abort();
  await done;
});

Deno.test("C1.8 a stop while run() waits for space asks for no more jobs", async () => {
  await using h = await harness();
  const first = h.mock.job().script(["a"]).enqueue();
  const second = h.mock.job().script(["b"]).enqueue();
  const runner = await h.builder.build();
  let release: (() => void) | undefined;
  const stop = new AbortController();
  const done = runner.run(
    () => ({ step: () => new Promise<void>((r) => (release = r)) }),
    1,
    { signal: stop.signal },
  );
  await until(h.clock, () => release !== undefined);
  const asked = requests(h).length;
  stop.abort();
  await h.clock.advance(0);
  release!();
  await until(h.clock, () => runner.running === 0);
  await done;
  assert.equal(requests(h).length, asked);
  assert.equal(first.state, "success");
  assert.equal(second.state, "pending");
});

Deno.test("C1.6 a 409 after other answers is again retried at once", async () => {
  await using h = await harness();
  const runner = await h.builder.checkInterval(3000).build();
  h.mock.fault({ route: "request", status: 409, times: 1 });
  const stop = new AbortController();
  const t0 = h.clock.now();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  // 409, at once 204 (new queue value), at once 204 (same value), then the check interval.
  await atOnce(() => h.mock.requests.filter((r) => r.route === "request" && r.done).length === 3);
  h.mock.fault({ route: "request", status: 409, times: 1 });
  await h.clock.advance(3000);
  await atOnce(() => h.mock.requests.filter((r) => r.route === "request" && r.done).length === 5);
  const at = h.mock.requests.filter((r) => r.route === "request").map((r) => [r.at - t0, r.status]);
  assert.deepEqual(at.slice(0, 5), [[0, 409], [0, 204], [0, 204], [3000, 409], [3000, 204]]);
  stop.abort();
  await done;
});

/**
 * A GitLab whose `/jobs/request` answers follow a script (then 204 with the last queue value);
 * 201s carry a payload without a token, which ends as lost without further calls.
 */
function scripted(h: Harness, answers: { status: number; lastUpdate?: string }[]) {
  const asked: { at: number; lastUpdate?: string }[] = [];
  let last: string | undefined;
  let id = 0;
  const answer: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const body = await request.json();
    asked.push({ at: h.clock.now(), lastUpdate: body.last_update });
    const next = answers.shift() ?? { status: 204, lastUpdate: last };
    if (next.lastUpdate !== undefined) last = next.lastUpdate;
    const headers = new Headers({ "content-type": "application/json" });
    if (next.lastUpdate !== undefined) headers.set("x-gitlab-last-update", next.lastUpdate);
    const text = next.status === 201 ? JSON.stringify({ id: ++id }) : null;
    return new Response(text, { status: next.status, headers });
  };
  return { asked, fetch: answer };
}

Deno.test("C8.6 one immediate re-ask per new queue value; a job or an error in between allows the next", async () => {
  await using h = await harness();
  const gitlab = scripted(h, [
    { status: 204, lastUpdate: "a" }, // new: ask again at once
    { status: 201 }, // a job: ask again at once
    { status: 204, lastUpdate: "b" }, // new after a job: at once
    { status: 204, lastUpdate: "c" }, // new right after a re-ask: wait
    { status: 403 }, // an error: wait the check interval
    { status: 204, lastUpdate: "d" }, // new after an error: at once
    { status: 204, lastUpdate: "d" }, // same: wait
  ]);
  const runner = await h.builder.fetch(gitlab.fetch).checkInterval(3000).build();
  const stop = new AbortController();
  const t0 = h.clock.now();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => gitlab.asked.length === 8);
  stop.abort();
  await done;
  assert.deepEqual(gitlab.asked.map((a) => [a.at - t0, a.lastUpdate]), [
    [0, undefined],
    [0, "a"],
    [0, "a"],
    [0, "b"],
    [3000, "c"],
    [6000, "c"],
    [6000, "d"],
    [9000, "d"],
  ]);
});

Deno.test("C1.4 C8.9 a 204 without a queue value or with one over 1 KiB keeps the last one", async () => {
  await using h = await harness();
  const long = "x".repeat(1025);
  const gitlab = scripted(h, [
    { status: 204, lastUpdate: "a" },
    { status: 204, lastUpdate: "a" },
    { status: 204 }, // no header
    { status: 204, lastUpdate: long },
  ]);
  const runner = await h.builder.fetch(gitlab.fetch).checkInterval(3000).build();
  const stop = new AbortController();
  const t0 = h.clock.now();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => gitlab.asked.length === 5);
  stop.abort();
  await done;
  assert.deepEqual(gitlab.asked.map((a) => [a.at - t0, a.lastUpdate]), [
    [0, undefined],
    [0, "a"],
    [3000, "a"],
    [6000, "a"],
    [9000, "a"],
  ]);
});

Deno.test("C8.9 a queue value of exactly 1 KiB is still echoed", async () => {
  await using h = await harness();
  const kib = "k".repeat(1024);
  const gitlab = scripted(h, [{ status: 204, lastUpdate: kib }]);
  const runner = await h.builder.fetch(gitlab.fetch).checkInterval(3000).build();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => gitlab.asked.length === 2);
  stop.abort();
  await done;
  assert.equal(gitlab.asked[1].lastUpdate, kib);
});

Deno.test("C2.2 onJobStart gets the id an unreadable payload names (0 without one), no name", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const bodies = [JSON.stringify({ id: 7 }), JSON.stringify({ name: "no id" })];
  const payloads: typeof fetch = () => {
    const body = bodies.shift();
    return Promise.resolve(
      new Response(body ?? null, {
        status: body === undefined ? 204 : 201,
        headers: { "content-type": "application/json" },
      }),
    );
  };
  const runner = await h.builder.fetch(payloads).build();
  const started: { id: number; name?: string }[] = [];
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, {
    signal: stop.signal,
    onJobStart: (job) => void started.push(job),
  });
  await until(h.clock, () => runner.outcomes.length === 2);
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  assert.deepEqual(started.slice(0, 2), [{ id: 7, name: undefined }, { id: 0, name: undefined }]);
  assert.ok("name" in started[0]);
  assert.deepEqual(runner.outcomes.map((o) => [o.id, o.state]), [[7, "lost"], [0, "lost"]]);
  // Without onJobEnd and (in requestJob) without any hook, nothing warns about hooks.
  await runner.requestJob(() => ok);
  await runner.drain();
  assert.equal(diagnostics.records.filter((r) => r.category[1] === "runner").length, 0);
});

Deno.test("C1.8 run() without a stop signal keeps polling (it ends with the process)", async () => {
  await using h = await harness();
  const runner = await h.builder.checkInterval(3000).build();
  const job = h.mock.job().script(["a"]).enqueue();
  // Left polling on the fake clock: nothing but this test's clock ever wakes it.
  const done = runner.run(() => ok, 1);
  let settled = false;
  done.then(() => (settled = true), () => (settled = true));
  await until(h.clock, () => job.state === "success");
  await h.clock.advance(9000);
  assert.equal(settled, false);
  assert.equal(runner.ready, true);
  assert.ok(requests(h).length >= 4);
});
