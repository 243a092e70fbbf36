import { createHmac } from "node:crypto";
import { assert } from "./_deps.ts";
import { atOnce, type Harness, harness, until } from "./_harness.ts";
import { type JobHandler, LIBRARY_FEATURES, RunnerBuilder, ScriptFailure } from "../mod.ts";
import { randomSystemId, systemIdFromMachineId } from "../src/system_id.ts";

const ok: JobHandler = { step: async () => {} };
const requests = (h: Harness) => h.sent.filter((r) => r.path.endsWith("/jobs/request"));

Deno.test("C1.1 info carries version, revision, platform and architecture", async () => {
  await using h = await harness();
  const runner = await h.builder.version("1.2.3").revision("abcdef").platform("linux")
    .architecture("arm64").name("farm-1").build();
  await runner.requestJob(() => ok);
  const body = requests(h)[0].body as Record<string, Record<string, unknown>>;
  assert.equal(body.info.version, "1.2.3");
  assert.equal(body.info.revision, "abcdef");
  assert.equal(body.info.platform, "linux");
  assert.equal(body.info.architecture, "arm64");
  assert.equal(body.info.name, "farm-1");
  assert.equal(body.token, h.mock.runnerToken);
  assert.equal(body.system_id, "s_0123456789ab");
});

Deno.test("C1.1 over-long metadata is truncated (system_id 64, version 2048, others 255)", async () => {
  await using h = await harness();
  const runner = await h.builder.systemId("s".repeat(100)).version("v".repeat(3000))
    .revision("r".repeat(300)).platform("p".repeat(300)).architecture("a".repeat(300)).build();
  assert.equal(runner.systemId.length, 64);
  assert.equal(runner.info.version!.length, 2048);
  assert.equal(runner.info.revision!.length, 255);
  assert.equal(runner.info.platform!.length, 255);
  assert.equal(runner.info.architecture!.length, 255);
});

Deno.test("C1.2 the system id is s_ + 12 hex of HMAC-SHA256(machine-id, gitlab-runner)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const machineId = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    await Deno.writeTextFile(`${dir}/machine-id`, machineId + "\n");
    const expected = "s_" +
      createHmac("sha256", machineId).update("gitlab-runner").digest("hex").slice(0, 12);
    const runner = await new RunnerBuilder("https://gitlab.example.com", "glrt-x", dir)
      .machineIdPath(`${dir}/machine-id`).build();
    assert.equal(runner.systemId, expected);
    assert.equal(
      await systemIdFromMachineId(new TextEncoder().encode(machineId)),
      expected,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C1.2 without a machine id the system id is r_ + 12 random alphanumerics", async () => {
  const runner = await new RunnerBuilder("https://gitlab.example.com", "glrt-x", "/tmp")
    .machineIdPath("/nonexistent/machine-id").build();
  assert.match(runner.systemId, /^r_[0-9a-zA-Z]{12}$/);
  const ids = new Set(Array.from({ length: 50 }, randomSystemId));
  assert.equal(ids.size, 50);
});

Deno.test("C1.3 every feature key is sent; exactly the implemented ones and the added ones are true", async () => {
  await using h = await harness();
  const runner = await h.builder.features(["refspecs"]).build();
  await runner.requestJob(() => ok);
  const body = requests(h)[0].body as { info: { features: Record<string, boolean> } };
  const features = body.info.features;
  // PROTOCOL §9: every key the official runner sends, always present.
  const all = [
    "variables",
    "image",
    "services",
    "artifacts",
    "cache",
    "fallback_cache_keys",
    "shared",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "session",
    "terminal",
    "refspecs",
    "masking",
    "proxy",
    "raw_variables",
    "artifacts_exclude",
    "multi_build_steps",
    "trace_reset",
    "trace_checksum",
    "trace_size",
    "vault_secrets",
    "cancelable",
    "return_exit_code",
    "service_variables",
    "service_multiple_aliases",
    "image_executor_opts",
    "service_executor_opts",
    "cancel_gracefully",
    "native_steps_integration",
    "two_phase_job_commit",
    "job_inputs",
  ];
  assert.deepEqual(Object.keys(features).sort(), all.sort());
  // What the library implements, plus the added refspecs.
  const on = [
    "artifacts",
    "artifacts_exclude",
    "cancel_gracefully",
    "cancelable",
    "job_inputs",
    "masking",
    "multi_build_steps",
    "refspecs",
    "return_exit_code",
    "trace_checksum",
    "trace_reset",
    "trace_size",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "variables",
  ];
  assert.deepEqual(Object.entries(features).filter(([, v]) => v).map(([k]) => k).sort(), on);
  assert.ok(Object.values(features).every((v) => typeof v === "boolean"));
  assert.deepEqual([...LIBRARY_FEATURES, "refspecs"].sort(), on);
  assert.throws(() => h.builder.features(["teleport"]), TypeError);
  assert.throws(() => h.builder.features(["two_phase_job_commit"]), TypeError);
});

