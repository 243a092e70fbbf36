// One job's life (src/run.ts) as GitLab, the handler and a user's log sink see it: the
// runner-written log lines byte for byte, the variables the runner sets, the stop reasons a step
// gets, the grace after an abort on the clock, the diagnostics' texts, and how a job ends when
// its final state cannot be delivered (CONFORMANCE C2.2, C3, C5, C8.3, C8.4, C9.4). Written for
// the mutation score of src/run.ts (docs/MUTATION.md).
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { assert } from "./_deps.ts";
import { atOnce, captureDiagnostics, type Harness, harness, until } from "./_harness.ts";
import {
  type Job,
  JobFailure,
  type JobHandler,
  type JobOutcome,
  outputln,
  RunnerBuilder,
  ScriptFailure,
  VERSION,
} from "../mod.ts";
import type { MockJob } from "../src/mock/mod.ts";

const GREEN = "\x1b[32;1m";
const RED = "\x1b[31;1m";
const YELLOW = "\x1b[33;1m";
const RESET = "\x1b[0;m";
const green = (text: string) => `${GREEN}${text}${RESET}\n`;
const banner = (name = "runner") =>
  `Running with @x/gitlab-runner ${VERSION}\n  on ${name} s_0123456789ab\n`;
const stage = (name: string) => green(`Executing "${name}" stage of the job script`);

/** A diagnostic as a user's sink prints it: category, level, the message with its values. */
function line(record: LogRecord): string {
  const text = record.message.map((part, i) => i % 2 ? String(part) : part).join("");
  return `${record.category.join(".")} ${record.level}: ${text}`;
}

/** Takes one job with `factory` and waits until it ended; resolves to its outcome. */
async function runOne(
  h: Harness,
  factory: (job: Job) => JobHandler | Promise<JobHandler>,
  builder: Harness["builder"] = h.builder,
): Promise<JobOutcome> {
  const runner = await builder.build();
  assert.equal(await runner.requestJob(factory), true);
  await until(h.clock, () => runner.running === 0);
  return runner.outcomes[0];
}

/** A step that runs until its signal aborts, then rejects with the signal's reason. */
function untilAborted(reasons: unknown[] = []): JobHandler["step"] {
  return (_script, _phase, signal) => whenAborted(signal, reasons);
}

/** Rejects with the signal's reason once it aborts (at once if it has), noting the reason. */
function whenAborted(signal: AbortSignal, reasons: unknown[] = []): Promise<never> {
  return new Promise<never>((_, reject) => {
    const stop = () => {
      reasons.push(signal.reason);
      reject(signal.reason);
    };
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
}

/** Sets the timeout of the `script` step (the mock gives every step the job's). */
const scriptTimeout = (seconds: number) => (p: Record<string, unknown>) => ({
  ...p,
  steps: (p.steps as { name: string }[]).map((s) =>
    s.name === "script" ? { ...s, timeout: seconds } : s
  ),
});

const stopOf = (reason: unknown) => [(reason as Error).name, (reason as Error).message];

Deno.test("C3.2 C3.3 the runner's lines of a succeeded job, byte for byte", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["build"])
    .step({ name: "release", script: ["release-cli create"], when: "on_success" })
    .afterScript(["cleanup"])
    .requires("multi_build_steps")
    .enqueue();
  const outcome = await runOne(h, () => ({
    step: (_s, phase) => {
      outputln(`in ${phase}`);
      return Promise.resolve();
    },
  }), h.builder.name("farm-1"));
  assert.deepEqual([outcome.state, outcome.failureReason, outcome.exitCode], [
    "success",
    undefined,
    undefined,
  ]);
  assert.equal(
    job.logText,
    banner("farm-1") + stage("step_script") + "in script\n" + stage("release") + "in release\n" +
      green("Running after_script") + "in after_script\n" + green("Job succeeded"),
  );
});

Deno.test("C3.3 C3.5 allowed failures and after_script failures are warnings; a step rejecting with nothing fails", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["build"])
    .step({ name: "release", script: ["flaky"], allowFailure: true })
    .step({ name: "release", script: ["publish"], when: "on_success" })
    .step({ name: "after_script", script: ["report"], when: "always" })
    .requires("multi_build_steps")
    .enqueue();
  const outcome = await runOne(h, () => ({
    step: (script, phase) => {
      if (phase === "script") return Promise.resolve();
      if (script[0] === "flaky") return Promise.reject(new Error("flaky test"));
      if (script[0] === "publish") return Promise.reject(undefined);
      return Promise.reject(new Error("report broke"));
    },
  }));
  assert.deepEqual([outcome.state, outcome.failureReason], ["failed", "script_failure"]);
  assert.equal(
    job.logText,
    banner() + stage("step_script") + stage("release") +
      `${YELLOW}WARNING: step release failed (allowed): flaky test${RESET}\n` +
      stage("release") + green("Running after_script") +
      `${YELLOW}WARNING: after_script failed: report broke${RESET}\n` +
      `${RED}ERROR: Job failed: The step failed${RESET}\n`,
  );
});

Deno.test("C3.5 a factory's JobFailure fails the job with its reason, exit code and message; no step runs", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const outcome = await runOne(h, () => {
    throw new JobFailure("runner_system_failure", { message: "no board attached", exitCode: 3 });
  });
  assert.deepEqual([job.state, job.failureReason, job.exitCode], [
    "failed",
    "runner_system_failure",
    3,
  ]);
  assert.equal(outcome.exitCode, 3);
  assert.equal(job.logText, banner() + `${RED}ERROR: Job failed: no board attached${RESET}\n`);
});

