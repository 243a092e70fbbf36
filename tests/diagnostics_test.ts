// The runner's own diagnostics (LogTape) never carry tokens or masked values (C4.8).
import { assert } from "./_deps.ts";
import { captureDiagnostics, harness, until } from "./_harness.ts";

Deno.test("C4.8 diagnostics never print tokens or masked values", async () => {
  await using diagnostics = await captureDiagnostics();
  const records = diagnostics.records;
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
});

Deno.test("C4.8 C9.4 the catch-all diagnostic masks like the job log: sensitive inputs, masked variables, the token", async () => {
  await using diagnostics = await captureDiagnostics();
  const records = diagnostics.records;
  await using h = await harness();
  const input = "correct-horse-battery-staple";
  const variable = "s3cr3t-Pa55w0rd-value";
  const job = h.mock.job()
    .input("password", input, { sensitive: true })
    .variable("API_PASSWORD", variable, { masked: true })
    .variable("EMPTY_SECRET", "", { masked: true })
    .script(["deploy"])
    .enqueue();
  const runner = await h.builder.features(["job_inputs"]).build();
  // A handler whose cleanup cannot even be looked up: an error no phase expects, so it
  // reaches runJob's catch-all, quoting the job's secrets.
  await runner.requestJob((j) => ({
    step: async () => {},
    get cleanup(): () => void {
      throw new Error(
        `no cleanup for ${j.input("password")?.value.content} ${
          j.variable("API_PASSWORD")?.value
        } ${j.payload.token}`,
      );
    },
  }));
  await until(h.clock, () => runner.running === 0);
  const text = records.map((r) => JSON.stringify({ m: r.message.map(String), p: r.properties }))
    .join("\n");
  assert.match(text, /Unexpected error while running a job/);
  assert.match(text, /no cleanup for \[MASKED\] \[MASKED\] \[MASKED\]/);
  for (const forbidden of [input, variable, job.token]) {
    assert.equal(text.includes(forbidden), false, `diagnostics leak ${forbidden.slice(0, 6)}…`);
  }
});
