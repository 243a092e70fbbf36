/**
 * Time as the library sees it: a clock that tells the time and sleeps. Everything that waits
 * (poll intervals, backoff, update intervals, long-poll holds in the mock) goes through a
 * {@linkcode Clock}, so tests can swap in a {@linkcode FakeClock} and run without real time.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/**
 * The source of time for the runner, the API client and the mock.
 *
 * @example Sleep for 10 ms on the system clock
 * ```ts
 * import { systemClock } from "@x/gitlab-runner";
 * import { ok } from "node:assert";
 * const before = systemClock.now();
 * await systemClock.sleep(10);
 * ok(systemClock.now() - before >= 9);
 * ```
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Resolves after `ms` milliseconds; rejects with the signal's reason if the signal aborts
   * first (and at once if it is already aborted).
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** The longest delay `setTimeout` takes (2^31 − 1 ms, ~24.8 days); longer ones fire at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The real clock: `Date.now()` and `setTimeout`. A sleep of any length works: one longer than
 * `setTimeout` can take (~24.8 days; GitLab allows job timeouts of a month) is slept in chunks,
 * each measured against `Date.now()` (CONFORMANCE C8.2).
 *
 * @example
 * ```ts
 * import { systemClock } from "@x/gitlab-runner";
 * await systemClock.sleep(1);
 * ```
 */
export const systemClock: Clock = {
  now(): number {
    return Date.now();
  },
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      let timer: ReturnType<typeof setTimeout>;
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      const done = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      if (ms <= MAX_TIMEOUT_MS || Number.isNaN(ms)) {
        // The usual case: one timer.
        timer = setTimeout(done, Math.max(0, ms || 0));
      } else {
        // Longer than setTimeout can take: chunks, each measured against the wall clock.
        const until = Date.now() + ms;
        const arm = () => {
          const left = until - Date.now();
          if (left <= 0) return done();
          timer = setTimeout(
            arm,
            Number.isFinite(left) ? Math.min(left, MAX_TIMEOUT_MS) : MAX_TIMEOUT_MS,
          );
        };
        arm();
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  },
};

interface FakeTimer {
  at: number;
  seq: number;
  resolve: () => void;
}

/** Lets every pending promise chain (and in-process fetches) run to its next real wait. */
async function settle(): Promise<void> {
  // Promise chains settle within a few immediates; work that waits on the runtime (reading a
  // request body, the file system) needs a turn of the timer phase as well.
  for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => setTimeout(r, 0));
  for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
}

/**
 * A clock for tests: time stands still until {@linkcode FakeClock.advance} moves it, firing
 * due sleepers in time order and letting the program run between them.
 *
 * @example Advance past a sleeper
 * ```ts
 * import { FakeClock } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const clock = new FakeClock();
 * let woke = false;
 * clock.sleep(5000).then(() => (woke = true));
 * await clock.advance(4999);
 * strictEqual(woke, false);
 * await clock.advance(1);
 * strictEqual(woke, true);
 * ```
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: FakeTimer[] = [];

  /** Starts at `start` milliseconds since the epoch (default: 2026-01-01T00:00:00Z). */
  constructor(start: number = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  /** The fake time in milliseconds since the epoch. */
  now(): number {
    return this.#now;
  }

  /** Number of sleepers waiting for time to move. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Resolves when the fake time has moved `ms` past now (see {@linkcode Clock.sleep}). */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const timer: FakeTimer = {
        at: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        reject(abortReason(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#timers.push(timer);
    });
  }

  /**
   * Moves time forward by `ms`, waking sleepers in order of their deadline; between wake-ups
   * the program runs until it waits again.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + Math.max(0, ms);
    await settle();
    for (;;) {
      const next = this.#nextDue(target);
      if (!next) break;
      this.#now = Math.max(this.#now, next.at);
      this.#timers = this.#timers.filter((t) => t !== next);
      next.resolve();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  /**
   * Moves time to the next sleeper's deadline and wakes it (and any others due then).
   * Returns false when nobody sleeps.
   */
  async next(): Promise<boolean> {
    await settle();
    if (this.#timers.length === 0) return false;
    const at = Math.min(...this.#timers.map((t) => t.at));
    await this.advance(at - this.#now);
    return true;
  }

  /**
   * Advances time step by step until `done()` holds, at most `limitMs` of fake time. While no
   * sleeper waits, real time is given (up to `idleMs`, default 5 s) for real work such as file
   * system calls to finish. Returns whether `done()` became true.
   */
  async runUntil(
    done: () => boolean,
    limitMs = 24 * 3600_000,
    options: { idleMs?: number } = {},
  ): Promise<boolean> {
    const end = this.#now + limitMs;
    const idleMs = options.idleMs ?? 5_000;
    await settle();
    while (!done()) {
      if (this.#timers.length === 0) {
        const idleSince = Date.now();
        while (!done() && this.#timers.length === 0 && Date.now() - idleSince < idleMs) {
          await new Promise<void>((r) => setTimeout(r, 1));
        }
        if (done()) break;
        if (this.#timers.length === 0) return false;
      }
      const at = Math.min(...this.#timers.map((t) => t.at));
      if (at > end) return done();
      await this.advance(at - this.#now);
    }
    return true;
  }

  #nextDue(target: number): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#timers) {
      if (t.at > target) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
