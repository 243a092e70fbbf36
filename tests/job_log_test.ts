import { assert, FakeClock } from "./_deps.ts";
import { Client } from "../src/api/client.ts";
import {
  copiesChunks,
  JobLog,
  type JobLogOptions,
  JobLogWritable,
  PATCH_LIMIT,
} from "../src/log/job_log.ts";
import { crc32 } from "../src/log/crc32.ts";
import { GitLabMock, type MockOptions } from "../src/mock/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A running job on the mock and a JobLog for it, with a spy on the calls. */
async function setup(
  mockOptions: Partial<MockOptions> = {},
  logOptions: Partial<JobLogOptions> = {},
) {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, ...mockOptions });
  const calls: { method: string; range?: string; body?: Record<string, unknown>; size: number }[] =
    [];
  const spy: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const call: (typeof calls)[number] = {
      method: request.method,
      range: request.headers.get("content-range") ?? undefined,
      size: 0,
    };
    calls.push(call); // recorded at once, before any await
    const bytes = new Uint8Array(await request.clone().arrayBuffer());
    call.size = bytes.byteLength;
    if (request.method === "PUT") call.body = JSON.parse(dec.decode(bytes));
    return mock.fetch(request);
  };
  const client = new Client(mock.url, { fetch: spy, clock, random: () => 0.5 });
  const mj = mock.job().script(["true"]).enqueue();
  const got = await client.requestJob(mock.runnerToken);
  assert.equal(got.type, "job");
  calls.length = 0;
  const events: string[] = [];
  const log = new JobLog({
    client,
    clock,
    jobId: mj.id,
    token: mj.token,
    random: () => 0.5,
    onAbort: (r) => events.push(`abort:${r.status}:${r.jobStatus ?? ""}`),
    onCancelRequested: () => events.push("canceling"),
    ...logOptions,
  });
  log.start();
  const patches = () => calls.filter((c) => c.method === "PATCH");
  const puts = () => calls.filter((c) => c.method === "PUT");
  return { clock, mock, client, mj, log, calls, patches, puts, events };
}

Deno.test("C4.1 writes within one interval go out as one PATCH with an inclusive Content-Range", async () => {
  const t = await setup();
  t.log.write("hello ");
  t.log.write("world\n");
  t.log.write(enc.encode("bytes\n"));
  await t.clock.advance(2999);
  assert.equal(t.patches().length, 0);
  await t.clock.advance(1);
  assert.equal(t.patches().length, 1);
  assert.equal(t.patches()[0].range, "0-17");
  t.log.write("more\n");
  await t.clock.advance(59_999); // GitLab said X-GitLab-Trace-Update-Interval: 60
  assert.equal(t.patches().length, 1);
  await t.clock.advance(1);
  assert.equal(t.patches().length, 2);
  assert.equal(t.patches()[1].range, "18-22");
  assert.equal(t.mj.logText, "hello world\nbytes\nmore\n");
  const r = t.mock.requests.find((q) => q.route === "trace")!;
  assert.equal(r.headers.get("content-type"), "text/plain");
  assert.equal(r.headers.get("job-token"), t.mj.token);
  await t.log.finish({ state: "success" });
});

Deno.test("C4.1 no output, no PATCH", async () => {
  const t = await setup();
  await t.clock.advance(20_000);
  assert.equal(t.patches().length, 0);
  await t.log.finish({ state: "success" });
});

Deno.test("C4.2 a 416 resyncs from the server's Range; 0-0 resends everything held", async () => {
  const t = await setup();
  t.log.write("first part\n");
  await t.clock.advance(3000);
  assert.equal(t.mj.logText, "first part\n");
  t.mock.loseTrace(t.mj.id);
  t.log.write("second part\n");
  await t.clock.advance(60_000);
  assert.equal(t.mj.logText, "first part\nsecond part\n");
  const ranges = t.patches().map((p) => p.range);
  assert.deepEqual(ranges, ["0-10", "11-22", "0-22"]);
  await t.log.finish({ state: "success" });
  assert.equal(t.mj.logText, "first part\nsecond part\n");
});

