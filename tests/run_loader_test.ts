// The job-running code is loaded with the first job (src/_run_loader.ts): a job that arrives
// while the load is in flight waits for the same load, and a load that fails still ends the job
// GitLab handed out with a final state (C8.4), within the final-update deadline.
import { getLogger } from "../src/log/_logger.ts";
import { assert, FakeClock } from "./_deps.ts";
import { Client } from "../src/api/client.ts";
import type { ParseResult } from "../src/api/payload.ts";
import { lazy } from "../src/_lazy.ts";
import { loadingRunJob, type RunModule } from "../src/_run_loader.ts";
import type { JobOutcome, RunContext } from "../src/run.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { captureDiagnostics } from "./_harness.ts";

interface Setup {
  clock: FakeClock;
  mock: GitLabMock;
  ctx: RunContext;
  /** Asks the mock for its next job, as the runner would. */
  next(): Promise<ParseResult>;
}

function setup(finalUpdateDeadlineMs?: number): Setup {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const client = new Client(mock.url, { fetch: mock.fetch, clock, random: () => 0.5 });
  const ctx: RunContext = {
    client,
    clock,
    random: () => 0.5,
    info: { name: "loader-test" },
    features: {},
    buildDir: "/nonexistent/builds",
    outputLimit: 1 << 20,
    updateIntervalMs: 3000,
    keepAliveMs: 30_000,
    abortGraceMs: 1000,
    factory: () => ({ step: () => Promise.resolve() }),
    hardStop: new AbortController().signal,
    logger: getLogger(["gitlab-runner", "job"]),
    version: "0.1.0",
    systemId: "s_0123456789ab",
    finalUpdateDeadlineMs,
  };
  return {
    clock,
    mock,
    ctx,
    async next() {
      const result = await client.requestJob(mock.runnerToken);
      if (result.type !== "job") throw new Error(`No job: ${result.type}`);
      return result.job;
    },
  };
}

const broken = () => Promise.reject(new TypeError("Module not found: file:///lib/src/run.ts"));

Deno.test("a job whose running code cannot be loaded is failed with runner_system_failure", async () => {
  await using diagnostics = await captureDiagnostics();
  const { mock, ctx, next } = setup();
  const job = mock.job().name("build").enqueue();
  const outcome = await loadingRunJob(broken)(ctx, await next());
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.equal(outcome.id, job.id);
  assert.equal(outcome.name, "build");
  assert.equal(outcome.state, "failed");
  assert.equal(outcome.failureReason, "runner_system_failure");
  const said = diagnostics.records.map((r) => JSON.stringify(r.properties));
  assert.ok(said.some((p) => p.includes("Module not found")), said.join("\n"));
  assert.ok(!said.some((p) => p.includes(job.token)), "the job token reached a diagnostic");
});

Deno.test("C8.4 the final state of a job whose code cannot be loaded is retried through an outage", async () => {
  await using _ = await captureDiagnostics();
  const { clock, mock, ctx, next } = setup();
  const job = mock.job().enqueue();
  const parsed = await next();
  mock.fault({ route: "update", status: 502, times: 3 });
  mock.fault({ route: "update", drop: true });
  let outcome: JobOutcome | undefined;
  void loadingRunJob(broken)(ctx, parsed).then((o) => outcome = o);
  assert.ok(await clock.runUntil(() => outcome !== undefined, 3600_000));
  assert.equal(outcome?.state, "failed");
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_system_failure");
  assert.equal(await clock.next(), false, "a wait (the deadline) outlived the final update");
});

Deno.test("C8.4 a job whose code cannot be loaded is lost, not hung, when the deadline passes", async () => {
  await using _ = await captureDiagnostics();
  const { clock, mock, ctx, next } = setup(60_000);
  const job = mock.job().enqueue();
  const parsed = await next();
  mock.fault({ route: "update", status: 500, times: Infinity });
  const started = clock.now();
  let outcome: JobOutcome | undefined;
  void loadingRunJob(broken)(ctx, parsed).then((o) => outcome = o);
  assert.ok(await clock.runUntil(() => outcome !== undefined, 3600_000));
  assert.equal(outcome?.state, "lost");
  assert.equal(outcome?.failureReason, "runner_system_failure");
  assert.ok(clock.now() - started <= 60_000, `gave up after ${clock.now() - started} ms`);
  assert.equal(job.state, "running");
});

Deno.test("a job GitLab cancelled while its code could not be loaded ends aborted", async () => {
  await using _ = await captureDiagnostics();
  const { mock, ctx, next } = setup();
  const job = mock.job().enqueue();
  const parsed = await next();
  mock.cancel(job.id);
  const outcome = await loadingRunJob(broken)(ctx, parsed);
  assert.equal(outcome.state, "aborted");
});

