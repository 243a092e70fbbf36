/**
 * The get_sources shell script, written like the official runner's (gitlab-runner
 * shells/abstract.go `writeGetSourcesScript`, `writeRefspecFetchCmd`, `writeCheckoutCmd`,
 * `writeSubmoduleUpdateCmd`): the same commands, in the same order, with the same log lines.
 * Pure: it only builds text, so its choices can be tested without git.
 *
 * @module
 */

import { shellQuote } from "../script/_run.ts";

/** `GIT_STRATEGY`. */
export type GitStrategy = "clone" | "fetch" | "none" | "empty";
/** `GIT_SUBMODULE_STRATEGY`. */
export type SubmoduleStrategy = "none" | "normal" | "recursive";

/** What the script needs, resolved from the payload and the job variables. */
export interface SourcesPlan {
  strategy: GitStrategy;
  /** Absolute directory of the checkout. */
  dir: string;
  /** The remote URL without credentials. */
  remoteUrl: string;
  ref: string;
  sha: string;
  refspecs: readonly string[];
  depth: number;
  /** `sha256`, or undefined for the default (`sha1`). */
  objectFormat?: string;
  checkout: boolean;
  cleanFlags: readonly string[];
  fetchFlags: readonly string[];
  submodules: SubmoduleStrategy;
  submoduleDepth: number;
  submodulePaths: readonly string[];
  submoduleUpdateFlags: readonly string[];
  /** `GIT_LFS_SKIP_SMUDGE` set by the user: no `GIT_LFS_SKIP_SMUDGE=1`, no `git lfs pull`. */
  lfsSkipSmudge: boolean;
  /** The git template directory (outside the work tree). */
  templateDir: string;
  preHook: readonly string[];
  postHook: readonly string[];
  userAgent: string;
}

const GREEN = "\x1b[32;1m";
const YELLOW = "\x1b[0;33m";
const RESET = "\x1b[0;m";

function notice(text: string): string {
  return `printf '%s\\n' ${shellQuote(`${GREEN}${text}${RESET}`)}`;
}

function warning(text: string): string {
  return `printf '%s\\n' ${shellQuote(`${YELLOW}WARNING: ${text}${RESET}`)}`;
}

function cmd(...args: readonly string[]): string {
  return args.map((a) => (/^[A-Za-z0-9_./:=+@%-]+$/.test(a) ? a : shellQuote(a))).join(" ");
}

/** A user's hook line, echoed like `runScript` echoes script lines. */
function hookLines(lines: readonly string[]): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const command = line.trim();
    if (command === "") continue;
    const first = command.split("\n");
    const shown = first.length > 1 ? `${first[0]} # collapsed multi-line command` : first[0];
    out.push(`printf '%s\\n' ${shellQuote(`${GREEN}$ ${shown}${RESET}`)}`);
    out.push(command);
  }
  return out;
}

/** The lines (for `runScript` with `echo: false`) of one get_sources attempt. */
export function sourcesScript(plan: SourcesPlan): string[] {
  const lines: string[] = [];
  const dir = plan.dir;
  lines.push(...hookLines(plan.preHook));
  if (!plan.lfsSkipSmudge) lines.push("export GIT_LFS_SKIP_SMUDGE=1");

  switch (plan.strategy) {
    case "none":
      lines.push(notice("Skipping Git repository setup"));
      lines.push(cmd("mkdir", "-p", dir));
      break;
    case "empty":
      lines.push(notice("Skipping Git repository setup and creating an empty build directory"));
      lines.push(cmd("rm", "-r", "-f", "--", dir));
      lines.push(cmd("mkdir", "-p", dir));
      break;
    case "clone":
    case "fetch":
      lines.push(...cleanup(plan));
      if (plan.strategy === "clone") lines.push(cmd("rm", "-r", "-f", "--", dir));
      lines.push(...fetch(plan));
      break;
  }

  const gitSetUp = plan.strategy === "clone" || plan.strategy === "fetch";
  if (gitSetUp && plan.checkout) {
    lines.push(
      notice(`Checking out ${plan.sha.slice(0, 8)} as detached HEAD (ref is ${plan.ref})...`),
    );
    lines.push(cmd("git", "-c", "submodule.recurse=false", "checkout", "-f", "-q", plan.sha));
    if (plan.cleanFlags.length > 0) lines.push(cmd("git", "clean", ...plan.cleanFlags));
    if (!plan.lfsSkipSmudge) {
      lines.push("if git lfs version >/dev/null 2>&1; then", "git lfs pull", "fi");
    }
  } else {
    lines.push(notice("Skipping Git checkout"));
  }

  if (gitSetUp && plan.submodules !== "none") lines.push(...submodules(plan));
  else lines.push(notice("Skipping Git submodules setup"));

  if (plan.postHook.length > 0) {
    // The post hook runs in the checkout, like the official one (it runs after `cd`).
    lines.push(cmd("cd", dir));
    lines.push(...hookLines(plan.postHook));
  }
  return lines;
}

