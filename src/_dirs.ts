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
  lstatSync(path: string): unknown;
  permissions: { querySync(descriptor: { name: "read"; path: string }): { state: string } };
  errors: { NotFound: new (...args: never[]) => Error };
}

const deno = (globalThis as { Deno?: DenoFs }).Deno;

/** Creates `path` and its parents (no error if it exists). */
export async function makeDir(path: string): Promise<void> {
  if (deno?.mkdir) await deno.mkdir(path, { recursive: true });
  else await mkdir(path, { recursive: true });
}

/** Removes `path` and everything under it (no error if it does not exist). */
export async function removeDir(path: string): Promise<void> {
  if (!deno?.remove) return await rm(path, { recursive: true, force: true });
  try {
    await deno.remove(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof deno.errors.NotFound)) throw error;
  }
}

/** Directories whose entries this process may `lstat` (read permission granted), by path. */
const READABLE = new Map<string, boolean>();

/** Whether an `lstat` in `dir` runs without a permission prompt (asked once per directory). */
function mayLstatIn(dir: string): boolean {
  let granted = READABLE.get(dir);
  if (granted === undefined) {
    granted = deno!.permissions.querySync({ name: "read", path: dir }).state === "granted";
    if (READABLE.size >= 16) READABLE.clear(); // a runner has one or two build roots
    READABLE.set(dir, granted);
  }
  return granted;
}

/**
 * Like {@linkcode removeDir}, but on Deno it first looks whether `path` is there, with a
 * synchronous `lstat` (an absent name costs ~15 µs; a removal through the thread pool that ends
 * in `NotFound` costs several times that): for paths that are usually absent, like a job's
 * `<build dir>.tmp`. Where read permission is not granted, it removes without looking.
 */
export async function removeIfPresent(path: string): Promise<void> {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (deno?.lstatSync && cut > 0 && mayLstatIn(path.slice(0, cut))) {
    try {
      deno.lstatSync(path);
    } catch (error) {
      if (error instanceof deno.errors.NotFound) return;
    }
  }
  await removeDir(path);
}