Deno.test("C4.2 a 416 with Range 0-N (N > 0) resyncs from N, not from 0", async () => {
  const t = await setup();
  t.log.write("first part\n");
  await t.clock.advance(3000);
  assert.equal(t.mj.logText, "first part\n");
  // GitLab applies the next PATCH but its answer is lost: the retry gets 416 with Range 0-23.
  t.mock.fault({ route: "trace", drop: "after", times: 1 });
  t.log.write("second part\n");
  await t.clock.advance(60_000);
  t.log.write("third part\n");
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "done");
  assert.equal(t.mj.logText, "first part\nsecond part\nthird part\n");
  const traces = t.mock.requests.filter((r) => r.route === "trace");
  const resync = traces.findIndex((r) => r.status === 416);
  assert.ok(resync > 0, "the lost answer's retry is answered 416");
  const ranges = t.patches().map((p) => p.range);
  assert.deepEqual(ranges.slice(0, 3), ["0-10", "11-22", "11-22"]);
  // The request after the 416 starts where GitLab's log ends (23), not at 0.
  assert.equal(ranges[resync + 1], "23-33");
  assert.ok(ranges.every((r) => !r!.startsWith("0-") || r === "0-10"));
});

Deno.test("C4.3 failed PATCHes (5xx, 409, dropped) keep their bytes; the log arrives whole", async () => {
  const t = await setup();
  t.mock.fault({ route: "trace", status: 500, times: 5 }); // one whole retry round
  t.mock.fault({ route: "trace", status: 409, times: 1 });
  t.mock.fault({ route: "trace", drop: true, times: 1 });
  const expected: string[] = [];
  for (let i = 0; i < 5; i++) {
    const line = `line ${i}\n`;
    expected.push(line);
    t.log.write(line);
    await t.clock.advance(3000);
  }
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "done");
  assert.equal(t.mj.logText, expected.join(""));
  assert.equal(t.mj.state, "success");
});

Deno.test("C4.4 X-GitLab-Trace-Update-Interval is adopted", async () => {
  const t = await setup({ traceUpdateInterval: 10 });
  t.log.write("a");
  await t.clock.advance(3000);
  assert.equal(t.patches().length, 1);
  assert.equal(t.log.updateIntervalMs, 10_000);
  t.log.write("b");
  await t.clock.advance(9_999);
  assert.equal(t.patches().length, 1);
  await t.clock.advance(1);
  assert.equal(t.patches().length, 2);
  await t.log.finish({ state: "success" });
});

Deno.test("C4.4 intervals of 0, negative or garbage are ignored; huge ones are clamped to 15 min", async () => {
  const { parseUpdateInterval } = await import("../src/api/client.ts");
  assert.equal(parseUpdateInterval("0"), undefined);
  assert.equal(parseUpdateInterval("-5"), undefined);
  assert.equal(parseUpdateInterval("abc"), undefined);
  assert.equal(parseUpdateInterval(null), undefined);
  assert.equal(parseUpdateInterval("30"), 30);
  assert.equal(parseUpdateInterval("100000"), 900);
  const t = await setup({ traceUpdateInterval: 0 });
  t.log.write("a");
  await t.clock.advance(3000);
  assert.equal(t.log.updateIntervalMs, 3000);
  await t.log.finish({ state: "success" });
});

Deno.test("C4.5 keep-alive PUT running after 30 s without contact, with checksum and size", async () => {
  const t = await setup({ traceUpdateInterval: 3 });
  t.log.write("some output\n");
  await t.clock.advance(3000);
  assert.equal(t.puts().length, 0);
  await t.clock.advance(29_999);
  assert.equal(t.puts().length, 0);
  await t.clock.advance(3000);
  assert.equal(t.puts().length, 1);
  const body = t.puts()[0].body!;
  assert.equal(body.state, "running");
  assert.deepEqual(body.output, {
    checksum: `crc32:${crc32(enc.encode("some output\n")).toString(16).padStart(8, "0")}`,
    bytesize: 12,
  });
  assert.equal(body.token, t.mj.token);
  await t.log.finish({ state: "success" });
});

