// Modules loaded on first use (src/_lazy.ts): the load must not keep the first caller's
// asynchronous context (a job's, with its log and buffers) alive, which a plain dynamic import()
// does on Deno. Checked in a child process with --expose-gc and a FinalizationRegistry.
import { assert } from "./_deps.ts";
import { runDenoChild } from "./_processes.ts";
import { lazy } from "../src/_lazy.ts";

const CHILD = `
import { AsyncLocalStorage } from "node:async_hooks";
import { lazy } from ${JSON.stringify(new URL("../src/_lazy.ts", import.meta.url).href)};
const plain = Deno.args[0] === "plain";
const job = new AsyncLocalStorage();
let collected = false;
const registry = new FinalizationRegistry(() => collected = true);
const load = lazy(() => import("data:text/javascript,export const x = 1;"));
await (async () => {
  const context = { log: new Uint8Array(1 << 20) };
  registry.register(context, "job");
  await job.run(context, async () => {
    const { x } = plain ? await import("data:text/javascript,export const y = 1;") : await load();
    if (x !== 1 && !plain) throw new Error("not loaded");
  });
})();
for (let i = 0; i < 20 && !collected; i++) {
  globalThis.gc();
  await new Promise((r) => setTimeout(r, 10));
}
console.log(collected ? "collected" : "kept");
`;

async function child(mode: "lazy" | "plain"): Promise<string> {
  return (await runDenoChild(CHILD, { args: () => [mode], flags: ["--v8-flags=--expose-gc"] }))
    .trim();
}

Deno.test("lazy() loads outside the caller's context, so a job's context is collected after it", async () => {
  // The control: a plain import() inside the context keeps it (if Deno stops doing that, this
  // line fails and src/_lazy.ts can say so).
  assert.equal(await child("plain"), "kept");
  assert.equal(await child("lazy"), "collected");
});

Deno.test("lazy() loads once, and again after a failed load", async () => {
  let calls = 0;
  let fail = true;
  const load = lazy(() => {
    calls++;
    return fail ? Promise.reject(new Error("not there")) : Promise.resolve(calls);
  });
  await assert.rejects(load(), /not there/);
  fail = false;
  assert.equal(await load(), 2);
  assert.equal(await load(), 2);
  assert.equal(load(), load());
  assert.equal(calls, 2);
});

// The lazy points of the library (the job-running code, runScript's implementation and backend,
// getSources, the artifact files and downloads) are first loaded inside a job: in a fresh
// process, two jobs start while the job code loads, each lists its files and runs a script;
// afterwards neither job's log may be kept alive by a load.
const FIRST_JOBS = `
import { filesUnder, RunnerBuilder, runScript, ScriptFailure, currentJobLog } from ${
  JSON.stringify(new URL("../mod.ts", import.meta.url).href)
};
import { GitLabMock } from ${JSON.stringify(new URL("../src/mock/mod.ts", import.meta.url).href)};
const mock = new GitLabMock();
mock.job().script(["echo one"]).enqueue();
mock.job().script(["echo two"]).enqueue();
let collected = 0;
const registry = new FinalizationRegistry(() => collected++);
const runner = await new RunnerBuilder(mock.url, mock.runnerToken, Deno.args[0])
  .fetch(mock.fetch)
  .build();
const stop = new AbortController();
const done = runner.run((job) => ({
  async step(script, _phase, signal) {
    registry.register(currentJobLog(), "job log");
    for await (const _ of filesUnder(job.buildDir));
    const code = await runScript(script, { cwd: job.buildDir, variables: job.variables, signal });
    if (code !== 0) throw new ScriptFailure(code);
  },
}), 2, { signal: stop.signal });
await mock.waitFor(() => mock.jobs.every((j) => j.state !== "pending" && j.state !== "running"));
stop.abort();
await done;
for (let i = 0; i < 50 && collected < 2; i++) {
  globalThis.gc();
  await new Promise((r) => setTimeout(r, 10));
}
console.log(JSON.stringify({ states: mock.jobs.map((j) => j.state), collected }));
`;

Deno.test("the first jobs load the job code outside their context: both end and are collected", async () => {
  const out = await runDenoChild(FIRST_JOBS, {
    args: (dir) => [`${dir}/builds`],
    flags: ["--v8-flags=--expose-gc"],
  });
  const result = JSON.parse(out.trim().split("\n").at(-1)!);
  assert.deepEqual(result, { states: ["success", "success"], collected: 2 });
});