Deno.test("C3.4 a build directory that cannot be made fails the job before the factory", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const file = `${h.dir}/not-a-dir`;
  await Deno.writeTextFile(file, "x");
  const job = h.mock.job().script(["a"]).enqueue();
  let made = 0;
  await runOne(
    h,
    () => {
      made++;
      return { step: async () => {} };
    },
    new RunnerBuilder(h.mock.url, h.mock.runnerToken, file).fetch(h.mock.fetch).clock(h.clock)
      .systemId("s_0123456789ab"),
  );
  assert.equal(made, 0);
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_system_failure"]);
  assert.match(
    job.logText,
    new RegExp(
      `^${banner()}\\x1b\\[31;1mERROR: Job failed: cannot create the build directory: .+\\n$`,
    ),
  );
  // Nothing was made, so nothing is removed (or warned about).
  assert.deepEqual(diagnostics.records.map(line), []);
});

Deno.test("C2.3 the runner's own variables: build dirs, CI_SERVER, CI_JOB_STATUS, CI_JOB_TIMEOUT", async () => {
  await using h = await harness();
  const timed = h.mock.job().timeout(90).script(["a"]).enqueue();
  const untimed = h.mock.job().timeout(0).script(["b"]).enqueue();
  const seen = new Map<number, Job>();
  const runner = await h.builder.build();
  for (let i = 0; i < 2; i++) {
    await runner.requestJob((job) => {
      seen.set(job.id, job);
      return { step: async () => {} };
    });
  }
  await until(h.clock, () => runner.running === 0);
  const ours = (key: string, value: string) => ({
    key,
    value,
    public: true,
    masked: false,
    file: false,
    raw: true,
  });
  const of = (job: Job, key: string) => {
    const v = job.variable(key)!;
    return { key, value: v.value, public: v.public, masked: v.masked, file: v.file, raw: v.raw };
  };
  for (const mj of [timed, untimed]) {
    const job = seen.get(mj.id)!;
    assert.deepEqual(of(job, "CI_BUILDS_DIR"), ours("CI_BUILDS_DIR", h.dir));
    assert.deepEqual(of(job, "CI_PROJECT_DIR"), ours("CI_PROJECT_DIR", `${h.dir}/${mj.id}`));
    assert.deepEqual(of(job, "CI_SERVER"), ours("CI_SERVER", "yes"));
    assert.deepEqual(of(job, "CI_JOB_STATUS"), ours("CI_JOB_STATUS", "running"));
  }
  assert.deepEqual(of(seen.get(timed.id)!, "CI_JOB_TIMEOUT"), ours("CI_JOB_TIMEOUT", "90"));
  // Without a job timeout the runner adds none: GitLab's own value stays (not raw).
  assert.equal(seen.get(untimed.id)!.variable("CI_JOB_TIMEOUT")?.raw, false);
});

Deno.test("C3.6 C5.2 C5.3 C1.8 what a step's signal says for each stop", async () => {
  await using h = await harness();
  const reasons = new Map<string, unknown[]>();
  const running = new Set<string>();
  const factory = (kind: string) => (): JobHandler => {
    reasons.set(kind, []);
    return {
      step: (script, phase, signal) => {
        running.add(kind);
        return untilAborted(reasons.get(kind))(script, phase, signal);
      },
    };
  };
  const runner = await h.builder.build();
  // The job timeout, as the factory sees it (the job's signal: the steps' parent).
  h.mock.job().timeout(60).script(["a"]).enqueue();
  await runner.requestJob(async (job) => {
    reasons.set("timeout", []);
    await whenAborted(job.signal, reasons.get("timeout"));
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  // A step timeout.
  h.mock.job().timeout(3600).script(["b"]).payload(scriptTimeout(20)).enqueue();
  await runner.requestJob(factory("step"));
  await until(h.clock, () => runner.running === 0);
  // GitLab's cancel, hard and graceful.
  for (const graceful of [false, true]) {
    // This GitLab knows job_canceled (the mock's default list does not).
    const job = h.mock.job().script(["c"]).failureReasons(["script_failure", "job_canceled"])
      .enqueue();
    const kind = graceful ? "graceful" : "canceled";
    await runner.requestJob(factory(kind));
    await until(h.clock, () => running.has(kind));
    await h.clock.advance(1000);
    h.mock.cancel(job.id, { graceful });
    await until(h.clock, () => runner.running === 0);
  }
  // The runner's hard stop.
  h.mock.job().script(["d"]).enqueue();
  await runner.requestJob(factory("runner"));
  await until(h.clock, () => running.has("runner"));
  runner.cancelAll();
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual(
    Object.fromEntries([...reasons].map(([kind, [reason]]) => [kind, stopOf(reason)])),
    {
      timeout: ["AbortError", "execution took longer than 60 seconds"],
      step: ["AbortError", "step script took longer than 20 seconds"],
      canceled: ["AbortError", "The job was canceled by GitLab"],
      graceful: ["AbortError", "The job is being canceled"],
      runner: ["AbortError", "The runner is shutting down"],
    },
  );
  // What GitLab received: no final state after its own cancel, a job_canceled after a graceful one.
  assert.deepEqual(h.mock.jobs.map((j) => j.finalUpdates.map((u) => [u.state, u.failure_reason])), [
    [["failed", "job_execution_timeout"]],
    [["failed", "job_execution_timeout"]],
    [],
    [["failed", "job_canceled"]],
    [["failed", "runner_system_failure"]],
  ]);
});

Deno.test("C3.6 a step that ignores its step timeout and then succeeds lets the job succeed", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(3600).script(["a"]).payload(scriptTimeout(10)).enqueue();
  let abortedAt = -1;
  const outcome = await runOne(h, () => ({
    step: async (_s, _p, signal) => {
      signal.addEventListener("abort", () => (abortedAt = h.clock.now()), { once: true });
      await h.clock.sleep(12_000); // past the step timeout, inside the abort grace
    },
  }), h.builder.abortGrace(5_000));
  assert.equal(abortedAt - (job.pickedAt ?? 0) >= 10_000, true);
  assert.equal(outcome.state, "success");
  assert.equal(job.state, "success");
});

Deno.test("C3.6 a step that rejects after its timeout fails with the timeout, not its own error", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(3600).script(["a"]).payload(scriptTimeout(10)).enqueue();
  await runOne(h, () => ({
    step: (_s, _p, signal) =>
      new Promise<void>((_, reject) =>
        signal.addEventListener("abort", () => reject(new Error("killed by signal")), {
          once: true,
        })
      ),
  }));
  assert.deepEqual([job.state, job.failureReason], ["failed", "job_execution_timeout"]);
  assert.ok(
    job.logText.endsWith(
      `${RED}ERROR: Job failed: step script took longer than 10 seconds${RESET}\n`,
    ),
    job.logText,
  );
  assert.equal(job.logText.includes("killed by signal"), false);
});