Deno.test("C4.6 at most 1 MiB per PATCH; the final flush sends everything before the final PUT", async () => {
  const t = await setup({}, { outputLimit: 8 * PATCH_LIMIT });
  const big = new Uint8Array(2.5 * PATCH_LIMIT).fill(0x61);
  t.log.write(big);
  await t.log.finish({ state: "success" });
  const sizes = t.patches().map((p) => p.size);
  assert.ok(sizes.every((s) => s <= PATCH_LIMIT), `${sizes}`);
  assert.equal(sizes.reduce((a, b) => a + b, 0), big.byteLength);
  const last = t.calls[t.calls.length - 1];
  assert.equal(last.method, "PUT");
  assert.equal(t.mj.log.byteLength, big.byteLength);
});

Deno.test("C4.7 output over the limit is dropped, GitLab's notice appended once, writing goes on", async () => {
  const t = await setup({}, { outputLimit: 100 });
  for (let i = 0; i < 50; i++) t.log.write("0123456789");
  await t.log.finish({ state: "success" });
  const text = t.mj.logText;
  assert.ok(text.startsWith("0123456789".repeat(10)));
  assert.equal(text.split("Job's log exceeded limit of 100 bytes.").length - 1, 1);
  assert.match(text, /Job execution will continue but no more output will be collected/);
  assert.equal(t.mj.state, "success");
});

Deno.test("C4.8 masked values are masked even when split across two writes", async () => {
  const t = await setup({}, {
    masking: { secrets: ["s3cr3t-Pa55w0rd"] },
  });
  t.log.write("password is s3cr3t-");
  await t.clock.advance(3000);
  t.log.write("Pa55w0rd and token glpat-abcdefghijklmnop1234 done\n");
  await t.log.finish({ state: "success" });
  assert.equal(t.mj.logText, "password is [MASKED] and token glpat-[MASKED] done\n");
  assert.equal(t.mj.logText.includes("s3cr3t"), false);
});

Deno.test("C4.10 a stream writer waits while GitLab does not take the log (bounded memory)", async () => {
  const t = await setup({}, { outputLimit: 64 * PATCH_LIMIT });
  t.mock.fault({ route: "trace", status: 503, times: Infinity });
  const writer = t.log.writable.getWriter();
  const chunk = new Uint8Array(PATCH_LIMIT).fill(0x62);
  let written = 0;
  const pump = (async () => {
    for (let i = 0; i < 20; i++) {
      await writer.write(chunk);
      written++;
    }
  })();
  await t.clock.advance(60_000);
  assert.ok(written < 12, `${written} MiB accepted while GitLab took nothing`);
  t.mock.clearFaults();
  await t.clock.runUntil(() => written === 20);
  await pump;
  writer.releaseLock();
  await finish(t, { state: "success" });
  assert.equal(t.mj.log.byteLength, 20 * PATCH_LIMIT);
});

Deno.test("C4.10 JobLogWritable.writeChunk (the script runner's way in) waits only while GitLab does not take the log", async () => {
  const t = await setup({}, { outputLimit: 64 * PATCH_LIMIT });
  t.mock.fault({ route: "trace", status: 503, times: Infinity });
  const stream = t.log.writable;
  assert.ok(stream instanceof JobLogWritable);
  const writer = stream.getWriter();
  const chunk = new Uint8Array(PATCH_LIMIT).fill(0x63);
  // Below the high-water mark: no promise at all, the bytes are stored at once.
  assert.equal(stream.writeChunk(chunk), undefined);
  assert.equal(t.log.size, PATCH_LIMIT);
  let waits = 0;
  let written = 1;
  const pump = (async () => {
    for (; written < 20; written++) {
      const wait = stream.writeChunk(chunk);
      if (wait !== undefined) {
        waits++;
        await wait;
      }
    }
  })();
  await t.clock.advance(60_000);
  assert.ok(written < 12, `${written} MiB accepted while GitLab took nothing`);
  assert.ok(waits >= 1);
  t.mock.clearFaults();
  await t.clock.runUntil(() => written === 20);
  await pump;
  writer.releaseLock();
  await finish(t, { state: "success" });
  assert.equal(t.mj.log.byteLength, 20 * PATCH_LIMIT);
  assert.ok(t.mj.log.every((b) => b === 0x63));
});

