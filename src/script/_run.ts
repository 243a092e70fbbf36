/**
 * The implementation of `runScript` for a given backend (so tests can run it on both twins).
 * Internal: the public entry point is `run_script.ts`.
 *
 * @module
 */

import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { JobLogWritable } from "../log/job_log.ts";
import { currentJobLog } from "../output.ts";
import { type Backend, CommandNotFound, type SpawnedProcess } from "./_backend.ts";
import { MARKER_VARIABLE, MarkerScan, newMarker } from "./_marker.ts";
import { invalidKeys, isEnvName, prepareVariables } from "./_variables.ts";
import { DEFAULT_INHERITED_ENV } from "./_env.ts";
import type { RunScriptOptions } from "./run_script.ts";

/** Default time between SIGTERM and SIGKILL. */
export const DEFAULT_KILL_GRACE_MS = 10_000;
/** Once the process group is gone, how long a read may wait for data before giving up the pipes. */
const DRAIN_IDLE_MS = 500;
/** After SIGKILL, how long to wait for the group to disappear before giving up. */
const AFTER_KILL_WAIT_MS = 2_000;
/** The same when `/proc` cannot tell the living from zombies (which never disappear then). */
const UNSEEN_KILL_WAIT_MS = 100;
/** How often the group is checked while waiting for it to disappear. */
const POLL_MS = 25;
/** Size of the one buffer a pipe is read into when it can be reused (Deno's own read size). */
const READ_BUFFER_BYTES = 64 * 1024;

/** gitlab-runner's `ANSI_BOLD_GREEN` and `ANSI_RESET` (helpers/ansi_colors.go). */
const GREEN = "\x1b[32;1m";
/** gitlab-runner's `ANSI_YELLOW` (warnings). */
const YELLOW = "\x1b[0;33m";
const RESET = "\x1b[0;m";

const encoder = new TextEncoder();

/** Quotes `text` for a POSIX shell: in single quotes, with `'` written as `'\''`. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The script fed to the shell's stdin, shaped like gitlab-runner's bash script (shells/bash.go
 * `Finish`, shells/abstract.go `writeCommands`):
 * - stderr joins stdout: one pipe, so both keep their order, like the official shell executor,
 *   whose stdout and stderr are one writer;
 * - pipefail where the shell has it (found without `grep`), errexit, noclobber off;
 * - the lines run by one `eval` in a subshell whose stdin is empty, so a command reading stdin
 *   cannot eat the script. The subshell is the official `FF_USE_NEW_BASH_EVAL_STRATEGY` form:
 *   with a bare `: | eval '…'`, bash 5.2 exits with 1 instead of the failing line's code when
 *   errexit fires inside the eval;
 * - each line is first echoed as `$ line` in bold green; a multi-line command shows its first
 *   line and `# collapsed multi-line command`, an empty one an empty line.
 */
export function generateScript(script: readonly string[], echo: boolean): string {
  let body = "";
  for (const line of script) {
    const command = line.trim();
    if (echo) {
      if (command === "") {
        body += "echo\n";
      } else {
        const lines = command.split("\n");
        const shown = lines.length > 1 ? `${lines[0]} # collapsed multi-line command` : lines[0];
        body += `printf '%s\\n' ${shellQuote(`${GREEN}$ ${shown}${RESET}`)}\n`;
      }
    }
    body += command + "\n";
  }
  return "exec 2>&1\n" +
    'case "$(set -o)" in *pipefail*) set -o pipefail ;; esac; set -o errexit\n' +
    "set +o noclobber\n" +
    `: | (eval ${shellQuote(body)})\n` +
    "exit 0\n";
}

/** Whether `name` is matched by one of `patterns` (exact names, or prefixes ending in `*`). */
export function matchesEnvPattern(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) =>
    pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern
  );
}

function pickEnvironment(
  backend: Backend,
  inherit: boolean | readonly string[],
): Record<string, string> {
  if (inherit === false) return {};
  const all = backend.environment();
  if (inherit === true) return all;
  const picked: Record<string, string> = {};
  for (const [name, value] of Object.entries(all)) {
    if (matchesEnvPattern(name, inherit)) picked[name] = value;
  }
  return picked;
}

