// The job log's edges, as GitLab and a writer see them: the high-water mark, exact waits of the
// pump and of the final update on the injected clock, 416/202 answers with odd Ranges, the flush
// and final-update deadlines, keep-alive spacing, cancel callbacks, the output limit on binary
// output, and the diagnostics a user reads (CONFORMANCE C4, C5, C8, C10.4). They kill mutants
// that survived tests/job_log_test.ts (docs/MUTATION.md).
import { assert, FakeClock } from "./_deps.ts";
import { Client, type ClientOptions } from "../src/api/client.ts";
import { backoffMs } from "../src/api/retry.ts";
import {
  DEFAULT_FLUSH_DEADLINE_MS,
  JobLog,
  type JobLogOptions,
  JobLogWritable,
  PATCH_LIMIT,
} from "../src/log/job_log.ts";
import { crc32, updateCrc } from "../src/log/crc32.ts";
import { GitLabMock, type MockOptions } from "../src/mock/mod.ts";
import { systemClock } from "../src/clock.ts";
import { join } from "node:path";

const MiB = 1024 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder();
const hex = (crc: number) => `crc32:${crc.toString(16).padStart(8, "0")}`;

type Diagnostic = [string, Record<string, unknown> | undefined];

/** A running job on the mock and a JobLog for it, with a spy on the calls and diagnostics. */
async function setup(
  mockOptions: Partial<MockOptions> = {},
  logOptions: Partial<JobLogOptions> = {},
  options: { client?: Partial<ClientOptions>; start?: boolean; callbacks?: boolean } = {},
) {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, ...mockOptions });
  const calls: { method: string; range?: string; body?: Record<string, unknown>; at: number }[] =
    [];
  const spy: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const call: (typeof calls)[number] = {
      method: request.method,
      range: request.headers.get("content-range") ?? undefined,
      at: clock.now(),
    };
    calls.push(call);
    if (request.method === "PUT") call.body = JSON.parse(await request.clone().text());
    return mock.fetch(request);
  };
  const client = new Client(mock.url, { fetch: spy, clock, random: () => 0.5, ...options.client });
  const mj = mock.job().script(["true"]).enqueue();
  const got = await client.requestJob(mock.runnerToken);
  assert.equal(got.type, "job");
  calls.length = 0;
  const events: string[] = [];
  const diagnostics: Diagnostic[] = [];
  const callbacks = options.callbacks ?? true;
  const log = new JobLog({
    client,
    clock,
    jobId: mj.id,
    token: mj.token,
    random: () => 0.5,
    onAbort: callbacks ? (r) => events.push(`abort:${r.status}:${r.jobStatus ?? ""}`) : undefined,
    onCancelRequested: callbacks ? () => events.push("canceling") : undefined,
    onDiagnostic: (message, properties) => diagnostics.push([message, properties]),
    ...logOptions,
  });
  if (options.start ?? true) log.start();
  const patches = () => calls.filter((c) => c.method === "PATCH");
  const puts = () => calls.filter((c) => c.method === "PUT");
  const finals = () => puts().filter((c) => c.body!.state !== "running");
  const messages = () => diagnostics.map(([m]) => m);
  return {
    clock,
    mock,
    client,
    mj,
    log,
    calls,
    patches,
    puts,
    finals,
    events,
    diagnostics,
    messages,
  };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** Runs finish() while advancing the fake clock. */
async function finish(t: Setup, final: Parameters<JobLog["finish"]>[0] = { state: "success" }) {
  let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
  const p = t.log.finish(final).then((r) => (result = r));
  await t.clock.runUntil(() => result !== undefined);
  await p;
  return result!;
}

/**
 * Waits in real time (the fake clock stands still) until `done()` holds: large patches are
 * streamed, which takes a few turns of the event loop.
 */
async function until(done: () => boolean, ms = 10_000): Promise<void> {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > ms) assert.fail(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Runs finish() moving time in steps of `stepMs` with some real time between them, for logs
 * that use the disk during the final update (runUntil could jump to the final-update deadline
 * while a spool file is read or written).
 */
async function finishInSteps(t: Setup, stepMs: number) {
  let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
  const p = t.log.finish({ state: "success" }).then((r) => (result = r));
  for (let i = 0; i < 600 && result === undefined; i++) {
    await t.clock.advance(stepMs);
    await new Promise((r) => setTimeout(r, 5));
  }
  // Ten minutes of fake time at most, then fail rather than wait forever.
  if (result === undefined) assert.fail("finish() did not end within 10 min of fake time");
  await p;
  return result!;
}

/** `n` bytes of printable text. */
function text(n: number, fill = 0x61): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

// ---------------------------------------------------------------------------------------------
// The high-water mark (C4.10): 1.5 MiB unsent bytes with a large output limit
// ---------------------------------------------------------------------------------------------

Deno.test("C4.10 a writer waits, and the pump is woken, only once more than 1.5 MiB is unsent", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB });
  const stream = t.log.writable;
  assert.ok(stream instanceof JobLogWritable);
  const writer = stream.getWriter();
  // Exactly the high-water mark: no wait, and the pump keeps to its interval.
  assert.equal(stream.writeChunk(text(1.5 * MiB)), undefined);
  await t.clock.advance(2999);
  assert.equal(t.patches().length, 0, "no wake-up at exactly 1.5 MiB");
  await t.clock.advance(1);
  await until(() => t.log.sentOffset === 1.5 * MiB);
  assert.deepEqual(t.patches().map((p) => p.range), ["0-1048575", "1048576-1572863"]);
  // GitLab said 60 s. One byte over the mark: the writer waits and the pump goes at once.
  assert.equal(stream.writeChunk(text(1.5 * MiB)), undefined);
  const at = t.clock.now();
  const wait = stream.writeChunk(text(1, 0x62));
  assert.ok(wait !== undefined, "more than 1.5 MiB unsent: the writer must wait");
  let resumed = false;
  wait.then(() => (resumed = true));
  await until(() => resumed);
  await until(() => t.log.sentOffset === 3 * MiB + 1);
  assert.ok(t.patches().slice(2).every((p) => p.at === at), "sent at once, not after 60 s");
  writer.releaseLock();
  await finish(t);
  assert.equal(t.mj.logSize, 3 * MiB + 1);
});

