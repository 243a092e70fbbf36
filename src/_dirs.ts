/**
 * Making and removing a job's build directory. On Deno its own file system calls are used:
 * they are much cheaper per call than the `node:fs` layer, which matters at hundreds of jobs a
 * second; on Node, `node:fs/promises`.
 *
 * @module
 */

import { mkdir, rm } from "node:fs/promises";

interface DenoFs {
  mkdir(path: string, options: { recursive: boolean }): Promise<void>;
  remove(path: string, options: { recursive: boolean }): Promise<void>;
  errors: { NotFound: new (...args: never[]) => Error };
}

const deno = (globalThis as { Deno?: DenoFs }).Deno;

async function makeDirNow(path: string): Promise<void> {
  if (deno?.mkdir) await deno.mkdir(path, { recursive: true });
  else await mkdir(path, { recursive: true });
}

async function removeDirNow(path: string): Promise<void> {
  if (!deno?.remove) return await rm(path, { recursive: true, force: true });
  try {
    await deno.remove(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof deno.errors.NotFound)) throw error;
  }
}

/**
 * The calls {@linkcode makeDir} and {@linkcode removeDir} make. Tests replace them to play a file
 * system that hangs (tests/dirs_test.ts); nothing else does.
 */
export const dirCalls: {
  make: (path: string) => Promise<void>;
  remove: (path: string) => Promise<void>;
} = { make: makeDirNow, remove: removeDirNow };

/** Creates `path` and its parents (no error if it exists). */
export function makeDir(path: string): Promise<void> {
  return dirCalls.make(path);
}

/** Removes `path` and everything under it (no error if it does not exist). */
export function removeDir(path: string): Promise<void> {
  return dirCalls.remove(path);
}
