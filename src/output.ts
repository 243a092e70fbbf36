/**
 * `outputln`: write a line to the log of the job whose code is running, found through
 * `AsyncLocalStorage`, so handlers and the libraries they call need no log object in hand.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";

/** Something that takes log bytes. */
export interface LogSink {
  /** Appends to the log. */
  write(data: Uint8Array | string): void;
}

const storage = new AsyncLocalStorage<LogSink>();

/** Runs `fn` with `sink` as the current job log. */
export function withJobLog<T>(sink: LogSink, fn: () => T): T {
  return storage.run(sink, fn);
}

/** The current job's log sink, if code runs inside a job. */
export function currentJobLog(): LogSink | undefined {
  return storage.getStore();
}

function format(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.stack ?? value.message;
  try {
    return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
  } catch {
    return String(value);
  }
}

/**
 * Writes its arguments, joined by spaces, as one line to the current job's log. Outside a
 * job it does nothing: output never reaches another job's log.
 *
 * @example
 * ```ts
 * import { outputln } from "@x/gitlab-runner";
 * outputln("Flashing board", 3); // goes to the running job's log; here, outside a job, nowhere
 * ```
 */
export function outputln(...values: unknown[]): void {
  storage.getStore()?.write(values.map(format).join(" ") + "\n");
}