Deno.test("C1.3 a job needing an unannounced feature is never run", async () => {
  await using h = await harness();
  const job = h.mock.job().requires("fallback_cache_keys").script(["true"]).enqueue();
  const runner = await h.builder.build();
  let made = 0;
  const got = await runner.requestJob(() => {
    made++;
    return ok;
  });
  assert.equal(got, false);
  assert.equal(made, 0);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_unsupported");
});

Deno.test("C1.4 the last X-GitLab-Last-Update is echoed as last_update", async () => {
  await using h = await harness();
  const seen: { lastUpdate: unknown; status: number; header: string | null }[] = [];
  const spy: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const isRequest = new URL(request.url).pathname.endsWith("/jobs/request");
    const body = isRequest ? await request.clone().json() : undefined;
    const response = await h.mock.fetch(request);
    if (isRequest) {
      seen.push({
        lastUpdate: body.last_update,
        status: response.status,
        header: response.headers.get("x-gitlab-last-update"),
      });
    }
    return response;
  };
  const runner = await h.builder.fetch(spy).build();
  await runner.requestJob(() => ok); // 204 with the queue value A
  h.mock.job().script(["a"]).enqueue();
  await runner.requestJob(() => ok); // 201, no header
  await until(h.clock, () => runner.running === 0);
  await runner.requestJob(() => ok); // 204 with the new queue value B
  await runner.requestJob(() => ok);
  assert.deepEqual(seen.map((s) => s.status), [204, 201, 204, 204]);
  const a = seen[0].header!;
  const b = seen[2].header!;
  assert.match(a, /^[0-9a-f]+$/);
  assert.match(b, /^[0-9a-f]+$/);
  assert.notEqual(a, b);
  assert.equal(seen[1].header, null);
  // Nothing before the first answer; then the last non-empty value, kept across the 201.
  assert.deepEqual(seen.map((s) => s.lastUpdate), [undefined, a, a, b]);
});

Deno.test("C1.4 a long poll held by GitLab ends with the job at once when it arrives", async () => {
  await using h = await harness({ longPollMs: 50_000 });
  const runner = await h.builder.build();
  const stop = new AbortController();
  const started: number[] = [];
  const done = runner.run(
    () => ({
      step: () => {
        started.push(h.clock.now());
        return Promise.resolve();
      },
    }),
    4,
    { signal: stop.signal },
  );
  await h.clock.advance(10_000); // the runner is now parked in a long poll
  const enqueuedAt = h.clock.now();
  const job = h.mock.job().script(["true"]).enqueue();
  // No fake time may pass: the job must start without any timer firing.
  await atOnce(() => started.length === 1);
  assert.equal(started[0], enqueuedAt);
  await until(h.clock, () => job.state === "success");
  stop.abort();
  let finished = false;
  done.then(() => (finished = true));
  await until(h.clock, () => finished);
});

Deno.test("C1.5 no job: wait the check interval; a job: ask again at once", async () => {
  await using h = await harness();
  const runner = await h.builder.checkInterval(3000).build();
  const stop = new AbortController();
  h.mock.job().script(["a"]).enqueue();
  h.mock.job().script(["b"]).enqueue();
  const done = runner.run(() => ok, 8, { signal: stop.signal });
  // Two jobs taken back to back, then an empty answer with a new queue value (asked again at
  // once, as a long-polling GitLab would hold that request), then one with the same value:
  // four requests at time 0, then one per check interval.
  await atOnce(() => requests(h).length === 4);
  await h.clock.advance(0);
  assert.equal(requests(h).length, 4);
  await h.clock.advance(2999);
  assert.equal(requests(h).length, 4);
  await h.clock.advance(1);
  assert.equal(requests(h).length, 5);
  await h.clock.advance(3000);
  assert.equal(requests(h).length, 6);
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
});

