/**
 * Modules loaded on first use, so that an idle runner does not hold code only a job needs.
 *
 * The load runs in the asynchronous context this module was evaluated in (no job's), not in
 * the caller's: Deno keeps the context of a dynamic `import()` alive for the life of the
 * process, so an import first made inside a job's `AsyncLocalStorage` context would keep that
 * job, its log and its buffers, reachable forever.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";

/** Runs a function in the context of the library's evaluation: outside any job's. */
const outsideAnyJob = AsyncLocalStorage.snapshot();

/**
 * A loader that calls `load` once, on its first call, outside the caller's asynchronous
 * context, and gives every call the same promise (a failed load is tried again next time).
 *
 * @example
 * ```ts
 * import { lazy } from "./_lazy.ts";
 * import { strictEqual } from "node:assert";
 * const path = lazy(() => import("node:path"));
 * strictEqual((await path()).posix.join("a", "b"), "a/b");
 * strictEqual(path(), path());
 * ```
 */
export function lazy<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () =>
    loaded ??= outsideAnyJob(load).catch((error) => {
      loaded = undefined;
      throw error;
    });
}
