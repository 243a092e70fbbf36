/**
 * `outputln`: write a line to the log of the job whose code is running, found through
 * `AsyncLocalStorage`, so handlers and the libraries they call need no log object in hand.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";

/** A job's log as code running inside the job reaches it (see {@linkcode currentJobLog}). */
export interface LogSink {
  /** Appends to the log (masked and limited like all output). */
  write(data: Uint8Array | string): void;
  /** A new stream into the same log, with backpressure. */
  readonly writable: WritableStream<Uint8Array>;
}

const storage = new AsyncLocalStorage<LogSink>();

/** Runs `fn` with `sink` as the current job log (used by the runner for each job). */
export function withJobLog<T>(sink: LogSink, fn: () => T): T {
  return storage.run(sink, fn);
}

/**
 * The log of the job whose code is running now, or undefined outside a job.
 *
 * @example
 * ```ts
 * import { currentJobLog } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * strictEqual(currentJobLog(), undefined); // not inside a job here
 * ```
 */
export function currentJobLog(): LogSink | undefined {
  return storage.getStore();
}

/**
 * One value as text: a string as is, an error's stack, an object as JSON, anything else through
 * `String`. Never throws: what neither can render (a cyclic object with no prototype, a revoked
 * proxy, a throwing `toJSON` or `toString`) falls back to {@linkcode fallback}.
 */
function format(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    const text = value instanceof Error
      ? value.stack ?? value.message
      : typeof value === "object" && value !== null
      ? JSON.stringify(value)
      : String(value);
    if (typeof text === "string") return text;
  } catch {
    // JSON.stringify, a getter or the value's own conversion threw: fall back.
  }
  return fallback(value);
}

/**
 * `String(value)`, else its `[object Tag]`, else a fixed text: never throws (also used for the
 * runner's descriptions of whatever a handler threw).
 */
export function fallback(value: unknown): string {
  try {
    return String(value);
  } catch {
    // No usable toString (e.g. a null prototype) or it throws.
  }
  try {
    return Object.prototype.toString.call(value);
  } catch {
    return "[unprintable value]";
  }
}

/**
 * Writes its arguments, joined by spaces, as one line to the current job's log. Outside a
 * job it does nothing: output never reaches another job's log. Strings go as they are, errors
 * as their stack, other objects as JSON; it never throws for what it is given (a value nothing
 * can render, like a cyclic object with no prototype, is written as `[object Object]`).
 *
 * @example Inside a job's step, and outside any job
 * ```ts
 * import { outputln, RunnerBuilder } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { ok } from "node:assert";
 * outputln("Flashing board", 3); // outside a job: nowhere
 * const mock = new GitLabMock();
 * const job = mock.job().enqueue();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .build();
 * await runner.requestJob(() => ({ step: async () => outputln("Flashing board", 3) }));
 * await runner.drain();
 * ok(job.logText.includes("\nFlashing board 3\n"));
 * ```
 */
export function outputln(...values: unknown[]): void {
  storage.getStore()?.write(values.map(format).join(" ") + "\n");
}