Deno.test("C1.6 C8.6 a 409 is retried once at once, then with backoff up to the check interval", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.fault({ route: "request", status: 409, times: 8 });
  const job = h.mock.job().script(["a"]).enqueue();
  const stop = new AbortController();
  const t0 = h.clock.now();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => job.state === "success");
  const at = h.mock.requests.filter((r) => r.route === "request").map((r) => r.at - t0);
  // random 0.5: each wait is 3/4 of min(3000, 100 × 2^n) ms after the first, immediate retry
  assert.deepEqual(at.slice(0, 9), [0, 0, 75, 225, 525, 1125, 2325, 4575, 6825]);
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
});

Deno.test("C8.6 a 409 storm is never a hot loop: at most one request at once per conflict run", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.fault({ route: "request", status: 409, times: Infinity });
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await h.clock.advance(60_000);
  const n = h.mock.requests.filter((r) => r.route === "request").length;
  // One minute of conflicts: backoff reaches the 3 s check interval, about 25 requests.
  assert.ok(n > 15 && n < 40, `${n} requests in a minute of 409s`);
  stop.abort();
  await h.clock.advance(0);
  await done;
});

Deno.test("C1.6 a 429 waits as Retry-After says", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.fault({ route: "request", status: 429, headers: { "Retry-After": "20" }, times: 1 });
  h.mock.job().script(["a"]).enqueue();
  const p = runner.requestJob(() => ok);
  await h.clock.advance(19_999);
  assert.equal(requests(h).length, 1);
  await h.clock.advance(1);
  assert.equal(await p, true);
  assert.equal(requests(h).length, 2);
  await runner.drain().catch(() => {});
});

Deno.test("C1.6 5xx and dropped connections back off exponentially, never crash", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.fault({ route: "request", status: 500, times: 10 }); // two failed rounds of 5 attempts
  h.mock.fault({ route: "request", drop: true, times: 1 });
  const job = h.mock.job().script(["a"]).enqueue();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => job.state === "success");
  const answered = () => h.mock.requests.filter((r) => r.route === "request" && r.done);
  await atOnce(() => answered().length >= 14);
  // 10 × 500, 1 dropped (retried by the client at once), 201, then 204 (new queue value) and
  // 204 (same value). Under load fake time may pass while real I/O runs, so more requests may
  // follow: the order of the first ones is what counts.
  const statuses = answered().map((r) => r.status);
  assert.deepEqual(
    statuses.slice(0, 14),
    [...Array(10).fill(500), 0, 201, 204, 204],
    statuses.join(","),
  );
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
});

Deno.test("C1.6 after a failed round of requests the runner waits exponentially longer (750 ms, 1.5 s, 3 s, 6 s)", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.fault({ route: "request", status: 500, times: 20 }); // four failed rounds of 5 attempts
  const job = h.mock.job().script(["a"]).enqueue();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await until(h.clock, () => job.state === "success");
  const at = h.mock.requests.filter((r) => r.route === "request").map((r) => r.at);
  // Inside a round the client's own backoff: 75, 150, 300, 600 ms (random 0.5).
  for (const round of [0, 5, 10, 15]) {
    const gaps = [1, 2, 3, 4].map((i) => at[round + i] - at[round + i - 1]);
    assert.deepEqual(gaps, [75, 150, 300, 600]);
  }
  // Between rounds the runner's backoff: min 1 s doubling, jitter in [½, 1] (random 0.5 → ¾).
  const waits = [5, 10, 15, 20].map((i) => at[i] - at[i - 1]);
  assert.deepEqual(waits, [750, 1500, 3000, 6000]);
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
});

Deno.test("C1.6 403 is an invalid token: logged, and after 3 in a row a long pause", async () => {
  await using h = await harness();
  const runner = await new RunnerBuilder(h.mock.url, "glrt-wrong", h.dir).fetch(h.mock.fetch)
    .clock(h.clock).random(() => 0.5).systemId("s_0123456789ab").checkInterval(3000)
    .unhealthy(3, 3600_000).build();
  const stop = new AbortController();
  const done = runner.run(() => ok, 1, { signal: stop.signal });
  await h.clock.advance(6000);
  assert.equal(h.mock.requestCount("request"), 3);
  await h.clock.advance(3000_000);
  assert.equal(h.mock.requestCount("request"), 3);
  await h.clock.advance(600_000);
  assert.equal(h.mock.requestCount("request"), 4);
  stop.abort();
  await done;
});

