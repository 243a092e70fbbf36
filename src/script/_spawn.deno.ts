/**
 * The Deno twin of the process backend: `Deno.Command` with `detached: true`, which makes the
 * child a session and process group leader (setsid; Deno ≥ 2.4, denoland/deno#29933), so
 * `Deno.kill(-pid, …)` reaches the whole tree. Internal.
 *
 * @module
 */

import {
  type Backend,
  CommandNotFound,
  isLiveMember,
  isPidEntry,
  type SpawnedProcess,
  type SpawnOptions,
} from "./_backend.ts";

function spawn(options: SpawnOptions): Promise<SpawnedProcess> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(options.command, {
      args: [...options.args],
      cwd: options.cwd,
      env: options.env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return Promise.reject(new CommandNotFound(options.command, error));
    }
    return Promise.reject(error);
  }
  // The shell may exit before it read everything (a broken pipe): nothing to do then.
  const writer = child.stdin.getWriter();
  writer.write(options.stdin).then(() => writer.close()).catch(() => {});
  const pid = child.pid;
  return Promise.resolve({
    pid,
    stdout: child.stdout,
    stderr: child.stderr,
    exited: child.status.then((status) => status.code),
    kill(signal, group) {
      try {
        Deno.kill(group ? -pid : pid, signal);
        return true;
      } catch (error) {
        // ESRCH: none left. Anything else (EPERM: a member changed its user) means it exists.
        return !(error instanceof Deno.errors.NotFound);
      }
    },
  });
}

/**
 * Deno lets only `--allow-all` read `/proc`; with read permission merely at "prompt" it would ask
 * the user, so `/proc` is only tried when reading is granted already (and may still refuse).
 */
async function liveInGroup(pgid: number): Promise<boolean | undefined> {
  if (!mayReadProc()) return undefined;
  let seen = false;
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (!isPidEntry(entry.name)) continue;
      let stat: string;
      try {
        stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      } catch {
        continue; // gone meanwhile
      }
      seen = true;
      if (isLiveMember(stat, pgid)) return true;
    }
  } catch {
    return undefined; // no /proc, or not allowed (NotCapable without --allow-all)
  }
  return seen ? false : undefined;
}

/** Whether reading `/proc` may be tried without making Deno prompt the user. */
function mayReadProc(): boolean {
  return Deno.permissions.querySync({ name: "read", path: "/proc" }).state === "granted";
}

async function listProcesses(): Promise<number[] | undefined> {
  if (!mayReadProc()) return undefined;
  const pids: number[] = [];
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (isPidEntry(entry.name)) pids.push(Number(entry.name));
    }
  } catch {
    return undefined; // no /proc, or not allowed (NotCapable without --allow-all)
  }
  return pids;
}

async function readProcFile(path: string): Promise<Uint8Array | undefined> {
  if (!mayReadProc()) return undefined;
  try {
    return await Deno.readFile(path);
  } catch {
    return undefined;
  }
}

function signal(pid: number, sig: "SIGTERM" | "SIGKILL"): boolean {
  try {
    Deno.kill(pid, sig);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}

/** The Deno backend. */
export const backend: Backend = {
  name: "deno",
  environment: () => Deno.env.toObject(),
  liveInGroup,
  signal,
  listProcesses,
  readProcFile,
  spawn,
};
