// C13.1: Prometheus metrics with the official runner's names and labels, and the listener with
// /metrics, /health/live and /health/ready. Scraped over real sockets and parsed.
import { assert } from "./_deps.ts";
import { atOnce, harness, until } from "./_harness.ts";
import { JobFailure, ScriptFailure } from "../src/errors.ts";
import { RunnerBuilder } from "../src/builder.ts";
import {
  API_REQUEST_DURATION_BUCKETS,
  JOB_DURATION_BUCKETS,
  RunnerMetrics,
  shortToken,
} from "../src/metrics/registry.ts";
import {
  ListenError,
  metricsHandler,
  parseListenAddress,
  serveMetrics,
} from "../src/metrics/server.ts";
import { listen as listenDeno } from "../src/metrics/_listen.deno.ts";
import { listen as listenNode } from "../src/metrics/_listen.node.ts";
import type { JobHandler } from "../src/handler.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { parseConfig, UsageError } from "../examples/shell_runner.ts";
import { listenerUrl, startRunner } from "./_fleet.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (samples and `# TYPE` lines); throws on a malformed line. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# TYPE ")) {
      const [name, type] = line.slice(7).split(" ");
      types.set(name, type);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = m[2] ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    let consumed = 0;
    for (const l of labelText.matchAll(re)) {
      labels[l[1]] = l[2].replace(/\\"/g, '"').replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      consumed += l[0].length;
    }
    assert.equal(consumed, labelText.length, `malformed labels: ${line}`);
    const value = m[3] === "+Inf" ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value), `malformed value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = find(samples, name, labels);
  assert.equal(found.length, 1, `one ${name}${JSON.stringify(labels)}, got ${found.length}`);
  return found[0].value;
}

async function scrape(url: string): Promise<ReturnType<typeof parseExposition>> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

async function status(url: string): Promise<number> {
  const res = await fetch(url);
  await res.body?.cancel();
  return res.status;
}

Deno.test("C13.1 a scrape over a socket shows the official names, labels and values after known jobs", async () => {
  await using h = await harness();
  const metrics = new RunnerMetrics({ revision: "abc123" });
  const runner = await h.builder.metrics(metrics).name("fleet-1").build();
  // Two successes, a script failure (exit 3), a job failure and a failing factory; one 502.
  h.mock.job({ name: "ok-1" }).enqueue();
  h.mock.job({ name: "ok-2" }).enqueue();
  h.mock.job({ name: "exit-3" }).enqueue();
  h.mock.job({ name: "data" }).enqueue();
  h.mock.job({ name: "factory" }).enqueue();
  h.mock.fault({ route: "request", status: 502, times: 1 });
  const handler = (name: string): JobHandler => ({
    step: async () => {
      if (name === "exit-3") throw new ScriptFailure(3);
      if (name === "data") throw new JobFailure("data_integrity_failure");
    },
  });
  const stop = new AbortController();
  const done = runner.run(
    (job) => {
      if (job.payload.jobInfo.name === "factory") throw new Error("no executor");
      return handler(job.payload.jobInfo.name);
    },
    4,
    { signal: stop.signal },
  );
  await until(
    h.clock,
    () => h.mock.jobs.every((j) => j.state !== "pending" && j.state !== "running"),
  );
  await until(h.clock, () => runner.outcomes.length === 5);
  await using server = await serveMetrics({ metrics, port: 0, ready: () => runner.ready });
  const { samples, types } = await scrape(server.url);

  const id = { runner: shortToken(h.mock.runnerToken), system_id: "s_0123456789ab" };
  assert.equal(id.runner, "mock-runn");
  assert.equal(types.get("gitlab_runner_jobs"), "gauge");
  assert.equal(types.get("gitlab_runner_jobs_total"), "counter");
  assert.equal(types.get("gitlab_runner_job_duration_seconds"), "histogram");
  assert.equal(types.get("gitlab_runner_failed_jobs_total"), "counter");
  assert.equal(types.get("gitlab_runner_api_request_statuses_total"), "counter");
  assert.equal(types.get("gitlab_runner_api_request_duration_seconds"), "histogram");
  assert.equal(types.get("gitlab_runner_errors_total"), "counter");
  assert.equal(types.get("gitlab_runner_concurrent"), "gauge");
  assert.equal(types.get("gitlab_runner_version_info"), "gauge");

  assert.equal(value(samples, "gitlab_runner_jobs_total", id), 5);
  assert.equal(
    value(samples, "gitlab_runner_jobs", { ...id, state: "idle", stage: "idle" }),
    0,
  );
  assert.deepEqual(find(samples, "gitlab_runner_jobs", { state: "running" }), []);
  assert.equal(value(samples, "gitlab_runner_job_duration_seconds_count", id), 5);
  const buckets = find(samples, "gitlab_runner_job_duration_seconds_bucket", id)
    .map((s) => s.labels.le);
  assert.deepEqual(buckets, [...JOB_DURATION_BUCKETS.map(String), "+Inf"]);
  assert.equal(
    value(samples, "gitlab_runner_job_duration_seconds_bucket", { ...id, le: "+Inf" }),
    5,
  );

  const failed = find(samples, "gitlab_runner_failed_jobs_total");
  assert.deepEqual(
    failed.map((s) => [s.labels.runner, s.labels.runner_name, s.labels.failure_reason, s.value])
      .sort(),
    [
      ["mock-runn", "fleet-1", "data_integrity_failure", 1],
      ["mock-runn", "fleet-1", "runner_system_failure", 1],
      ["mock-runn", "fleet-1", "script_failure", 1],
    ],
  );

  const api = { ...id, endpoint: "request_job", method: "post" };
  assert.equal(
    value(samples, "gitlab_runner_api_request_statuses_total", { ...api, status: "502" }),
    1,
  );
  assert.equal(
    value(samples, "gitlab_runner_api_request_statuses_total", { ...api, status: "201" }),
    5,
  );
  const updates = value(samples, "gitlab_runner_api_request_statuses_total", {
    ...id,
    endpoint: "update_job",
    method: "put",
    status: "200",
  });
  assert.ok(updates >= 5, `a final update per job, got ${updates}`);
  assert.ok(
    value(samples, "gitlab_runner_api_request_statuses_total", {
      ...id,
      endpoint: "patch_trace",
      method: "patch",
      status: "202",
    }) >= 5,
  );
  const mockAnswers = h.mock.requests.filter((r) => r.status > 0).length;
  const counted = find(samples, "gitlab_runner_api_request_statuses_total")
    .reduce((n, s) => n + s.value, 0);
  assert.equal(counted, mockAnswers, "every answer GitLab gave is counted once");
  assert.equal(
    value(samples, "gitlab_runner_api_request_duration_seconds_count", {
      ...api,
      status_class: "5xx",
    }),
    1,
  );
  const apiBuckets = find(samples, "gitlab_runner_api_request_duration_seconds_bucket", {
    ...api,
    status_class: "2xx",
  }).map((s) => s.labels.le);
  assert.deepEqual(apiBuckets, [...API_REQUEST_DURATION_BUCKETS.map(String), "+Inf"]);

  for (const level of ["panic", "fatal", "error", "warning"]) {
    assert.equal(value(samples, "gitlab_runner_errors_total", { level }), 0);
  }
  assert.equal(value(samples, "gitlab_runner_concurrent"), 4);
  const info = find(samples, "gitlab_runner_version_info")[0];
  assert.equal(info.value, 1);
  assert.deepEqual(Object.keys(info.labels).sort(), [
    "architecture",
    "branch",
    "built_at",
    "go_version",
    "name",
    "os",
    "revision",
    "version",
  ]);
  assert.equal(info.labels.revision, "abc123");
  assert.match(info.labels.go_version, /^deno \d/);
  stop.abort();
  await done;
});

Deno.test("C13.1 the runner token never appears in the metrics, only its short form", async () => {
  await using h = await harness();
  const metrics = new RunnerMetrics();
  const runner = await h.builder.metrics(metrics).build();
  h.mock.job().enqueue();
  await runner.requestJob(() => ({ step: async () => {} }));
  await until(h.clock, () => runner.running === 0 && runner.outcomes.length === 1);
  const text = await metrics.metrics();
  assert.ok(text.includes('runner="mock-runn"'));
  assert.ok(!text.includes(h.mock.runnerToken));
  assert.ok(!text.includes(h.mock.jobs[0].token), "no job token either");
  // A token too short to shorten is not shown whole.
  assert.equal(shortToken("glrt-short"), "");
  assert.equal(shortToken("glrt-abcdefghijklmnop"), "abcdefghi");
  assert.equal(shortToken("0123456789abcdefghij"), "01234567");
});

Deno.test("C13.1 errors_total counts warnings and errors through the LogTape sink", async () => {
  const metrics = new RunnerMetrics();
  for (const level of ["debug", "info", "warning", "warning", "error", "fatal"]) {
    metrics.sink({ level });
  }
  const { samples } = parseExposition(await metrics.metrics());
  assert.equal(value(samples, "gitlab_runner_errors_total", { level: "warning" }), 2);
  assert.equal(value(samples, "gitlab_runner_errors_total", { level: "error" }), 1);
  assert.equal(value(samples, "gitlab_runner_errors_total", { level: "fatal" }), 1);
  assert.equal(value(samples, "gitlab_runner_errors_total", { level: "panic" }), 0);
});

Deno.test("C13.1 health through a drain: ready only once verified and polling, never while stopping", async () => {
  await using h = await harness();
  const metrics = new RunnerMetrics();
  const runner = await h.builder.metrics(metrics).build();
  await using server = await serveMetrics({ metrics, port: 0, ready: () => runner.ready });
  const ready = `${server.url}/health/ready`;
  const live = `${server.url}/health/live`;
  assert.equal(await status(live), 200);
  assert.equal(await status(ready), 503, "not ready before the token was verified");
  assert.equal((await runner.verify()).valid, true);
  assert.equal(await status(ready), 503, "not ready before the poll loop runs");

  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  h.mock.job({ name: "long" }).enqueue();
  const stop = new AbortController();
  const done = runner.run(() => ({ step: () => held }), 2, { signal: stop.signal });
  await atOnce(() => runner.ready);
  assert.equal(await status(ready), 200);
  await until(h.clock, () => runner.running === 1);
  let { samples } = await scrape(server.url);
  assert.equal(value(samples, "gitlab_runner_jobs", { state: "running" }), 1);

  stop.abort(); // SIGTERM: drain
  assert.equal(runner.ready, false, "not ready from the moment the stop signal aborts");
  assert.equal(await status(ready), 503);
  assert.equal(await status(live), 200, "alive while draining");
  ({ samples } = await scrape(server.url)); // a scrape during the drain
  assert.equal(value(samples, "gitlab_runner_jobs", { state: "running" }), 1);
  release();
  await done;
  assert.equal(await status(ready), 503, "not ready after run() returned");
  ({ samples } = await scrape(server.url));
  assert.deepEqual(find(samples, "gitlab_runner_jobs", { state: "running" }), []);
  assert.equal(h.mock.jobs[0].state, "success");
});

Deno.test("C13.1 a rejected token makes the runner not ready (verify and 403 on polling)", async () => {
  await using h = await harness();
  const runner = await h.builder.metrics(new RunnerMetrics()).build();
  assert.equal((await runner.verify()).valid, true);
  h.mock.fault({ route: "request", status: 403, times: Infinity });
  const stop = new AbortController();
  const done = runner.run(() => ({ step: async () => {} }), 1, { signal: stop.signal });
  await atOnce(() => h.mock.requestCount("request") >= 1);
  await atOnce(() => !runner.ready);
  stop.abort();
  await done;

  const fresh = await h.builder.systemId("s_aaaaaaaaaaaa").build();
  assert.equal(fresh.ready, false, "a runner that never verified nor polled is not ready");
  const rejected = await new RunnerBuilder(h.mock.url, "glrt-not-the-right-token", h.dir)
    .fetch(h.mock.fetch).clock(h.clock).build();
  assert.equal((await rejected.verify()).valid, false);
  assert.equal(rejected.ready, false);
});

Deno.test("C13.1 hostile requests: unknown paths 404, other methods 405, never a 500", async () => {
  const metrics = new RunnerMetrics();
  await using server = await serveMetrics({ metrics, port: 0 });
  for (
    const path of ["/", "/metrics/", "/metricsx", "/health", "/health/", "/debug/pprof", "/%00"]
  ) {
    assert.equal(await status(`${server.url}${path}`), 404, path);
  }
  const res = await fetch(`${server.url}/metrics`, { method: "POST", body: "x".repeat(100_000) });
  await res.body?.cancel();
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET, HEAD");
  const head = await fetch(`${server.url}/health/live`, { method: "HEAD" });
  assert.equal(head.status, 200);
  const handler = metricsHandler({ metrics });
  assert.equal((await handler(new Request("http://x/health/ready?x=1"))).status, 200);
});

for (const [twin, listen] of [["deno", listenDeno], ["node", listenNode]] as const) {
  Deno.test(`C13.1 listener twin ${twin}: serves, fails clearly on a taken address, closes during a scrape`, async () => {
    const metrics = new RunnerMetrics();
    const handler = metricsHandler({ metrics, ready: () => false });
    const first = await listen(handler, { hostname: "127.0.0.1", port: 0 });
    try {
      const base = `http://127.0.0.1:${first.port}`;
      const res = await fetch(`${base}/metrics`);
      assert.equal(res.status, 200);
      assert.ok((await res.text()).includes("gitlab_runner_version_info{"));
      assert.equal(await status(`${base}/health/ready`), 503);
      assert.equal(await status(`${base}/nope`), 404);
      // The same address again: a clear error, from either twin through serveMetrics.
      await assert.rejects(
        () => listen(handler, { hostname: "127.0.0.1", port: first.port }),
        (e: unknown) =>
          (e as { code?: string }).code === "EADDRINUSE" ||
          (e as Error).name === "AddrInUse",
      );
    } finally {
      // A scrape racing the close: close ends in bounded time; the scrape answers or fails.
      const racing = fetch(`http://127.0.0.1:${first.port}/metrics`).then(
        async (r) => (await r.text(), r.status),
        () => "refused",
      );
      await first.close();
      const outcome = await racing;
      assert.ok(outcome === 200 || outcome === "refused", `racing scrape: ${outcome}`);
    }
    await assert.rejects(() => fetch(`http://127.0.0.1:${first.port}/metrics`));
  });
}