Deno.test("C1.7 run() never runs more than maximum jobs at once", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  for (let i = 0; i < 10; i++) h.mock.job().script([`job ${i}`]).enqueue();
  let now = 0;
  let peak = 0;
  const stop = new AbortController();
  const done = runner.run(
    () => ({
      step: async () => {
        peak = Math.max(peak, ++now);
        await h.clock.sleep(10_000);
        now--;
      },
    }),
    3,
    { signal: stop.signal },
  );
  await until(h.clock, () => h.mock.jobs.every((j) => j.state === "success"));
  assert.equal(peak, 3);
  stop.abort();
  await done;
});

Deno.test("C1.7 waitForSpace, drain and running behave as in the crate", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.job().script(["a"]).enqueue();
  h.mock.job().script(["b"]).enqueue();
  const release: (() => void)[] = [];
  const factory = () => ({
    step: () => new Promise<void>((r) => release.push(r)),
  });
  assert.equal(await runner.requestJob(factory), true);
  assert.equal(await runner.requestJob(factory), true);
  await until(h.clock, () => release.length === 2);
  assert.equal(runner.running, 2);
  let space = false;
  const waiting = runner.waitForSpace(2).then(() => (space = true));
  await h.clock.advance(0);
  assert.equal(space, false);
  release[0]();
  await until(h.clock, () => space);
  await waiting;
  assert.equal(runner.running, 1);
  let drained = false;
  const draining = runner.drain().then(() => (drained = true));
  await h.clock.advance(0);
  assert.equal(drained, false);
  release[1]();
  await until(h.clock, () => drained);
  await draining;
  assert.equal(runner.running, 0);
});

Deno.test("C1.8 graceful stop: a job returned by the in-flight request still runs", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  const job = h.mock.job().script(["late"]).enqueue();
  h.mock.fault({ route: "request", delayMs: 5000, times: 1 }); // a slow answer…
  const stop = new AbortController();
  let ran = 0;
  const done = runner.run(
    () => ({
      step: () => {
        ran++;
        return Promise.resolve();
      },
    }),
    2,
    { signal: stop.signal },
  );
  await h.clock.advance(1000);
  stop.abort(); // …is not aborted by the stop, and the job it brings runs
  let finished = false;
  done.then(() => (finished = true));
  await until(h.clock, () => finished);
  assert.equal(ran, 1);
  assert.equal(job.state, "success");
  assert.equal(requests(h).length, 1);
  assert.equal(runner.running, 0);
});

Deno.test("C1.8 graceful stop while parked in a long poll ends without orphaning a job", async () => {
  await using h = await harness({ longPollMs: 50_000 });
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(() => ({ step: async () => {} }), 2, { signal: stop.signal });
  // First answer: 204 with a new X-GitLab-Last-Update; the runner asks again at once with
  // last_update and GitLab holds that request.
  await h.clock.advance(4000);
  assert.equal(requests(h).length, 2);
  stop.abort();
  let finished = false;
  done.then(() => (finished = true));
  await until(h.clock, () => finished);
  assert.ok(h.clock.now() - Date.UTC(2026, 0, 1) >= 50_000, "the long poll was cut short");
  assert.equal(requests(h).length, 2);
});

Deno.test("C1.8 hard stop: running jobs are cancelled and reported runner_system_failure", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  const job = h.mock.job().script(["sleep 1000"]).enqueue();
  const stop = new AbortController();
  const cancel = new AbortController();
  let aborted = false;
  let started = false;
  const done = runner.run(
    () => ({
      step: (_s, _p, signal) =>
        new Promise<void>((_, reject) => {
          started = true;
          signal.addEventListener("abort", () => {
            aborted = true;
            reject(signal.reason);
          });
        }),
    }),
    2,
    { signal: stop.signal, cancelSignal: cancel.signal },
  );
  await until(h.clock, () => started && runner.running === 1);
  stop.abort();
  cancel.abort();
  await until(h.clock, () => job.state === "failed");
  assert.equal(aborted, true);
  assert.equal(job.failureReason, "runner_system_failure");
  await done;
});

