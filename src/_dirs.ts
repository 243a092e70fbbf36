/**
 * Making and removing a job's build directory, at hundreds of jobs a second.
 *
 * The usual case is tried first with one synchronous system call: making the job's directory
 * in a parent that exists, removing a directory that is empty (or absent). Such a call takes
 * tens of microseconds, while the same call as an asynchronous operation costs about three times
 * the CPU (a round trip through the runtime's thread pool: `bench/peer.ts`, 7b). Anything else
 * (a missing parent, a tree to remove, an error) falls back to the asynchronous recursive call,
 * which decides the outcome exactly as before: so long calls never block the event loop, and the
 * results are the same. On Deno its own file system calls are used (much cheaper per call than
 * the `node:fs` layer); on Node, `node:fs`.
 *
 * @module
 */

import { mkdirSync, rmdirSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";

interface DenoFs {
  mkdir(path: string, options: { recursive: boolean }): Promise<void>;
  mkdirSync(path: string): void;
  remove(path: string, options: { recursive: boolean }): Promise<void>;
  removeSync(path: string): void;
  errors: { NotFound: new (...args: never[]) => Error };
}

const deno = (globalThis as { Deno?: DenoFs }).Deno;

/** Creates `path` and its parents (no error if it exists). */
export async function makeDir(path: string): Promise<void> {
  try {
    // The parent exists (the runner's build directory): one mkdir.
    if (deno?.mkdirSync) deno.mkdirSync(path);
    else mkdirSync(path);
    return;
  } catch {
    // No parent yet, or it exists already, or it cannot be made: the recursive call decides.
  }
  if (deno?.mkdir) await deno.mkdir(path, { recursive: true });
  else await mkdir(path, { recursive: true });
}

/** Removes `path` and everything under it (no error if it does not exist). */
export async function removeDir(path: string): Promise<void> {
  try {
    // Nothing in it (a job that wrote no file), or not there: one rmdir (Deno: or unlink).
    if (deno?.removeSync) deno.removeSync(path);
    else rmdirSync(path);
    return;
  } catch (error) {
    if (isNotFound(error)) return;
    // Not empty, not a directory, or not removable: the recursive call decides.
  }
  if (!deno?.remove) return await rm(path, { recursive: true, force: true });
  try {
    await deno.remove(path, { recursive: true });
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}

function isNotFound(error: unknown): boolean {
  return deno?.errors ? error instanceof deno.errors.NotFound : (error as { code?: unknown })
    ?.code === "ENOENT";
}