Deno.test("C13.1 serveMetrics on a taken address throws ListenError naming it", async () => {
  await using server = await serveMetrics({ metrics: new RunnerMetrics(), port: 0 });
  await assert.rejects(
    () => serveMetrics({ metrics: new RunnerMetrics(), port: server.port }),
    (e: unknown) => {
      assert.ok(e instanceof ListenError);
      assert.equal(e.address, `127.0.0.1:${server.port}`);
      assert.match(e.message, /already in use/);
      assert.ok(e.cause);
      return true;
    },
  );
});

Deno.test("C13.2 listen addresses: host:port, :port, [v6]:port; bad ones refused", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:9252"), { hostname: "127.0.0.1", port: 9252 });
  assert.deepEqual(parseListenAddress(":9252"), { hostname: "0.0.0.0", port: 9252 });
  assert.deepEqual(parseListenAddress("[::1]:0"), { hostname: "::1", port: 0 });
  assert.deepEqual(parseListenAddress("localhost:80"), { hostname: "localhost", port: 80 });
  for (const bad of ["", "9252", "host:", "host:99999", "a:b:1", "host:-1", "[::1]", " :1"]) {
    assert.throws(() => parseListenAddress(bad), TypeError, bad);
  }
});

Deno.test("C13.2 the example runner's --help documents --listen-address and the endpoints", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/shell_runner.ts", "--help"],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
  }).output();
  const help = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0);
  for (
    const word of [
      "--listen-address",
      "RUNNER_LISTEN_ADDRESS",
      "/metrics",
      "/health/live",
      "/health/ready",
    ]
  ) {
    assert.ok(help.includes(word), word);
  }
  assert.deepEqual(
    parseConfig(["--url", "https://x.org", "--token", "t", "--listen-address", ":9252"], {})
      ?.listen,
    { hostname: "0.0.0.0", port: 9252 },
  );
  assert.deepEqual(
    parseConfig(["--url", "https://x.org", "--token", "t"], { RUNNER_LISTEN_ADDRESS: "[::1]:1" })
      ?.listen,
    { hostname: "::1", port: 1 },
  );
  assert.equal(parseConfig(["--url", "https://x.org", "--token", "t"], {})?.listen, undefined);
  assert.throws(
    () => parseConfig(["--url", "https://x.org", "--token", "t", "--listen-address", "9252"], {}),
    (e: unknown) =>
      e instanceof UsageError && /--listen-address: Invalid listen address/.test(e.message),
  );
});

