// The Rust crate gitlab-runner-rs's integration tests (gitlab-runner/tests/integration.rs),
// ported to this library and its mock (RS items of the conformance checklist).
import { assert } from "./_deps.ts";
import { atOnce, harness, until } from "./_harness.ts";
import { type Job, type JobHandler, outputln } from "../mod.ts";
import { crc32 } from "../src/log/crc32.ts";
import type { MockJob } from "../src/mock/mod.ts";

const GREEN = "\x1b[32;1m";
const RED = "\x1b[31;1m";
const RESET = "\x1b[0;m";

/**
 * What GitLab received for an ended job: its state, exactly one final update carrying that state,
 * the failure reason and the job token, whose checksum and size are those of the log GitLab
 * holds, and a log with the runner's header, `lines` in order, and the runner's last line.
 */
function assertEnded(
  job: MockJob,
  expected: {
    state: "success" | "failed";
    failureReason?: string;
    error?: string;
    lines?: string[];
  },
) {
  assert.equal(job.state, expected.state);
  assert.equal(job.failureReason, expected.failureReason);
  assert.equal(job.finalUpdates.length, 1, JSON.stringify(job.finalUpdates));
  const [final] = job.finalUpdates;
  assert.equal(final.state, expected.state);
  assert.equal(final.failure_reason, expected.failureReason);
  assert.equal(final.token, job.token);
  const checksum = `crc32:${crc32(job.log).toString(16).padStart(8, "0")}`;
  assert.deepEqual(final.output, { checksum, bytesize: job.log.byteLength });
  assert.equal(job.logChecksum, checksum);
  const log = job.logText;
  assert.ok(log.startsWith("Running with @x/gitlab-runner "), log);
  let at = 0;
  for (const line of expected.lines ?? []) {
    const found = log.indexOf(line, at);
    assert.ok(found >= 0, `${JSON.stringify(line)} (in order) in ${JSON.stringify(log)}`);
    at = found + line.length;
  }
  const last = expected.state === "success"
    ? `${GREEN}Job succeeded${RESET}\n`
    : `${RED}ERROR: Job failed: ${expected.error}${RESET}\n`;
  assert.ok(log.endsWith(last), JSON.stringify(log));
}

/** Jobs whose step waits until the test completes it. */
function gated() {
  const gates = new Map<number, () => void>();
  const factory = (job: Job): JobHandler => ({
    step: () => new Promise<void>((resolve) => gates.set(job.id, resolve)),
  });
  return { gates, factory };
}

Deno.test("C3.2 RS job_success", async () => {
  await using h = await harness();
  const job = h.mock.job().name("job success").enqueue();
  const runner = await h.builder.build();
  assert.equal(await runner.requestJob(() => ({ step: async () => {} })), true);
  await until(h.clock, () => runner.running === 0);
  assertEnded(job, {
    state: "success",
    lines: ['Executing "step_script" stage of the job script'],
  });
});

Deno.test("C3.2 RS job_fail", async () => {
  await using h = await harness();
  const job = h.mock.job().name("fail").enqueue();
  const runner = await h.builder.build();
  const step = () => Promise.reject(new Error("the step broke"));
  assert.equal(await runner.requestJob(() => ({ step })), true);
  await until(h.clock, () => runner.running === 0);
  assertEnded(job, {
    state: "failed",
    failureReason: "script_failure",
    error: "the step broke",
    lines: ['Executing "step_script" stage of the job script'],
  });
});

Deno.test("C3.4 RS job_panic", async () => {
  await using h = await harness();
  const job = h.mock.job().name("panic").enqueue();
  const runner = await h.builder.build();
  const got = await runner.requestJob(() => {
    throw new Error("Test panic");
  });
  assert.equal(got, true);
  await until(h.clock, () => runner.running === 0);
  // The handler never ran: no stage header, a runner failure.
  assertEnded(job, {
    state: "failed",
    failureReason: "runner_system_failure",
    error: "the runner could not prepare the job: Test panic",
  });
  assert.ok(!job.logText.includes("step_script"), job.logText);
});

