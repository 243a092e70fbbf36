// The built npm package on Node: the runner's diagnostics go through LogTape once the
// application uses it, and LogTape is not loaded before (src/log/_logger.ts). The two tests run
// in this order, in one process: the first must see LogTape never loaded.
import assert from "node:assert/strict";
import { test } from "node:test";
import { served } from "./_helpers.mjs";

const ROOT = Symbol.for("logtape.rootLogger");
const failing = () => {
  throw new Error("no handler here");
};

async function failingJob() {
  const ctx = await served();
  try {
    const job = ctx.mock.job().script(["x"]).enqueue();
    const runner = await ctx.builder.build();
    assert.equal(await runner.requestJob(failing), true);
    await runner.drain();
    return job;
  } finally {
    await ctx.close();
  }
}

test("a process that does not use LogTape never loads it; its jobs still end", async () => {
  const job = await failingJob();
  assert.equal(job.state, "failed");
  assert.equal(ROOT in globalThis, false);
});

test("once the application configures LogTape, the runner's diagnostics reach its sinks", async () => {
  const { configure, reset } = await import("@logtape/logtape");
  const records = [];
  await configure({
    sinks: { capture: (record) => void records.push(record) },
    loggers: [
      { category: ["gitlab-runner"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  try {
    const job = await failingJob();
    assert.equal(job.state, "failed");
    assert.deepEqual(
      records.map((r) => [r.category.join("."), r.level, r.message.join(""), r.properties.jobId]),
      [["gitlab-runner.job", "error", "The job factory failed: no handler here", job.id]],
    );
  } finally {
    await reset();
  }
});