Deno.test("C5.1 a final PUT answered 202 is repeated after the server's backoff until 200", async () => {
  const t = await setup({ finalUpdateAccepts: 3 });
  t.log.write("x\n");
  const result = await finish(t, { state: "failed", failureReason: "script_failure", exitCode: 2 });
  assert.equal(result.outcome, "done");
  const finals = t.puts().filter((p) => p.body!.state === "failed");
  assert.equal(finals.length, 4);
  for (const f of finals) {
    assert.equal(f.body!.exit_code, 2);
    assert.equal(f.body!.failure_reason, "script_failure");
    assert.equal((f.body!.output as { bytesize: number }).bytesize, 2);
  }
  assert.equal(t.mj.state, "failed");
  assert.equal(t.mj.exitCode, 2);
});

Deno.test("C5.1 the 202 repeats of the final PUT are spaced by GitLab's backoff (1 s, 1 s, 1 s, 1 s, 2 s)", async () => {
  const t = await setup({ finalUpdateAccepts: 5 });
  t.log.write("x\n");
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "done");
  const finals = t.mock.requests.filter((r) =>
    r.route === "update" && (r.body as { state?: string }).state === "success"
  );
  assert.deepEqual(finals.map((r) => r.status), [202, 202, 202, 202, 202, 200]);
  // Ci::Runner::Backoff: 1 s while under 4 s since the first 202, then 2 s.
  const gaps = finals.slice(1).map((r, i) => r.at - finals[i].at);
  assert.deepEqual(gaps, [1000, 1000, 1000, 1000, 2000]);
  assert.equal(t.mj.state, "success");
});

Deno.test("C5.1 C8.4 a final PUT answered 202 forever is repeated on GitLab's backoff and given up at the final-update deadline", async () => {
  const diagnostics: string[] = [];
  const t = await setup({ finalUpdateAccepts: Infinity }, {
    finalUpdateDeadlineMs: 300_000,
    onDiagnostic: (message) => diagnostics.push(message),
  });
  t.log.write("x\n");
  const started = t.clock.now();
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "failed");
  const finals = t.mock.requests.filter((r) =>
    r.route === "update" && (r.body as { state?: string }).state === "success"
  );
  assert.ok(finals.every((r) => r.status === 202));
  // Ci::Runner::Backoff: 2^(⌊log2 s⌋ − 1) s (at least 1, at most 64) since the first 202.
  const expected = (elapsedMs: number) => {
    const s = elapsedMs / 1000;
    return 1000 * 2 ** Math.min(Math.max(s <= 1 ? 0 : Math.floor(Math.log2(s)) - 1, 0), 6);
  };
  const gaps = finals.slice(1).map((r, i) => r.at - finals[i].at);
  assert.deepEqual(gaps, finals.slice(0, -1).map((r) => expected(r.at - finals[0].at)));
  assert.ok(gaps.includes(64_000), gaps.join(" "));
  // No PUT after the deadline, and none missing before it: the next one would have been late.
  assert.ok(finals.at(-1)!.at - started <= 300_000);
  assert.ok(finals.at(-1)!.at + expected(finals.at(-1)!.at - finals[0].at) - started > 300_000);
  assert.ok(t.clock.now() - started <= 300_000, `${t.clock.now() - started} ms`);
  assert.ok(
    diagnostics.some((m) => /could not be delivered within/.test(m)),
    diagnostics.join("\n"),
  );
  assert.equal(t.mj.state, "running");
});

Deno.test("C5.1 transient failures of the final PUT are retried", async () => {
  const t = await setup();
  t.mock.fault({ route: "update", status: 502, times: 7 });
  t.mock.fault({ route: "update", drop: true, times: 1 });
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "done");
  assert.equal(t.mj.state, "success");
});

Deno.test("C5.1 200 with Job-Status: failed after a final failed is success, not an abort", async () => {
  const t = await setup();
  const result = await finish(t, { state: "failed", failureReason: "script_failure" });
  assert.equal(result.outcome, "done");
  assert.equal(result.jobStatus, "failed");
  assert.deepEqual(t.events, []);
});

Deno.test("C5.2 a bare 403 on PATCH aborts; nothing is sent after it", async () => {
  const t = await setup({ cancelResponse: "bare-forbidden" });
  t.mock.cancel(t.mj.id);
  t.log.write("x");
  await t.clock.advance(3000);
  assert.deepEqual(t.events, ["abort:403:"]);
  const n = t.calls.length;
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "aborted");
  assert.equal(t.calls.length, n);
  assert.equal(t.mj.state, "canceled");
});

