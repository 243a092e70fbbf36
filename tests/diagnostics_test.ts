// The runner's own diagnostics (LogTape) never carry tokens or masked values (C4.8).
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { assert } from "./_deps.ts";
import { harness, until } from "./_harness.ts";

Deno.test("C4.8 diagnostics never print tokens or masked values", async () => {
  const records: LogRecord[] = [];
  await configure({
    sinks: { capture: (record) => records.push(record) },
    loggers: [
      { category: ["gitlab-runner"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
    reset: true,
  });
  try {
    await using h = await harness();
    const secret = "s3cr3t-Pa55w0rd-value";
    const a = h.mock.job().variable("API_PASSWORD", secret, { masked: true }).script(["a"])
      .enqueue();
    const b = h.mock.job().variable("API_PASSWORD", secret, { masked: true }).script(["b"])
      .enqueue();
    // One failed round of log sending (5 attempts), retried later: a diagnostic.
    h.mock.fault({ route: "trace", jobId: b.id, status: 500, times: 5 });
    const runner = await h.builder.build();
    const stop = new AbortController();
    const done = runner.run(
      (job) => {
        if (job.id === a.id) {
          throw new Error(`cannot log in with ${secret} as ${job.payload.token}`);
        }
        return {
          step: () => Promise.reject(new Error(`step failed for ${secret}`)),
          cleanup: () => {
            throw new Error(`cleanup failed: ${secret}`);
          },
        };
      },
      2,
      { signal: stop.signal },
    );
    await until(h.clock, () => a.state === "failed" && b.state === "failed");
    stop.abort();
    await done;
    assert.ok(records.length >= 3, `only ${records.length} records`);
    const text = records.map((r) => JSON.stringify({ m: r.message.map(String), p: r.properties }))
      .join("\n");
    assert.match(text, /The job factory failed/);
    assert.match(text, /Job cleanup failed/);
    assert.match(text, /Sending the job log failed/);
    for (const forbidden of [secret, a.token, b.token, h.mock.runnerToken]) {
      assert.equal(text.includes(forbidden), false, `diagnostics leak ${forbidden.slice(0, 6)}…`);
    }
    assert.equal(a.logText.includes(secret), false);
    assert.equal(b.logText.includes(secret), false);
  } finally {
    await reset();
  }
});
