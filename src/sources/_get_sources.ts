/**
 * The implementation of `getSources` (`sources.ts`, which loads this module on first use).
 *
 * @module
 */

import { chmod, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { JobVariable } from "../api/payload.ts";
import type { Variable } from "../job.ts";
import { makeDir, removeDir } from "../_dirs.ts";
import { runScript } from "../script/run_script.ts";
import {
  type GitStrategy,
  type SourcesPlan,
  sourcesScript,
  type SubmoduleStrategy,
} from "./_script.ts";
import {
  SourcesError,
  type SourcesJob,
  type SourcesOptions,
  type SourcesResult,
} from "./sources.ts";

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

/** See `getSources` in `sources.ts`. */
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