Deno.test("C3.6 C8.3 a step or factory that ignores its abort is left after exactly the grace, with a warning", async () => {
  await using h = await harness();
  // The diagnostics with the fake time they were logged at.
  const logged: [number, string][] = [];
  await configure({
    sinks: { timed: (record) => void logged.push([h.clock.now(), line(record)]) },
    loggers: [
      { category: ["gitlab-runner"], sinks: ["timed"], lowestLevel: "warning" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
    reset: true,
  });
  try {
    const stepJob = h.mock.job().timeout(3600).script(["a"]).payload(scriptTimeout(10)).enqueue();
    const factoryJob = h.mock.job().timeout(20).script(["c"]).enqueue();
    const runner = await h.builder.abortGrace(7_000).build();
    // Each records when it was aborted, and then ignores it.
    let stepAt = -1;
    await runner.requestJob(() => ({
      step: (_s, _p, signal) => {
        signal.addEventListener("abort", () => (stepAt = h.clock.now()), { once: true });
        return new Promise<void>(() => {});
      },
    }));
    await until(h.clock, () => runner.running === 0);
    let factoryAt = -1;
    await runner.requestJob((job) => {
      // The grace starts when the job's signal aborts, or at once if it already has.
      if (job.signal.aborted) factoryAt = h.clock.now();
      else job.signal.addEventListener("abort", () => (factoryAt = h.clock.now()), { once: true });
      return new Promise<JobHandler>(() => {});
    });
    await until(h.clock, () => runner.running === 0);
    assert.deepEqual(runner.outcomes.map((o) => [o.id, o.state, o.failureReason]), [
      [stepJob.id, "failed", "job_execution_timeout"],
      [factoryJob.id, "failed", "job_execution_timeout"],
    ]);
    assert.ok(
      factoryJob.logText.endsWith(
        `${RED}ERROR: Job failed: execution took longer than 20 seconds${RESET}\n`,
      ),
      factoryJob.logText,
    );
    // Exactly the grace after the abort.
    assert.deepEqual(logged, [
      [
        stepAt + 7_000,
        "gitlab-runner.job warning: A step did not stop within 7000 ms of being aborted",
      ],
      [
        factoryAt + 7_000,
        "gitlab-runner.job warning: The job factory did not stop within 7000 ms of being aborted",
      ],
      [
        factoryAt + 7_000,
        "gitlab-runner.job error: The job factory failed: execution took longer than 20 seconds",
      ],
    ]);
  } finally {
    await reset();
  }
});

Deno.test("C3.3 after_script when on_failure runs after a timeout and after a graceful cancel", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  const phases = new Map<number, string[]>();
  const factory = (job: Job): JobHandler => ({
    step: (script, phase, signal) => {
      phases.set(job.id, [...(phases.get(job.id) ?? []), phase]);
      if (phase !== "script") return Promise.resolve();
      return untilAborted()(script, phase, signal);
    },
  });
  const timedOut = h.mock.job().timeout(30).script(["a"])
    .step({ name: "after_script", script: ["on failure"], when: "on_failure" }).enqueue();
  await runner.requestJob(factory);
  await until(h.clock, () => runner.running === 0);
  const canceled = h.mock.job().script(["b"])
    .step({ name: "after_script", script: ["on failure"], when: "on_failure" }).enqueue();
  await runner.requestJob(factory);
  await until(h.clock, () => phases.has(canceled.id));
  await h.clock.advance(1000);
  h.mock.cancel(canceled.id, { graceful: true });
  await until(h.clock, () => runner.running === 0);
  // (The script may not have started before the timeout if fake time ran on during set-up.)
  assert.equal(phases.get(timedOut.id)?.at(-1), "after_script");
  assert.deepEqual(phases.get(canceled.id), ["script", "after_script"]);
  assert.equal(canceled.state, "canceled");
  // A graceful cancel is announced once in the log, however many answers repeat it.
  assert.equal(canceled.logText.split("Job is being canceled").length - 1, 1);
});

Deno.test("C5.2 C5.3 the job's cancel diagnostics name the job and GitLab's answer", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const runner = await h.builder.build();
  for (const graceful of [true, false]) {
    const job = h.mock.job().script(["a"]).enqueue();
    let started = false;
    await runner.requestJob(() => ({
      step: (script, phase, signal) => {
        started = true;
        return untilAborted()(script, phase, signal);
      },
    }));
    await until(h.clock, () => started);
    await h.clock.advance(1000);
    h.mock.cancel(job.id, { graceful });
    await until(h.clock, () => runner.running === 0);
  }
  const [a, b] = h.mock.jobs;
  assert.deepEqual(diagnostics.records.filter((r) => r.level === "info").map(line), [
    `gitlab-runner.job info: GitLab asked to cancel job ${a.id} gracefully`,
    `gitlab-runner.job info: GitLab stopped job ${b.id} (status 403, Job-Status none)`,
  ]);
});