Deno.test("jobs that arrive while the load is in flight wait for that one load", async () => {
  const { mock, ctx, next } = setup();
  mock.job().enqueue();
  mock.job().enqueue();
  const first = await next();
  const second = await next();
  let loads = 0;
  let release!: (module: RunModule) => void;
  const ran: number[] = [];
  const module: RunModule = {
    runJob: (_ctx, parsed) => {
      const id = parsed.ok ? parsed.payload.id : 0;
      ran.push(id);
      return Promise.resolve({ id, state: "success", durationMs: 0 });
    },
  };
  const run = loadingRunJob(lazy(() => {
    loads++;
    return new Promise<RunModule>((resolve) => release = resolve);
  }));
  const outcomes = [run(ctx, first), run(ctx, second)];
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(ran, [], "a job ran before its code was loaded");
  release(module);
  const ended = await Promise.all(outcomes);
  assert.deepEqual(ended.map((o) => o.state), ["success", "success"]);
  assert.deepEqual(ran.sort(), [first, second].map((p) => p.ok ? p.payload.id : 0).sort());
  assert.equal(loads, 1);
  await run(ctx, first);
  assert.equal(loads, 1);
});

Deno.test("after a failed load, the next job loads again", async () => {
  await using _ = await captureDiagnostics();
  const { mock, ctx, next } = setup();
  const failed = mock.job().enqueue();
  const ok = mock.job().enqueue();
  let fail = true;
  const run = loadingRunJob(lazy(() =>
    fail ? broken() : Promise.resolve<RunModule>({
      runJob: (_ctx, parsed) =>
        Promise.resolve({ id: parsed.ok ? parsed.payload.id : 0, state: "success", durationMs: 0 }),
    })
  ));
  assert.equal((await run(ctx, await next())).state, "failed");
  assert.equal(failed.state, "failed");
  fail = false;
  const outcome = await run(ctx, await next());
  assert.equal(outcome.id, ok.id);
  assert.equal(outcome.state, "success");
});

Deno.test("C8.4 a hanging final update of a job whose code cannot be loaded is cut at the deadline", async () => {
  await using _ = await captureDiagnostics();
  const { clock, mock, ctx, next } = setup(60_000);
  mock.job().enqueue();
  const parsed = await next();
  mock.fault({ route: "update", hang: true, times: Infinity });
  const started = clock.now();
  let outcome: JobOutcome | undefined;
  void loadingRunJob(broken)(ctx, parsed).then((o) => outcome = o);
  assert.ok(await clock.runUntil(() => outcome !== undefined, 3600_000));
  assert.equal(outcome?.state, "lost");
  assert.ok(clock.now() - started <= 60_000, `gave up after ${clock.now() - started} ms`);
  await mock.close();
});

Deno.test("C5.1 a 202 to the final state of a job whose code cannot be loaded is asked again after GitLab's interval", async () => {
  await using _ = await captureDiagnostics();
  const { clock, mock, ctx, next } = setup();
  const job = mock.job().enqueue();
  const parsed = await next();
  mock.fault({
    route: "update",
    status: 202,
    headers: { "X-GitLab-Trace-Update-Interval": "30" },
    body: null,
  });
  const started = clock.now();
  let outcome: JobOutcome | undefined;
  void loadingRunJob(broken)(ctx, parsed).then((o) => outcome = o);
  assert.ok(await clock.runUntil(() => outcome !== undefined, 3600_000));
  assert.equal(outcome?.state, "failed");
  assert.equal(job.state, "failed");
  assert.equal(mock.requestCount("update"), 2);
  assert.ok(clock.now() - started >= 30_000, `asked again after ${clock.now() - started} ms`);
});

Deno.test("C5.1 a 412 to the final state of a job whose code cannot be loaded is asked again", async () => {
  await using _ = await captureDiagnostics();
  const { clock, mock, ctx, next } = setup();
  const job = mock.job().enqueue();
  const parsed = await next();
  mock.fault({ route: "update", status: 412, body: null });
  let outcome: JobOutcome | undefined;
  void loadingRunJob(broken)(ctx, parsed).then((o) => outcome = o);
  assert.ok(await clock.runUntil(() => outcome !== undefined, 3600_000));
  assert.equal(outcome?.state, "failed");
  assert.equal(job.state, "failed");
  assert.equal(mock.requestCount("update"), 2);
});

Deno.test("a payload without id or token whose code cannot be loaded is lost without a request", async () => {
  await using _ = await captureDiagnostics();
  const { mock, ctx } = setup();
  const outcome = await loadingRunJob(broken)(ctx, { ok: false, error: "No id" });
  assert.deepEqual({ id: outcome.id, state: outcome.state }, { id: 0, state: "lost" });
  assert.equal(mock.requestCount("update"), 0);
});