Deno.test("C4.10 a waiting writer resumes only once GitLab caught up to half the high-water mark", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB });
  const stream = t.log.writable as JobLogWritable;
  const writer = stream.getWriter();
  const wait = stream.writeChunk(text(3 * MiB));
  assert.ok(wait !== undefined);
  let resumedAt: number | undefined;
  wait.then(() => (resumedAt = t.log.sentOffset));
  await until(() => resumedAt !== undefined);
  // Released after the third patch (0 unsent), not after the second (1 MiB unsent ≤ 1.5 MiB).
  assert.equal(resumedAt, 3 * MiB);
  writer.releaseLock();
  await finish(t);
});

Deno.test("C4.10 a waiting writer resumes when exactly half the high-water mark is left unsent", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB });
  const stream = t.log.writable as JobLogWritable;
  const writer = stream.getWriter();
  const wait = stream.writeChunk(text(1.75 * MiB));
  assert.ok(wait !== undefined);
  let resumedAt: number | undefined;
  wait.then(() => (resumedAt = t.log.sentOffset));
  await until(() => resumedAt !== undefined);
  // After the first patch 0.75 MiB is left: that is half the mark, so the writer goes on.
  assert.equal(resumedAt, MiB);
  await until(() => t.log.sentOffset === t.log.size);
  writer.releaseLock();
  await finish(t);
});

Deno.test("C8.4 a final PUT failing for good with the client's own retries ends before the deadline when no retry fits", async () => {
  // Rounds of 5 attempts (75, 150, 300, 600 ms apart) at 0, 1.875, 4.5, 8.625, 15.75, 28.875 and
  // 54 s; the deadline is 54.5 s: the wait of 300 ms after 54.225 s does not fit.
  const t = await setup({}, { finalUpdateDeadlineMs: 54_500 });
  t.mock.fault({ route: "update", status: 500, times: Infinity });
  const started = t.clock.now();
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "failed" });
  assert.deepEqual(t.finals().slice(-4).map((c) => c.at - started), [
    30_000,
    54_000,
    54_075,
    54_225,
  ]);
  assert.equal(t.clock.now() - started, 54_225);
});

Deno.test("C4.10 with a failing GitLab the pump tries once per interval, however much is written", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB }, { client: { maxAttempts: 1 } });
  t.mock.fault({ route: "trace", status: 500, times: Infinity });
  t.log.write(text(2 * MiB)); // over the high-water mark: the pump is woken at once
  for (let i = 0; i < 100; i++) {
    t.log.write("more output\n"); // each write over the mark wakes the pump again
    await t.clock.advance(100);
  }
  const times = t.patches().map((p) => p.at - t.patches()[0].at);
  assert.deepEqual(times, [0, 3000, 6000, 9000]);
  assert.deepEqual(t.messages(), Array(4).fill("Sending the job log failed, will retry"));
  const [, properties] = t.diagnostics[0];
  assert.equal(properties!.jobId, t.mj.id);
  assert.equal(properties!.offset, 0);
  assert.match(String(properties!.error), /500/);
  await t.log.stop();
});

Deno.test("C4.10 C8.10 output over the high-water mark after an accepted round is sent at once, not at the next interval", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB });
  t.log.write("a");
  await t.clock.advance(3000);
  assert.equal(t.patches().length, 1);
  await t.clock.advance(1000);
  t.log.write(text(2 * MiB));
  await until(() => t.log.sentOffset === t.log.size);
  assert.deepEqual(t.patches().slice(1).map((p) => p.at - t.patches()[0].at), [1000, 1000, 1000]);
  await finish(t);
});

Deno.test("C8.10 a wake-up that comes during a keep-alive is not lost: the log goes right after it", async () => {
  const t = await setup({ traceUpdateInterval: 3 }, { outputLimit: 64 * MiB, keepAliveMs: 9000 });
  t.mock.fault({ route: "update", delayMs: 1000, times: 1 });
  // Rounds at 3, 6, 9 s: the keep-alive starts at 9 s and is answered at 10 s.
  await t.clock.runUntil(() => t.puts().length === 1);
  assert.equal(t.puts()[0].at, t.clock.now());
  const started = t.clock.now();
  await t.clock.advance(500);
  t.log.write(text(2 * MiB));
  await t.clock.advance(500);
  await until(() => t.log.sentOffset === t.log.size);
  assert.deepEqual(t.patches().map((p) => p.at - started), [1000, 1000]);
  await finish(t);
});

Deno.test("C4.1 bytes written before start() wait for the first interval too", async () => {
  const t = await setup({}, {}, { start: false });
  t.log.write("early\n");
  t.log.start();
  await t.clock.advance(2999);
  assert.equal(t.patches().length, 0);
  await t.clock.advance(1);
  assert.deepEqual(t.patches().map((p) => p.range), ["0-5"]);
  await finish(t);
  assert.equal(t.mj.logText, "early\n");
});

// ---------------------------------------------------------------------------------------------
// The stored log: bytes(), memory, mask()
// ---------------------------------------------------------------------------------------------

Deno.test("C10.4 a small log stays small in memory and grows by doubling", async () => {
  const t = await setup();
  t.log.write("a");
  t.log.write("b");
  t.log.write("c");
  assert.equal(t.log.memoryBytes, 512);
  t.log.write(text(509));
  assert.equal(t.log.memoryBytes, 512, "exactly full");
  t.log.write("d");
  assert.equal(t.log.memoryBytes, 1024);
  t.log.write(text(5000));
  assert.equal(t.log.memoryBytes, 8192);
  assert.equal(t.log.size, 5513);
  await finish(t);
});

Deno.test("C4.1 bytes() of a log of exactly one block; after finish() it still works for a log held in memory", async () => {
  const t = await setup({}, { outputLimit: 8 * MiB });
  const block = text(PATCH_LIMIT, 0x78);
  t.log.write(block);
  assert.deepEqual(t.log.bytes(), block);
  await t.log.stop();
  const small = await setup();
  small.log.write("small\n");
  await finish(small);
  assert.equal(dec.decode(small.log.bytes()), "small\n");
});

