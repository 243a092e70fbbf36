// Watching real processes by pid, for the process tests (runScript, the example runner).
//
// `/proc` is read by `cat`, because Deno reads it itself only with `--allow-all`. A check that a
// process is gone is only worth something if the process was seen running first, and if `/proc`
// can be read at all: `isGone` refuses a pid that `assertRunning` has not seen running, and
// every read first proves that `/proc` is readable.

import { assert } from "./_deps.ts";

const decoder = new TextDecoder();

/** What `/proc` says about a process. A zombie runs no more. */
export type ProcessState = "running" | "zombie" | "gone";

/** The pids seen running by `assertRunning`. */
const seenRunning = new Set<number>();

/** The fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, session, … */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Reads `/proc/<pid>/stat`; undefined when there is no such process. Throws if `/proc` is unreadable. */
export async function readStat(pid: number): Promise<string[] | undefined> {
  const { code, stdout } = await new Deno.Command("sh", {
    args: [
      "-c",
      'cat /proc/self/stat > /dev/null || exit 9; exec cat "/proc/$1/stat"',
      "sh",
      `${pid}`,
    ],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (code === 9) throw new Error("/proc cannot be read: a process test would prove nothing");
  if (code !== 0) return undefined;
  return statFields(decoder.decode(stdout));
}

/** The state of `pid`. */
export async function processState(pid: number): Promise<ProcessState> {
  const fields = await readStat(pid);
  if (fields === undefined) return "gone";
  return fields[0] === "Z" || fields[0] === "X" ? "zombie" : "running";
}

/** Asserts that `pid` runs now, and remembers it for `isGone`. */
export async function assertRunning(pid: number, what = `process ${pid}`): Promise<void> {
  assert.ok(Number.isInteger(pid) && pid > 1, `${what}: not a pid: ${pid}`);
  assert.equal(await processState(pid), "running", `${what} should be running`);
  seenRunning.add(pid);
}

/**
 * Whether `pid` is gone (a zombie counts as gone: it runs no more, and orphans' zombies stay
 * where the init process does not reap them). Throws for a pid not seen running before.
 */
export async function isGone(pid: number): Promise<boolean> {
  if (!seenRunning.has(pid)) {
    throw new Error(`isGone(${pid}): the process was never seen running (use assertRunning)`);
  }
  return (await processState(pid)) !== "running";
}

/** The process group and session of `pid` (it must exist). */
export async function groupAndSession(pid: number): Promise<{ pgrp: number; session: number }> {
  const fields = await readStat(pid);
  assert.ok(fields, `process ${pid} does not exist`);
  return { pgrp: Number(fields[2]), session: Number(fields[3]) };
}

/** Waits until `what()` holds, polling every 10 ms; throws after `ms`. */
export async function until(what: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > end) throw new Error("Timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Reads the pid a script wrote to `path`, waiting until it is there: a shell creates the file
 * (`echo $$ > file`) before it writes to it, so a reader may see it empty.
 */
export async function readPid(path: string, ms = 5_000): Promise<number> {
  let pid = 0;
  await until(async () => {
    try {
      pid = Number((await Deno.readTextFile(path)).trim());
    } catch {
      pid = 0;
    }
    return Number.isInteger(pid) && pid > 0;
  }, ms);
  return pid;
}

/** Kills `pids` with SIGKILL, ignoring those that are gone: the clean-up of a failed test. */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      if (pid > 1) Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** The project's deno.json, for child scripts that import the library's bare specifiers. */
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/**
 * Runs `source` as a Deno script in a process of its own (written to a temporary directory,
 * `-A`, the project's deno.json) and returns what it printed; fails with its stderr when it
 * exits non-zero. `args` gets the temporary directory (removed afterwards), `flags` go before
 * the script.
 */
export async function runDenoChild(
  source: string,
  options: { args?: (dir: string) => string[]; flags?: string[] } = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "glr-child-" });
  try {
    await Deno.writeTextFile(`${dir}/child.ts`, source);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-lock",
        `--config=${CONFIG}`,
        ...(options.flags ?? []),
        `${dir}/child.ts`,
        ...(options.args?.(dir) ?? []),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, decoder.decode(out.stderr));
    return decoder.decode(out.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