Deno.test("C3.7 a failing cleanup is a warning; the job keeps its result", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  await runOne(h, () => ({
    step: async () => {},
    cleanup: () => Promise.reject(new Error("cannot power off the board")),
  }));
  assert.equal(job.state, "success");
  assert.deepEqual(diagnostics.records.map(line), [
    "gitlab-runner.job warning: Job cleanup failed: cannot power off the board",
  ]);
});

Deno.test("C8.4 a final state that cannot be delivered: an error diagnostic, the outcome lost", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  h.mock.fault({ route: "update", jobId: job.id, status: 500, times: Infinity });
  const outcome = await runOne(
    h,
    () => ({ step: () => Promise.reject(new Error("x")) }),
    h.builder.deadlines({ finalUpdateMs: 60_000, flushMs: 60_000 }),
  );
  assert.deepEqual([outcome.state, outcome.failureReason], ["lost", "script_failure"]);
  const errors = diagnostics.records.filter((r) => r.level === "error").map(line);
  assert.deepEqual(errors, [
    `gitlab-runner.job error: Could not deliver the final state of job ${job.id} to GitLab`,
  ]);
});

Deno.test("C5.2 a final update answered with a cancel ends the job aborted", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  h.mock.fault({ route: "update", jobId: job.id, status: 403, times: Infinity });
  const outcome = await runOne(h, () => ({ step: async () => {} }));
  assert.equal(outcome.state, "aborted");
  assert.equal(outcome.failureReason, undefined);
});

Deno.test("C4.8 the job log masks the job token and masked values, nothing else", async () => {
  await using h = await harness();
  const mj: MockJob = h.mock.job().variable("API_PASSWORD", "s3cr3t-Pa55w0rd", { masked: true })
    .variable("EMPTY", "", { masked: true })
    .variable("GREETING", "hello-world-42").script(["a"]).enqueue();
  await runOne(h, (job) => ({
    step: () => {
      outputln(`token ${job.variable("CI_JOB_TOKEN")?.value} end`);
      outputln(`password ${job.variable("API_PASSWORD")?.value} end`);
      outputln(`greeting ${job.variable("GREETING")?.value} end`);
      return Promise.resolve();
    },
  }));
  assert.match(
    mj.logText,
    /token \[MASKED\] end\npassword \[MASKED\] end\ngreeting hello-world-42 end\n/,
  );
  assert.equal(mj.logText.includes(mj.token), false);
});

Deno.test("C2.2 C9.4 an unreadable payload: the log line says why, the token it names is masked", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  // GitLab's 201 is cut right after the token: not JSON, but its id and token can be read.
  const broken: typeof fetch = async (input, init) => {
    const response = await h.mock.fetch(input, init);
    if (response.status !== 201) return response;
    const text = JSON.stringify({ id: job.id, token: job.token }).slice(0, -1) + " ]";
    return new Response(text, { status: 201, headers: response.headers });
  };
  const outcome = await runOne(h, () => ({ step: async () => {} }), h.builder.fetch(broken));
  assert.deepEqual([outcome.id, outcome.state, outcome.failureReason, outcome.exitCode], [
    job.id,
    "failed",
    "runner_system_failure",
    undefined,
  ]);
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_system_failure"]);
  const prefix =
    `${RED}ERROR: Job failed (system failure): the job payload could not be read: Job payload is not valid JSON: `;
  assert.ok(job.logText.startsWith(prefix), JSON.stringify(job.logText));
  assert.ok(job.logText.endsWith(`${RESET}\n`));
  assert.equal(job.logText.includes(job.token), false, job.logText);
  const [record] = diagnostics.records.filter((r) => r.level === "error");
  assert.ok(
    line(record).startsWith(
      "gitlab-runner.job error: GitLab sent a job payload that cannot be read: Job payload is not valid JSON: ",
    ),
    line(record),
  );
  assert.equal(record.properties.jobId, job.id);
});