Deno.test("C10.4 bytes() after finish() of a spooled log throws a clear error", async () => {
  const t = await setup({ traceUpdateInterval: 1 }, { outputLimit: 64 * MiB });
  t.log.write(text(2 * MiB));
  await t.clock.runUntil(() => t.log.sentOffset === 2 * MiB && t.log.spoolPath !== undefined);
  // Exactly two blocks acknowledged: both are in the spool, none in memory.
  await t.clock.runUntil(() => t.log.memoryBytes === 0, 10_000);
  assert.equal(t.log.memoryBytes, 0);
  assert.equal((await Deno.stat(t.log.spoolPath!)).size, 2 * MiB);
  assert.deepEqual(t.log.bytes(), text(2 * MiB));
  await finish(t);
  assert.throws(() => t.log.bytes(), {
    message: "The spooled job log was removed when the log was finished",
  });
});

Deno.test("C4.8 mask() masks text like the log's content", async () => {
  const t = await setup({}, { masking: { secrets: ["s3cr3t-Pa55w0rd"] } });
  assert.equal(t.log.mask("password: s3cr3t-Pa55w0rd"), "password: [MASKED]");
  await finish(t);
});

// ---------------------------------------------------------------------------------------------
// The output limit (C4.7)
// ---------------------------------------------------------------------------------------------

const notice = (limit: number) =>
  `\n\x1b[33;1mJob's log exceeded limit of ${limit} bytes.\n` +
  `Job execution will continue but no more output will be collected.\x1b[0;m\n`;

Deno.test("C4.7 binary output is cut at most 3 bytes before the limit, never past it", async () => {
  // Continuation bytes only (not UTF-8): the cut goes back at most 3 bytes looking for a start.
  const t = await setup({}, { outputLimit: 10 });
  t.log.write(new Uint8Array(20).fill(0x80));
  const bytes = t.log.bytes();
  assert.deepEqual(bytes.subarray(0, 6), new Uint8Array(6).fill(0x80));
  assert.equal(dec.decode(bytes.subarray(6)), notice(10));
  await finish(t);
  const small = await setup({}, { outputLimit: 2 });
  small.log.write(new Uint8Array(5).fill(0x80));
  assert.equal(dec.decode(small.log.bytes()), notice(2));
  await finish(small);
  // A 4-byte character across the limit is dropped whole.
  const emoji = await setup({}, { outputLimit: 10 });
  emoji.log.write("012345678😀");
  assert.equal(dec.decode(emoji.log.bytes()), "012345678" + notice(10));
  await finish(emoji);
});

Deno.test("C4.7 C4.8 the limit's notice appears once when masked text held back is flushed at the end", async () => {
  const t = await setup({}, { outputLimit: 5, masking: { secrets: ["s3cr3t-Pa55w0rd"] } });
  t.log.write("0123456789 s3cr3t-Pa5");
  await finish(t);
  assert.equal(t.mj.logText, "01234" + notice(5));
});

// ---------------------------------------------------------------------------------------------
// 416 and 202 answers with odd Ranges (C4.2)
// ---------------------------------------------------------------------------------------------

Deno.test("C4.2 C4.6 after a resync to an offset inside a block, patches end at block boundaries", async () => {
  const t = await setup({ traceUpdateInterval: 1 }, { outputLimit: 64 * MiB });
  const bytes = new Uint8Array(2.5 * MiB);
  for (let i = 0; i < bytes.length; i++) bytes[i] = 0x41 + (i % 23);
  // GitLab holds 1 MiB + 100 bytes (its answer to a lost patch): 416 Range 0-1048676.
  await t.client.patchTrace(t.mj.id, t.mj.token, { offset: 0, data: bytes.subarray(0, MiB + 100) });
  t.calls.length = 0;
  t.log.write(bytes);
  await until(() => t.log.sentOffset === t.log.size);
  assert.deepEqual(t.patches().map((p) => p.range), [
    "0-1048575",
    "1048676-2097151",
    "2097152-2621439",
  ]);
  assert.deepEqual(t.mj.log, bytes);
  assert.deepEqual(t.messages(), []);
  await finish(t);
});

Deno.test("C4.2 a 416 that says GitLab holds everything sent is no error: nothing is resent", async () => {
  const t = await setup();
  t.log.write("first part\n");
  await t.clock.advance(3000);
  // GitLab applies the next patch, its answer is lost: the retry gets 416 Range 0-23.
  t.mock.fault({ route: "trace", drop: "after", times: 1 });
  t.log.write("second part\n");
  await t.clock.runUntil(() => t.log.sentOffset === 23);
  assert.deepEqual(t.patches().map((p) => p.range), ["0-10", "11-22", "11-22"]);
  await t.clock.advance(180_000);
  assert.equal(t.patches().length, 3);
  assert.deepEqual(t.messages(), []);
  await finish(t);
  assert.equal(t.mj.logText, "first part\nsecond part\n");
});

Deno.test("C4.2 a 416 without a Range, or beyond the log, is retried at the next interval with a diagnostic", async () => {
  const t = await setup({ traceUpdateInterval: 3 });
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", status: 416, times: 1 });
  await t.clock.advance(3000);
  assert.deepEqual(t.diagnostics, [[
    "GitLab's log offset cannot be matched, will retry",
    { jobId: t.mj.id, server: undefined, size: 10 },
  ]]);
  t.mock.fault({ route: "trace", status: 416, headers: { Range: "0-11" }, times: 1 });
  await t.clock.advance(3000);
  assert.deepEqual(t.diagnostics[1], [
    "GitLab's log offset cannot be matched, will retry",
    { jobId: t.mj.id, server: 11, size: 10 },
  ]);
  assert.equal(t.log.sentOffset, 0);
  await t.clock.advance(3000);
  assert.deepEqual(t.patches().map((p) => `${p.at - t.patches()[0].at} ${p.range}`), [
    "0 0-9",
    "3000 0-9",
    "6000 0-9",
  ]);
  assert.equal(t.mj.logText, "0123456789");
  await finish(t);
});

