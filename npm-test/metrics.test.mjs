// C13.1 on Node from the built package: the exposition and the node:http twin of the
// metrics listener (serveMetrics picks it when there is no Deno).
import assert from "node:assert/strict";
import { test } from "node:test";
import { RunnerMetrics, serveMetrics } from "@x/gitlab-runner";
import { served } from "./_helpers.mjs";

test("metrics and health on Node: scraped over HTTP after a job, ready only while polling", async () => {
  const ctx = await served();
  const metrics = new RunnerMetrics();
  const runner = await ctx.builder.metrics(metrics).build();
  const server = await serveMetrics({ metrics, port: 0, ready: () => runner.ready });
  try {
    const ready = async () => (await fetch(`${server.url}/health/ready`)).status;
    assert.equal(await ready(), 503);
    ctx.mock.job().script(["true"]).enqueue();
    const stop = new AbortController();
    const done = runner.run(() => ({ step: async () => {} }), 2, { signal: stop.signal });
    await ctx.mock.waitFor((m) => m.jobs[0].state === "success", { timeoutMs: 10_000 });
    assert.equal(await ready(), 200);
    stop.abort();
    assert.equal(await ready(), 503);
    await done;
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(
      text,
      /^gitlab_runner_jobs_total\{runner="mock-runn",system_id="s_0123456789ab"\} 1$/m,
    );
    assert.match(
      text,
      /^gitlab_runner_api_request_statuses_total\{runner="mock-runn",system_id="s_0123456789ab",endpoint="request_job",status="201",method="post"\} 1$/m,
    );
    assert.match(text, /^gitlab_runner_version_info\{.*go_version="node v\d/m);
    assert.equal((await fetch(`${server.url}/nope`)).status, 404);
  } finally {
    await server.close();
    await ctx.close();
  }
});
