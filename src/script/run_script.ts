/**
 * `runScript`: runs the lines of a GitLab job step in one shell session, the way the official
 * runner's shell executor does, with the job's variables as environment, the output streamed
 * into the job log, and the whole process tree terminated on abort (CONFORMANCE C7).
 *
 * @module
 */

import type { Variable } from "../job.ts";
import type { JobVariable } from "../api/payload.ts";
import { lazy } from "../_lazy.ts";
import type { Backend } from "./_backend.ts";
import { DEFAULT_INHERITED_ENV } from "./_env.ts";

// Re-exported so this module's documentation is complete on its own (mod.ts exports them too).
export type { JobVariable, Variable };

export { DEFAULT_INHERITED_ENV };

/**
 * Options of {@linkcode runScript}.
 *
 * @example Run in a directory with a variable and extra environment
 * ```ts
 * import { strictEqual } from "node:assert";
 * const options: RunScriptOptions = {
 *   cwd: ".",
 *   variables: [
 *     { key: "GREETING", value: "hello", masked: false, public: true, file: false, raw: false },
 *   ],
 *   env: { TARGET: "world" },
 *   output: new WritableStream(),
 * };
 * strictEqual(await runScript(['test "$GREETING $TARGET" = "hello world"'], options), 0);
 * ```
 */
export interface RunScriptOptions {
  /** The working directory of the shell. Default: the current directory. */
  cwd?: string;
  /**
   * Job variables (e.g. `job.variables`), set in the shell's environment like the official
   * runner sets them:
   * - the last variable of a name wins;
   * - the value of a variable that is not `raw` is expanded once: `$NAME` and `${NAME}` become
   *   the (unexpanded) value of the variable `NAME`, or the path of a file variable, or nothing
   *   when there is no such variable (the process environment is not consulted); `$$` becomes
   *   `$`. A `raw` value is passed literally. The shell never expands values again;
   * - a `file` variable's (expanded) value is written to the file `<fileVariablesDir>/<key>`
   *   (mode 0600) and the variable holds that path;
   * - a variable whose key is not a valid environment name (`[A-Za-z_][A-Za-z0-9_]*`) is left
   *   out, and a warning line in the output names the keys left out (never their values): a key
   *   like `PATH=/tmp/evil:` or `X=Y` would otherwise set another variable, `../x` would put a
   *   file variable outside its folder.
   *
   * Values are not masked here: the job log masks them (see `output`).
   */
  variables?: readonly (Variable | JobVariable)[];
  /**
   * Where file variables are written. Default: a new private temporary directory (mode 0700)
   * that is removed when the script has ended, so secrets do not stay on disk. Pass a directory
   * (created if missing) to keep the files, e.g. `${job.buildDir}.tmp` like the official
   * runner's `<project dir>.tmp`; it is not removed then.
   */
  fileVariablesDir?: string;
  /**
   * More environment variables; they win over `variables` and the inherited environment. Keys
   * must be valid names (`[A-Za-z_][A-Za-z0-9_]*`), else `runScript` rejects with a
   * `TypeError` and runs nothing.
   */
  env?: Record<string, string>;
  /**
   * Which variables of this process's environment (the runner's) the shell inherits. Default:
   * {@linkcode DEFAULT_INHERITED_ENV}, i.e. only `PATH`, `HOME`, `LANG`, `LC_*`, `TZ`, `TMPDIR`,
   * `USER`, `SHELL` and `TERM`, so that the runner's own secrets (a `RUNNER_TOKEN`, cloud
   * credentials) never reach a job. A list replaces the default: names, and prefixes ending in
   * `*` (`"AWS_*"`); extend the default with `[...DEFAULT_INHERITED_ENV, "HTTP_PROXY"]`. `true`
   * inherits everything, like the official shell executor (only for runners whose environment
   * holds nothing a job must not see); `false` nothing (the shell then uses its built-in
   * `PATH`). Job variables and `env` are set on top. Reading the environment needs
   * `--allow-env` on Deno.
   */
  inheritEnv?: boolean | readonly string[];
  /**
   * The shell: a POSIX shell's name (looked up in the child's `PATH`) or path. Default: `bash`
   * if it is found, else `sh`. It is started without arguments (not as a login shell) and reads
   * the script from stdin.
   */
  shell?: string;
  /**
   * Aborting it terminates the script's whole process tree: SIGTERM to its process group and to
   * the processes that left it (see {@linkcode runScript}), then SIGKILL after
   * {@linkcode RunScriptOptions.killGraceMs}. `runScript` still resolves with the
   * exit code (typically 143) once every process is gone. Use `AbortSignal.timeout(ms)` for a
   * timeout. Already aborted: `runScript` rejects with the signal's reason and runs nothing.
   */
  signal?: AbortSignal;
  /** Milliseconds between SIGTERM and SIGKILL. Default: 10 000. */
  killGraceMs?: number;
  /**
   * Where stdout and stderr go (one stream, in the order they were written). Each write is
   * awaited, so a slow stream slows the script down instead of filling memory. Default: the
   * current job's log (`currentJobLog()?.writable`, which masks secrets), or nowhere outside a
   * job. The stream is not closed. If a write fails, the script is terminated and `runScript`
   * rejects with that error. After an abort, output still waiting for a stream that takes
   * nothing more is dropped after one more grace period.
   */
  output?: WritableStream<Uint8Array>;
  /**
   * Echo each line before it runs, as `$ line` in bold green (`\x1b[32;1m…\x1b[0;m`), like the
   * official runner. Default: `true`.
   */
  echo?: boolean;
}