Deno.test("C4.2 a round resyncs at most three times, then waits for the next interval", async () => {
  const t = await setup({ traceUpdateInterval: 3 });
  t.log.write("0123456789");
  // A GitLab that keeps saying it holds nothing, yet refuses offset 0.
  t.mock.fault({ route: "trace", status: 416, headers: { Range: "0-0" }, times: 6 });
  await t.clock.advance(3000);
  assert.equal(t.patches().length, 4, "the patch and three resyncs");
  assert.deepEqual(t.messages(), ["GitLab's log offset cannot be matched, will retry"]);
  await t.clock.advance(2999);
  assert.equal(t.patches().length, 4);
  await t.clock.advance(1);
  // Two more 416s, then GitLab takes it: all in the same round, without waiting.
  assert.deepEqual(
    t.patches().map((p) => p.at - t.patches()[0].at),
    [0, 0, 0, 0, 3000, 3000, 3000],
  );
  assert.equal(t.mj.logText, "0123456789");
  await finish(t);
});

Deno.test("C4.2 an accepted patch whose Range says GitLab holds the whole log ends the round; one beyond the log is ignored", async () => {
  const t = await setup({ traceUpdateInterval: 3 }, { outputLimit: 64 * MiB });
  t.log.write(text(2 * MiB + 10));
  t.mock.fault({
    route: "trace",
    status: 202,
    headers: { Range: `0-${2 * MiB + 10}` },
    times: 1,
  });
  await t.clock.advance(3000);
  await until(() => t.log.sentOffset === t.log.size);
  await t.clock.advance(0);
  assert.deepEqual(t.patches().map((p) => p.range), ["0-1048575"]);
  await t.log.stop();

  const u = await setup({ traceUpdateInterval: 3 }, { outputLimit: 64 * MiB });
  u.log.write(text(2 * MiB + 10));
  u.mock.fault({ route: "trace", status: 202, headers: { Range: `0-${3 * MiB}` }, times: 1 });
  await u.clock.advance(3000);
  await until(() => u.log.sentOffset === u.log.size);
  // GitLab (which took nothing: the 202 was a fault) then answers 416 Range 0-0: resent whole.
  assert.deepEqual(u.patches().map((p) => p.range), [
    "0-1048575",
    "1048576-2097151",
    "0-1048575",
    "1048576-2097151",
    "2097152-2097161",
  ]);
  await u.log.stop();
});

// ---------------------------------------------------------------------------------------------
// Keep-alive (C4.5) and cancel callbacks (C5.2, C6)
// ---------------------------------------------------------------------------------------------

Deno.test("C4.5 keep-alives are spaced by keepAliveMs; a failed one is tried again next round, with a diagnostic", async () => {
  const t = await setup({ traceUpdateInterval: 3 }, {}, { client: { maxAttempts: 1 } });
  await t.clock.advance(30_000);
  assert.deepEqual(t.puts().map((p) => p.at - t.clock.now()), [0]);
  await t.clock.advance(29_999);
  assert.equal(t.puts().length, 1);
  await t.clock.advance(1);
  assert.equal(t.puts().length, 2);
  t.mock.fault({ route: "update", status: 500, times: 1 });
  await t.clock.advance(30_000);
  assert.equal(t.puts().length, 3);
  await t.clock.advance(3000);
  assert.equal(t.puts().length, 4, "the failed keep-alive is tried again next round");
  const first = t.puts()[0].at;
  assert.deepEqual(t.puts().map((p) => p.at - first), [0, 30_000, 60_000, 63_000]);
  assert.equal(t.diagnostics.length, 1);
  const [message, properties] = t.diagnostics[0];
  assert.equal(message, "Keep-alive failed");
  assert.equal(properties!.jobId, t.mj.id);
  assert.match(String(properties!.error), /500/);
  await finish(t);
});

Deno.test("C5.2 after GitLab aborted the job on a PATCH, no keep-alive follows", async () => {
  const t = await setup({ cancelResponse: "bare-forbidden" }, { keepAliveMs: 1000 });
  t.mock.cancel(t.mj.id);
  t.log.write("x");
  await t.clock.advance(3000);
  assert.deepEqual(t.calls.map((c) => c.method), ["PATCH"]);
  await t.clock.advance(30_000);
  assert.deepEqual(t.calls.map((c) => c.method), ["PATCH"]);
  assert.equal((await finish(t)).outcome, "aborted");
});

Deno.test("C6 a graceful cancel is reported once, however often GitLab repeats it", async () => {
  const t = await setup({ traceUpdateInterval: 3 });
  t.mock.cancel(t.mj.id, { graceful: true });
  for (let i = 0; i < 3; i++) {
    t.log.write(`line ${i}\n`);
    await t.clock.advance(3000);
  }
  assert.equal(t.patches().length, 3);
  assert.deepEqual(t.events, ["canceling"]);
  assert.equal(t.log.aborted, false);
  await finish(t);
});

Deno.test("C5.2 C6 without onAbort and onCancelRequested, cancels do not break the log", async () => {
  const graceful = await setup({ traceUpdateInterval: 3 }, {}, { callbacks: false });
  graceful.mock.cancel(graceful.mj.id, { graceful: true });
  graceful.log.write("x");
  await graceful.clock.advance(3000);
  assert.equal(graceful.patches().length, 1);
  graceful.mock.cancel(graceful.mj.id, { graceful: false });
  graceful.log.write("y");
  await graceful.clock.advance(3000);
  assert.equal(graceful.log.aborted, true);
  assert.equal((await finish(graceful)).outcome, "aborted");
});

Deno.test("C5.2 stop() ends the pump: what was not sent stays unsent, nothing is left waiting", async () => {
  const t = await setup();
  t.log.write("sent\n");
  await t.clock.advance(3000);
  t.log.write("never sent\n");
  await t.log.stop();
  await t.clock.advance(120_000);
  assert.deepEqual(t.calls.map((c) => c.method), ["PATCH"]);
  assert.equal(t.mj.logText, "sent\n");
  assert.equal(t.clock.pending, 0);
});

// ---------------------------------------------------------------------------------------------
// The final update (C5.1, C8.4, C8.5, C8.8)
// ---------------------------------------------------------------------------------------------