Deno.test("C5.2 Job-Status: canceled on a 2xx aborts too (older GitLab)", async () => {
  const t = await setup({ cancelResponse: "job-status" });
  t.mock.cancel(t.mj.id);
  t.log.write("x");
  await t.clock.advance(3000);
  assert.equal(t.events.length, 1);
  assert.match(t.events[0], /^abort:\d+:canceled$/);
  await t.log.finish({ state: "success" });
  assert.equal(t.mj.state, "canceled");
});

/** Runs finish() while advancing the fake clock. */
async function finish(
  t: Awaited<ReturnType<typeof setup>>,
  final: Parameters<JobLog["finish"]>[0],
) {
  let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
  const p = t.log.finish(final).then((r) => (result = r));
  await t.clock.runUntil(() => result !== undefined);
  await p;
  return result!;
}

Deno.test("C4.2 C4.6 a log across storage blocks survives a resync from 0 byte for byte", async () => {
  const t = await setup({ traceUpdateInterval: 1 }, { outputLimit: 16 * PATCH_LIMIT });
  const expected: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < 5; i++) {
    const chunk = new Uint8Array(700 * 1024);
    for (let j = 0; j < chunk.length; j += 997) chunk[j] = (i * 31 + j) & 0xff;
    expected.push(chunk);
    t.log.write(chunk);
    if (i === 2) t.mock.loseTrace(t.mj.id);
    await t.clock.advance(1000);
  }
  const want = new Uint8Array(await new Blob(expected).arrayBuffer());
  // Read before finish(): the spool of acknowledged blocks is removed then (C10.4).
  assert.deepEqual(t.log.bytes(), want);
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "done");
  assert.equal(t.mj.log.byteLength, want.byteLength);
  assert.deepEqual(t.mj.log, want);
  assert.ok(t.patches().every((p) => p.size <= PATCH_LIMIT));
});

Deno.test("C4.8 C7.3 the log's stream keeps nothing of a chunk once its write resolved", async () => {
  const t = await setup({}, { masking: { secrets: ["s3cr3t-Pa55w0rd"] } });
  const stream = t.log.writable;
  assert.equal(copiesChunks(stream), true);
  assert.equal(copiesChunks(new WritableStream<Uint8Array>()), false);
  const text = "start s3cr3t-Pa55w0rd, glpat-abcdefghij and ?private_token=xyz&a=1 end\n".repeat(
    40,
  );
  const bytes = enc.encode(text);
  const writer = stream.getWriter();
  // One buffer for every write, scribbled over once each write resolved (as runScript does).
  const reused = new Uint8Array(7);
  for (let i = 0; i < bytes.length; i += reused.length) {
    const n = Math.min(reused.length, bytes.length - i);
    reused.set(bytes.subarray(i, i + n));
    await writer.write(reused.subarray(0, n));
    reused.fill(0x23);
  }
  writer.releaseLock();
  await t.log.finish({ state: "success" });
  const line = "start [MASKED], glpat-[MASKED] and ?private_token=[MASKED]&a=1 end\n";
  assert.equal(t.mj.logText, line.repeat(40));
});

// ---------------------------------------------------------------------------------------------
// Exact state and edges (these kill mutants that survived the tests above, see docs/MUTATION.md)
// ---------------------------------------------------------------------------------------------