Deno.test("C1.9 verify() tells a valid token from an invalid one", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  assert.equal((await runner.verify()).valid, true);
  const bad = await new RunnerBuilder(h.mock.url, "glrt-nope", h.dir).fetch(h.mock.fetch)
    .systemId("s_0123456789ab").build();
  const result = await bad.verify();
  assert.equal(result.valid, false);
  assert.equal(result.valid === false && result.status, 403);
});

Deno.test("run() reports each job's start and end to the application's hooks", async () => {
  await using h = await harness();
  const a = h.mock.job().name("build").enqueue();
  const b = h.mock.job().name("test").enqueue();
  const runner = await h.builder.build();
  const events: string[] = [];
  const stop = new AbortController();
  const done = runner.run(
    (job) => ({
      step: async () => {
        await h.clock.sleep(1000);
        if (job.id === b.id) throw new ScriptFailure(4);
      },
    }),
    1,
    {
      signal: stop.signal,
      onJobStart: (job) => events.push(`start ${job.id} ${job.name}`),
      onJobEnd: (o) => {
        events.push(
          `end ${o.id} ${o.name} ${o.state} ${o.exitCode ?? "-"} ${o.durationMs >= 1000}`,
        );
        throw new Error("a broken hook does not break the runner");
      },
    },
  );
  await until(h.clock, () => events.length === 4);
  stop.abort();
  await done;
  assert.deepEqual(events, [
    `start ${a.id} build`,
    `end ${a.id} build success - true`,
    `start ${b.id} test`,
    `end ${b.id} test failed 4 true`,
  ]);
});

Deno.test("C1.4 with long polling, jobs arriving one after another start at once", async () => {
  await using h = await harness({ longPollMs: 50_000 });
  const runner = await h.builder.build();
  const started = new Map<number, number>();
  const stop = new AbortController();
  const done = runner.run(
    (job) => ({
      step: () => {
        started.set(job.id, h.clock.now());
        return Promise.resolve();
      },
    }),
    4,
    { signal: stop.signal },
  );
  for (let i = 0; i < 5; i++) {
    await h.clock.advance(500 + i * 300); // soon after the last job: parked in a long poll
    const at = h.clock.now();
    const job = h.mock.job().name(`job ${i}`).enqueue();
    // No fake time may pass: the job must start without waiting for any timer.
    await atOnce(() => started.has(job.id));
    assert.ok(
      started.get(job.id)! - at < 100,
      `job ${i} started after ${started.get(job.id)! - at} ms`,
    );
    await until(h.clock, () => job.state === "success");
  }
  stop.abort();
  let finished = false;
  done.then(() => (finished = true));
  await until(h.clock, () => finished);
});

// ---------------------------------------------------------------------------------------------
// Edges (these kill mutants that survived the tests above, see docs/MUTATION.md)
// ---------------------------------------------------------------------------------------------

Deno.test("C1.7 run() refuses a maximum below 1 (or not a number) before asking GitLab", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  for (const maximum of [0, -1, 0.5, NaN]) {
    await assert.rejects(runner.run(() => ok, maximum), {
      name: "RangeError",
      message: `maximum must be at least 1, got ${maximum}`,
    });
  }
  assert.equal(requests(h).length, 0);
});

Deno.test("C1.6 requestJob() is false on a 409 (no job taken) and the runner's state is a copy", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  assert.deepEqual(runner.outcomes, []);
  h.mock.job().script(["a"]).enqueue();
  h.mock.fault({ route: "request", status: 409 });
  assert.equal(await runner.requestJob(() => ok), false);
  assert.equal(runner.running, 0);
  const features = runner.features;
  assert.equal(features.artifacts, true);
  features.artifacts = false;
  assert.equal(runner.features.artifacts, true, "features is a copy");
  assert.equal(await runner.requestJob(() => ok), true);
});

Deno.test("C1.7 waitForSpace() rejects with the signal's reason when it aborts", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  h.mock.job().script(["a"]).enqueue();
  let release: (() => void) | undefined;
  await runner.requestJob(() => ({ step: () => new Promise<void>((r) => (release = r)) }));
  // The step runs (not only the job): else release() below would be lost.
  await until(h.clock, () => release !== undefined);
  const stop = new AbortController();
  const waiting = runner.waitForSpace(1, { signal: stop.signal }).catch((e) => e);
  const reason = new Error("enough");
  stop.abort(reason);
  assert.equal(await waiting, reason);
  release!();
  await until(h.clock, () => runner.running === 0);
});
