import { assert, FakeClock } from "./_deps.ts";
import {
  backoffMs,
  fetchWithRetry,
  isRetryableStatus,
  requestedWaitMs,
  retry,
} from "../src/api/retry.ts";

function responder(statuses: Array<number | [number, Record<string, string>]>) {
  const calls: number[] = [];
  let i = 0;
  const attempt = () => {
    const entry = statuses[Math.min(i++, statuses.length - 1)];
    const [status, headers] = Array.isArray(entry) ? entry : [entry, {}];
    calls.push(status);
    return Promise.resolve(new Response(status === 204 ? null : "x", { status, headers }));
  };
  return { attempt, calls };
}

Deno.test("C1.6 retryable statuses follow the official retry requester", () => {
  for (const s of [408, 429, 500, 502, 503, 504, 512, 599]) {
    assert.equal(isRetryableStatus(s), true, `${s}`);
  }
  for (const s of [200, 201, 204, 400, 401, 403, 404, 409, 416, 501, 505, 511]) {
    assert.equal(isRetryableStatus(s), false, `${s}`);
  }
});

Deno.test("C1.6 Retry-After in whole seconds is the wait; its date form is ignored", () => {
  assert.equal(requestedWaitMs(new Headers({ "retry-after": "7" }), 0), 7000);
  assert.equal(
    requestedWaitMs(new Headers({ "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT" }), 0),
    undefined,
  );
  assert.equal(requestedWaitMs(new Headers(), 0), undefined);
});

Deno.test("C1.6 RateLimit-ResetTime wins over Retry-After", () => {
  const now = Date.UTC(2026, 0, 1, 0, 0, 0);
  const headers = new Headers({
    "RateLimit-ResetTime": new Date(now + 12_000).toUTCString(),
    "Retry-After": "60",
  });
  assert.equal(requestedWaitMs(headers, now), 12_000);
});

Deno.test("C1.6 backoff doubles from 100 ms with jitter and stops at 60 s", () => {
  assert.equal(backoffMs(0, { random: () => 0 }), 50);
  assert.equal(backoffMs(0, { random: () => 1 }), 100);
  assert.equal(backoffMs(3, { random: () => 1 }), 800);
  assert.equal(backoffMs(20, { random: () => 1 }), 60_000);
  assert.equal(backoffMs(20, { random: () => 0 }), 30_000);
});

Deno.test("C1.6 a 429 with Retry-After waits that long, then succeeds", async () => {
  const clock = new FakeClock();
  const { attempt, calls } = responder([[429, { "retry-after": "5" }], 200]);
  let done = false;
  const p = fetchWithRetry(attempt, { clock }).then((r) => {
    done = true;
    return r;
  });
  await clock.advance(4_999);
  assert.equal(done, false);
  await clock.advance(1);
  assert.equal((await p).status, 200);
  assert.deepEqual(calls, [429, 200]);
});

Deno.test("C1.6 5xx is retried at most 5 attempts in all and the last answer is returned", async () => {
  const clock = new FakeClock();
  const { attempt, calls } = responder([500, 502, 503, 504, 500, 200]);
  const p = fetchWithRetry(attempt, { clock, random: () => 1 });
  await clock.runUntil(() => calls.length === 5);
  const response = await p;
  assert.equal(response.status, 500);
  assert.deepEqual(calls, [500, 502, 503, 504, 500]);
  // 100 + 200 + 400 + 800 ms of backoff
  assert.equal(clock.now() - Date.UTC(2026, 0, 1), 1500);
});

Deno.test("C1.6 a 501 and a 409 are not retried", async () => {
  const clock = new FakeClock();
  for (const status of [501, 409]) {
    const { attempt, calls } = responder([status, 200]);
    assert.equal((await fetchWithRetry(attempt, { clock })).status, status);
    assert.equal(calls.length, 1);
  }
});

Deno.test("C1.6 transport errors are not retried by the generic policy", async () => {
  const clock = new FakeClock();
  let n = 0;
  await assert.rejects(
    fetchWithRetry(() => {
      n++;
      return Promise.reject(new TypeError("connection reset"));
    }, { clock }),
    TypeError,
  );
  assert.equal(n, 1);
});

// ---------------------------------------------------------------------------------------------
// retry(): attempts, deadline, stop and abort (each assertion below kills a mutant that
// survived the tests above, see docs/MUTATION.md)
// ---------------------------------------------------------------------------------------------