Deno.test("C4.1 the log's counters and checksum follow each write and each accepted PATCH", async () => {
  const t = await setup();
  const hex = (s: string) => `crc32:${crc32(enc.encode(s)).toString(16).padStart(8, "0")}`;
  assert.equal(t.log.size, 0);
  assert.equal(t.log.checksum, "crc32:00000000");
  assert.equal(t.log.updateIntervalMs, 3000);
  t.log.write("");
  t.log.write(new Uint8Array(0));
  assert.equal(t.log.size, 0);
  t.log.write("héllo\n");
  assert.equal(t.log.size, 7);
  assert.equal(t.log.sentOffset, 0);
  assert.equal(t.log.patches, 0);
  assert.equal(t.log.checksum, hex("héllo\n"));
  assert.deepEqual(t.log.bytes(), enc.encode("héllo\n"));
  await t.clock.advance(3000);
  assert.equal(t.log.sentOffset, 7);
  assert.equal(t.log.patches, 1);
  t.log.write("more\n");
  await t.clock.advance(t.log.updateIntervalMs);
  assert.equal(t.log.patches, 2);
  assert.equal(t.log.sentOffset, 12);
  assert.equal(t.log.checksum, hex("héllo\nmore\n"));
  assert.equal(t.log.aborted, false);
  const result = await finish(t, { state: "success" });
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: undefined });
  // Nothing is taken after the end.
  t.log.write("late\n");
  assert.equal(t.log.size, 12);
  assert.equal(t.mj.logText, "héllo\nmore\n");
  assert.equal(
    t.puts().at(-1)!.body!.output!.toString(),
    { checksum: hex("héllo\nmore\n"), bytesize: 12 }.toString(),
  );
  assert.deepEqual(t.puts().at(-1)!.body!.output, { checksum: hex("héllo\nmore\n"), bytesize: 12 });
});

Deno.test("C4.7 the output limit: filled exactly, then cut on a character boundary with the notice", async () => {
  const notice = "\n\x1b[33;1mJob's log exceeded limit of 10 bytes.\n" +
    "Job execution will continue but no more output will be collected.\x1b[0;m\n";
  const exact = await setup({}, { outputLimit: 10 });
  exact.log.write("0123456789");
  assert.equal(exact.log.size, 10);
  exact.log.write("");
  assert.equal(exact.log.size, 10, "an empty write at the limit is no overflow");
  exact.log.write("x");
  assert.equal(new TextDecoder().decode(exact.log.bytes()), "0123456789" + notice);
  await finish(exact, { state: "success" });
  assert.equal(exact.mj.logText, "0123456789" + notice);
  // "€" is 3 bytes: 8 + 3 does not fit in 10, so the cut is before it.
  const cut = await setup({}, { outputLimit: 10 });
  cut.log.write("01234567€9");
  assert.equal(new TextDecoder().decode(cut.log.bytes()), "01234567" + notice);
  cut.log.write("more");
  assert.equal(cut.log.size, 8 + enc.encode(notice).byteLength);
  assert.equal(cut.log.checksum, `crc32:${crc32(cut.log.bytes()).toString(16).padStart(8, "0")}`);
  await finish(cut, { state: "success" });
  // A 2-byte character right at the limit.
  const two = await setup({}, { outputLimit: 9 });
  two.log.write("01234567é");
  assert.equal(
    new TextDecoder().decode(two.log.bytes()),
    "01234567" + notice.replace("10 bytes", "9 bytes"),
  );
  await finish(two, { state: "success" });
});

Deno.test("C4.5 keep-alive: keepAliveMs is the quiet time; a PATCH counts as contact; a cancel is reported once", async () => {
  const t = await setup({ traceUpdateInterval: 1 }, { keepAliveMs: 10_000 });
  // Checked after each round of the pump (every 3 s while nothing was sent): at 12 s.
  await t.clock.advance(11_999);
  assert.equal(t.puts().length, 0);
  await t.clock.advance(1);
  assert.equal(t.puts().length, 1);
  assert.deepEqual(t.puts()[0].body!.output, { checksum: "crc32:00000000", bytesize: 0 });
  // Output every second: PATCHes are contact, no keep-alive.
  for (let i = 0; i < 15; i++) {
    t.log.write("x");
    await t.clock.advance(1_000);
  }
  assert.equal(t.puts().length, 1);
  // A cancel (hard: no cancel_gracefully feature) seen on a PATCH: one callback, the log
  // reports it, and the final update is skipped.
  t.mock.cancel(t.mj.id);
  t.log.write("y");
  await t.clock.advance(12_000);
  assert.deepEqual(t.events, ["abort:403:"]);
  assert.equal(t.log.aborted, true);
  const n = t.calls.length;
  assert.deepEqual(await finish(t, { state: "success" }), {
    outcome: "aborted",
    jobStatus: undefined,
  });
  assert.equal(t.calls.length, n);
});

