import { assert } from "./_deps.ts";
import { atOnce, type Harness, harness, until } from "./_harness.ts";
import {
  type Job,
  JobFailure,
  type JobHandler,
  outputln,
  type Phase,
  ScriptFailure,
} from "../mod.ts";
import type { MockJob } from "../src/mock/mod.ts";

type StepFn = (script: readonly string[], phase: Phase, signal: AbortSignal) => Promise<void>;

/** Runs the queued jobs with `factory` until they all ended. */
async function runAll(
  h: Harness,
  factory: (job: Job) => JobHandler | Promise<JobHandler>,
  options: { maximum?: number; builder?: Harness["builder"] } = {},
) {
  const runner = await (options.builder ?? h.builder).build();
  const stop = new AbortController();
  const done = runner.run(factory, options.maximum ?? 4, { signal: stop.signal });
  await until(
    h.clock,
    () =>
      h.mock.jobs.every((j) => !["pending", "running", "canceling"].includes(j.state)) &&
      runner.running === 0,
  );
  stop.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  return runner;
}

function recorder() {
  const calls: { phase: Phase; script: readonly string[] }[] = [];
  const step = (impl?: StepFn): StepFn => async (script, phase, signal) => {
    calls.push({ phase, script });
    await impl?.(script, phase, signal);
  };
  return { calls, step };
}

const finalOf = (j: MockJob) => ({ state: j.state, reason: j.failureReason, exit: j.exitCode });

Deno.test("C3.2 the script step gets before_script+script lines exactly; resolve is success", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["make deps", "make build", "make test"]).enqueue();
  const r = recorder();
  await runAll(h, () => ({ step: r.step() }));
  assert.deepEqual(r.calls, [{
    phase: "script",
    script: ["make deps", "make build", "make test"],
  }]);
  assert.equal(job.state, "success");
});

Deno.test("C3.2 a rejected step fails the job as script_failure", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["false"]).enqueue();
  await runAll(h, () => ({ step: () => Promise.reject(new Error("boom")) }));
  assert.deepEqual(finalOf(job), { state: "failed", reason: "script_failure", exit: undefined });
  assert.match(job.logText, /ERROR: Job failed: boom/);
});

Deno.test("C3.5 ScriptFailure reports script_failure with its exit code", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["exit 3"]).enqueue();
  await runAll(h, () => ({ step: () => Promise.reject(new ScriptFailure(3)) }));
  assert.deepEqual(finalOf(job), { state: "failed", reason: "script_failure", exit: 3 });
  assert.match(job.logText, /exit code 3/);
});

Deno.test("C3.5 JobFailure reports its reason; reasons GitLab does not know are mapped", async () => {
  await using h = await harness();
  const a = h.mock.job().script(["a"]).enqueue();
  const b = h.mock.job().script(["b"]).enqueue();
  const c = h.mock.job().script(["c"]).enqueue();
  await runAll(h, (job) => ({
    step: () => {
      if (job.id === a.id) return Promise.reject(new JobFailure("runner_system_failure"));
      if (job.id === b.id) return Promise.reject(new JobFailure("image_pull_failure"));
      return Promise.reject(new JobFailure("no_such_reason"));
    },
  }), { maximum: 1 });
  assert.equal(a.failureReason, "runner_system_failure");
  assert.equal(b.failureReason, "runner_system_failure"); // image_pull_failure → compat map
  assert.equal(c.failureReason, "unknown_failure");
});

Deno.test("C3.3 after_script runs after success and after failure; its result is ignored", async () => {
  await using h = await harness();
  const good = h.mock.job().script(["ok"]).afterScript(["cleanup"]).enqueue();
  const bad = h.mock.job().script(["fail"]).afterScript(["cleanup"]).enqueue();
  const phases = new Map<number, Phase[]>();
  await runAll(h, (job) => ({
    step: (_script, phase) => {
      phases.set(job.id, [...(phases.get(job.id) ?? []), phase]);
      if (phase === "after_script") return Promise.reject(new Error("after failed"));
      return job.id === bad.id ? Promise.reject(new ScriptFailure(1)) : Promise.resolve();
    },
  }), { maximum: 1 });
  assert.deepEqual(phases.get(good.id), ["script", "after_script"]);
  assert.deepEqual(phases.get(bad.id), ["script", "after_script"]);
  assert.equal(good.state, "success");
  assert.equal(bad.state, "failed");
  assert.match(good.logText, /WARNING: after_script failed/);
});