/**
 * The implementation and the backend of the runtime we run on (Deno never loads
 * node:child_process), loaded with the first script so that an idle runner does not hold them;
 * `lazy()` loads them outside the caller's asynchronous context (a job's, which a plain import
 * would keep alive for the life of the process).
 */
const implementation = lazy(async () => {
  const [{ runWith }, backend] = await Promise.all([
    import("./_run.ts"),
    typeof (globalThis as { Deno?: { Command?: unknown } }).Deno?.Command === "function"
      ? import("./_spawn.deno.ts").then((m): Backend => m.backend)
      : import("./_spawn.node.ts").then((m): Backend => m.backend),
  ]);
  return { runWith, backend };
});

/**
 * Runs the lines of a job step in one shell session and resolves with its exit code.
 *
 * The shell's environment is the job's variables, on top of an allowlisted part of this
 * process's environment ({@linkcode DEFAULT_INHERITED_ENV}: `PATH`, `HOME`, `LANG`, `LC_*`, `TZ`,
 * `TMPDIR`, `USER`, `SHELL`, `TERM`; see {@linkcode RunScriptOptions.inheritEnv}), so the
 * runner's own secrets do not reach the job.
 *
 * All lines run in one session of `bash` (else `sh`): a variable set or a `cd` in one line is
 * seen by the next. Like the official runner's bash script, the shell runs with `errexit` and
 * `pipefail` (where the shell has it) and stops at the first failing line; its exit code is
 * the result (128 + n when signal n killed the shell). Commands read an empty stdin.
 *
 * The shell runs in a process group (and session) of its own. When it has exited, or on abort,
 * whatever it left running is terminated too: SIGTERM, then SIGKILL after the grace period (the
 * official shell executor kills the group with SIGKILL at once). That is its process group
 * (e.g. `server &`) and, on Linux, every process that left the group (`setsid`, a daemon that
 * double-forks, a job-control group of `set -m`): the script's environment holds
 * `GITLAB_RUNNER_JOB_MARKER=<random>`, which its processes inherit, and `/proc/<pid>/environ`
 * shows who carries it. Nothing the script starts outlives it, with these exceptions, which no
 * marker can catch:
 * - a process started with an environment that lacks the marker (`env -i cmd`, or `unset
 *   GITLAB_RUNNER_JOB_MARKER` before starting it): a script that wants to escape can;
 * - processes of another user (`sudo -u`) when the runner is not root: their `environ` cannot
 *   be read (nor could they be signalled);
 * - without `/proc` (macOS) only the process group is terminated.
 *
 * `/proc` is read by this process where allowed (Node; Deno with `--allow-all`), else by a small
 * helper run with the script's shell (`grep -z`). It also tells live processes from zombies
 * (without it, processes that neither hold the output pipes nor end on SIGTERM get SIGKILL
 * once the pipes are closed). A cgroup would catch everything, but making one needs privileges
 * a runner does not usually have: it is not used.
 *
 * POSIX only (Linux, macOS): process groups and POSIX shells.
 *
 * @param script The lines (e.g. a `JobStep`'s `script`); each may hold several lines itself.
 * @param options Working directory, variables, environment, shell, abort signal, output.
 * @returns The shell's exit code: 0 when every line succeeded.
 *
 * @example Run lines and get the exit code
 * ```ts
 * import { strictEqual } from "node:assert";
 * let text = "";
 * const decoder = new TextDecoder();
 * const output = new WritableStream<Uint8Array>({
 *   write: (chunk) => void (text += decoder.decode(chunk, { stream: true })),
 * });
 * const code = await runScript(["cd /", 'echo "in $PWD"', "exit 3", "echo never"], { output });
 * strictEqual(code, 3);
 * strictEqual(text.includes("in /\n"), true);
 * strictEqual(text.includes("never"), false);
 * ```
 *
 * @example Fail a job step with the script's exit code
 * ```ts
 * import { ScriptFailure } from "@x/gitlab-runner";
 * import { rejects } from "node:assert";
 * async function step(script: readonly string[], signal: AbortSignal): Promise<void> {
 *   const code = await runScript(script, { signal }); // output: the current job's log
 *   if (code !== 0) throw new ScriptFailure(code);
 * }
 * await step(["true"], AbortSignal.timeout(60_000));
 * await rejects(step(["exit 4"], AbortSignal.timeout(60_000)), { name: "ScriptFailure", exitCode: 4 });
 * ```
 */
export async function runScript(
  script: readonly string[],
  options: RunScriptOptions = {},
): Promise<number> {
  const { runWith, backend } = await implementation();
  return runWith(backend, script, options);
}
