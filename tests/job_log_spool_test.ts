// The job log's spool (CONFORMANCE C10.4, C10.5): memory holds what GitLab has not taken plus
// about one block; acknowledged blocks go to a temporary file outside the build directory, read
// back for a 416 below the window, and removed when the log ends.
import { concat } from "./_data.ts";
import { assert, FakeClock } from "./_deps.ts";
import { dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { stat } from "node:fs/promises";
import { Client } from "../src/api/client.ts";
import { Spool } from "../src/log/_spool.ts";
import { JobLog, type JobLogOptions, PATCH_LIMIT } from "../src/log/job_log.ts";
import { Crc32 } from "../src/log/crc32.ts";
import { GitLabMock, type MockOptions } from "../src/mock/mod.ts";

const MiB = 1024 * 1024;
const enc = new TextEncoder();

/** A running job on the mock and a JobLog for it, with its diagnostics. */
async function setup(
  mockOptions: Partial<MockOptions> = {},
  logOptions: Partial<JobLogOptions> = {},
  wrapFetch: (fetch: typeof globalThis.fetch) => typeof globalThis.fetch = (f) => f,
) {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, traceUpdateInterval: 1, ...mockOptions });
  const client = new Client(mock.url, { fetch: wrapFetch(mock.fetch), clock, random: () => 0.5 });
  const mj = mock.job().script(["true"]).enqueue();
  const got = await client.requestJob(mock.runnerToken);
  assert.equal(got.type, "job");
  const diagnostics: string[] = [];
  const log = new JobLog({
    client,
    clock,
    jobId: mj.id,
    token: mj.token,
    random: () => 0.5,
    onDiagnostic: (message) => diagnostics.push(message),
    ...logOptions,
  });
  log.start();
  return { clock, mock, client, mj, log, diagnostics };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** 1 MiB of log text that says which chunk it is (so that misplaced bytes show). */
function chunk(i: number, size = MiB): Uint8Array {
  const line = `chunk ${
    String(i).padStart(5, "0")
  } of the job's output, abcdefghijklmnopqrstuvwxyz\n`;
  const text = line.repeat(Math.ceil(size / line.length)).slice(0, size);
  return enc.encode(text);
}

/** Writes `chunks` through the log's stream while the fake clock runs; calls `sample` between. */
async function writeAll(t: Setup, chunks: number, sample: () => void = () => {}) {
  const writer = t.log.writable.getWriter();
  const crc = new Crc32();
  let done = false;
  const writing = (async () => {
    for (let i = 0; i < chunks; i++) {
      const c = chunk(i);
      crc.update(c);
      await writer.write(c);
      sample();
    }
    writer.releaseLock();
    done = true;
  })();
  await t.clock.runUntil(() => done);
  await writing;
  return crc;
}

/** Runs until GitLab acknowledged everything written. */
async function settled(t: Setup) {
  await t.clock.runUntil(
    () => t.log.sentOffset === t.log.size && t.log.memoryBytes <= 2 * MiB,
    600_000,
  );
}

/**
 * Runs finish() while advancing the fake clock in steps of a second with some real time between
 * them: the final update may read the spool file, and runUntil could jump to the final-update
 * deadline while a read is under way (seen under load).
 */
async function finish(t: Setup, final: Parameters<JobLog["finish"]>[0] = { state: "success" }) {
  let result: Awaited<ReturnType<JobLog["finish"]>> | undefined;
  const p = t.log.finish(final).then((r) => (result = r));
  for (let i = 0; i < 600 && result === undefined; i++) {
    await t.clock.advance(1000);
    await new Promise((r) => setTimeout(r, 5));
  }
  // Ten minutes of fake time at most, then fail rather than wait forever.
  if (result === undefined) assert.fail("finish() did not end within 10 min of fake time");
  await p;
  return result!;
}