Deno.test("C3.3 release steps run after script; each step honours its when", async () => {
  await using h = await harness();
  const job = h.mock.job()
    .script(["build"])
    .step({ name: "release", script: ["release-cli create"], when: "on_success" })
    .step({ name: "after_script", script: ["only on failure"], when: "on_failure" })
    .requires("multi_build_steps")
    .enqueue();
  const r = recorder();
  await runAll(h, () => ({ step: r.step() }));
  assert.deepEqual(r.calls.map((c) => c.phase), ["script", "release"]);
  assert.equal(job.state, "success");

  const failing = h.mock.job()
    .script(["build"])
    .step({ name: "release", script: ["release"], when: "on_success" })
    .step({ name: "after_script", script: ["report"], when: "on_failure" })
    .enqueue();
  const r2 = recorder();
  await runAll(h, () => ({ step: r2.step(() => Promise.reject(new Error("x"))) }));
  assert.deepEqual(r2.calls.map((c) => c.phase), ["script", "after_script"]);
  assert.equal(failing.state, "failed");
});

Deno.test("C3.1 the build dir exists before the factory runs and is removed after cleanup", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  let seen: string | undefined;
  let existedInCleanup = false;
  await runAll(h, async (j) => {
    seen = j.buildDir;
    assert.equal((await Deno.stat(j.buildDir)).isDirectory, true);
    await Deno.writeTextFile(`${j.buildDir}/artifact.txt`, "x");
    return {
      step: async () => {},
      cleanup: async () => {
        existedInCleanup = (await Deno.stat(j.buildDir)).isDirectory;
      },
    };
  });
  assert.equal(seen, `${h.dir}/${job.id}`);
  assert.equal(existedInCleanup, true);
  await assert.rejects(Deno.stat(seen!), Deno.errors.NotFound);
});

Deno.test("C3.4 a throwing factory fails the job as runner_system_failure; the runner goes on", async () => {
  await using h = await harness();
  const a = h.mock.job().script(["a"]).enqueue();
  const b = h.mock.job().script(["b"]).enqueue();
  await runAll(h, (job) => {
    if (job.id === a.id) throw new Error("no board available");
    return { step: async () => {} };
  }, { maximum: 1 });
  assert.equal(a.state, "failed");
  assert.equal(a.failureReason, "runner_system_failure");
  assert.match(a.logText, /no board available/);
  assert.equal(b.state, "success");
});

Deno.test("C3.4 a handler that throws synchronously or rejects with nothing never crashes", async () => {
  await using h = await harness();
  const a = h.mock.job().script(["a"]).enqueue();
  const b = h.mock.job().script(["b"]).enqueue();
  await runAll(h, (job) => ({
    step: (() => {
      if (job.id === a.id) throw new TypeError("sync throw");
      return Promise.reject(undefined);
    }) as StepFn,
  }), { maximum: 2 });
  assert.equal(a.state, "failed");
  assert.equal(b.state, "failed");
  assert.equal(a.failureReason, "script_failure");
});