Deno.test("C2.2 an unreadable payload without a token is lost: no request, no log", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const broken: typeof fetch = async (input, init) => {
    const response = await h.mock.fetch(input, init);
    if (response.status !== 201) return response;
    return new Response(JSON.stringify({ id: job.id }), { status: 201, headers: response.headers });
  };
  const outcome = await runOne(h, () => ({ step: async () => {} }), h.builder.fetch(broken));
  assert.deepEqual([outcome.id, outcome.state], [job.id, "lost"]);
  assert.equal(job.updates.length + job.patches, 0);
});

/** An artifact file the handler offers instead of the build directory's. */
const offered = (path: string) => ({ path, open: () => new Blob(["x"]).stream() });

Deno.test("C6.2 C6.5 artifacts: names expanded with the runner's variables; a failed upload fails the job with the upload's words", async () => {
  await using h = await harness();
  const good = h.mock.job().script(["a"]).artifact({ name: "bin-$CI_SERVER", paths: ["a"] })
    .enqueue();
  const bad = h.mock.job().script(["b"]).artifact({ name: "bin", paths: ["a"] }).enqueue();
  h.mock.fault({ route: "upload", jobId: bad.id, status: 403, times: Infinity });
  const runner = await h.builder.build();
  for (let i = 0; i < 2; i++) {
    await runner.requestJob(() => ({
      step: async () => {},
      uploadableFiles: () => [offered("a")],
    }));
    await until(h.clock, () => runner.running === 0);
  }
  assert.equal(good.state, "success");
  assert.deepEqual(good.artifacts.map((a) => a.filename), ["bin-yes.zip"]);
  assert.deepEqual([bad.state, bad.failureReason, bad.exitCode], ["failed", "script_failure", 1]);
  const last = bad.logText.slice(bad.logText.lastIndexOf("\x1b[31;1m"));
  assert.ok(last.startsWith(`${RED}ERROR: Job failed: uploading artifacts failed: `), last);
  assert.ok(last.endsWith(`${RESET}\n`), last);
  assert.equal(last.includes("; "), false, "one failure, no separator");
});

Deno.test("C6.5 a handler whose file list throws fails the job with the upload's words", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).artifact({ name: "bin", paths: ["a"] }).enqueue();
  await runOne(h, () => ({
    step: async () => {},
    uploadableFiles: () => {
      throw new Error("the board's disk is gone");
    },
  }));
  assert.deepEqual([job.state, job.failureReason, job.exitCode], ["failed", "script_failure", 1]);
  assert.ok(
    job.logText.endsWith(
      `${RED}ERROR: Job failed: uploading artifacts failed: the board's disk is gone${RESET}\n`,
    ),
    job.logText,
  );
});

Deno.test("C6.2 C5.2 on_failure artifacts are uploaded after a timeout; after GitLab's or the runner's hard stop nothing is", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  const phases = new Map<number, string[]>();
  const factory = (job: Job): JobHandler => ({
    step: (script, phase, signal) => {
      phases.set(job.id, [...(phases.get(job.id) ?? []), phase]);
      if (phase !== "script") return Promise.resolve();
      return untilAborted()(script, phase, signal);
    },
    uploadableFiles: () => [offered("a")],
  });
  const spec = () =>
    h.mock.job().script(["a"]).afterScript(["b"])
      .artifact({ name: "logs", paths: ["a"], when: "on_failure" });
  const timedOut = spec().timeout(30).enqueue();
  await runner.requestJob(factory);
  await until(h.clock, () => runner.running === 0);
  const canceled = spec().enqueue();
  await runner.requestJob(factory);
  await until(h.clock, () => phases.has(canceled.id));
  await h.clock.advance(1000);
  h.mock.cancel(canceled.id, { graceful: false });
  await until(h.clock, () => runner.running === 0);
  const stopped = spec().enqueue();
  await runner.requestJob(factory);
  await until(h.clock, () => phases.has(stopped.id));
  await h.clock.advance(1000);
  runner.cancelAll();
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual(timedOut.artifacts.map((a) => a.filename), ["logs.zip"]);
  // (The script may not have started before the timeout if fake time ran on during set-up.)
  assert.equal(phases.get(timedOut.id)?.at(-1), "after_script");
  for (const job of [canceled, stopped]) {
    assert.equal(job.artifacts.length, 0);
    assert.deepEqual(phases.get(job.id), ["script"]);
  }
  assert.equal(h.mock.requestCount("upload"), 1);
  assert.deepEqual([stopped.state, stopped.failureReason], ["failed", "runner_system_failure"]);
});

Deno.test("C3.6 a timeout during an allowed-to-fail step is no warning: the job fails with the timeout", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(30).script(["a"])
    .step({ name: "release", script: ["b"], allowFailure: true })
    .requires("multi_build_steps")
    .enqueue();
  await runOne(h, () => ({
    step: (script, phase, signal) =>
      phase === "script" ? Promise.resolve() : untilAborted()(script, phase, signal),
  }));
  assert.deepEqual([job.state, job.failureReason], ["failed", "job_execution_timeout"]);
  assert.equal(job.logText.includes("WARNING"), false, job.logText);
});

