// The built npm package on Node: artifacts (upload and dependency download) and runScript
// (node:child_process backend) in jobs against the mock served by node:http.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { runScript, ScriptFailure } from "@x/gitlab-runner";
import { served } from "./_helpers.mjs";

async function runUntil(ctx, runner, factory, predicate, maximum = 2) {
  const stop = new AbortController();
  const done = runner.run(factory, maximum, { signal: stop.signal });
  try {
    await ctx.mock.waitFor(predicate, { timeoutMs: 15_000 });
  } finally {
    stop.abort();
    await done;
  }
}

/** A handler that runs each step with runScript in the job's build directory. */
function shell(job) {
  return {
    async step(script, _phase, signal) {
      const code = await runScript(script, { cwd: job.buildDir, variables: job.variables, signal });
      if (code !== 0) throw new ScriptFailure(code);
    },
  };
}

test("runScript on Node: one session, exit code, output into the job log, masked", async () => {
  const ctx = await served();
  try {
    const runner = await ctx.builder.build();
    const ok = ctx.mock.job().name("ok").variable("TOKEN", "s3cr3t-value-42", { masked: true })
      .script(["X=one", 'echo "value $X"', 'echo "token $TOKEN" >&2']).enqueue();
    const bad = ctx.mock.job().name("bad").script(["echo one; echo two; exit 3", "echo never"])
      .enqueue();
    await runUntil(ctx, runner, shell, () => ok.state === "success" && bad.state === "failed");
    assert.match(ok.logText, /\nvalue one\n/);
    assert.match(ok.logText, /\ntoken \[MASKED\]\n/);
    assert.equal(ok.logText.includes("s3cr3t"), false);
    assert.match(bad.logText, /\none\ntwo\n/);
    assert.equal(bad.logText.includes("never\n"), false);
    assert.equal(bad.exitCode, 3);
    assert.equal(bad.failureReason, "script_failure");
  } finally {
    await ctx.close();
  }
});

test("a hard cancel kills the script's processes on Node", async () => {
  const ctx = await served({ traceUpdateInterval: 1 });
  try {
    const runner = await ctx.builder.build();
    const job = ctx.mock.job().name("slow")
      .script(["sleep 1000 & echo bg=$!", "while true; do echo tick; sleep 0.1; done"]).enqueue();
    const stop = new AbortController();
    const done = runner.run(shell, 1, { signal: stop.signal });
    await ctx.mock.waitFor(() => /bg=\d+/.test(job.logText), { timeoutMs: 10_000 });
    const pid = Number(/bg=(\d+)/.exec(job.logText)[1]);
    assert.doesNotThrow(() => process.kill(pid, 0));
    ctx.mock.cancel(job.id, { graceful: false });
    await ctx.mock.waitFor(() => runner.running === 0, { timeoutMs: 10_000 });
    stop.abort();
    await done;
    assert.equal(job.state, "canceled");
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      try {
        const stat = await readFile(`/proc/${pid}/stat`, "utf8");
        gone = /^\d+ \(.*\) Z/.test(stat);
      } catch {
        gone = true;
      }
      if (!gone) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(gone, `background process ${pid} survived the cancel`);
  } finally {
    await ctx.close();
  }
});

test("C9.6 on Node: a setsid daemon and the runner's secrets stay out of a job's life", async () => {
  const dir = await mkdtemp(join(tmpdir(), "glr-node-daemon-"));
  process.env.NODE_TWIN_SECRET = "node-twin-secret-value";
  try {
    let text = "";
    const output = new WritableStream({
      write: (chunk) => void (text += new TextDecoder().decode(chunk)),
    });
    const done = runScript([
      `setsid sleep 1000 > /dev/null 2>&1 < /dev/null & echo $! > "${dir}/pid.tmp"`,
      `mv "${dir}/pid.tmp" "${dir}/pid"`,
      "echo secret=${NODE_TWIN_SECRET:-unset}",
      `while [ ! -e "${dir}/go" ]; do sleep 0.01; done`,
    ], { output, echo: false, killGraceMs: 500 });
    let pid = 0;
    for (let i = 0; i < 500 && pid === 0; i++) {
      pid = Number(await readFile(join(dir, "pid"), "utf8").catch(() => "0"));
      if (pid === 0) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(pid > 1, "the daemon's pid was written");
    const state = async () => {
      try {
        const stat = await readFile(`/proc/${pid}/stat`, "utf8");
        return /^\d+ \(.*\) [ZX]/.test(stat) ? "zombie" : "running";
      } catch {
        return "gone";
      }
    };
    assert.equal(await state(), "running", "the daemon runs while the script does");
    await writeFile(join(dir, "go"), "");
    assert.equal(await done, 0);
    assert.notEqual(await state(), "running", `the setsid daemon ${pid} survived the script`);
    assert.match(text, /secret=unset\n/);
  } finally {
    delete process.env.NODE_TWIN_SECRET;
    await rm(dir, { recursive: true, force: true });
  }
});

test("artifacts on Node: uploaded from the build dir, downloaded and extracted by a dependent job", async () => {
  const ctx = await served({ downloadRedirect: true });
  try {
    const runner = await ctx.builder.build();
    const build = ctx.mock.job().name("build")
      .script(["mkdir -p out", "echo built > out/app.txt", "echo report > out/report.txt"])
      .artifact({ name: "app", paths: ["out/"], exclude: ["out/report.txt"] })
      .enqueue();
    await runUntil(ctx, runner, shell, () => build.state === "success");
    assert.equal(build.artifacts.length, 1);
    assert.equal(build.artifacts[0].filename, "app.zip");

    const test = ctx.mock.job().name("test").dependency(build).script([
      "cat out/app.txt",
      "test ! -e out/report.txt",
    ]).enqueue();
    const factory = async (job) => {
      for (const dep of job.dependencies()) {
        const artifact = await dep.download();
        await artifact.extractTo(job.buildDir);
      }
      return shell(job);
    };
    await runUntil(
      ctx,
      runner,
      factory,
      () => test.state !== "pending" && test.state !== "running",
    );
    assert.equal(test.state, "success", test.logText);
    assert.match(test.logText, /\nbuilt\n/);
    const object = ctx.mock.requests.find((r) => r.route === "object");
    assert.ok(object, "the download went through the object-storage redirect");
    assert.equal(object.headers.get("job-token"), null);
  } finally {
    await ctx.close();
  }
});
