/**
 * The default environment allowlist of `runScript`, apart from its implementation so that the
 * public module stays small (`_run.ts` is loaded with the first script).
 *
 * @module
 */

/**
 * The names of the runner's environment variables a script inherits by default
 * (`RunScriptOptions.inheritEnv`): `PATH`, `HOME`, `LANG`, `LC_*` (every name that begins with
 * `LC_`), `TZ`, `TMPDIR`, `USER`, `SHELL` and `TERM`. Everything else of the runner's
 * environment (its token, the machine's credentials) stays out of jobs. Frozen.
 *
 * @example Extend the default list
 * ```ts
 * import { DEFAULT_INHERITED_ENV, runScript } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const code = await runScript(['test -n "$PATH"'], {
 *   inheritEnv: [...DEFAULT_INHERITED_ENV, "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"],
 *   output: new WritableStream(),
 * });
 * strictEqual(code, 0);
 * ```
 */
export const DEFAULT_INHERITED_ENV: readonly string[] = Object.freeze([
  "PATH",
  "HOME",
  "LANG",
  "LC_*",
  "TZ",
  "TMPDIR",
  "USER",
  "SHELL",
  "TERM",
]);