Deno.test("C3.4 a handler that throws what String cannot convert still ends the job failed", async () => {
  await using h = await harness();
  const cyclic = Object.create(null);
  cyclic.self = cyclic;
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const badMessage = new Error("x");
  Object.defineProperty(badMessage, "message", {
    get() {
      throw new Error("no message");
    },
  });
  const thrown: unknown[] = [cyclic, badMessage];
  const jobs = thrown.map(() => h.mock.job().script(["a"]).enqueue());
  const factoryFails = h.mock.job().script(["b"]).enqueue();
  const cleanupFails = h.mock.job().script(["c"]).enqueue();
  await runAll(h, (job) => {
    if (job.id === factoryFails.id) throw cyclic;
    const i = jobs.findIndex((j) => j.id === job.id);
    return {
      step: () => Promise.reject(i >= 0 ? thrown[i] : undefined),
      cleanup: () => {
        if (job.id === cleanupFails.id) throw revoked;
      },
    };
  }, { maximum: 4 });
  for (const job of jobs) {
    assert.deepEqual(finalOf(job), { state: "failed", reason: "script_failure", exit: undefined });
  }
  assert.match(jobs[0].logText, /ERROR: Job failed: \[object Object\]/);
  assert.match(jobs[1].logText, /ERROR: Job failed: \[object Error\]/);
  assert.equal(factoryFails.state, "failed");
  assert.equal(factoryFails.failureReason, "runner_system_failure");
  assert.match(factoryFails.logText, /could not prepare the job: \[object Object\]/);
  assert.equal(cleanupFails.state, "failed"); // the step rejected with nothing; the cleanup threw
});

Deno.test("C3.6 the job timeout aborts the step and fails with job_execution_timeout", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(60).script(["sleep 3600"]).afterScript(["echo after"])
    .enqueue();
  const r = recorder();
  let cleaned = false;
  await runAll(h, () => ({
    step: r.step((_s, phase, signal) =>
      phase === "script"
        ? new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)))
        : Promise.resolve()
    ),
    cleanup: () => {
      cleaned = true;
    },
  }));
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "job_execution_timeout");
  assert.match(job.logText, /execution took longer than 60 seconds/);
  assert.deepEqual(r.calls.map((c) => c.phase), ["script", "after_script"]);
  assert.equal(cleaned, true);
});

Deno.test("C3.6 a step timeout shorter than the job's aborts the step and fails the job", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(3600).script(["sleep 3600"]).afterScript(["echo after"])
    .payload((p) => ({
      ...p,
      steps: (p.steps as { name: string }[]).map((s) =>
        s.name === "script" ? { ...s, timeout: 10 } : s
      ),
    }))
    .enqueue();
  const r = recorder();
  let started = -1;
  let aborted = -1;
  await runAll(h, () => ({
    step: r.step((_s, phase, signal) => {
      if (phase !== "script") return Promise.resolve();
      started = h.clock.now();
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => {
          aborted = h.clock.now();
          reject(signal.reason);
        })
      );
    }),
  }));
  assert.equal(aborted - started, 10_000);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "job_execution_timeout");
  assert.match(job.logText, /step script took longer than 10 seconds/);
  assert.doesNotMatch(job.logText, /3600 seconds/);
  assert.deepEqual(r.calls.map((c) => c.phase), ["script", "after_script"]);
});

Deno.test("C3.6 a step that ignores its abort is left after the grace period", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(10).script(["ignore signals"]).enqueue();
  await runAll(h, () => ({ step: () => new Promise<void>(() => {}) }), {
    builder: h.builder.abortGrace(5_000),
  });
  assert.equal(job.failureReason, "job_execution_timeout");
});

Deno.test("C3.7 cleanup is always called: success, failure, factory-made handler failure", async () => {
  await using h = await harness();
  h.mock.job().script(["ok"]).enqueue();
  h.mock.job().script(["fail"]).enqueue();
  let cleanups = 0;
  await runAll(h, (job) => ({
    step: () => job.variable("CI_JOB_ID")!.value === "1" ? Promise.resolve() : Promise.reject(1),
    cleanup: () => {
      cleanups++;
    },
  }));
  assert.equal(cleanups, 2);
});

Deno.test("C2.3 the whole payload reaches the handler, typed", async () => {
  await using h = await harness();
  const mj = h.mock.job().name("build:linux").timeout(1234).script(["a"]).enqueue();
  let seen: Job | undefined;
  await runAll(h, (job) => {
    seen = job;
    return { step: async () => {} };
  });
  assert.equal(seen!.id, mj.id);
  assert.equal(seen!.payload.jobInfo.name, "build:linux");
  assert.equal(seen!.payload.runnerInfo.timeout, 1234);
  assert.equal(typeof seen!.payload.gitInfo.sha, "string");
  assert.deepEqual(seen!.payload.steps?.[0].script, ["a"]);
  assert.ok(seen!.payload.features.failureReasons.includes("script_failure"));
});