Deno.test("C3.6 the job timeout during after_script after a graceful cancel outranks the cancel", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(60).script(["a"]).afterScript(["sleep 100"])
    .failureReasons(["script_failure", "job_canceled", "job_execution_timeout"]).enqueue();
  const runner = await h.builder.build();
  await runner.requestJob(() => ({
    step: (script, phase, signal) =>
      phase === "script" ? untilAborted()(script, phase, signal) : h.clock.sleep(100_000),
  }));
  await until(h.clock, () => job.state === "running");
  await h.clock.advance(10_000);
  h.mock.cancel(job.id, { graceful: true });
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual(job.finalUpdates.map((u) => [u.state, u.failure_reason]), [
    ["failed", "job_execution_timeout"],
  ]);
  assert.ok(
    job.logText.endsWith(
      `${RED}ERROR: Job failed: execution took longer than 60 seconds${RESET}\n`,
    ),
  );
  // The cancel is announced once, however many answers repeat it.
  assert.equal(job.logText.split("Job is being canceled").length - 1, 1);
});

Deno.test("C1.8 a hard stop during after_script aborts it without a warning", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).afterScript(["b"]).enqueue();
  const runner = await h.builder.build();
  const phases: string[] = [];
  await runner.requestJob(() => ({
    step: (script, phase, signal) => {
      phases.push(phase);
      return phase === "script"
        ? Promise.reject(new Error("x"))
        : untilAborted()(script, phase, signal);
    },
  }));
  await until(h.clock, () => phases.length === 2);
  await h.clock.advance(1000);
  runner.cancelAll();
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_system_failure"]);
  assert.equal(job.logText.includes("WARNING"), false, job.logText);
});

Deno.test("C8.7 a job that starts after a hard stop fails at once, its hanging factory left after the grace", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const runner = await h.builder.abortGrace(4_000).build();
  const stop = new AbortController();
  const cancel = new AbortController();
  cancel.abort();
  let aborted: boolean | undefined;
  const done = runner.run(
    (j) => {
      aborted = j.signal.aborted;
      return new Promise<JobHandler>(() => {});
    },
    1,
    { signal: stop.signal, cancelSignal: cancel.signal },
  );
  await until(h.clock, () => runner.outcomes.length === 1);
  stop.abort();
  await done;
  assert.equal(aborted, true);
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_system_failure"]);
  assert.ok(job.logText.endsWith(`${RED}ERROR: Job failed: the runner was stopped${RESET}\n`));
});

Deno.test("C3.4 an error whose message is not a string is described by its String form", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const odd = new Error("unused");
  Object.defineProperty(odd, "message", { value: 42 });
  await runOne(h, () => ({ step: () => Promise.reject(odd) }));
  assert.ok(job.logText.endsWith(`${RED}ERROR: Job failed: Error: 42${RESET}\n`), job.logText);
});

Deno.test("C12.1 C4.8 inputs are interpolated into the steps; sensitive ones are masked", async () => {
  await using h = await harness();
  const job = h.mock.job().input("region", "eu-west").input("password", "correct-horse-battery", {
    sensitive: true,
  }).script(["deploy ${{ job.inputs.region }}"]).enqueue();
  let script: readonly string[] = [];
  const outcome = await runOne(h, (j) => ({
    step: (lines) => {
      script = lines;
      outputln(`password ${j.input("password")?.value.content}`);
      return Promise.resolve();
    },
  }));
  assert.deepEqual(script, ["deploy eu-west"]);
  assert.match(job.logText, /password \[MASKED\]\n/);
  assert.equal(outcome.name, job.name);
});

Deno.test("C12.1 an unknown input fails the job with runner_configuration_error before the factory", async () => {
  await using h = await harness();
  const job = h.mock.job().input("target", "x").script(["echo ${{ job.inputs.tagret }}"])
    .enqueue();
  let made = 0;
  await runOne(h, () => {
    made++;
    return { step: async () => {} };
  });
  assert.equal(made, 0);
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_configuration_error"]);
  assert.equal(
    job.logText,
    banner() +
      `${RED}ERROR: Job failed: failed to interpolate job inputs: steps[0] (script) script[0]: unknown input "tagret" (the job has "target") in \`\${{ job.inputs.tagret }}\`${RESET}\n`,
  );
});

Deno.test("C3.7 cleanup writes to the job log; the build dir and the downloads dir are removed", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  let dir = "";
  const outcome = await runOne(h, async (j) => {
    dir = j.buildDir;
    // Where dependency downloads go (C10.5): next to the build directory.
    await Deno.mkdir(`${j.buildDir}.tmp`);
    await Deno.writeTextFile(`${j.buildDir}.tmp/artifacts.zip`, "x");
    return {
      step: async () => {},
      cleanup: () => outputln("powering off the board"),
    };
  });
  assert.equal(outcome.state, "success");
  assert.ok(
    job.logText.endsWith(`powering off the board\n${GREEN}Job succeeded${RESET}\n`),
    job.logText,
  );
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(`${dir}.tmp`), Deno.errors.NotFound);
});

Deno.test("C3.4 an error no phase expects: a masked diagnostic, the build dirs removed, runner_system_failure", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  let dir = "";
  await runOne(h, async (j) => {
    dir = j.buildDir;
    await Deno.mkdir(`${j.buildDir}.tmp`);
    return {
      step: async () => {},
      get cleanup(): () => void {
        throw new Error(`no cleanup for ${j.variable("CI_JOB_TOKEN")?.value}`);
      },
    };
  });
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_system_failure"]);
  assert.deepEqual(diagnostics.records.map(line), [
    "gitlab-runner.job error: Unexpected error while running a job: no cleanup for [MASKED]",
  ]);
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(`${dir}.tmp`), Deno.errors.NotFound);
});