/** Whether a path exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Asserts two byte arrays are equal, naming the first difference. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array) {
  assert.equal(actual.byteLength, expected.byteLength, "length");
  for (let i = 0; i < actual.byteLength; i++) {
    if (actual[i] !== expected[i]) assert.fail(`The bytes differ first at ${i}`);
  }
}

Deno.test("C10.4 64 MiB through the stream with a 100 MiB limit: memory holds the unsent bytes plus one patch and a block", async () => {
  const t = await setup({}, { outputLimit: 100 * MiB });
  let worst = -Infinity;
  let peak = 0;
  const sample = () => {
    const unsent = t.log.size - t.log.sentOffset;
    worst = Math.max(worst, t.log.memoryBytes - unsent);
    peak = Math.max(peak, t.log.memoryBytes);
  };
  const crc = await writeAll(t, 64, sample);
  await settled(t);
  sample();
  const spool = t.log.spoolPath;
  assert.ok(spool !== undefined, "a spool file was made");
  assert.ok(worst <= PATCH_LIMIT + MiB, `${worst} bytes held beyond the unsent ones`);
  // The window does not grow with the output: the 8 MiB high-water mark, one patch, a block.
  assert.ok(peak <= 11 * MiB, `${peak} bytes held at most`);
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assert.equal(t.mj.logSize, 64 * MiB);
  assert.equal(t.mj.logChecksum, `crc32:${crc.hex()}`);
  assert.equal(t.mj.state, "success");
  assert.equal(await exists(spool), false, "the spool is removed");
});

Deno.test("C10.4 C4.2 a 416 with a Range below the window in memory resyncs from the spool, byte for byte", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB });
  const written: Uint8Array[] = [];
  for (let i = 0; i < 6; i++) written.push(chunk(i));
  const writer = t.log.writable.getWriter();
  for (const c of written) await writer.write(c);
  await settled(t);
  const n = 1.5 * MiB + 123;
  assert.ok(t.log.memoryBytes < t.log.size - n, "the resync point is only in the spool");
  // GitLab lost everything past n (say, Redis chunks): its next answer is 416 Range: 0-n.
  const kept = t.mj.log.slice(0, n);
  t.mock.loseTrace(t.mj.id);
  const put = await t.client.patchTrace(t.mj.id, t.mj.token, { offset: 0, data: kept });
  assert.equal(put.outcome, "accepted");
  assert.equal(t.mj.logSize, n);
  written.push(chunk(6, 1000));
  await writer.write(written[6]);
  writer.releaseLock();
  await t.clock.runUntil(() => t.log.sentOffset === t.log.size);
  assert.equal(t.mj.logSize, t.log.size); // resent from n, out of the spool
  // A lying 416 below the window too: the bytes are read back from the spool and GitLab
  // answers with its real size.
  t.mock.fault({ route: "trace", status: 416, headers: { Range: `0-${MiB + 7}` }, times: 1 });
  written.push(chunk(7, 3000));
  t.log.write(written[7]);
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assertSameBytes(t.mj.log, concat(written));
  assert.equal(t.mj.state, "success");
  assert.deepEqual(t.diagnostics.filter((d) => /spool/.test(d)), []);
});

Deno.test("C10.4 C8.8 PATCHes applied whose answers were lost lose nothing with the spool", async () => {
  const t = await setup({}, { outputLimit: 64 * MiB });
  const writer = t.log.writable.getWriter();
  const written: Uint8Array[] = [];
  for (let i = 0; i < 10; i++) {
    if (i % 3 === 1) t.mock.fault({ route: "trace", drop: "after", times: 2 });
    written.push(chunk(i, MiB + 4097 * i));
    const w = writer.write(written[i]);
    await t.clock.runUntil(() => t.log.sentOffset === t.log.size);
    await w;
  }
  writer.releaseLock();
  const spool = t.log.spoolPath;
  assert.ok(spool !== undefined && await exists(spool), "the spool holds the acknowledged blocks");
  assert.ok(t.log.memoryBytes <= 2 * MiB, `${t.log.memoryBytes} bytes in memory`);
  // The last patch and the final PUT are applied and their answers lost too.
  t.mock.fault({ route: "trace", drop: "after", times: 1 });
  t.mock.fault({ route: "update", drop: "after", times: 1 });
  written.push(chunk(10, 5000));
  t.log.write(written[10]);
  const result = await finish(t);
  assert.equal(result.outcome, "done");
  assertSameBytes(t.mj.log, concat(written));
  assert.equal(t.mj.state, "success");
  assert.equal(await exists(spool), false);
});

Deno.test("C10.4 C10.5 the spool is outside the build directory, mode 0600, and gone after finish and after stop", async () => {
  // Default: the OS temp directory (the runner's build directories are elsewhere).
  const a = await setup({}, { outputLimit: 64 * MiB });
  await writeAll(a, 3);
  await settled(a);
  const pathA = a.log.spoolPath!;
  assert.ok(pathA !== undefined);
  assert.equal(dirname(pathA), tmpdir());
  assert.equal((await stat(pathA)).mode & 0o777, 0o600);
  assert.equal((await finish(a)).outcome, "done");
  assert.equal(await exists(pathA), false);

  // Given a directory, there; stop() (after a cancel) removes it too.
  const dir = await Deno.makeTempDir({ prefix: "spool-test-" });
  const buildDir = await Deno.makeTempDir({ prefix: "builds-test-" });
  try {
    const b = await setup({}, { outputLimit: 64 * MiB, spoolDir: dir });
    await writeAll(b, 3);
    await settled(b);
    const pathB = b.log.spoolPath!;
    assert.equal(dirname(pathB), dir);
    assert.ok(!pathB.startsWith(buildDir));
    assert.equal((await stat(pathB)).mode & 0o777, 0o600);
    await b.log.stop();
    assert.equal(await exists(pathB), false);

    // And when the final state cannot be delivered at all.
    const c = await setup({}, {
      outputLimit: 64 * MiB,
      spoolDir: dir,
      finalUpdateDeadlineMs: 60_000,
    });
    await writeAll(c, 3);
    await settled(c);
    const pathC = c.log.spoolPath!;
    assert.ok(await exists(pathC));
    c.mock.fault({ route: "update", status: 500, times: Infinity });
    assert.equal((await finish(c)).outcome, "failed");
    assert.equal(await exists(pathC), false);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(buildDir, { recursive: true });
  }
});

Deno.test("C10.4 a spool that cannot be written keeps the bytes in memory with a diagnostic; the log arrives whole", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spool-test-" });
  try {
    // A "directory" that is a file: no spool can be made there (also as root).
    const file = join(dir, "not-a-directory");
    await Deno.writeTextFile(file, "");
    const t = await setup({}, { outputLimit: 64 * MiB, spoolDir: file });
    const written: Uint8Array[] = [];
    const writer = t.log.writable.getWriter();
    for (let i = 0; i < 5; i++) {
      written.push(chunk(i));
      await writer.write(written[i]);
    }
    writer.releaseLock();
    await t.clock.runUntil(() => t.log.sentOffset === t.log.size);
    assert.equal(t.log.spoolPath, undefined);
    assert.equal(t.diagnostics.filter((d) => /cannot be spooled/.test(d)).length, 1);
    assert.ok(t.log.memoryBytes >= t.log.size, "everything stays in memory");
    // A resync from 0 still works from memory.
    t.mock.loseTrace(t.mj.id);
    written.push(chunk(5, 100));
    t.log.write(written[5]);
    await t.clock.runUntil(() => t.log.sentOffset === t.log.size, 60_000);
    assert.equal(t.mj.logSize, t.log.size);
    assertSameBytes(t.log.bytes(), concat(written).subarray(0, t.log.size));
    const result = await finish(t);
    assert.equal(result.outcome, "done");
    assertSameBytes(t.mj.log, concat(written));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Holds the spool's writes at `position` until `release()` (the disk as slow as it likes);
 * `restore()` puts the real write back.
 */