Deno.test("C13.2 the example runner with --listen-address: scraped and probed over a socket through a SIGTERM drain", async () => {
  const mock = new GitLabMock();
  const gitlab = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir({ prefix: "glr-listen-" });
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(tokenFile, mock.runnerToken);
  const p = startRunner({
    url: gitlab.url,
    tokenFile,
    buildDir: `${dir}/builds`,
    listenAddress: "127.0.0.1:0",
    concurrency: 2,
  });
  let second: ReturnType<typeof startRunner> | undefined;
  try {
    const url = await listenerUrl(p);
    await p.line(/^Waiting for jobs/);
    await waitStatus(`${url}/health/ready`, 200);
    mock.job().variable("GIT_STRATEGY", "none").name("slow").script(["sleep 1"]).enqueue();
    await p.line(/^job \d+ slow started/);
    let { samples } = await scrape(url);
    assert.equal(value(samples, "gitlab_runner_jobs", { state: "running" }), 1);
    assert.equal(value(samples, "gitlab_runner_concurrent"), 2);

    // The same address for a second runner: a clear error and exit code 1.
    second = startRunner({
      url: gitlab.url,
      tokenFile,
      buildDir: `${dir}/builds2`,
      listenAddress: new URL(url).host,
    });
    assert.equal(await second.exited, 1);
    assert.match(
      await second.stderr,
      new RegExp(
        `Cannot listen on ${new URL(url).host} for metrics: the address is already in use`,
      ),
    );

    p.kill("SIGTERM");
    await p.line(/^Stopping/);
    assert.equal(await status(`${url}/health/ready`), 503, "not ready while draining");
    assert.equal(await status(`${url}/health/live`), 200, "alive while draining");
    ({ samples } = await scrape(url)); // a scrape during the shutdown
    assert.equal(value(samples, "gitlab_runner_jobs", { state: "running" }), 1);
    assert.equal(await p.exited, 0);
    assert.equal(mock.jobs[0].state, "success");
    await assert.rejects(() => fetch(`${url}/metrics`), "the listener is closed after the drain");
  } finally {
    p.kill("SIGKILL");
    second?.kill("SIGKILL");
    await p.exited;
    await second?.exited;
    await gitlab.close();
    await Deno.remove(dir, { recursive: true });
  }
});

async function waitStatus(url: string, want: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  let last = 0;
  while (Date.now() < end) {
    last = await status(url).catch(() => 0);
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${url} answered ${last}, not ${want}, within ${ms} ms`);
}

Deno.test("C13.1 the metrics need no permission on Deno (the exposition is plain JavaScript)", async () => {
  const root = new URL("..", import.meta.url);
  const dir = await Deno.makeTempDir({ prefix: "glr-noperm-" });
  try {
    const script = `${dir}/scrape.ts`;
    await Deno.writeTextFile(
      script,
      `import { RunnerMetrics } from "${new URL("src/metrics/registry.ts", root)}";\n` +
        `const m = new RunnerMetrics();\n` +
        `m.attach({ token: "glrt-0123456789abcdef", systemId: "s_0", running: () => 0 }).jobStarted();\n` +
        `console.log(await m.metrics());\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--cached-only",
        "--config",
        new URL("deno.json", root).pathname,
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const { samples } = parseExposition(new TextDecoder().decode(out.stdout));
    assert.equal(value(samples, "gitlab_runner_jobs_total", { runner: "012345678" }), 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
