import { assert, FakeClock } from "./_deps.ts";
import { type Clock, systemClock } from "../src/clock.ts";
import { startTimer } from "../src/_timer.ts";
import { Client } from "../src/api/client.ts";
import { RequestError } from "../src/errors.ts";

const realSleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("startTimer on the system clock fires once after ms, and never after its cancel", async () => {
  let fired = 0;
  startTimer(systemClock, 20, () => fired++);
  let cancelled = 0;
  const cancel = startTimer(systemClock, 20, () => cancelled++);
  assert.equal(cancel(), undefined, "nothing to wait for on the system clock");
  assert.equal(fired, 0, "not at once");
  await realSleep(80);
  assert.equal(fired, 1);
  assert.equal(cancelled, 0);
});

Deno.test("startTimer on the system clock takes NaN and negative delays as 0, like systemClock.sleep", async () => {
  let fired = 0;
  startTimer(systemClock, NaN, () => fired++);
  startTimer(systemClock, -5, () => fired++);
  await realSleep(20);
  assert.equal(fired, 2);
});

Deno.test("startTimer on the system clock: a delay past setTimeout's range does not fire at once", async () => {
  // setTimeout fires delays over 2^31 - 1 ms at once: such a deadline goes through sleep's chunks.
  let fired = 0;
  const cancel = startTimer(systemClock, 2 ** 31, () => fired++);
  await realSleep(30);
  assert.equal(fired, 0);
  await cancel();
});

Deno.test("startTimer on another clock sleeps on it; the cancel aborts the sleep and resolves once it settled", async () => {
  const clock = new FakeClock();
  let fired = 0;
  startTimer(clock, 1000, () => fired++);
  await clock.advance(999);
  assert.equal(fired, 0);
  await clock.advance(1);
  assert.equal(fired, 1);
  const signals: AbortSignal[] = [];
  const spy: Clock = {
    now: () => clock.now(),
    sleep: (ms, signal) => {
      signals.push(signal!);
      return clock.sleep(ms, signal);
    },
  };
  let cancelled = 0;
  const cancel = startTimer(spy, 1000, () => cancelled++);
  const released = cancel();
  assert.ok(released instanceof Promise);
  await released;
  assert.equal(signals.length, 1);
  assert.equal(signals[0].aborted, true);
  await clock.advance(5000);
  assert.equal(cancelled, 0);
});

Deno.test("startTimer on the system clock: deadlines of different delays fire in the order due, each in time", async () => {
  const start = performance.now();
  const fired: [string, number][] = [];
  const at = (name: string) => () => fired.push([name, performance.now() - start]);
  startTimer(systemClock, 400, at("400"));
  startTimer(systemClock, 30, at("30")); // earlier than the one set first: the timer is re-armed
  startTimer(systemClock, 60, at("60"));
  const cancel = startTimer(systemClock, 45, at("45"));
  cancel();
  await realSleep(450);
  assert.deepEqual(fired.map(([name]) => name), ["30", "60", "400"]);
  for (const [name, elapsed] of fired) {
    assert.ok(elapsed >= Number(name) - 1, `${name}: ${elapsed}`);
  }
  assert.ok(fired[1][1] < 300, `60 fired at ${fired[1][1]} ms, not with the one of 400`);
});

Deno.test("startTimer on the system clock: a deadline that one due with it cancels does not fire", async () => {
  let second = 0;
  let cancelSecond = () => {};
  startTimer(systemClock, 10, () => cancelSecond());
  cancelSecond = () => void cancel();
  const cancel = startTimer(systemClock, 10, () => second++);
  await realSleep(40);
  assert.equal(second, 0);
});

/**
 * Runs `body` in a fresh Deno process with `systemClock` and `startTimer` imported, killed after
 * 20 s: its exit code, the signal that ended it, its stdout and stderr.
 */