Deno.test("C2.4 variables are readable; a masked Variable prints [MASKED]", async () => {
  await using h = await harness();
  const mj = h.mock.job().variable("API_PASSWORD", "s3cr3t-Pa55w0rd", { masked: true })
    .variable("GREETING", "hello").script(["a"]).enqueue();
  let seen: Job | undefined;
  await runAll(h, (job) => {
    seen = job;
    return { step: async () => {} };
  });
  assert.equal(seen!.variable("CI_JOB_ID")?.value, String(mj.id));
  const secret = seen!.variable("API_PASSWORD")!;
  assert.equal(secret.value, "s3cr3t-Pa55w0rd");
  assert.equal(secret.masked, true);
  assert.equal(`${secret}`, "[MASKED]");
  assert.equal(JSON.stringify(secret).includes("s3cr3t"), false);
  assert.equal(Deno.inspect(secret).includes("s3cr3t"), false);
  assert.equal(`${seen!.variable("GREETING")}`, "hello");
});

Deno.test("C4.8 the job's features.token_mask_prefixes are masked in its log", async () => {
  await using h = await harness();
  const mj = h.mock.job({ tokenMaskPrefixes: ["abc-"] }).script(["a"]).enqueue();
  await runAll(h, () => ({
    step: () => {
      outputln("token abc-0123456789abcdefgh here");
      return Promise.resolve();
    },
  }));
  assert.equal(mj.state, "success");
  assert.match(mj.logText, /token abc-\[MASKED\] here/);
  assert.equal(mj.logText.includes("0123456789abcdefgh"), false);
});

Deno.test("C2.1 a run: job without steps fails cleanly with a message, never hangs", async () => {
  await using h = await harness();
  const job = h.mock.job().payload((p) => {
    const { steps: _steps, ...rest } = p as Record<string, unknown>;
    return { ...rest, run: '[{"name":"hello","step":"x"}]' };
  }).enqueue();
  let made = 0;
  await runAll(h, () => {
    made++;
    return { step: async () => {} };
  });
  assert.equal(made, 0);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_unsupported");
  assert.match(job.logText, /run:/);
});

Deno.test("C2.2 an unparseable payload still ends with a failed update and a log line", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  // Cut the 201 body short so that it is no longer JSON.
  const broken: typeof fetch = async (input, init) => {
    const response = await h.mock.fetch(input, init);
    if (response.status !== 201) return response;
    const text = await response.text();
    return new Response(text.slice(0, text.length - 40), {
      status: 201,
      headers: response.headers,
    });
  };
  let made = 0;
  await runAll(h, () => {
    made++;
    return { step: async () => {} };
  }, { builder: h.builder.fetch(broken) });
  assert.equal(made, 0);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.match(job.logText, /payload could not be read/);
});

Deno.test("C4.9 outputln and job.trace appear in order; output outside a job goes nowhere", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["a"]).enqueue();
  outputln("outside any job");
  await runAll(h, (j) => ({
    step: async () => {
      outputln("one");
      j.trace("two\n");
      outputln("three", 4);
      const w = j.log.getWriter();
      await w.write(new TextEncoder().encode("five\n"));
      w.releaseLock();
      outputln("six");
    },
  }));
  assert.match(job.logText, /one\ntwo\nthree 4\nfive\nsix\n/);
  assert.equal(job.logText.includes("outside any job"), false);
});

Deno.test("C4.9 two concurrent jobs never see each other's lines", async () => {
  await using h = await harness();
  const a = h.mock.job().script(["a"]).enqueue();
  const b = h.mock.job().script(["b"]).enqueue();
  await runAll(h, (job) => ({
    step: async () => {
      for (let i = 0; i < 20; i++) {
        outputln(`job ${job.id} line ${i}`);
        await h.clock.sleep(100);
      }
    },
  }), { maximum: 2 });
  for (const [mine, other] of [[a, b], [b, a]]) {
    assert.equal(mine.logText.split(`job ${mine.id} line`).length - 1, 20);
    assert.equal(mine.logText.includes(`job ${other.id} line`), false);
  }
});