Deno.test("C5.1 C8.4 a finished log leaves nothing waiting on the clock", async () => {
  const t = await setup();
  t.log.write("x\n");
  assert.equal((await finish(t)).outcome, "done");
  assert.equal(t.clock.pending, 0);
  // Also after a flush that failed once (a round bounded by the flush deadline).
  const u = await setup();
  u.log.write("y\n");
  u.mock.fault({ route: "trace", status: 500, times: 1 });
  assert.equal((await finish(u)).outcome, "done");
  assert.deepEqual(u.patches().map((p) => p.at - u.patches()[0].at), [0, 750]);
  assert.equal(u.mj.logText, "y\n");
  assert.equal(u.clock.pending, 0);
});

Deno.test("C8.5 the default flush deadline is 5 minutes; flush rounds try once each, spaced by the final-update backoff", async () => {
  assert.equal(DEFAULT_FLUSH_DEADLINE_MS, 300_000);
  const t = await setup();
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", status: 500, times: Infinity });
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 10 });
  const start = t.patches()[0].at;
  const expected = [0];
  for (let i = 0; expected.at(-1)! < 300_000; i++) {
    expected.push(expected.at(-1)! + backoffMs(i, { min: 1000, max: 60_000, random: () => 0.5 }));
  }
  assert.deepEqual(t.patches().map((p) => p.at - start), expected);
  assert.equal(t.finals().length, 1);
  assert.equal(t.finals()[0].at - start, expected.at(-1));
  assert.deepEqual(t.finals()[0].body!.output, { checksum: "crc32:00000000", bytesize: 0 });
});

Deno.test("C8.5 progress in the final flush restarts the flush deadline", async () => {
  const t = await setup({}, { outputLimit: 8 * MiB, flushDeadlineMs: 20_000 });
  t.log.write(text(MiB - 5));
  await t.clock.advance(3000);
  await until(() => t.log.sentOffset === MiB - 5);
  t.calls.length = 0;
  // Two small patches are left: 5 bytes to the end of the first block, 10 in the next. Failing
  // from the first patch on; the fifth round takes the 5 bytes (after 1 ms), then the rest
  // fails for good.
  t.log.write(text(15));
  t.mock.fault({ route: "trace", status: 500, times: 4 });
  t.mock.fault({ route: "trace", delayMs: 1, times: 1 });
  t.mock.fault({ route: "trace", status: 500, times: Infinity });
  // The first block, once GitLab has it whole, goes to the spool file.
  const result = await finishInSteps(t, 1000);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 10 });
  assert.equal(t.mj.logSize, MiB);
  const traces = t.mock.requests.filter((r) => r.route === "trace").slice(1); // after the first
  const progressAt = traces.find((r) => r.status === 202)!.at;
  assert.ok(progressAt - traces[0].at >= 11_000, `${progressAt - traces[0].at} ms`);
  // 20 s after the progress, not 20 s after the first failure (that would be the round at 23 s).
  assert.ok(t.finals()[0].at - progressAt >= 20_000, `${t.finals()[0].at - progressAt} ms`);
});

Deno.test("C8.5 a hanging PATCH in the final flush is cut at the flush deadline exactly", async () => {
  const t = await setup({}, { flushDeadlineMs: 120_000 });
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", status: 500, times: 1 });
  t.mock.fault({ route: "trace", hang: true, times: Infinity });
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 10 });
  const failedAt = t.patches()[0].at;
  assert.deepEqual(t.patches().map((p) => p.at - failedAt), [0, 750]);
  assert.equal(t.finals()[0].at - failedAt, 120_000);
  assert.equal(t.clock.pending, 0);
});

Deno.test("C8.5 the final state goes with the checksum of the acknowledged bytes across blocks", async () => {
  // A prefix whose CRC-32 has a leading zero digit (the checksum is 8 hex digits, zero-padded).
  const prefix = text(1.5 * MiB);
  const base = crc32(prefix);
  let last = 0x21;
  while (updateCrc(base, new Uint8Array([last])) >= 0x10000000) last++;
  const acknowledged = new Uint8Array(prefix.length + 1);
  acknowledged.set(prefix);
  acknowledged[prefix.length] = last;
  const t = await setup({}, { outputLimit: 8 * MiB, flushDeadlineMs: 60_000 });
  t.log.write(acknowledged);
  await t.clock.advance(3000);
  await until(() => t.log.sentOffset === acknowledged.length);
  t.mock.fault({ route: "trace", status: 500, times: Infinity });
  t.log.write("the end\n");
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 8 });
  const checksum = hex(crc32(acknowledged));
  assert.match(checksum, /^crc32:0/);
  assert.deepEqual(t.finals()[0].body!.output, { checksum, bytesize: acknowledged.length });
});

Deno.test("C8.5 C8.8 when the final state fails after the log was given up: warned once, no probe of a log not delivered", async () => {
  const t = await setup({}, { flushDeadlineMs: 60_000, finalUpdateDeadlineMs: 600_000 });
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", status: 500, times: Infinity });
  t.mock.fault({ route: "update", status: 500, times: 5 });
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 10 });
  assert.deepEqual(
    t.messages().filter((m) => !m.startsWith("Sending the job log failed")),
    [
      "The job log could not be sent; sending the final state without its last {undelivered} bytes",
      "Final update failed, will retry",
    ],
  );
  assert.equal(t.finals().length, 6);
  assert.ok(t.patches().every((p) => p.range === "0-9"));
});

Deno.test("C5.1 C8.8 a failed final PUT: the probe finds GitLab lost part of the log, the log is resent first", async () => {
  const t = await setup();
  t.log.write("0123456789");
  await t.clock.advance(3000);
  t.mock.fault({ route: "update", status: 500, times: 5 });
  t.mock.loseTrace(t.mj.id);
  t.calls.length = 0;
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.deepEqual(t.calls.map((c) => `${c.method} ${c.range ?? ""}`.trim()), [
    "PUT",
    "PUT",
    "PUT",
    "PUT",
    "PUT",
    "PATCH 9-9",
    "PATCH 0-9",
    "PUT",
  ]);
  assert.deepEqual(t.diagnostics.slice(1), [[
    "GitLab lost part of the log; sending it again",
    { jobId: t.mj.id, server: 0, size: 10 },
  ]]);
  const [message, properties] = t.diagnostics[0];
  assert.equal(message, "Final update failed, will retry");
  assert.deepEqual(Object.keys(properties!), ["jobId", "error"]);
  assert.match(String(properties!.error), /500/);
  assert.equal(t.mj.logText, "0123456789");
  assert.equal(t.mj.state, "success");
});

