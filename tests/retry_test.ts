import { assert, FakeClock } from "./_deps.ts";
import { backoffMs, fetchWithRetry, isRetryableStatus, requestedWaitMs } from "../src/api/retry.ts";

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
