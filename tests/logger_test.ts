// The library's diagnostics go through LogTape when the application uses it, and LogTape is not
// loaded when it does not (src/log/_logger.ts): an unconfigured LogTape drops every record.
// Each case runs in a fresh child process, since a process that has loaded LogTape once keeps it.
import { assert } from "./_deps.ts";
import { runDenoChild } from "./_processes.ts";

const here = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);

// The child lives outside the project: it names LogTape as deno.json maps it.
const LOGTAPE = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)))
  .imports["@logtape/logtape"];

const CHILD = `
import { RunnerBuilder } from ${here("../mod.ts")};
import { GitLabMock } from ${here("../src/mock/mod.ts")};
import { getLogger, MAX_WAITING } from ${here("../src/log/_logger.ts")};
const mode = Deno.args[0];
const ROOT = Symbol.for("logtape.rootLogger");
const records = [];
async function useLogTape() {
  const { configure } = await import(${JSON.stringify(LOGTAPE)});
  await configure({
    sinks: { capture: (r) => void records.push(r) },
    loggers: [
      { category: ["gitlab-runner"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
}
const seen = () => records.map((r) => ({
  category: r.category.join("."),
  level: r.level,
  message: r.message.join(""),
  jobId: r.properties.jobId,
}));
async function failingJob(beforeRequest = async () => {}) {
  const mock = new GitLabMock();
  mock.job().script(["x"]).enqueue();
  const dir = await Deno.makeTempDir();
  const runner = await new RunnerBuilder(mock.url, mock.runnerToken, dir).fetch(mock.fetch).build();
  await beforeRequest(runner);
  await runner.drain();
  await Deno.remove(dir, { recursive: true });
  await mock.close();
  return { state: mock.jobs[0].state, id: mock.jobs[0].id };
}
const factory = () => { throw new Error("no handler here"); };
if (mode === "unused") {
  const job = await failingJob((runner) => runner.requestJob(factory));
  console.log(JSON.stringify({ ...job, root: ROOT in globalThis }));
} else if (mode === "before") {
  await useLogTape();
  const job = await failingJob((runner) => runner.requestJob(factory));
  console.log(JSON.stringify({ ...job, records: seen() }));
} else if (mode === "after") {
  // The application configures LogTape only once the runner has started the job, and the
  // job's factory fails after that.
  let configured;
  const ready = new Promise((resolve) => configured = resolve);
  const job = await failingJob(async (runner) => {
    const requested = runner.requestJob(async () => { await ready; return factory(); });
    await requested;
    await useLogTape();
    configured();
  });
  await new Promise((r) => setTimeout(r, 50));
  console.log(JSON.stringify({ ...job, records: seen() }));
} else if (mode === "sync") {
  // Configured before build(): build() loads LogTape, and each record goes at once.
  await useLogTape();
  const mock = new GitLabMock();
  const dir = await Deno.makeTempDir();
  await new RunnerBuilder(mock.url, mock.runnerToken, dir).fetch(mock.fetch).build();
  await Deno.remove(dir, { recursive: true });
  const logger = getLogger(["gitlab-runner", "test"]).with({ jobId: 3 });
  logger.debug("d {n}", { n: 1 });
  logger.info("i");
  logger.warn("w {n}", { n: 2 });
  logger.error("e");
  console.log(JSON.stringify({ records: seen() }));
} else if (mode === "waiting") {
  await useLogTape();
  const logger = getLogger(["gitlab-runner", "test"]).with({ jobId: 7 });
  for (let i = 0; i < MAX_WAITING + 5; i++) logger.info("record {i}", { i });
  const atOnce = records.length;
  await new Promise((r) => setTimeout(r, 50));
  const all = seen();
  console.log(JSON.stringify({
    atOnce,
    count: all.length,
    inOrder: all.slice(0, MAX_WAITING).every((r, i) => r.message === "record " + i && r.jobId === 7),
    last: all.at(-1),
    max: MAX_WAITING,
  }));
}
`;

async function child(mode: string): Promise<Record<string, unknown>> {
  return JSON.parse(await runDenoChild(CHILD, { args: () => [mode] }));
}

const factoryFailed = "The job factory failed: no handler here";

Deno.test("a process that does not use LogTape never loads it: a job that fails still ends, and LogTape's root logger was never made", async () => {
  const result = await child("unused");
  assert.equal(result.state, "failed");
  assert.equal(result.root, false);
});

Deno.test("LogTape configured before the runner is built gets the runner's diagnostics, with the job's id", async () => {
  const result = await child("before");
  assert.equal(result.state, "failed");
  assert.deepEqual(result.records, [
    { category: "gitlab-runner.job", level: "error", message: factoryFailed, jobId: result.id },
  ]);
});

Deno.test("LogTape configured before build(): build() loads it, and each record reaches it at once, at its level", async () => {
  const result = await child("sync");
  const at = (level: string, message: string) => ({
    category: "gitlab-runner.test",
    level,
    message,
    jobId: 3,
  });
  assert.deepEqual(result.records, [
    at("debug", "d 1"),
    at("info", "i"),
    at("warning", "w 2"),
    at("error", "e"),
  ]);
});

Deno.test("LogTape configured after the runner started a job still gets that job's diagnostics", async () => {
  const result = await child("after");
  assert.equal(result.state, "failed");
  assert.deepEqual(result.records, [
    { category: "gitlab-runner.job", level: "error", message: factoryFailed, jobId: result.id },
  ]);
});

Deno.test("records emitted while LogTape loads wait for it in order, at most MAX_WAITING; the others are counted", async () => {
  const result = await child("waiting");
  assert.equal(result.atOnce, 0, "LogTape was not loaded yet: the records wait");
  assert.equal(result.count, (result.max as number) + 1);
  assert.equal(result.inOrder, true);
  assert.deepEqual(result.last, {
    category: "gitlab-runner",
    level: "warning",
    message: "5 diagnostics were dropped while LogTape was loading",
  });
});