Deno.test("C8.5 PATCH failing for good at the end: after flushDeadlineMs the state goes with the acknowledged size, warned once", async () => {
  const diagnostics: Array<[string, Record<string, unknown> | undefined]> = [];
  const t = await setup({}, {
    flushDeadlineMs: 120_000,
    onDiagnostic: (message, properties) => diagnostics.push([message, properties]),
  });
  t.log.write("first part\n");
  await t.clock.advance(3000);
  assert.equal(t.log.sentOffset, 11);
  t.mock.fault({ route: "trace", status: 500, times: Infinity });
  t.log.write("second part\n");
  const started = t.clock.now();
  const result = await finish(t, { state: "failed", failureReason: "script_failure" });
  assert.deepEqual(result, { outcome: "done", jobStatus: "failed", undelivered: 12 });
  const final = t.puts().filter((p) => p.body!.state === "failed");
  assert.equal(final.length, 1);
  const first = `crc32:${crc32(enc.encode("first part\n")).toString(16).padStart(8, "0")}`;
  assert.deepEqual(final[0].body!.output, { checksum: first, bytesize: 11 });
  const finalAt = t.mock.requests.find((r) => r.route === "update")!.at;
  // Not before the flush deadline, and not much after it (a round of at most 30 s).
  assert.ok(finalAt - started >= 120_000, `${finalAt - started} ms`);
  assert.ok(finalAt - started <= 120_000 + 60_000, `${finalAt - started} ms`);
  const warnings = diagnostics.filter(([m]) => m.startsWith("The job log could not be sent"));
  assert.equal(warnings.length, 1);
  assert.deepEqual(warnings[0][1], { jobId: t.mj.id, undelivered: 12, acknowledged: 11 });
  assert.equal(t.mj.logText, "first part\n");
  assert.equal(t.mj.state, "failed");
});

Deno.test("C8.5 a GitLab that comes back within the flush deadline gets the whole log, nothing undelivered", async () => {
  const t = await setup({}, { flushDeadlineMs: 120_000 });
  t.log.write("first part\n");
  await t.clock.advance(3000);
  t.mock.fault({ route: "trace", status: 500, times: 4 });
  t.log.write("second part\n");
  const result = await finish(t, { state: "success" });
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: undefined });
  assert.equal(t.mj.logText, "first part\nsecond part\n");
  assert.deepEqual(t.puts().at(-1)!.body!.output, {
    checksum: `crc32:${
      crc32(enc.encode("first part\nsecond part\n")).toString(16).padStart(8, "0")
    }`,
    bytesize: 23,
  });
});

Deno.test("C5.1 C8.8 a final PUT that failed is retried after checking GitLab's log size with the last byte", async () => {
  const diagnostics: string[] = [];
  const t = await setup({}, { onDiagnostic: (m) => diagnostics.push(m) });
  t.log.write("0123456789");
  await t.clock.advance(3000);
  t.mock.fault({ route: "update", status: 500, times: 5 });
  t.calls.length = 0;
  const result = await finish(t, { state: "success" });
  assert.equal(result.outcome, "done");
  assert.ok(diagnostics.includes("Final update failed, will retry"), diagnostics.join("\n"));
  const sequence = t.calls.map((c) => `${c.method} ${c.range ?? ""}`.trim());
  // The five failed attempts, the probe of the last byte, the PUT that went through.
  assert.deepEqual(sequence, ["PUT", "PUT", "PUT", "PUT", "PUT", "PATCH 9-9", "PUT"]);
  assert.equal(t.mj.logText, "0123456789");
  assert.equal(t.mj.state, "success");
});

Deno.test("C5.2 a job cancelled while its final state is retried ends aborted, with GitLab's status", async () => {
  const t = await setup();
  t.log.write("x\n");
  await t.clock.advance(3000);
  t.mock.fault({ route: "update", status: 500, times: 5 });
  let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
  const p = t.log.finish({ state: "success" }).then((r) => (result = r));
  await t.clock.runUntil(() => t.mock.requestCount("update") >= 5);
  t.mock.cancel(t.mj.id, { graceful: false });
  await t.clock.runUntil(() => result !== undefined);
  await p;
  assert.equal(result!.outcome, "aborted");
  assert.notEqual(t.mj.state, "success");
});