function holdSpoolWrites(position: number) {
  const original = Spool.prototype.write;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let waiting = 0;
  let done = 0;
  Spool.prototype.write = async function (at: number, bytes: Uint8Array) {
    if (at === position) {
      waiting++;
      await held;
    }
    await original.call(this, at, bytes);
    if (at === position) done++;
  };
  return {
    release,
    get waiting() {
      return waiting;
    },
    get done() {
      return done;
    },
    restore: () => void (Spool.prototype.write = original),
  };
}

/** The first offset of a PATCH's `Content-Range`, or undefined for other requests. */
function patchStart(input: RequestInfo | URL, init?: RequestInit): number | undefined {
  if ((init?.method ?? (input instanceof Request ? input.method : "GET")) !== "PATCH") return;
  const range = new Headers(init?.headers ?? (input instanceof Request ? input.headers : []))
    .get("content-range");
  return range === null ? undefined : Number(range.split("-")[0]);
}

Deno.test("C10.4 the next patch goes while the block GitLab took is still being written to the spool", async () => {
  const hold = holdSpoolWrites(0);
  try {
    const t = await setup({}, { outputLimit: 64 * MiB });
    const written = [chunk(0), chunk(1), chunk(2)];
    for (const c of written) t.log.write(c); // 3 MiB: over the high-water mark, sent at once
    // The first block is acknowledged and its spool write hangs: the second patch still goes.
    const second = await t.clock.runUntil(
      () => hold.waiting === 1 && t.mj.logSize >= 2 * MiB,
      60_000,
    );
    assert.equal(hold.waiting, 1, "the first block's spool write started");
    assert.equal(hold.done, 0, "and has not ended");
    assert.ok(second, "the second patch waited for the disk");
    // No more than one block waits for the disk: the third patch waits for the first write.
    await t.clock.advance(10_000);
    assert.equal(t.mj.logSize, 2 * MiB, "a second block went while the first was not spooled");
    hold.release();
    await t.clock.runUntil(() => t.log.sentOffset === t.log.size, 60_000);
    assert.equal(hold.done, 1);
    const result = await finish(t);
    assert.equal(result.outcome, "done");
    assertSameBytes(t.mj.log, concat(written));
    assert.deepEqual(t.diagnostics, []);
  } finally {
    hold.restore();
  }
});