Deno.test("C5.1 C8.8 a probe that fails is repeated before the final state goes; a 202 after it needs no new probe", async () => {
  const t = await setup({ finalUpdateAccepts: 1 });
  t.log.write("0123456789");
  await t.clock.advance(3000);
  t.mock.fault({ route: "update", status: 500, times: 5 });
  t.calls.length = 0;
  let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
  const p = t.log.finish({ state: "success" }).then((r) => (result = r));
  await t.clock.runUntil(() => t.calls.length === 5);
  t.mock.fault({ route: "trace", status: 500, times: 5 });
  await t.clock.runUntil(() => result !== undefined);
  await p;
  assert.equal(result!.outcome, "done");
  assert.deepEqual(t.calls.map((c) => `${c.method} ${c.range ?? ""}`.trim()), [
    ...Array(5).fill("PUT"),
    ...Array(5).fill("PATCH 9-9"),
    "PATCH 9-9",
    "PUT",
    "PUT",
  ]);
  assert.deepEqual(t.messages(), [
    "Final update failed, will retry",
    "Checking the log size with GitLab failed",
  ]);
  assert.equal(t.diagnostics[1][1]!.jobId, t.mj.id);
  assert.match(String(t.diagnostics[1][1]!.error), /500/);
  assert.equal(t.mj.state, "success");
});

Deno.test("C5.2 C8.8 GitLab canceling the job in its answer to the probe: no final state overwrites the cancel", async () => {
  for (
    const fault of [
      { status: 403, headers: { "Job-Status": "canceled" } },
      { status: 403 }, // a bare 403: the job's token is no longer accepted
    ]
  ) {
    const t = await setup();
    t.log.write("0123456789");
    await t.clock.advance(3000);
    t.mock.fault({ route: "update", status: 500, times: 5 });
    t.calls.length = 0;
    let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
    const p = t.log.finish({ state: "success" }).then((r) => (result = r));
    await t.clock.runUntil(() => t.calls.length === 5);
    // The job is canceled meanwhile: the probe of the last byte is answered 403.
    t.mock.fault({ route: "trace", ...fault, times: 1 });
    await t.clock.runUntil(() => result !== undefined);
    await p;
    assert.deepEqual(t.calls.map((c) => `${c.method} ${c.range ?? ""}`.trim()), [
      ...Array(5).fill("PUT"),
      "PATCH 9-9",
    ], JSON.stringify(fault));
    assert.equal(result!.outcome, "aborted");
    assert.deepEqual(t.events, [`abort:403:${fault.headers?.["Job-Status"] ?? ""}`]);
  }
});

Deno.test("C5.1 C8.8 a probe that finds GitLab holding the whole log emits no diagnostic", async () => {
  const t = await setup();
  t.log.write("0123456789");
  await t.clock.advance(3000);
  t.mock.fault({ route: "update", status: 500, times: 5 });
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.deepEqual(t.messages(), ["Final update failed, will retry"]);
  // And when GitLab holds all but the last byte, it takes it with the probe.
  const u = await setup();
  u.log.write("0123456789");
  await u.clock.advance(3000);
  u.mock.fault({ route: "update", status: 500, times: 5 });
  u.mock.loseTrace(u.mj.id);
  await u.client.patchTrace(u.mj.id, u.mj.token, { offset: 0, data: enc.encode("012345678") });
  assert.equal((await finish(u)).outcome, "done");
  assert.deepEqual(u.messages(), ["Final update failed, will retry"]);
  assert.equal(u.mj.logText, "0123456789");
});

Deno.test("C5.1 a 412 on the final PUT resends the log from 0, then the state at once", async () => {
  const t = await setup();
  t.log.write("0123456789");
  await t.clock.advance(3000);
  t.mock.fault({ route: "update", status: 412, times: 1 });
  t.calls.length = 0;
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.deepEqual(t.calls.map((c) => `${c.at - t.calls[0].at} ${c.method} ${c.range ?? ""}`), [
    "0 PUT ",
    "0 PATCH 0-9",
    "0 PUT ",
  ]);
  assert.equal(t.mj.logText, "0123456789");
});

Deno.test("C5.1 a 202 without an update interval is repeated after the current interval", async () => {
  const t = await setup();
  t.mock.fault({ route: "update", status: 202, times: 1 });
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.deepEqual(t.finals().map((c) => c.at - t.finals()[0].at), [0, 3000]);
  assert.equal(t.log.updateIntervalMs, 3000);
});

Deno.test("C4.4 an answer without an update interval keeps the current one", async () => {
  const t = await setup({ traceUpdateInterval: 7 });
  t.log.write("a");
  await t.clock.advance(3000);
  assert.equal(t.log.updateIntervalMs, 7000);
  t.mock.fault({ route: "trace", status: 202, headers: { Range: "0-2" }, times: 1 });
  t.log.write("b");
  await t.clock.advance(7000);
  assert.equal(t.patches().length, 2);
  assert.equal(t.log.updateIntervalMs, 7000);
  t.log.write("c");
  await t.clock.advance(6999);
  assert.equal(t.patches().length, 2);
  await t.log.stop();
});

Deno.test("C5.2 a job stopped by GitLab during the final flush sends no final state, and finish() ends at once", async () => {
  const t = await setup({ cancelResponse: "bare-forbidden" });
  t.log.write("x");
  t.mock.cancel(t.mj.id);
  const started = t.clock.now();
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "aborted", jobStatus: undefined });
  assert.deepEqual(t.calls.map((c) => c.method), ["PATCH"]);
  assert.equal(t.clock.now(), started, "no backoff after the abort");
});