Deno.test("C4.9 RS job_log", async () => {
  await using h = await harness();
  const job = h.mock.job().name("log").enqueue();
  const runner = await h.builder.build();
  await runner.requestJob((j) => {
    outputln("aa");
    j.trace("bb\n");
    outputln("cc");
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  assertEnded(job, { state: "success", lines: ["aa\nbb\ncc\n", "step_script"] });
});

Deno.test("C3.2 RS job_steps", async () => {
  await using h = await harness();
  const job = h.mock.job().name("steps").script(["command0", "command1"]).timeout(1234)
    .enqueue();
  const runner = await h.builder.build();
  let seen: readonly string[] = [];
  await runner.requestJob(() => ({
    step: (script) => {
      seen = script;
      return Promise.resolve();
    },
  }));
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual(seen, ["command0", "command1"]);
  assertEnded(job, { state: "success", lines: ['"step_script" stage'] });
});

Deno.test("C1.7 RS job_parallel: five jobs complete in any order", async () => {
  await using h = await harness();
  const jobs = Array.from({ length: 5 }, (_, i) => h.mock.job().name(`job ${i}`).enqueue());
  const runner = await h.builder.build();
  const { gates, factory } = gated();
  while (await runner.requestJob(factory));
  assert.equal(runner.running, 5);
  await until(h.clock, () => gates.size === 5);
  assert.ok(jobs.every((j) => j.state === "running"));
  for (const n of [4, 0, 2, 1, 3]) {
    const t = jobs[n];
    assert.equal(t.state, "running");
    const running = runner.running;
    gates.get(t.id)!();
    await until(h.clock, () => runner.running < running);
    assertEnded(t, { state: "success" });
  }
  assert.equal(runner.running, 0);
});

Deno.test("C1.7 RS runner_run", async () => {
  await using h = await harness();
  const jobs = Array.from({ length: 5 }, (_, i) => h.mock.job().name(`job ${i}`).enqueue());
  const runner = await h.builder.build();
  const { gates, factory } = gated();
  const stop = new AbortController();
  const done = runner.run(factory, 5, { signal: stop.signal });
  for (const n of [4, 0, 2, 1, 3]) {
    const t = jobs[n];
    await until(h.clock, () => gates.has(t.id));
    gates.get(t.id)!();
    await until(h.clock, () => t.state === "success");
  }
  for (const j of jobs) assertEnded(j, { state: "success" });
  stop.abort();
  await done;
});

Deno.test("C1.7 RS runner_limit: 32 jobs, never more than 3 at once", async () => {
  await using h = await harness();
  const jobs = Array.from({ length: 32 }, (_, i) => h.mock.job().name(`job ${i}`).enqueue());
  const runner = await h.builder.build();
  const { gates, factory } = gated();
  const stop = new AbortController();
  const done = runner.run(factory, 3, { signal: stop.signal });
  const completed = new Set<number>();
  while (completed.size < jobs.length) {
    await until(h.clock, () => [...gates.keys()].some((id) => !completed.has(id)));
    const running = jobs.filter((j) => j.state === "running").length;
    assert.ok(running <= 3, `running ${running} > 3`);
    const next = [...gates.keys()].find((id) => !completed.has(id))!;
    completed.add(next);
    gates.get(next)!();
    await h.clock.advance(33);
  }
  await until(h.clock, () => jobs.every((j) => j.state === "success"));
  for (const j of jobs) assertEnded(j, { state: "success" });
  stop.abort();
  await done;
});

Deno.test("C1.5 RS runner_delay: poll cadence with no job, then a job, then none", async () => {
  await using h = await harness();
  const runner = await h.builder.checkInterval(7000).build();
  const stop = new AbortController();
  const done = runner.run(() => ({ step: async () => {} }), 1, { signal: stop.signal });
  // Unlike the crate, an answer with a new queue value (X-GitLab-Last-Update) is followed at
  // once by a request carrying it (a long-polling GitLab holds that one): +1 after each change.
  await h.clock.advance(250);
  assert.equal(h.mock.requestCount("request"), 2);
  await h.clock.advance(7000);
  assert.equal(h.mock.requestCount("request"), 3);
  h.mock.job().name("delayed job").enqueue();
  await h.clock.advance(7000);
  // One request receives the job; once it is done (maximum 1) two more find none.
  await atOnce(() => h.mock.requestCount("request") === 6);
  await h.clock.advance(7000);
  assert.equal(h.mock.requestCount("request"), 7);
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
});

Deno.test("C2.4 RS job_variables", async () => {
  await using h = await harness();
  const job = h.mock.job().name("variables").script(["dummy"])
    .variable("TEST_VARIABLE", "a testing value", { masked: true, public: false }).enqueue();
  const runner = await h.builder.build();
  await runner.requestJob((j) => {
    const id = j.variable("CI_JOB_ID")!;
    assert.equal(j.id, Number(id.value));
    assert.equal(id.public, true);
    assert.equal(id.masked, false);
    const test = j.variable("TEST_VARIABLE")!;
    assert.equal(test.value, "a testing value");
    assert.equal(test.public, false);
    assert.equal(test.masked, true);
    outputln(`value: ${test.value}`);
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  assertEnded(job, { state: "success", lines: ["value: [MASKED]\n"] });
  assert.ok(!job.logText.includes("a testing value"), job.logText);
});

Deno.test("C1.7 RS job_drain", async () => {
  await using h = await harness();
  const jobs = Array.from({ length: 5 }, (_, i) => h.mock.job().name(`job ${i}`).enqueue());
  const runner = await h.builder.build();
  const { gates, factory } = gated();
  while (await runner.requestJob(factory));
  assert.equal(runner.running, 5);
  await until(h.clock, () => gates.size === 5);
  for (const n of [4, 0, 2, 1, 3]) {
    assert.equal(jobs[n].state, "running");
    gates.get(jobs[n].id)!();
  }
  let drained = false;
  const p = runner.drain().then(() => (drained = true));
  await until(h.clock, () => drained);
  await p;
  assert.equal(runner.running, 0);
  for (const j of jobs) assertEnded(j, { state: "success" });
});
