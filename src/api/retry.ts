/**
 * The one retry policy every call to GitLab goes through (CONFORMANCE C1.6, C8.1, C8.4):
 * {@linkcode retry} runs an attempt until it succeeds, fails for good, runs out of attempts, or
 * would wait past its deadline; waits come from `RateLimit-ResetTime` / `Retry-After` when GitLab
 * names one, else exponential backoff with jitter; a stop signal ends the retries (the attempt
 * in flight is left to finish) and an abort signal ends everything. All waits are on the
 * injected clock.
 *
 * The statuses retried are those of the official runner's `retry_requester.go` (PROTOCOL §7):
 * 408, 429, 500, 502, 503, 504 and any status ≥ 512. Unlike it, transport errors and missed
 * deadlines are retried too (C8.1: a call that got no answer in time is a transient failure).
 *
 * @module
 */

import type { Clock } from "../clock.ts";

/**
 * How a call is retried (see `CallOptions.retry`).
 *
 * @example Retry for up to an hour, waiting at most a minute between attempts
 * ```ts
 * import { type RetryPolicy, RunnerBuilder } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const policy: RetryPolicy = { attempts: Infinity, deadlineMs: 3_600_000, maxBackoffMs: 60_000 };
 * const mock = new GitLabMock();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .build();
 * strictEqual((await runner.verify({ retry: policy })).valid, true);
 * ```
 */
export interface RetryPolicy {
  /** Attempts in total, the first included (default 5; `Infinity` with a deadline). */
  attempts?: number;
  /**
   * No attempt starts later than this many milliseconds after the first one (default: none;
   * the attempts bound the retries).
   */
  deadlineMs?: number;
  /** First backoff step in milliseconds (default 100). */
  minBackoffMs?: number;
  /** Largest wait in milliseconds (default 60 000). */
  maxBackoffMs?: number;
}

/** Options of {@linkcode retry}. */
export interface RetryOptions extends RetryPolicy {
  /** Where waits happen. */
  clock: Clock;
  /** Random numbers in [0, 1) for the jitter. */
  random?: () => number;
  /** Aborts the attempt in flight and the waits: `retry` rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Ends the retries: no attempt starts after it aborts, a wait is cut short, and `retry`
   * rejects with the last attempt's error. The attempt in flight is not aborted.
   */
  stop?: AbortSignal;
  /**
   * Whether an attempt's error is worth another attempt: `false` to fail at once, `true` to
   * retry after the backoff, or a number of milliseconds to wait (e.g. from `Retry-After`).
   */
  retryable: (error: unknown, attempt: number) => boolean | number;
  /** Called before each wait, with the error and the wait (for diagnostics). */
  onRetry?: (error: unknown, waitMs: number, attempt: number) => void;
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
 * Runs `attempt(n)` (n counts from 0) until it resolves, or its error is not retryable, or the
 * attempts or the deadline run out, or `stop` aborts: then rejects with the last error.
 */
export async function retry<T>(
  attempt: (n: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const max = Math.max(1, options.attempts ?? 5);
  const maxWait = options.maxBackoffMs ?? 60_000;
  const start = options.clock.now();
  const end = options.deadlineMs === undefined ? Infinity : start + options.deadlineMs;
  for (let n = 0;; n++) {
    options.signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (error) {
      options.signal?.throwIfAborted();
      const verdict = options.retryable(error, n);
      if (verdict === false || n + 1 >= max || options.stop?.aborted) throw error;
      const backoff = backoffMs(n, {
        min: options.minBackoffMs,
        max: maxWait,
        random: options.random,
      });
      const wait = Math.min(typeof verdict === "number" ? verdict : backoff, maxWait);
      if (options.clock.now() + wait > end) throw error;
      options.onRetry?.(error, wait, n);
      const signals = [options.signal, options.stop].filter((s): s is AbortSignal => !!s);
      try {
        await options.clock.sleep(
          wait,
          signals.length > 1 ? AbortSignal.any(signals) : signals[0],
        );
      } catch (reason) {
        if (options.signal?.aborted) throw reason;
        throw error;
      }
    }
  }
}

/** A response with a retryable status, thrown inside {@linkcode fetchWithRetry}'s attempts. */
class RetryableResponse {
  constructor(readonly response: Response, readonly waitMs: number | undefined) {}
}

/**
 * Runs `attempt()` until it answers with a status the policy does not retry or the attempts run
 * out; returns the last response. Bodies of the discarded responses are cancelled. Errors of
 * `attempt()` are retried when `retryError` says so (default: never).
 */
export async function fetchWithRetry(
  attempt: () => Promise<Response>,
  options: Omit<RetryOptions, "retryable"> & { retryError?: (error: unknown) => boolean },
): Promise<Response> {
  const max = Math.max(1, options.attempts ?? 5);
  try {
    return await retry(async (n) => {
      const response = await attempt();
      if (!isRetryableStatus(response.status) || n + 1 >= max) return response;
      throw new RetryableResponse(response, requestedWaitMs(response.headers, options.clock.now()));
    }, {
      ...options,
      retryable: (error) => {
        if (error instanceof RetryableResponse) return error.waitMs ?? true;
        return options.retryError?.(error) ?? false;
      },
      onRetry: (error, waitMs, n) => {
        // Another attempt follows: the body of this answer is not needed, free the connection.
        if (error instanceof RetryableResponse) error.response.body?.cancel().catch(() => {});
        options.onRetry?.(error, waitMs, n);
      },
    });
  } catch (error) {
    // Out of time or stopped while a retryable answer was the last one: that answer it is.
    if (error instanceof RetryableResponse) return error.response;
    throw error;
  }
}