Deno.test("C3.2 a job's outcome: its name and how long it took on the runner's clock", async () => {
  await using h = await harness();
  const job = h.mock.job().name("flash").script(["a"]).enqueue();
  const outcome = await runOne(h, () => ({ step: () => h.clock.sleep(5_000) }));
  assert.equal(outcome.id, job.id);
  assert.equal(outcome.name, "flash");
  // At least the step's 5 s (fake time also passes while the log and the final update are sent).
  assert.ok(
    outcome.durationMs >= 5_000 && outcome.durationMs < 24 * 3600_000,
    `${outcome.durationMs}`,
  );
});

Deno.test("C3.6 without a job timeout no timer runs: a job of any length succeeds", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(0).script(["a"]).enqueue();
  let keys: unknown[] = [];
  const outcome = await runOne(h, (j) => {
    keys = j.variables.map((v) => v.key);
    return { step: () => h.clock.sleep(10_000) };
  });
  assert.equal(outcome.state, "success");
  assert.equal(job.state, "success");
  assert.ok(keys.every((k) => typeof k === "string"), "every variable has a name");
});

Deno.test("C3.7 a timeout or a hard stop during cleanup does not change the job's result", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  // Set-up runs without fake time passing (atOnce), so the job timer cannot fire before.
  const slow = h.mock.job().timeout(30).script(["a"]).enqueue();
  let cleaning = false;
  await runner.requestJob(() => ({
    step: async () => {},
    cleanup: async () => {
      cleaning = true;
      await h.clock.sleep(60_000); // past the job timeout
    },
  }));
  await atOnce(() => cleaning);
  await until(h.clock, () => runner.running === 0);
  const stopped = h.mock.job().script(["b"]).enqueue();
  cleaning = false;
  await runner.requestJob(() => ({
    step: async () => {},
    cleanup: async () => {
      cleaning = true;
      await h.clock.sleep(10_000);
    },
  }));
  await atOnce(() => cleaning);
  runner.cancelAll();
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual([slow.state, stopped.state], ["success", "success"]);
});

Deno.test("C5.2 C5.3 GitLab's hard cancel during after_script (after a graceful one) aborts it", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).afterScript(["sleep 1000"]).enqueue();
  const runner = await h.builder.build();
  const phases: string[] = [];
  const reasons: unknown[] = [];
  await runner.requestJob(() => ({
    step: (_s, phase, signal) => {
      phases.push(phase);
      return whenAborted(signal, reasons);
    },
  }));
  await until(h.clock, () => phases.length === 1);
  await h.clock.advance(1000);
  h.mock.cancel(job.id, { graceful: true });
  await until(h.clock, () => phases.length === 2);
  await h.clock.advance(1000);
  h.mock.cancel(job.id, { graceful: false });
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual(phases, ["script", "after_script"]);
  assert.deepEqual(reasons.map(stopOf), [
    ["AbortError", "The job is being canceled"],
    ["AbortError", "The job was canceled by GitLab"],
  ]);
  assert.equal(job.state, "canceled");
  assert.equal(job.finalUpdates.length, 0);
  // GitLab's cancel outranks the graceful one: the outcome carries no reason of ours.
  const [outcome] = runner.outcomes;
  assert.deepEqual([outcome.state, outcome.failureReason, outcome.exitCode], [
    "aborted",
    undefined,
    undefined,
  ]);
});

Deno.test("C1.8 after the runner's hard stop after_script is not even announced", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).afterScript(["b"]).enqueue();
  const runner = await h.builder.build();
  let started = false;
  await runner.requestJob(() => ({
    step: (_s, _p, signal) => {
      started = true;
      return whenAborted(signal);
    },
  }));
  await until(h.clock, () => started);
  runner.cancelAll();
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual([job.state, job.failureReason], ["failed", "runner_system_failure"]);
  assert.equal(job.logText.includes("after_script"), false, job.logText);
});

Deno.test("C3.5 a step's own error that happens to carry kind: timeout is a script failure", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const error = Object.assign(new Error("the board timed out"), { kind: "timeout" });
  await runOne(h, () => ({ step: () => Promise.reject(error) }));
  assert.deepEqual([job.state, job.failureReason], ["failed", "script_failure"]);
  assert.ok(job.logText.endsWith(`${RED}ERROR: Job failed: the board timed out${RESET}\n`));
});

Deno.test("C6.5 the upload's lines go to the job log, one per line", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).artifact({ name: "bin", paths: ["a"] }).enqueue();
  await runOne(h, () => ({ step: async () => {}, uploadableFiles: () => [offered("a")] }));
  assert.equal(job.state, "success");
  assert.ok(
    job.logText.includes(`${RESET}\nUploading artifacts...\n`),
    JSON.stringify(job.logText),
  );
});