Deno.test("C5.1 C8.8 a job GitLab already holds in the state sent ends done, also when it said so on a PATCH", async () => {
  const t = await setup();
  t.log.write("x");
  t.mock.fault({ route: "trace", status: 403, headers: { "Job-Status": "failed" }, times: 1 });
  const started = t.clock.now();
  const result = await finish(t, { state: "failed", failureReason: "script_failure" });
  assert.deepEqual(result, { outcome: "done", jobStatus: "failed", undelivered: undefined });
  assert.deepEqual(t.calls.map((c) => c.method), ["PATCH"]);
  assert.equal(t.clock.now(), started, "no backoff after the answer");
});

Deno.test("C8.5 a PATCH hanging from the first round of the final flush ends at its header deadline; the flush deadline counts from there", async () => {
  const t = await setup({}, { flushDeadlineMs: 120_000 }, { client: { headerTimeoutMs: 60_000 } });
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", hang: true, times: Infinity });
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 10 });
  const first = t.patches()[0].at;
  // Round 1 fails at the header deadline (60 s), round 2 (after 750 ms) too; round 3 (after
  // 1.5 s) is cut by the flush deadline, 120 s after the first failure.
  assert.deepEqual(t.patches().map((p) => p.at - first), [0, 60_750, 122_250]);
  assert.equal(t.finals()[0].at - first, 180_000);
  assert.equal(t.clock.pending, 0);
});

Deno.test("C5.1 a 404 on the final flush gives the log up at once and sends the state with the log's size", async () => {
  const t = await setup({}, { flushDeadlineMs: 60_000 });
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", status: 404, times: Infinity });
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.equal(t.patches().length, 1);
  assert.equal(t.finals()[0].at, t.patches()[0].at);
  assert.deepEqual(t.finals()[0].body!.output, {
    checksum: hex(crc32(enc.encode("0123456789"))),
    bytesize: 10,
  });
  assert.deepEqual(t.messages(), []);
});

Deno.test("C8.5 a final flush that GitLab answers 416 without a Range is given up at the flush deadline", async () => {
  const t = await setup({}, { flushDeadlineMs: 60_000 });
  t.log.write("0123456789");
  t.mock.fault({ route: "trace", status: 416, times: Infinity });
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "done", jobStatus: "success", undelivered: 10 });
  assert.ok(t.finals()[0].at - t.patches()[0].at >= 60_000);
  assert.deepEqual(t.finals()[0].body!.output, { checksum: "crc32:00000000", bytesize: 0 });
});

Deno.test("C4.2 C8.5 416s in the final flush: the second resync in a row waits an update interval", async () => {
  const t = await setup();
  t.log.write("0123456789");
  await t.clock.advance(3000); // GitLab holds 10 bytes and said 60 s
  t.log.write("abc");
  t.mock.fault({ route: "trace", status: 416, headers: { Range: "0-10" }, times: 2 });
  t.calls.length = 0;
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.deepEqual(t.calls.map((c) => `${c.at - t.calls[0].at} ${c.method} ${c.range ?? ""}`), [
    "0 PATCH 10-12",
    "0 PATCH 10-12",
    "60000 PATCH 10-12",
    "60000 PUT ",
  ]);
  // The pump does not wait between resyncs.
  const u = await setup();
  u.log.write("0123456789");
  await u.clock.advance(3000);
  u.log.write("abc");
  u.mock.fault({ route: "trace", status: 416, headers: { Range: "0-10" }, times: 2 });
  await u.clock.advance(60_000);
  assert.deepEqual(u.patches().slice(1).map((p) => p.at - u.patches()[1].at), [0, 0, 0]);
  assert.equal(u.mj.logText, "0123456789abc");
  await finish(u);
});

Deno.test("C8.4 a hanging final PUT ends at the final-update deadline, with one clear diagnostic", async () => {
  const t = await setup({}, { finalUpdateDeadlineMs: 60_000 });
  t.mock.fault({ route: "update", hang: true, times: Infinity });
  const started = t.clock.now();
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "failed" });
  assert.equal(t.clock.now() - started, 60_000);
  assert.deepEqual(t.diagnostics, [[
    "The final state could not be delivered within {deadlineMs} ms",
    { jobId: t.mj.id, deadlineMs: 60_000 },
  ]]);
  assert.equal(t.clock.pending, 0);
});

Deno.test("C8.4 a final PUT failing for good is given up within the final-update deadline", async () => {
  const t = await setup({}, { finalUpdateDeadlineMs: 60_000 }, { client: { maxAttempts: 1 } });
  t.mock.fault({ route: "update", status: 500, times: Infinity });
  const started = t.clock.now();
  const result = await finish(t);
  assert.deepEqual(result, { outcome: "failed" });
  const expected = [0];
  for (let i = 0; expected.at(-1)! < 60_000; i++) {
    expected.push(expected.at(-1)! + backoffMs(i, { min: 1000, max: 60_000, random: () => 0.5 }));
  }
  expected.pop();
  assert.deepEqual(t.finals().map((c) => c.at - started), expected);
  assert.ok(t.clock.now() - started <= 60_000);
  assert.equal(
    t.messages().at(-1),
    "The final state could not be delivered within {deadlineMs} ms",
  );
});

// ---------------------------------------------------------------------------------------------
// The spool's failures (C10.4): what the user reads, what GitLab gets
// ---------------------------------------------------------------------------------------------