Deno.test("C5.3 a graceful cancel outranks the script's failure: the job ends canceled, not script_failure", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["exit 2"]).afterScript(["sleep 60"]).enqueue();
  const runner = await h.builder.build();
  const phases: Phase[] = [];
  const canceled: { at?: number } = {};
  // GitLab has answered a log or state update since the cancel: the runner has been told.
  const told = () =>
    canceled.at !== undefined &&
    h.mock.requests.some((r) =>
      r.done && (r.route === "trace" || r.route === "update") && r.at > canceled.at!
    );
  assert.equal(
    await runner.requestJob(() => ({
      step: async (_s, phase) => {
        phases.push(phase);
        // The script fails on its own; after_script (not stopped by a graceful cancel) runs
        // until the runner has been told of the cancel (not a fixed fake-time wait, which
        // the fake clock can jump past while the answer is still being read).
        if (phase === "script") throw new ScriptFailure(2);
        while (!told()) await h.clock.sleep(1_000);
        await h.clock.sleep(1_000);
      },
    })),
    true,
  );
  await until(h.clock, () => phases.length === 2);
  canceled.at = h.clock.now();
  h.mock.cancel(job.id);
  await until(h.clock, () => runner.running === 0);
  assert.deepEqual(phases, ["script", "after_script"]);
  assert.equal(job.state, "canceled");
  assert.equal(job.finalUpdates.length, 1);
  assert.equal(runner.outcomes[0].exitCode, undefined);
  assert.match(job.logText, /Job is being canceled/);
  assert.match(job.logText, /ERROR: Job failed: the job was canceled/);
  assert.doesNotMatch(job.logText, /exit code 2/);
});

Deno.test("C3.6 a hard stop during after_script outranks the job timeout: runner_system_failure", async () => {
  await using h = await harness();
  const job = h.mock.job().timeout(60).script(["sleep 3600"]).afterScript(["sleep 3600"])
    .enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const hard = new AbortController();
  const phases: Phase[] = [];
  const done = runner.run(
    () => ({
      step: (_s, phase, signal) => {
        phases.push(phase);
        return new Promise<void>((_, reject) =>
          signal.addEventListener("abort", () => reject(signal.reason))
        );
      },
    }),
    1,
    { signal: stop.signal, cancelSignal: hard.signal },
  );
  // The script starts before any fake time passes (else the job timer could fire during
  // set-up and the script would be skipped); then the job timeout ends it, and after_script
  // still runs (a timeout does not stop it).
  await atOnce(() => phases.length === 1);
  await until(h.clock, () => phases.length === 2);
  assert.equal(h.clock.now() >= 60_000, true);
  stop.abort();
  hard.abort();
  await until(h.clock, () => runner.running === 0);
  await done;
  assert.deepEqual(phases, ["script", "after_script"]);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.match(job.logText, /ERROR: Job failed: the runner was stopped/);
});

Deno.test("C3.4 an error no phase expects (a throwing cleanup getter, a revoked-proxy rejection) still ends the job: runner_system_failure delivered", async () => {
  await using h = await harness();
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const getterThrows = h.mock.job().script(["a"]).enqueue();
  const revokedRejection = h.mock.job().script(["b"]).enqueue();
  await runAll(h, (job) => {
    if (job.id === getterThrows.id) {
      return {
        step: async () => {},
        get cleanup(): () => void {
          throw new Error("no cleanup here");
        },
      };
    }
    return { step: () => Promise.reject(revoked) };
  }, { maximum: 2 });
  for (const job of [getterThrows, revokedRejection]) {
    assert.deepEqual(finalOf(job), {
      state: "failed",
      reason: "runner_system_failure",
      exit: undefined,
    });
    assert.match(job.logText, /the runner failed unexpectedly/);
  }
  // Nothing keeps talking to GitLab about the ended jobs (no keep-alive after the final update).
  const updates = getterThrows.updates.length;
  await h.clock.advance(10 * 60_000);
  assert.equal(getterThrows.updates.length, updates);
});
