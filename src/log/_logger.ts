/**
 * The library's diagnostics, sent through LogTape when the application uses LogTape, and
 * LogTape loaded only then.
 *
 * An unconfigured LogTape drops every record, so a process that does not use it gains nothing
 * from loading it (~1 MB at start; `bench/README.md`). Whether it is in use is seen
 * without importing it: every copy of LogTape keeps its one root logger under
 * `Symbol.for("logtape.rootLogger")` on `globalThis`, made by the first `getLogger()` or
 * `configure()` of any copy (the application's own, from JSR or npm).
 *
 * {@linkcode loadLogTapeIfUsed} is awaited by `RunnerBuilder.build()`, `Runner.run()` and
 * `Runner.requestJob()`, so in the usual order (configure LogTape, then build the runner) each
 * record goes to LogTape at once, in the context it was emitted in (LogTape's implicit contexts
 * and `withConfig()` scopes apply). A record emitted while LogTape is in use but not loaded yet
 * (an application that configured it after the runner started) waits for the load, at most
 * {@linkcode MAX_WAITING} of them; past that they are counted, and the count is logged.
 *
 * @module
 */

import type { Logger as LogTapeLogger } from "@logtape/logtape";
import { lazy } from "../_lazy.ts";

/** A diagnostic's properties, the values of its message template's `{placeholders}`. */
export type Properties = Record<string, unknown>;

/** A LogTape category: `["gitlab-runner", …]`. */
export type Category = readonly [string, ...string[]];

type Level = "debug" | "info" | "warn" | "error";

/** The most records kept while LogTape loads. */
export const MAX_WAITING = 1000;

const ROOT = Symbol.for("logtape.rootLogger");
const load = lazy(() => import("@logtape/logtape"));

let logtape: typeof import("@logtape/logtape") | undefined;
let loading = false;
let waiting: [Logger, Level, string, Properties | undefined][] = [];
let dropped = 0;

/** Whether any copy of LogTape has made its root logger in this process. */
function inUse(): boolean {
  return (globalThis as Record<symbol, unknown>)[ROOT] != null;
}

/**
 * Loads LogTape when the application uses it (no-op otherwise, or when loaded already).
 *
 * @example
 * ```ts
 * import { loadLogTapeIfUsed } from "./_logger.ts";
 * await loadLogTapeIfUsed();
 * ```
 */
export async function loadLogTapeIfUsed(): Promise<void> {
  if (logtape || !inUse()) return;
  logtape = await load();
  flush();
}

/** Loads LogTape for the waiting records; a failed load is tried again by the next record. */
function loadForWaiting(): void {
  if (loading) return;
  loading = true;
  load().then(
    (module) => {
      loading = false;
      logtape = module;
      flush();
    },
    () => (loading = false),
  );
}

function flush(): void {
  const records = waiting;
  waiting = [];
  for (const [logger, level, message, properties] of records) {
    send(logger.real(), level, message, properties);
  }
  if (dropped > 0) {
    const count = dropped;
    dropped = 0;
    send(
      logtape!.getLogger(["gitlab-runner"]),
      "warn",
      "{count} diagnostics were dropped while LogTape was loading",
      { count },
    );
  }
}

function send(
  real: LogTapeLogger,
  level: Level,
  message: string,
  properties: Properties | undefined,
): void {
  if (properties === undefined) real[level](message);
  else real[level](message, properties);
}

/**
 * A logger of one category (and, after {@linkcode Logger.with}, properties added to each of
 * its records), for the library's own diagnostics.
 *
 * @example
 * ```ts
 * import { getLogger } from "./_logger.ts";
 * getLogger(["gitlab-runner", "job"]).with({ jobId: 1 }).warn("{what} failed", { what: "x" });
 * ```
 */
export class Logger {
  readonly #category: Category;
  readonly #properties: Properties | undefined;
  #real: LogTapeLogger | undefined;

  /** A logger of `category`, adding `properties` to each record. */
  constructor(category: Category, properties?: Properties) {
    this.#category = category;
    this.#properties = properties;
  }

  /** The same category, with `properties` added to each record. */
  with(properties: Properties): Logger {
    return new Logger(this.#category, { ...this.#properties, ...properties });
  }

  /** A debug record. */
  debug(message: string, properties?: Properties): void {
    this.#emit("debug", message, properties);
  }

  /** An info record. */
  info(message: string, properties?: Properties): void {
    this.#emit("info", message, properties);
  }

  /** A warning record. */
  warn(message: string, properties?: Properties): void {
    this.#emit("warn", message, properties);
  }

  /** An error record. */
  error(message: string, properties?: Properties): void {
    this.#emit("error", message, properties);
  }

  /** LogTape's logger for this one (LogTape loaded). */
  real(): LogTapeLogger {
    if (this.#real) return this.#real;
    const real = logtape!.getLogger(this.#category);
    return this.#real = this.#properties ? real.with(this.#properties) : real;
  }

  #emit(level: Level, message: string, properties: Properties | undefined): void {
    if (logtape) return send(this.real(), level, message, properties);
    if (!inUse()) return; // no copy of LogTape anywhere: no sink would get it
    if (waiting.length >= MAX_WAITING) dropped++;
    else waiting.push([this, level, message, properties]);
    loadForWaiting();
  }
}

/**
 * The library's logger of `category`.
 *
 * @example
 * ```ts
 * import { getLogger } from "./_logger.ts";
 * getLogger(["gitlab-runner", "runner"]).info("polling");
 * ```
 */
export function getLogger(category: Category): Logger {
  return new Logger(category);
}