Deno.test("C10.4 a spool that cannot be made is named in the diagnostic with its error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spool-test-" });
  try {
    const file = join(dir, "not-a-directory");
    await Deno.writeTextFile(file, "");
    const t = await setup({ traceUpdateInterval: 1 }, { outputLimit: 64 * MiB, spoolDir: file });
    t.log.write(text(2 * MiB));
    await t.clock.runUntil(() => t.log.sentOffset === t.log.size && t.diagnostics.length > 0);
    assert.equal(t.diagnostics.length, 1);
    const [message, properties] = t.diagnostics[0];
    assert.equal(message, "The job log cannot be spooled to {dir}; keeping it in memory");
    assert.deepEqual(Object.keys(properties!), ["jobId", "dir", "error"]);
    assert.equal(properties!.jobId, t.mj.id);
    assert.equal(properties!.dir, file);
    assert.match(String(properties!.error), /not-a-directory/);
    await finish(t);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C10.4 a spool file that cannot be removed is reported with its path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spool-test-" });
  try {
    const t = await setup({ traceUpdateInterval: 1 }, { outputLimit: 64 * MiB, spoolDir: dir });
    t.log.write(text(2 * MiB));
    await t.clock.runUntil(() => t.log.memoryBytes === 0);
    const path = t.log.spoolPath!;
    // Someone replaced the file with a directory that is not empty.
    await Deno.remove(path);
    await Deno.mkdir(path);
    await Deno.writeTextFile(join(path, "x"), "x");
    assert.equal((await finish(t)).outcome, "done");
    assert.equal(t.diagnostics.length, 1);
    const [message, properties] = t.diagnostics[0];
    assert.equal(message, "Cannot remove the job log's spool file {path}");
    assert.equal(properties!.jobId, t.mj.id);
    assert.equal(properties!.path, path);
    assert.equal(typeof properties!.error, "string");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C10.4 C8.5 a spool that cannot be read back: the resync is retried with a diagnostic, the final state goes without the log", async () => {
  const t = await setup(
    { traceUpdateInterval: 1 },
    { outputLimit: 64 * MiB, flushDeadlineMs: 30_000 },
  );
  const bytes = text(2 * MiB + 10);
  t.log.write(bytes);
  await until(() => t.log.sentOffset === t.log.size && t.log.memoryBytes <= MiB);
  // The spool file is damaged (truncated), and GitLab lost the log past 1 MiB + 100 bytes.
  await Deno.truncate(t.log.spoolPath!, 0);
  t.mock.loseTrace(t.mj.id);
  await t.client.patchTrace(t.mj.id, t.mj.token, { offset: 0, data: bytes.subarray(0, MiB + 100) });
  t.log.write("more\n");
  await t.clock.advance(1000);
  await until(() => t.diagnostics.length > 0);
  assert.deepEqual(t.messages(), ["Reading the spooled job log failed, will retry"]);
  const [, properties] = t.diagnostics[0];
  assert.equal(properties!.jobId, t.mj.id);
  assert.equal(properties!.offset, MiB + 100);
  assert.match(String(properties!.error), /spool file ended/);
  // Each round reads the file.
  const result = await finishInSteps(t, 1000);
  assert.deepEqual(result, {
    outcome: "done",
    jobStatus: "success",
    undelivered: 2 * MiB + 15 - (MiB + 100),
  });
  // The checksum of what GitLab holds cannot be read: the whole log's goes instead.
  assert.deepEqual(t.messages().slice(-2), [
    "The job log could not be sent; sending the final state without its last {undelivered} bytes",
    "Reading the spooled job log failed; sending the whole log's checksum",
  ]);
  assert.match(String(t.diagnostics.at(-1)![1]!.error), /spool file ended/);
  assert.deepEqual(t.finals()[0].body!.output, {
    checksum: t.log.checksum,
    bytesize: MiB + 100,
  });
});

/** A running job on an in-process mock and a started JobLog for it on the system clock. */
async function onSystemClock(logOptions: Partial<JobLogOptions>) {
  const mock = new GitLabMock();
  const client = new Client(mock.url, { fetch: mock.fetch });
  const mj = mock.job().script(["true"]).enqueue();
  assert.equal((await client.requestJob(mock.runnerToken)).type, "job");
  const log = new JobLog({
    client,
    clock: systemClock,
    jobId: mj.id,
    token: mj.token,
    random: () => 0,
    ...logOptions,
  });
  log.start();
  return { mock, mj, log };
}

Deno.test("C8.5 on the system clock, a final flush that works at once takes one PATCH and no wait", async () => {
  // Any retry of the final update would wait 1 s (random: 1): the whole finish takes far less.
  const { mock, mj, log } = await onSystemClock({ random: () => 1 });
  log.write("0123456789");
  // The PATCH takes 20 ms of real time: a round bounded by mistake (a deadline of NaN, i.e. 0 ms)
  // would cut it.
  mock.fault({ route: "trace", delayMs: 20, times: 1 });
  const started = Date.now();
  assert.equal((await log.finish({ state: "success" })).outcome, "done");
  assert.ok(Date.now() - started < 900, `${Date.now() - started} ms`);
  assert.deepEqual(mock.requests.filter((r) => r.route === "trace").map((r) => r.status), [202]);
  assert.deepEqual(mock.requests.filter((r) => r.route === "update").map((r) => r.status), [200]);
  assert.equal(mj.logText, "0123456789");
});

Deno.test("C8.4 on the system clock, a final-update deadline past setTimeout's range (30 days) does not fire at once", async () => {
  // 2^31 ms and more overflow `setTimeout` (it fires at once): the deadline must hold.
  const { mock, mj, log } = await onSystemClock({ finalUpdateDeadlineMs: 30 * 24 * 3600 * 1000 });
  log.write("slow GitLab\n");
  // The final PUT takes 30 ms: a deadline that fired at once would abort it.
  mock.fault({ route: "update", delayMs: 30, times: 1 });
  const result = await log.finish({ state: "success" });
  assert.equal(result.outcome, "done");
  assert.equal(mj.state, "success");
  assert.equal(mj.logText, "slow GitLab\n");
});

Deno.test("C8.10 on the system clock, the pump naps an interval and a wake-up past the high-water mark cuts it", async () => {
  const { mock, mj, log } = await onSystemClock({ updateIntervalMs: 60_000 });
  const patches = () => mock.requests.filter((r) => r.route === "trace").length;
  // Below the high-water mark: nothing is sent before the interval (a minute) ends.
  log.write("small\n");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(patches(), 0);
  // Past it, the nap ends at once and the log goes.
  log.write(new Uint8Array(2 * PATCH_LIMIT).fill(0x61));
  const started = Date.now();
  while (patches() === 0 && Date.now() - started < 5000) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.ok(patches() > 0, "the wake-up did not end the nap");
  assert.equal((await log.finish({ state: "success" })).outcome, "done");
  assert.equal(mj.logText.length, 6 + 2 * PATCH_LIMIT);
});