/**
 * Whether a process of the child's group is still alive: `false` when the group is empty,
 * `true` when `/proc` shows a live member, `undefined` when the group holds processes but they
 * may all be zombies (`/proc` not readable). An orphan's zombie stays in the group until its
 * new parent reaps it, which some container inits never do; a zombie runs no more, so it counts
 * as gone.
 */
async function groupAlive(
  backend: Backend,
  child: SpawnedProcess,
): Promise<boolean | undefined> {
  if (!child.kill(0, true)) return false;
  return await backend.liveInGroup(child.pid);
}

/** A pipe's reader: reading into one reused buffer (`byob`) or into a new array per read. */
type PipeReader =
  | { byob: true; reader: ReadableStreamBYOBReader }
  | { byob: false; reader: ReadableStreamDefaultReader<Uint8Array> };

/**
 * A reader for `stream`: a BYOB one when `reuse` allows it and the stream is a byte stream (Deno's
 * pipes are; the Node twin's are not), else a default one.
 */
function pipeReader(stream: ReadableStream<Uint8Array>, reuse: boolean): PipeReader {
  if (reuse) {
    try {
      return { byob: true, reader: stream.getReader({ mode: "byob" }) };
    } catch {
      // not a byte stream
    }
  }
  return { byob: false, reader: stream.getReader() };
}

/** The longest part of a skipped key shown in the job log. */
const SHOWN_KEY_CHARS = 64;

/**
 * The job log's line about variables left out for their keys (values are never shown): each key
 * JSON-quoted, so control characters and escape sequences show as such, and cut when long.
 */