/** An attempt that always fails with a fresh error, recording when it ran. */
function failing(clock: FakeClock) {
  const at: number[] = [];
  const errors: Error[] = [];
  const attempt = (n: number) => {
    at.push(clock.now() - Date.UTC(2026, 0, 1));
    const error = new Error(`attempt ${n}`);
    errors.push(error);
    return Promise.reject(error);
  };
  return { attempt, at, errors };
}

Deno.test("C1.6 retry makes 5 attempts by default and as many as asked, then rejects with the last error", async () => {
  for (const [attempts, expected] of [[undefined, 5], [3, 3], [1, 1], [0, 1]] as const) {
    const clock = new FakeClock();
    const f = failing(clock);
    const p = retry(f.attempt, { clock, attempts, retryable: () => true, random: () => 1 });
    const settled = p.catch((error) => error);
    await clock.runUntil(() => f.at.length > expected || clock.pending === 0);
    assert.equal(f.at.length, expected, `attempts ${attempts}`);
    assert.equal(await settled, f.errors.at(-1), `attempts ${attempts}`);
  }
});

Deno.test("C1.6 retry waits what retryable says, or the backoff, capped at maxBackoffMs", async () => {
  const clock = new FakeClock();
  const f = failing(clock);
  const waits: Array<[string, number, number]> = [];
  const p = retry(f.attempt, {
    clock,
    attempts: 4,
    maxBackoffMs: 5_000,
    random: () => 1,
    retryable: (_error, n) => n === 0 ? 700 : n === 1 ? true : 9_000,
    onRetry: (error, waitMs, n) => waits.push([(error as Error).message, waitMs, n]),
  }).catch((error) => error);
  await clock.runUntil(() => f.at.length === 4);
  assert.equal(await p, f.errors[3]);
  assert.deepEqual(waits, [["attempt 0", 700, 0], ["attempt 1", 200, 1], ["attempt 2", 5_000, 2]]);
  assert.deepEqual(f.at, [0, 700, 900, 5_900]);
});

Deno.test("C8.4 retry starts no attempt after its deadline; one exactly at the deadline runs", async () => {
  const clock = new FakeClock();
  const f = failing(clock);
  const p = retry(f.attempt, {
    clock,
    attempts: Infinity,
    deadlineMs: 1_000,
    retryable: () => 500,
  }).catch((error) => error);
  await clock.runUntil(() => f.at.length === 3);
  assert.equal(await p, f.errors[2], "the last attempt's error");
  assert.deepEqual(f.at, [0, 500, 1_000]);
  assert.equal(clock.now() - Date.UTC(2026, 0, 1), 1_000, "no wait that would end past it");
  // Without a deadline the same policy keeps going.
  const g = failing(clock);
  const stop = new AbortController();
  const q = retry(g.attempt, { clock, attempts: Infinity, retryable: () => 500, stop: stop.signal })
    .catch((error) => error);
  await clock.runUntil(() => g.at.length === 10);
  stop.abort();
  assert.equal(await q, g.errors[9]);
});

Deno.test("C1.6 retry: a stop during a wait ends it at once with the last error, no attempt after", async () => {
  for (const withSignal of [false, true]) {
    const clock = new FakeClock();
    const f = failing(clock);
    const stop = new AbortController();
    const abort = new AbortController();
    const p = retry(f.attempt, {
      clock,
      retryable: () => 60_000,
      stop: stop.signal,
      signal: withSignal ? abort.signal : undefined,
    }).catch((error) => error);
    await clock.runUntil(() => clock.pending > 0);
    stop.abort(new Error("stopped"));
    assert.equal(await p, f.errors[0], `signal too: ${withSignal}`);
    assert.equal(f.at.length, 1);
    assert.equal(clock.now() - Date.UTC(2026, 0, 1), 0, "the wait was cut short");
  }
});

Deno.test("C1.6 retry: an abort during a wait rejects with the signal's reason", async () => {
  for (const withStop of [false, true]) {
    const clock = new FakeClock();
    const f = failing(clock);
    const stop = new AbortController();
    const abort = new AbortController();
    const p = retry(f.attempt, {
      clock,
      retryable: () => 60_000,
      signal: abort.signal,
      stop: withStop ? stop.signal : undefined,
    }).catch((error) => error);
    await clock.runUntil(() => clock.pending > 0);
    const reason = new Error("aborted");
    abort.abort(reason);
    assert.equal(await p, reason, `stop too: ${withStop}`);
    assert.equal(f.at.length, 1);
    assert.equal(clock.now() - Date.UTC(2026, 0, 1), 0);
  }
});

