/**
 * The Node twin of the process backend: `node:child_process` with `detached: true`, which on
 * POSIX makes the child a session and process group leader (setsid), so `process.kill(-pid, …)`
 * reaches the whole tree. Internal.
 *
 * @module
 */

import { spawn as spawnChild } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { constants } from "node:os";
import process from "node:process";
import type { Readable } from "node:stream";
import {
  type Backend,
  CommandNotFound,
  isLiveMember,
  isPidEntry,
  type SpawnedProcess,
  type SpawnOptions,
} from "./_backend.ts";

/**
 * A pull-based web stream over a Node stream in paused mode: nothing is read before the reader
 * asks, so Node buffers at most its high-water mark and the child blocks on a full pipe.
 */
function toWeb(readable: Readable): ReadableStream<Uint8Array> {
  let wake: (() => void) | undefined;
  let ended = false;
  let failure: { error: unknown } | undefined;
  const notify = () => wake?.();
  readable.on("readable", notify);
  readable.on("end", () => {
    ended = true;
    notify();
  });
  readable.on("close", notify);
  readable.on("error", (error) => {
    failure = { error };
    notify();
  });
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (true) {
        const chunk = readable.read() as Uint8Array | null;
        if (chunk !== null) {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          return;
        }
        if (failure !== undefined) throw failure.error;
        if (ended || readable.destroyed) {
          controller.close();
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    },
    cancel() {
      readable.destroy();
    },
  }, { highWaterMark: 0 });
}

function isNoSuchProcess(error: unknown): boolean {
  return (error as { code?: unknown })?.code === "ESRCH";
}

function spawn(options: SpawnOptions): Promise<SpawnedProcess> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const exited = new Promise<number>((done) => {
      child.once("exit", (code, signal) => {
        done(code ?? 128 + (signal ? constants.signals[signal] ?? 0 : 0));
      });
    });
    child.on("error", (error) => {
      if (child.pid !== undefined) return; // a later error (e.g. kill failed): not a spawn failure
      const code = (error as { code?: unknown }).code;
      reject(code === "ENOENT" ? new CommandNotFound(options.command, error) : error);
    });
    child.once("spawn", () => {
      const pid = child.pid!;
      // The shell may exit before it read everything (EPIPE): nothing to do then.
      child.stdin!.on("error", () => {});
      child.stdin!.end(options.stdin);
      resolve({
        pid,
        stdout: toWeb(child.stdout!),
        stderr: toWeb(child.stderr!),
        exited,
        kill(signal, group) {
          try {
            process.kill(group ? -pid : pid, signal);
            return true;
          } catch (error) {
            // ESRCH: none left. Anything else (EPERM: a member changed its user) means it exists.
            return !isNoSuchProcess(error);
          }
        },
      });
    });
  });
}

async function liveInGroup(pgid: number): Promise<boolean | undefined> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return undefined; // no /proc (not Linux)
  }
  let seen = false;
  for (const entry of entries) {
    if (!isPidEntry(entry)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    seen = true;
    if (isLiveMember(stat, pgid)) return true;
  }
  return seen ? false : undefined;
}

async function listProcesses(): Promise<number[] | undefined> {
  try {
    return (await readdir("/proc")).filter(isPidEntry).map(Number);
  } catch {
    return undefined; // no /proc (not Linux), or not allowed (Deno's node:fs without -A)
  }
}

async function readProcFile(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch {
    return undefined;
  }
}

function signal(pid: number, sig: "SIGTERM" | "SIGKILL"): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (error) {
    return !isNoSuchProcess(error);
  }
}

/** The Node backend. */
export const backend: Backend = {
  name: "node",
  environment: () => {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined) env[key] = value;
    }
    return env;
  },
  liveInGroup,
  signal,
  listProcesses,
  readProcFile,
  spawn,
};