/** Stale lock files a killed git leaves behind, and a post-checkout hook (official cleanup). */
function cleanup(plan: SourcesPlan): string[] {
  const git = `${plan.dir}/.git`;
  const names = ["index.lock", "shallow.lock", "HEAD.lock", "hooks/post-checkout", "config.lock"];
  const lines = names.map((n) => cmd("rm", "-f", "--", `${git}/${n}`));
  if (plan.submodules !== "none") {
    const base = names.map((n) => n.split("/").pop()!);
    lines.push(
      `if [ -d ${shellQuote(`${git}/modules`)} ]; then find ${
        shellQuote(`${git}/modules`)
      } -type f \\( ${base.map((n) => `-name ${shellQuote(n)}`).join(" -o ")} \\) -delete; fi`,
    );
  }
  lines.push(
    `if [ -d ${shellQuote(`${git}/refs`)} ]; then find ${
      shellQuote(`${git}/refs`)
    } -type f -name '*.lock' -delete; fi`,
  );
  return lines;
}

function fetch(plan: SourcesPlan): string[] {
  const lines: string[] = [];
  lines.push(
    notice(
      plan.depth > 0
        ? `Fetching changes with git depth set to ${plan.depth}...`
        : "Fetching changes...",
    ),
  );
  const init = ["git", "init", plan.dir, "--template", plan.templateDir];
  if (plan.objectFormat) init.push("--object-format", plan.objectFormat);
  lines.push(cmd(...init));
  lines.push(cmd("cd", plan.dir));
  lines.push(
    `if ${cmd("git", "remote", "add", "origin", plan.remoteUrl)} >/dev/null 2>/dev/null; then`,
    notice("Created fresh repository."),
    "else",
    cmd("git", "remote", "set-url", "origin", plan.remoteUrl),
    "fi",
  );
  const args = [
    "git",
    "-c",
    `http.userAgent=${plan.userAgent}`,
    "fetch",
    "origin",
    "--no-recurse-submodules",
    ...plan.refspecs,
  ];
  if (plan.depth > 0) args.push("--depth", String(plan.depth));
  args.push(...plan.fetchFlags);
  if (plan.depth <= 0) {
    lines.push(
      "if [ -f .git/shallow ]; then",
      cmd(...args, "--unshallow"),
      "else",
      cmd(...args),
      "fi",
    );
  } else {
    lines.push(cmd(...args));
  }
  return lines;
}

function submodules(plan: SourcesPlan): string[] {
  const recursive = plan.submodules === "recursive";
  const depth = plan.submoduleDepth;
  const lines: string[] = [];
  lines.push(notice(
    recursive
      ? depth > 0
        ? `Updating/initializing submodules recursively with git depth set to ${depth}...`
        : "Updating/initializing submodules recursively..."
      : depth > 0
      ? `Updating/initializing submodules with git depth set to ${depth}...`
      : "Updating/initializing submodules...",
  ));
  const paths = plan.submodulePaths.length > 0 ? ["--", ...plan.submodulePaths] : [];
  const sync = ["git", "submodule", "sync", ...(recursive ? ["--recursive"] : []), ...paths];
  const update = [
    "git",
    "submodule",
    "update",
    "--init",
    ...(recursive ? ["--recursive"] : []),
    ...(depth > 0 ? ["--depth", String(depth)] : []),
    ...plan.submoduleUpdateFlags,
    ...paths,
  ];
  const foreach = ["git", "submodule", "foreach", ...(recursive ? ["--recursive"] : [])];
  const clean = ["git", "clean", ...(plan.cleanFlags.length > 0 ? plan.cleanFlags : ["-ffdx"])];
  lines.push(cmd("git", "submodule", "init"));
  lines.push(cmd(...sync));
  lines.push(cmd(...foreach, ...clean));
  lines.push(cmd(...foreach, "git", "reset", "--hard"));
  lines.push(
    `if ${cmd(...update)}; then`,
    notice("Updated submodules"),
    cmd(...sync),
    "else",
    warning("Updating submodules failed. Retrying..."),
    cmd(...sync),
    cmd(...update),
    cmd(...foreach, "git", "reset", "--hard"),
    "fi",
  );
  lines.push(cmd(...foreach, ...clean));
  if (!plan.lfsSkipSmudge) {
    lines.push(
      "if git lfs version >/dev/null 2>&1; then",
      notice("Pulling LFS files..."),
      cmd(...foreach, "git", "lfs", "pull"),
      "fi",
    );
  }
  return lines;
}