async function inChild(body: string) {
  const code = `
    import { systemClock } from ${JSON.stringify(new URL("../src/clock.ts", import.meta.url).href)};
    import { startTimer } from ${JSON.stringify(new URL("../src/_timer.ts", import.meta.url).href)};
    ${body}
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const { code: exit, signal, stdout, stderr } = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return { exit, signal, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

Deno.test("startTimer on the system clock: once every deadline is cancelled, nothing keeps the process alive", async () => {
  const { exit, signal, stderr } = await inChild(`
    const cancels = [600_000, 120_000, 3_600_000].map((ms) => startTimer(systemClock, ms, () => {}));
    await new Promise((r) => setTimeout(r, 10));
    for (const cancel of cancels) cancel();
  `);
  assert.equal(signal, null, "still alive after 20 s");
  assert.equal(exit, 0, stderr);
});

Deno.test("startTimer on the system clock: a deadline set after every earlier one was cancelled keeps the process alive until it fires", async () => {
  const { exit, stdout, stderr } = await inChild(`
    const first = startTimer(systemClock, 100, () => {});
    first();
    await new Promise((r) => setTimeout(r, 10));
    startTimer(systemClock, 200, () => console.log("fired"));
  `);
  assert.equal(exit, 0, stderr);
  assert.equal(stdout, "fired\n");
});

Deno.test("startTimer on the system clock: a deadline left when another is cancelled keeps the process alive until it fires", async () => {
  const { exit, stdout, stderr } = await inChild(`
    startTimer(systemClock, 200, () => console.log("fired"));
    const other = startTimer(systemClock, 100_000, () => {});
    await new Promise((r) => setTimeout(r, 10));
    other();
  `);
  assert.equal(exit, 0, stderr);
  assert.equal(stdout, "fired\n");
});

/** A fetch that never answers; it rejects when its signal aborts. */
const silent: typeof fetch = (_input, init) =>
  new Promise((_, reject) => {
    const signal = init?.signal;
    signal?.addEventListener("abort", () => reject(signal.reason));
  });

Deno.test("C8.1 on the system clock, the header deadline ends a call GitLab does not answer", async () => {
  const client = new Client("https://gitlab.example.com", {
    fetch: silent,
    maxAttempts: 1,
    headerTimeoutMs: 30,
  });
  const started = Date.now();
  const e = await client.verify("glrt-plain").catch((x) => x);
  assert.ok(e instanceof RequestError, String(e));
  assert.equal(e.transient, true);
  assert.ok(e.cause instanceof DOMException);
  assert.equal(e.cause.name, "TimeoutError");
  assert.equal(e.cause.message, "No answer within 30 ms");
  assert.ok(Date.now() - started >= 25, "not before the deadline");
});

Deno.test("C8.1 on the system clock, a body that stalls past the idle deadline ends the read; one that flows does not", async () => {
  const enc = new TextEncoder();
  const stalling = () => {
    let sent = false;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return new Promise(() => {});
        sent = true;
        controller.enqueue(enc.encode('{"id": 7, "token": "glcbt-x", '));
      },
    }, { highWaterMark: 0 });
  };
  const client = new Client("https://gitlab.example.com", {
    fetch: () => Promise.resolve(new Response(stalling(), { status: 201 })),
    maxAttempts: 1,
    idleTimeoutMs: 30,
  });
  const result = await client.requestJob("glrt-plain");
  assert.deepEqual(result, {
    type: "job",
    job: {
      ok: false,
      error:
        "the job payload could not be read: Request POST /api/v4/jobs/request failed: No data for 30 ms",
      id: 7,
      token: "glcbt-x",
    },
  });
  // Chunks 20 ms apart, each within the 30 ms idle deadline: the whole payload arrives.
  const parts = ['{"id": 8, ', '"token": "glcbt-y", ', '"steps": []}'];
  const slow = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const part = parts.shift();
      if (part === undefined) return controller.close();
      await realSleep(20);
      controller.enqueue(enc.encode(part));
    },
  }, { highWaterMark: 0 });
  const flowing = new Client("https://gitlab.example.com", {
    fetch: () => Promise.resolve(new Response(slow, { status: 201 })),
    maxAttempts: 1,
    idleTimeoutMs: 30,
  });
  const ok = await flowing.requestJob("glrt-plain");
  assert.equal(ok.type, "job");
  assert.ok(ok.type === "job" && ok.job.ok, JSON.stringify(ok));
});