Deno.test("C1.6 retry: an error retryable says false for is not retried", async () => {
  const clock = new FakeClock();
  const f = failing(clock);
  assert.equal(
    await retry(f.attempt, { clock, retryable: () => false }).catch((e) => e),
    f.errors[0],
  );
  assert.equal(f.at.length, 1);
});

// ---------------------------------------------------------------------------------------------
// requestedWaitMs and fetchWithRetry edge cases
// ---------------------------------------------------------------------------------------------

Deno.test("C1.6 Retry-After: whole seconds with blanks around them; anything else names no wait", () => {
  const wait = (value: string) => requestedWaitMs(new Headers({ "retry-after": value }), 0);
  assert.equal(wait(" 7 "), 7000);
  assert.equal(wait("7 "), 7000);
  assert.equal(wait(" 7"), 7000);
  assert.equal(wait("12"), 12_000);
  assert.equal(wait("0"), 0);
  for (const bad of ["x7", "7x", "7.5", "-3", "", "seven"]) {
    assert.equal(wait(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("C1.6 an unreadable RateLimit-ResetTime falls back to Retry-After; a past one is 0", () => {
  const now = Date.UTC(2026, 0, 1);
  const headers = new Headers({ "RateLimit-ResetTime": "soon", "Retry-After": "7" });
  assert.equal(requestedWaitMs(headers, now), 7000);
  const past = new Headers({ "RateLimit-ResetTime": new Date(now - 5_000).toUTCString() });
  assert.equal(requestedWaitMs(past, now), 0);
});

Deno.test("C1.6 fetchWithRetry cancels the bodies it discards, tells onRetry, and keeps the last", async () => {
  const clock = new FakeClock();
  const cancelled: number[] = [];
  const retried: Array<[number, number]> = [];
  let n = 0;
  const attempt = () => {
    const i = n++;
    const body = i === 1 ? null : new ReadableStream({
      pull: (c) => c.enqueue(new Uint8Array(1)),
      cancel: () => void cancelled.push(i),
    });
    return Promise.resolve(new Response(body, { status: i < 3 ? 503 : 200 }));
  };
  const p = fetchWithRetry(attempt, {
    clock,
    random: () => 1,
    onRetry: (error, waitMs, k) => {
      assert.ok(!(error instanceof Error));
      retried.push([waitMs, k]);
    },
  });
  await clock.runUntil(() => n === 4);
  const response = await p;
  assert.equal(response.status, 200);
  assert.deepEqual(retried, [[100, 0], [200, 1], [400, 2]]);
  assert.deepEqual(cancelled, [0, 2], "every discarded body (the second had none)");
  await response.body?.cancel();
});

Deno.test("C1.6 fetchWithRetry retries transport errors only when retryError says so", async () => {
  const clock = new FakeClock();
  const reset = new TypeError("connection reset");
  let n = 0;
  const attempt = () => n++ < 2 ? Promise.reject(reset) : Promise.resolve(new Response("ok"));
  const p = fetchWithRetry(attempt, { clock, retryError: (e) => e === reset });
  await clock.runUntil(() => n === 3);
  assert.equal((await p).status, 200);
  // Without retryError the very error is rethrown (not one from calling a missing callback).
  n = 0;
  assert.equal(await fetchWithRetry(attempt, { clock }).catch((e) => e), reset);
  assert.equal(n, 1);
});

Deno.test("C8.4 fetchWithRetry past its deadline returns the last retryable answer", async () => {
  const clock = new FakeClock();
  const { attempt, calls } = responder([[503, { "retry-after": "60" }], 200]);
  const response = await fetchWithRetry(attempt, { clock, deadlineMs: 30_000 });
  assert.equal(response.status, 503);
  assert.deepEqual(calls, [503]);
  // And when stopped during the wait.
  const stop = new AbortController();
  const again = responder([[503, { "retry-after": "60" }], 200]);
  const p = fetchWithRetry(again.attempt, { clock, stop: stop.signal });
  await clock.runUntil(() => clock.pending > 0);
  stop.abort();
  assert.equal((await p).status, 503);
  assert.deepEqual(again.calls, [503]);
});