Deno.test("C10.4 C4.2 a 416 below a block being spooled waits for the spool: a reused block is never sent", async () => {
  const hold = holdSpoolWrites(0);
  const n = MiB / 2 + 77;
  let answered416 = false;
  let recycled!: () => void;
  const reused = new Promise<void>((resolve) => (recycled = resolve));
  let t!: Setup;
  const wrap = (fetch: typeof globalThis.fetch): typeof globalThis.fetch => async (input, init) => {
    const start = patchStart(input, init);
    if (start === MiB && !answered416) {
      // GitLab lost everything past n (Redis chunks) before it got the second patch: 416 0-n.
      t.mock.loseTrace(t.mj.id);
      const direct = new Client(t.mock.url, { fetch: t.mock.fetch, clock: t.clock });
      const put = await direct.patchTrace(t.mj.id, t.mj.token, {
        offset: 0,
        data: written.subarray(0, n),
      });
      assert.equal(put.outcome, "accepted");
      const response = await fetch(input, init);
      answered416 = response.status === 416;
      return response;
    }
    // The resend from n is held until the first block's memory was reused for new output.
    if (start === n) await reused;
    return await fetch(input, init);
  };
  const written = concat([chunk(0), chunk(1)]);
  try {
    t = await setup({}, { outputLimit: 64 * MiB }, wrap);
    t.log.write(written); // 2 MiB: sent at once
    await t.clock.runUntil(() => answered416 && hold.waiting === 1, 60_000);
    assert.ok(answered416, "the second patch was answered 416");
    hold.release();
    // The first block's write ends and its memory is free for the next block of output.
    assert.ok(await t.clock.runUntil(() => hold.done === 1, 60_000));
    const more = chunk(2);
    t.log.write(more);
    recycled();
    await t.clock.runUntil(() => t.log.sentOffset === t.log.size, 60_000);
    const result = await finish(t);
    assert.equal(result.outcome, "done");
    assertSameBytes(t.mj.log, concat([written, more]));
  } finally {
    hold.restore();
    recycled();
  }
});