export function skippedLine(keys: readonly string[]): string {
  const shown = keys.map((key) =>
    key.length > SHOWN_KEY_CHARS
      ? `${JSON.stringify(key.slice(0, SHOWN_KEY_CHARS))}…`
      : JSON.stringify(key)
  );
  const what = keys.length === 1 ? "1 job variable" : `${keys.length} job variables`;
  return `${YELLOW}WARNING: Skipped ${what} whose names are not valid environment variable ` +
    `names ([A-Za-z_][A-Za-z0-9_]*): ${shown.join(", ")}${RESET}\n`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `script` with `backend`; see `runScript`. */
export async function runWith(
  backend: Backend,
  script: readonly string[],
  options: RunScriptOptions = {},
): Promise<number> {
  const signal = options.signal;
  signal?.throwIfAborted();
  const graceMs = Math.max(0, options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
  if (options.cwd !== undefined && !(await stat(options.cwd)).isDirectory()) {
    throw new TypeError(`Not a directory: ${options.cwd}`);
  }
  // The application's own variables follow the same rule as job variables (C9.5), but a bad
  // key there is a bug of the caller: refused, not skipped.
  const badEnv = Object.keys(options.env ?? {}).filter((key) => !isEnvName(key));
  if (badEnv.length > 0) {
    throw new TypeError(
      `Not valid environment variable names in env: ${
        badEnv.map((k) => JSON.stringify(k)).join(", ")
      }`,
    );
  }

  const variables = options.variables ?? [];
  let fileDir = options.fileVariablesDir;
  let ownDir: string | undefined;
  const environment = pickEnvironment(backend, options.inheritEnv ?? DEFAULT_INHERITED_ENV);
  try {
    if (variables.some((v) => v.file) && fileDir === undefined) {
      ownDir = fileDir = await mkdtemp(join(tmpdir(), "gitlab-runner-vars-"));
    }
    const prepared = prepareVariables(variables, fileDir);
    if (fileDir !== undefined && prepared.some((v) => v.path !== undefined)) {
      await mkdir(fileDir, { recursive: true, mode: 0o700 });
    }
    for (const v of prepared) {
      if (v.path !== undefined) {
        await writeFile(v.path, v.value, { mode: 0o600 });
        environment[v.key] = v.path;
      } else {
        environment[v.key] = v.value;
      }
    }
    Object.assign(environment, options.env);
    // C9.6: what the script starts carries this, also after it left the process group.
    const marker = `${MARKER_VARIABLE}=${newMarker()}`;
    environment[MARKER_VARIABLE] = marker.slice(MARKER_VARIABLE.length + 1);

    const output = options.output ?? currentJobLog()?.writable;
    const skipped = invalidKeys(variables);
    if (skipped.length > 0 && output !== undefined) {
      const writer = output.getWriter();
      try {
        await writer.write(encoder.encode(skippedLine(skipped)));
      } finally {
        writer.releaseLock();
      }
    }

    const stdin = encoder.encode(generateScript(script, options.echo ?? true));
    const spawnOptions = { args: [], cwd: options.cwd, env: environment, stdin };
    let child: SpawnedProcess;
    let shell = options.shell ?? "bash";
    if (options.shell !== undefined) {
      child = await backend.spawn({ ...spawnOptions, command: shell });
    } else {
      try {
        child = await backend.spawn({ ...spawnOptions, command: shell });
      } catch (error) {
        if (!(error instanceof CommandNotFound)) throw error;
        shell = "sh";
        child = await backend.spawn({ ...spawnOptions, command: shell });
      }
    }
    const scan = new MarkerScan(backend, marker, shell, environment.PATH, process.pid);
    return await supervise(backend, child, { output, signal, graceMs, scan });
  } finally {
    if (ownDir !== undefined) await rm(ownDir, { recursive: true, force: true });
  }
}

/**
 * Streams the child's output and resolves with the shell's exit code once the shell has exited,
 * its process group is gone and the output is read.
 *
 * Termination (on abort, on a failing output, and after the shell exited while processes of its
 * group are left, e.g. `sleep 1000 &`, or processes carrying its marker, e.g. `setsid daemon`):
 * SIGTERM to the group and to each marked process, then SIGKILL when the grace period is over, or earlier once nothing of the group is left but processes that do not hold the
 * output pipes and cannot be told apart from zombies (see `groupAlive`). Processes that hold
 * the pipes keep them open until they exit, so the pipes' end tells when they are gone.
 */
async function supervise(
  backend: Backend,
  child: SpawnedProcess,
  options: {
    output?: WritableStream<Uint8Array>;
    signal?: AbortSignal;
    graceMs: number;
    scan: MarkerScan;
  },
): Promise<number> {
  const output = options.output;
  // The job log's stream is done with a chunk once its write resolved (it copies it at once):
  // then each pipe is read into one reused buffer and each chunk goes straight to the log
  // (`JobLogWritable.writeChunk`, no stream queue). Any other output may keep its chunks: each
  // gets an array of its own, as Deno's default reader makes them.
  const log = output instanceof JobLogWritable ? output : undefined;
  const reuse = output === undefined || log !== undefined;
  const writer = output?.getWriter();
  let outputFailure: { error: unknown } | undefined;
  let shellExited = false;

  let terminating = false;
  let killed = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  let onKilled!: () => void;
  const killedPromise = new Promise<void>((resolve) => (onKilled = resolve));
  const signalGroup = (sig: "SIGTERM" | "SIGKILL") => {
    if (child.kill(sig, true)) return;
    // No group of its own (Deno before `detached` existed): the shell alone, while it is ours.
    if (!shellExited) child.kill(sig, false);
  };
  // Processes that left the group, found by the marker: each gets SIGTERM once, SIGKILL after.
  const termed = new Set<number>();
  const signalMarked = async (sig: "SIGTERM" | "SIGKILL"): Promise<boolean | undefined> => {
    const pids = await options.scan.find();
    if (pids === undefined) return undefined;
    for (const pid of pids) {
      if (sig === "SIGKILL" || !termed.has(pid)) backend.signal(pid, sig);
      termed.add(pid);
    }
    return pids.length > 0;
  };
  const signalAll = (sig: "SIGTERM" | "SIGKILL") => {
    signalGroup(sig);
    signalMarked(sig).catch(() => {});
  };
  const forceKill = () => {
    if (killed) return;
    killed = true;
    clearTimeout(killTimer);
    signalAll("SIGKILL");
    onKilled();
  };
  const terminate = () => {
    if (terminating) return;
    terminating = true;
    signalAll("SIGTERM");
    killTimer = setTimeout(forceKill, options.graceMs);
  };
  /**
   * Whether something the script started is left: its group (see `groupAlive`) or a marked
   * process, which gets `sig` (marked processes seen the first time get SIGTERM before the kill).
   */
  const leftAlive = async (sig: "SIGTERM" | "SIGKILL"): Promise<boolean | undefined> => {
    const marked = await signalMarked(sig);
    const group = await groupAlive(backend, child);
    return marked === true || group === true ? true : group;
  };
  const onAbort = () => terminate();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) terminate();

  // Output: both pipes into the one output, chunk by chunk, each write awaited (backpressure).
  let lastActivity = Date.now();
  let waitingReads = 0;
  const pipes = [pipeReader(child.stdout, reuse), pipeReader(child.stderr, reuse)];
  const readers = pipes.map((pipe) => pipe.reader);
  const pump = async (pipe: PipeReader) => {
    // Each read detaches the buffer it fills; the result's view holds it again for the next one.
    let buffer = new ArrayBuffer(pipe.byob ? READ_BUFFER_BYTES : 0);
    while (true) {
      waitingReads++;
      lastActivity = Date.now();
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        if (pipe.byob) {
          const read = await pipe.reader.read(new Uint8Array(buffer));
          if (!read.done) buffer = read.value.buffer;
          result = read;
        } else {
          result = await pipe.reader.read();
        }
      } catch {
        break; // the pipe failed or was cancelled: nothing more to read
      } finally {
        waitingReads--;
        lastActivity = Date.now();
      }
      if (result.done) break;
      if (writer === undefined || outputFailure !== undefined) continue;
      try {
        if (log === undefined) await writer.write(result.value);
        else {
          // A promise only when the log is full: most chunks cost no promise at all.
          const wait = log.writeChunk(result.value);
          if (wait !== undefined) await wait;
        }
      } catch (error) {
        // Nobody takes the output any more: stop the script, keep draining the pipes.
        outputFailure = { error };
        terminate();
      }
    }
  };
  const pumps = Promise.all(pipes.map(pump));
  let watchdog: ReturnType<typeof setInterval> | undefined;
  let drainTimer: ReturnType<typeof setTimeout> | undefined;

  try {
    const code = await child.exited;
    shellExited = true;
    const marked = await signalMarked("SIGTERM");
    if (child.kill(0, true) || marked === true) {
      // Processes of the group are left (or only their zombies), or processes that left the
      // group: end them too.
      terminate();
      await Promise.race([pumps, killedPromise]);
      // The pipes are closed: wait for the rest while it can be seen, else kill it now.
      while (!killed && (await leftAlive("SIGTERM")) === true) {
        await Promise.race([sleep(POLL_MS), killedPromise]);
      }
      forceKill();
      const killedAt = Date.now();
      while (true) {
        const alive = await leftAlive("SIGKILL");
        if (alive === false) break;
        const waited = Date.now() - killedAt;
        // SIGKILL ends a process at once (unless it sleeps uninterruptibly in the kernel).
        if (alive === undefined ? waited >= UNSEEN_KILL_WAIT_MS : waited >= AFTER_KILL_WAIT_MS) {
          break;
        }
        await sleep(10);
      }
    }
    // Only a process that left the group (setsid) can still hold the pipes: give up on them
    // once a read waited DRAIN_IDLE_MS for nothing.
    const giveUp = () => {
      for (const reader of readers) reader.cancel().catch(() => {});
    };
    watchdog = setInterval(() => {
      if (waitingReads > 0 && Date.now() - lastActivity >= DRAIN_IDLE_MS) giveUp();
    }, Math.min(DRAIN_IDLE_MS, 100));
    // After an abort, an output that takes no more gets one more grace period, not forever.
    const stuck = new Promise<void>((resolve) => {
      if (options.signal?.aborted) drainTimer = setTimeout(resolve, options.graceMs);
    });
    await Promise.race([pumps, stuck.then(giveUp)]);
    if (outputFailure !== undefined) throw outputFailure.error;
    return code;
  } finally {
    clearInterval(watchdog);
    clearTimeout(drainTimer);
    clearTimeout(killTimer);
    options.signal?.removeEventListener("abort", onAbort);
    if (!shellExited) {
      // Only on an unexpected error: leave nothing running.
      signalAll("SIGKILL");
      for (const reader of readers) reader.cancel().catch(() => {});
    }
    writer?.releaseLock();
  }
}