Deno.test("C9.4 the job log's diagnostics are masked like the log, their other values kept", async () => {
  await using diagnostics = await captureDiagnostics();
  await using h = await harness();
  const secret = "s3cr3t-Pa55w0rd-value";
  const job = h.mock.job().variable("API_PASSWORD", secret, { masked: true }).script(["a"])
    .enqueue();
  // The first round of log PATCHes (5 attempts) fails with a transport error whose words
  // quote the masked value.
  let failures = 0;
  const flaky: typeof fetch = (input, init) => {
    const request = new Request(input, init);
    if (failures < 5 && request.method === "PATCH") {
      failures++;
      return Promise.reject(new TypeError(`connection reset while sending ${secret}`));
    }
    return h.mock.fetch(request);
  };
  await runOne(h, () => ({ step: async () => {} }), h.builder.fetch(flaky));
  assert.equal(job.state, "success");
  const [record] = diagnostics.records.filter((r) => r.level === "warning");
  assert.equal(line(record), "gitlab-runner.job warning: Sending the job log failed, will retry");
  assert.equal(record.properties.jobId, job.id);
  assert.equal(record.properties.offset, 0);
  const error = String(record.properties.error);
  assert.ok(error.includes("connection reset while sending [MASKED]"), error);
  assert.equal(JSON.stringify(diagnostics.records).includes(secret), false);
});

Deno.test("C2.2 C9.4 the token an unreadable payload names is masked in the log sent for it", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const patches: string[] = [];
  // Not JSON: V8 quotes the text around the error, the (short, prefix-less) token included.
  const broken: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    if (request.method === "PATCH") patches.push(await request.clone().text());
    const response = await h.mock.fetch(request);
    if (response.status !== 201) return response;
    const text = `{"id":${job.id},"token":"tk9q","a":x}`;
    return new Response(text, { status: 201, headers: response.headers });
  };
  const outcome = await runOne(h, () => ({ step: async () => {} }), h.builder.fetch(broken));
  assert.deepEqual([outcome.id, outcome.failureReason], [job.id, "runner_system_failure"]);
  assert.equal(patches.length > 0, true);
  assert.ok(patches[0].includes('..."[MASKED]","a":x}" is not valid JSON'), patches[0]);
  assert.equal(patches.some((p) => p.includes("tk9q")), false);
});

Deno.test("C6.2 without the handler's own file list the build directory's files are uploaded", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).artifact({ name: "out", paths: ["out/"] }).enqueue();
  await runOne(h, (j) => ({
    step: async () => {
      await Deno.mkdir(`${j.buildDir}/out`);
      await Deno.writeTextFile(`${j.buildDir}/out/result.txt`, "42");
    },
  }));
  assert.equal(job.state, "success");
  assert.deepEqual(job.artifacts.map((a) => a.filename), ["out.zip"]);
  assert.ok(job.artifacts[0].data.byteLength > 0);
  assert.ok(
    job.logText.includes("out: found 1 matching artifact files and directories"),
    job.logText,
  );
});

Deno.test("C2.2 an unreadable payload with a token but no id is lost: nothing is sent for it", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  const sent: string[] = [];
  const broken: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    sent.push(`${request.method} ${new URL(request.url).pathname}`);
    const response = await h.mock.fetch(request);
    if (response.status !== 201) return response;
    return new Response(JSON.stringify({ token: job.token }), {
      status: 201,
      headers: response.headers,
    });
  };
  const outcome = await runOne(h, () => ({ step: async () => {} }), h.builder.fetch(broken));
  assert.deepEqual([outcome.id, outcome.state], [0, "lost"]);
  assert.deepEqual(sent, ["POST /api/v4/jobs/request"]);
});

Deno.test("C3.1 the runner removes the build directory it made, and only that", async () => {
  await using h = await harness();
  const runner = await h.builder.build();
  // A factory that fails: the directory made for it is removed.
  const failing = h.mock.job().script(["a"]).enqueue();
  await runner.requestJob(() => {
    throw new Error("no board");
  });
  await until(h.clock, () => runner.running === 0);
  assert.equal(failing.failureReason, "runner_system_failure");
  await assert.rejects(Deno.stat(`${h.dir}/${failing.id}`), Deno.errors.NotFound);
  // A job that fails before the directory is made leaves what is there alone.
  const early = h.mock.job().input("target", "x").script(["echo ${{ job.inputs.tagret }}"])
    .enqueue();
  await Deno.mkdir(`${h.dir}/${early.id}`);
  await runner.requestJob(() => ({ step: async () => {} }));
  await until(h.clock, () => runner.running === 0);
  assert.equal(early.failureReason, "runner_configuration_error");
  assert.equal((await Deno.stat(`${h.dir}/${early.id}`)).isDirectory, true);
  // So does a `run:` job (native steps), which this runner refuses.
  const native = h.mock.job().payload((p) => {
    const { steps: _steps, ...rest } = p as Record<string, unknown>;
    return { ...rest, run: '[{"name":"hello","step":"x"}]' };
  }).enqueue();
  await Deno.mkdir(`${h.dir}/${native.id}`);
  await runner.requestJob(() => ({ step: async () => {} }));
  await until(h.clock, () => runner.running === 0);
  assert.equal(native.failureReason, "runner_unsupported");
  assert.equal((await Deno.stat(`${h.dir}/${native.id}`)).isDirectory, true);
});

Deno.test("C6.2 after a failed script on_failure artifacts are uploaded, on_success ones are not", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"])
    .artifact({ name: "bin", paths: ["a"], when: "on_success" })
    .artifact({ name: "logs", paths: ["a"], when: "on_failure" })
    .enqueue();
  await runOne(h, () => ({
    step: () => Promise.reject(new ScriptFailure(2)),
    uploadableFiles: () => [offered("a")],
  }));
  assert.deepEqual([job.state, job.failureReason, job.exitCode], ["failed", "script_failure", 2]);
  assert.deepEqual(job.artifacts.map((a) => a.filename), ["logs.zip"]);
});
