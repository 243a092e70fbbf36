/**
 * `getSources`: gets a job's sources with the machine's `git`, the way the official runner's
 * get_sources stage does (CONFORMANCE C11). Used through `Job.sources()`.
 *
 * @module
 */

import { chmod, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { JobPayload, JobVariable } from "../api/payload.ts";
import { JobFailure } from "../errors.ts";
import type { Variable } from "../job.ts";
import { makeDir, removeDir } from "../_dirs.ts";
import { runScript } from "../script/run_script.ts";
import {
  type GitStrategy,
  type SourcesPlan,
  sourcesScript,
  type SubmoduleStrategy,
} from "./_script.ts";

export type { GitStrategy, SubmoduleStrategy };

/**
 * Options of `Job.sources()` ({@linkcode getSources}).
 *
 * @example Get the sources with a step's signal, inheriting a proxy setting
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { DEFAULT_INHERITED_ENV, type SourcesOptions } from "@x/gitlab-runner";
 * const options: SourcesOptions = {
 *   signal: AbortSignal.timeout(10 * 60_000),
 *   inheritEnv: [...DEFAULT_INHERITED_ENV, "HTTPS_PROXY", "NO_PROXY"],
 * };
 * strictEqual(options.signal?.aborted, false);
 * ```
 */
export interface SourcesOptions {
  /**
   * Aborting it stops git and everything it started (the process tree, like `runScript`), and
   * the call rejects with the signal's reason. Default: the job's signal (its timeout, a cancel).
   */
  signal?: AbortSignal;
  /**
   * Where git's output and the notices go. Default: the job's log (masked, so the job token and
   * masked variables never show).
   */
  output?: WritableStream<Uint8Array>;
  /**
   * Which variables of the runner's environment git inherits (see `RunScriptOptions.inheritEnv`).
   * Default: `DEFAULT_INHERITED_ENV`.
   */
  inheritEnv?: boolean | readonly string[];
  /** Milliseconds between SIGTERM and SIGKILL on abort. Default: 10 000. */
  killGraceMs?: number;
  /** The `http.userAgent` git sends. Default: `@x/gitlab-runner`. */
  userAgent?: string;
}

/**
 * What {@linkcode getSources} did.
 *
 * @example
 * ```ts
 * import type { SourcesResult } from "@x/gitlab-runner";
 * const result: SourcesResult = { strategy: "fetch", dir: "/builds/1", sha: "1a2b3c4d", attempts: 1 };
 * console.log(`${result.strategy} ${result.sha} in ${result.dir}`);
 * ```
 */
export interface SourcesResult {
  /** The strategy used (`GIT_STRATEGY`, or its default from `allow_git_fetch`). */
  strategy: GitStrategy;
  /** The (absolute) directory of the sources. */
  dir: string;
  /** The commit checked out; `undefined` when nothing was checked out. */
  sha?: string;
  /** How many attempts it took (`GET_SOURCES_ATTEMPTS`). */
  attempts: number;
}

/**
 * Getting the sources failed: git (or a hook) exited non-zero in every attempt, or the job's
 * variables ask for something impossible. A {@linkcode JobFailure}: thrown from a factory or a
 * step, it fails the job (`script_failure` with git's exit code, or
 * `runner_configuration_error` for a bad setting), and the log above says why.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { SourcesError } from "@x/gitlab-runner";
 * const error = new SourcesError("Getting the sources failed with exit code 128", { exitCode: 128 });
 * strictEqual(error.reason, "script_failure");
 * strictEqual(error.exitCode, 128);
 * ```
 */
export class SourcesError extends JobFailure {
  /** Creates the error; `reason` defaults to `script_failure`. */
  constructor(
    message: string,
    options: { exitCode?: number; reason?: string; cause?: unknown } = {},
  ) {
    super(options.reason ?? "script_failure", {
      message,
      exitCode: options.exitCode,
      cause: options.cause,
    });
    this.name = "SourcesError";
  }
}

/** What {@linkcode getSources} reads of a job (a `Job` has all of it). */
export interface SourcesJob {
  /** The payload (`git_info`, `allow_git_fetch`, `hooks`, `token`). */
  readonly payload: JobPayload;
  /** The job's variables (`GIT_STRATEGY`, `GIT_DEPTH`, …). */
  readonly variables: readonly (Variable | JobVariable)[];
  /** The job's signal. */
  readonly signal: AbortSignal;
  /** The job's log. */
  readonly log: WritableStream<Uint8Array>;
}

const YELLOW = "\x1b[0;33m";
const CYAN = "\x1b[36;1m";
const RESET = "\x1b[0;m";
const encoder = new TextEncoder();

function last(variables: readonly (Variable | JobVariable)[], key: string): string | undefined {
  let value: string | undefined;
  for (const v of variables) if (v.key === key) value = v.value;
  return value;
}

function flags(raw: string | undefined, fallback: readonly string[]): string[] {
  if (raw === undefined || raw.trim() === "") return [...fallback];
  if (raw.trim() === "none") return [];
  return raw.trim().split(/\s+/);
}

function integer(
  raw: string | undefined,
  fallback: number,
  warn: (s: string) => void,
  key: string,
) {
  if (raw === undefined || raw.trim() === "") return fallback;
  if (!/^-?\d+$/.test(raw.trim())) {
    warn(`${key}: expected int got ${JSON.stringify(raw)}, using default value: ${fallback}`);
    return fallback;
  }
  return Number(raw.trim());
}

function boolean(
  raw: string | undefined,
  fallback: boolean,
  warn: (s: string) => void,
  key: string,
) {
  if (raw === undefined || raw.trim() === "") return fallback;
  const v = raw.trim().toLowerCase();
  if (["1", "t", "true"].includes(v)) return true;
  if (["0", "f", "false"].includes(v)) return false;
  warn(`${key}: expected bool got ${JSON.stringify(raw)}, using default value: ${fallback}`);
  return fallback;
}

/** The plan of an attempt, from the payload and the variables (official `build_settings.go`). */
function plan(
  job: SourcesJob,
  dir: string,
  templateDir: string,
  userAgent: string,
  warn: (s: string) => void,
): { plan: SourcesPlan; credentials?: { origin: string; username: string; password: string } } {
  const v = (key: string) => last(job.variables, key);
  const git = job.payload.gitInfo;
  const fallback: GitStrategy = job.payload.allowGitFetch ? "fetch" : "clone";
  let strategy: GitStrategy = fallback;
  const rawStrategy = v("GIT_STRATEGY") ?? "";
  if (["clone", "fetch", "none", "empty"].includes(rawStrategy)) {
    strategy = rawStrategy as GitStrategy;
  } else if (rawStrategy !== "") {
    warn(
      `GIT_STRATEGY: expected either 'clone', 'fetch', 'none' or 'empty' got ${
        JSON.stringify(rawStrategy)
      }, using default value '${fallback}'`,
    );
  }
  let submodules: SubmoduleStrategy = "none";
  const rawSub = v("GIT_SUBMODULE_STRATEGY") ?? "";
  if (["none", "normal", "recursive"].includes(rawSub)) submodules = rawSub as SubmoduleStrategy;
  else if (rawSub !== "") {
    throw new SourcesError(
      `GIT_SUBMODULE_STRATEGY: expected either 'normal', 'recursive' or 'none' got ${
        JSON.stringify(rawSub)
      }`,
      { reason: "runner_configuration_error" },
    );
  }
  const gitSetUp = strategy === "clone" || strategy === "fetch";
  const checkout = gitSetUp && boolean(v("GIT_CHECKOUT"), true, warn, "GIT_CHECKOUT");
  let remoteUrl = "";
  let credentials: { origin: string; username: string; password: string } | undefined;
  if (gitSetUp) {
    let url: URL;
    try {
      url = new URL(git.repoUrl);
    } catch (cause) {
      throw new SourcesError("The job has no valid repository URL (git_info.repo_url)", {
        reason: "runner_configuration_error",
        cause: cause instanceof Error ? new Error(cause.name) : undefined,
      });
    }
    if (url.username !== "" || url.password !== "") {
      const decode = (text: string) => {
        try {
          return decodeURIComponent(text);
        } catch {
          return text;
        }
      };
      credentials = {
        origin: url.origin,
        username: decode(url.username),
        password: decode(url.password),
      };
      if (/[\r\n]/.test(credentials.username + credentials.password)) {
        throw new SourcesError("The repository URL holds invalid credentials", {
          reason: "runner_configuration_error",
        });
      }
    }
    url.username = "";
    url.password = "";
    remoteUrl = url.href;
    if (checkout && !/^[0-9a-f]{7,64}$/i.test(git.sha)) {
      throw new SourcesError("The job has no valid commit to check out (git_info.sha)", {
        reason: "runner_configuration_error",
      });
    }
  }
  const objectFormat = git.repoObjectFormat && git.repoObjectFormat !== "sha1"
    ? git.repoObjectFormat
    : undefined;
  return {
    credentials,
    plan: {
      strategy,
      dir,
      remoteUrl,
      ref: git.ref,
      sha: git.sha,
      refspecs: git.refspecs,
      depth: git.depth,
      objectFormat,
      checkout,
      cleanFlags: flags(v("GIT_CLEAN_FLAGS"), ["-ffdx"]),
      fetchFlags: flags(v("GIT_FETCH_EXTRA_FLAGS"), ["--prune", "--quiet"]),
      submodules: gitSetUp ? submodules : "none",
      submoduleDepth: integer(v("GIT_SUBMODULE_DEPTH"), git.depth, warn, "GIT_SUBMODULE_DEPTH"),
      submodulePaths: flags(v("GIT_SUBMODULE_PATHS"), []),
      submoduleUpdateFlags: flags(v("GIT_SUBMODULE_UPDATE_FLAGS"), []),
      lfsSkipSmudge: boolean(v("GIT_LFS_SKIP_SMUDGE"), false, warn, "GIT_LFS_SKIP_SMUDGE"),
      templateDir,
      preHook: job.payload.hooks.filter((h) => h.name === "pre_get_sources_script")
        .flatMap((h) => h.script),
      postHook: job.payload.hooks.filter((h) => h.name === "post_get_sources_script")
        .flatMap((h) => h.script),
      userAgent,
    },
  };
}

/** Git config quoting: a value in double quotes, `\` and `"` escaped. */
function configValue(text: string): string {
  return `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * The private directory (mode 0700, outside the work tree) with the git template, the
 * credentials (0600) and the config that hands them to git: a credential helper scoped to the
 * repository's origin, which first clears any other helper for it (so nothing stores the
 * token), and, with `GIT_SUBMODULE_FORCE_HTTPS`, `insteadOf` rewrites of SSH URLs to HTTPS.
 * The config reaches every git (submodules and git-lfs included) through `GIT_CONFIG_COUNT`
 * in the environment: nothing lands in `.git/config`, no token in any argv.
 */
async function prepareGitDir(
  credentials: { origin: string; username: string; password: string } | undefined,
  forceHttps: { base: string; host: string } | undefined,
): Promise<{ root: string; templateDir: string; config: string }> {
  const root = await mkdtemp(join(tmpdir(), "gitlab-runner-git-"));
  await chmod(root, 0o700);
  const templateDir = join(root, "template");
  await mkdir(join(templateDir, "hooks"), { recursive: true });
  await writeFile(
    join(templateDir, "config"),
    "[init]\n\tdefaultBranch = none\n[fetch]\n\trecurseSubmodules = false\n" +
      "[credential]\n\tinteractive = never\n",
  );
  let config = "";
  if (credentials) {
    const file = join(root, "credentials");
    await writeFile(
      file,
      `username=${credentials.username}\npassword=${credentials.password}\n`,
      { mode: 0o600 },
    );
    const helper = `!f() { test "$1" = get && cat '${file.replaceAll("'", "'\\''")}'; }; f`;
    config += `[credential ${configValue(credentials.origin)}]\n\thelper =\n\thelper = ${
      configValue(helper)
    }\n`;
  }
  if (forceHttps) {
    config += `[url ${configValue(forceHttps.base + "/")}]\n\tinsteadOf = ${
      configValue(`git@${forceHttps.host}:`)
    }\n\tinsteadOf = ${configValue(`ssh://git@${forceHttps.host}/`)}\n`;
  }
  const configPath = join(root, "config");
  await writeFile(configPath, config, { mode: 0o600 });
  return { root, templateDir, config: configPath };
}

/**
 * Gets a job's sources into `dir` with the machine's `git` (and `git lfs` where installed),
 * as the official runner's get_sources stage does (CONFORMANCE C11.1), and writes its notices
 * and git's output into the job log in the official runner's words (`Fetching changes with git
 * depth set to 20...`, `Checking out 1a2b3c4d as detached HEAD (ref is main)...`, `Skipping
 * Git submodules setup`, …):
 *
 * - `GIT_STRATEGY`: `fetch` (default when the project allows it, `allow_git_fetch`) reuses
 *   the repository already in `dir`; `clone` (the other default) deletes `dir` first; `none`
 *   only makes `dir` (keeping what is there); `empty` deletes and recreates it. `none` and
 *   `empty` check nothing out.
 * - fetch: `git init` (`--object-format sha256` for such repositories), remote `origin`
 *   without credentials, `git fetch origin --no-recurse-submodules <git_info.refspecs>
 *   [--depth git_info.depth]` plus `GIT_FETCH_EXTRA_FLAGS` (default `--prune --quiet`), and
 *   `--unshallow` for a full fetch into a shallow repository. Stale lock files of a killed
 *   git are removed first.
 * - `GIT_CHECKOUT` (default true): `git checkout -f -q <sha>`, `git clean <GIT_CLEAN_FLAGS>`
 *   (default `-ffdx`), `git lfs pull`.
 * - `GIT_SUBMODULE_STRATEGY` `normal`/`recursive` with `GIT_SUBMODULE_DEPTH`,
 *   `GIT_SUBMODULE_PATHS`, `GIT_SUBMODULE_UPDATE_FLAGS`, `GIT_SUBMODULE_FORCE_HTTPS`.
 * - the payload's `pre_get_sources_script` and `post_get_sources_script` hooks around it, the
 *   whole of it tried `GET_SOURCES_ATTEMPTS` times (1 to 10, default 1).
 * - `GIT_TERMINAL_PROMPT=0`, `GCM_INTERACTIVE=Never`: git never waits for a password.
 *
 * The job token never lands in `.git/config`, in a command line or in the log (C11.2): git
 * gets it from a credential helper that reads a private file outside the work tree, removed
 * afterwards. Git runs through `runScript`'s machinery: abort (the signal, by default the
 * job's: timeout, cancel) terminates git and every process it started (C11.3).
 *
 * A runner that uses it should announce the `refspecs` feature
 * (`RunnerBuilder.features(["refspecs"])`, C11.5): without it GitLab fails merge-request
 * pipelines with `runner_unsupported`.
 *
 * @param job The job (a `Job`).
 * @param dir Where the sources go; relative paths are resolved against the current directory.
 * @param options Signal, output, environment.
 * @returns What was done.
 * @throws {SourcesError} When every attempt failed, or the job's settings are invalid.
 *
 * @example Check out the sources before running the script
 * ```ts ignore
 * import type { Job, JobHandler } from "@x/gitlab-runner";
 * async function factory(job: Job): Promise<JobHandler> {
 *   await job.sources(); // into job.buildDir; a failure fails the job
 *   return { step: async () => {} };
 * }
 * ```
 */
export async function getSources(
  job: SourcesJob,
  dir: string,
  options: SourcesOptions = {},
): Promise<SourcesResult> {
  const signal = options.signal ?? job.signal;
  signal.throwIfAborted();
  const output = options.output ?? job.log;
  const target = resolve(dir);
  if (target === dirname(target)) {
    throw new SourcesError(`Refusing to get the sources into ${target}`, {
      reason: "runner_configuration_error",
    });
  }
  const pending: string[] = [];
  const warn = (text: string) => pending.push(`${YELLOW}WARNING: ${text}${RESET}\n`);
  const write = async (text: string) => {
    const writer = output.getWriter();
    try {
      await writer.write(encoder.encode(text));
    } finally {
      writer.releaseLock();
    }
  };

  const v = (key: string) => last(job.variables, key);
  const attemptsRaw = integer(v("GET_SOURCES_ATTEMPTS"), 1, warn, "GET_SOURCES_ATTEMPTS");
  const attempts = Math.max(1, Math.min(10, attemptsRaw));
  if (attempts !== attemptsRaw) {
    warn(
      `GET_SOURCES_ATTEMPTS: number of attempts out of the range [1, 10], clamping to: ${attempts}`,
    );
  }
  const userAgent = options.userAgent ?? "@x/gitlab-runner";
  const draft = plan(job, target, "", userAgent, warn);
  let forceHttps: { base: string; host: string } | undefined;
  if (
    draft.plan.submodules !== "none" &&
    boolean(v("GIT_SUBMODULE_FORCE_HTTPS"), false, warn, "GIT_SUBMODULE_FORCE_HTTPS") &&
    draft.plan.remoteUrl !== ""
  ) {
    const url = new URL(draft.plan.remoteUrl);
    const host = v("CI_SERVER_SHELL_SSH_HOST") || v("CI_SERVER_HOST") || url.hostname;
    forceHttps = { base: url.origin, host };
  }
  // The official runner's stage title (common/build.go, BuildStageGetSources).
  await write(`${CYAN}Getting source from Git repository${RESET}\n`);
  for (const line of pending.splice(0)) await write(line);

  const prepared = await prepareGitDir(draft.credentials, forceHttps);
  try {
    const lines = sourcesScript({ ...draft.plan, templateDir: prepared.templateDir });
    await makeDir(dirname(target));
    for (let attempt = 1;; attempt++) {
      const code = await runScript(lines, {
        cwd: dirname(target),
        variables: job.variables,
        env: {
          GIT_TERMINAL_PROMPT: "0",
          GCM_INTERACTIVE: "Never",
          GIT_CONFIG_COUNT: "1",
          GIT_CONFIG_KEY_0: "include.path",
          GIT_CONFIG_VALUE_0: prepared.config,
        },
        inheritEnv: options.inheritEnv,
        killGraceMs: options.killGraceMs,
        signal,
        output,
        echo: false,
      });
      signal.throwIfAborted();
      if (code === 0) {
        return {
          strategy: draft.plan.strategy,
          dir: target,
          sha: draft.plan.checkout ? draft.plan.sha : undefined,
          attempts: attempt,
        };
      }
      if (attempt >= attempts) {
        throw new SourcesError(
          `Getting the sources failed with exit code ${code}` +
            (attempts > 1 ? ` (${attempts} attempts)` : ""),
          { exitCode: code },
        );
      }
      await write(`${YELLOW}WARNING: Retrying...${RESET}  error=exit code ${code}\n`);
    }
  } finally {
    await removeDir(prepared.root).catch(() => {});
  }
}
