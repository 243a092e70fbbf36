/**
 * The generic retry policy of the official runner's `retry_requester.go` (PROTOCOL §7): every
 * HTTP call is retried on 408, 429, 500, 502, 503, 504 and any status ≥ 512, at most 5 attempts;
 * the wait comes from `RateLimit-ResetTime` (an HTTP date), else `Retry-After` (whole seconds),
 * else exponential backoff from 100 ms to 60 s with jitter. Transport errors are not retried
 * here: they go to the caller, whose own policy decides.
 *
 * @module
 */

import type { Clock } from "../clock.ts";

/** Options of {@linkcode fetchWithRetry}. */
export interface RetryOptions {
  /** Where waits happen. */
  clock: Clock;
  /** Random numbers in [0, 1) for the jitter. */
  random?: () => number;
  /** Attempts in total, the first included (default 5). */
  maxAttempts?: number;
  /** First backoff step in milliseconds (default 100). */
  minBackoffMs?: number;
  /** Largest wait in milliseconds (default 60 000). */
  maxBackoffMs?: number;
  /** Aborts the waits between attempts. */
  signal?: AbortSignal;
}

/** Whether the generic policy retries a response with this status. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 500 || status === 502 ||
    status === 503 || status === 504 || status >= 512;
}

/**
 * The wait a rate-limited or failed response asks for, in milliseconds, or undefined when it
 * names none. `RateLimit-ResetTime` (RFC 1123 date) wins over `Retry-After` (integer seconds;
 * the date form is not read, like the official runner).
 */
export function requestedWaitMs(headers: Headers, now: number): number | undefined {
  const reset = headers.get("ratelimit-resettime");
  if (reset) {
    const at = Date.parse(reset);
    if (Number.isFinite(at)) return Math.max(0, at - now);
  }
  const after = headers.get("retry-after");
  if (after && /^\s*\d+\s*$/.test(after)) return Number.parseInt(after, 10) * 1000;
  return undefined;
}

/**
 * Exponential backoff with jitter: step `attempt` (0-based) waits between half and all of
 * `min * 2^attempt`, capped at `max`.
 */
export function backoffMs(
  attempt: number,
  options: { min?: number; max?: number; random?: () => number } = {},
): number {
  const min = options.min ?? 100;
  const max = options.max ?? 60_000;
  const full = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const r = (options.random ?? Math.random)();
  return Math.round(full / 2 + (full / 2) * r);
}

/**
 * Runs `attempt()` until it answers with a status the policy does not retry or the attempts run
 * out; returns the last response. Bodies of the discarded responses are cancelled.
 */
export async function fetchWithRetry(
  attempt: () => Promise<Response>,
  options: RetryOptions,
): Promise<Response> {
  const max = Math.max(1, options.maxAttempts ?? 5);
  for (let i = 0;; i++) {
    const response = await attempt();
    if (!isRetryableStatus(response.status) || i + 1 >= max) return response;
    const wait = requestedWaitMs(response.headers, options.clock.now()) ??
      backoffMs(i, {
        min: options.minBackoffMs,
        max: options.maxBackoffMs,
        random: options.random,
      });
    await response.body?.cancel().catch(() => {});
    await options.clock.sleep(Math.min(wait, options.maxBackoffMs ?? 60_000), options.signal);
  }
}
