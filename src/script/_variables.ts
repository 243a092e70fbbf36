/**
 * Job variables as the official runner turns them into a shell's environment (gitlab-runner
 * `common/spec/variables.go`: `Expand`, `ExpandWith`, `value`; `shells/bash.go`: `Variable`),
 * with the expansion rules of `../variables.ts`. Internal.
 *
 * @module
 */

import { expandOnce, lastOfEachKey, type VariableLike, variableLookup } from "../variables.ts";

/** A variable ready for the environment. */
export interface PreparedVariable {
  /** Name. */
  key: string;
  /** The expanded value (the file's content for a file variable). */
  value: string;
  /** For a file variable: where its content goes; the environment gets this path. */
  path?: string;
}

/** What a valid environment variable name looks like (POSIX, and what shells accept). */
const ENV_NAME_REGEXP = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Whether `key` can be an environment variable's name: `[A-Za-z_][A-Za-z0-9_]*`. Another key
 * would do harm in an environment: `PATH=/tmp/evil:` would set `PATH`, `X=Y` would set `X`,
 * `BASH_FUNC_f%%` would define a bash function. Such a name is also a safe file name: it can
 * never leave the file variables' folder.
 */
export function isEnvName(key: string): boolean {
  return ENV_NAME_REGEXP.test(key);
}

/** The distinct keys of `variables` that are not valid environment names, in order. */
export function invalidKeys(variables: readonly VariableLike[]): string[] {
  return [...new Set(variables.map((v) => v.key).filter((key) => !isEnvName(key)))];
}

/**
 * Prepares variables like the official runner: the last one of a name wins; values of
 * variables that are not `raw` are expanded once against the *unexpanded* values of all
 * variables (a file variable stands for its path; `$$` is `$`; `$1`, `$*`, `$#`, `$@`, `$!`,
 * `$?`, unknown names are empty; the process environment is not consulted); a file variable
 * gets the path `<dir>/<key>`. Variables whose keys are not valid environment names
 * ({@linkcode isEnvName}) are left out altogether (see {@linkcode invalidKeys}).
 */
export function prepareVariables(
  variables: readonly VariableLike[],
  fileDir: string | undefined,
): PreparedVariable[] {
  // Keys that are not environment names never reach the environment (C9.5).
  const last = lastOfEachKey(variables.filter((v) => isEnvName(v.key)));
  const pathOf = (key: string) => `${fileDir}/${key}`;
  // `fileDir` is set whenever there are file variables (runScript makes one).
  const valueOf = (v: VariableLike) => v.value;
  const lookup = variableLookup(last, valueOf, fileDir);
  const prepared: PreparedVariable[] = [];
  for (const v of last.values()) {
    const value = expandOnce(v, valueOf, lookup);
    if (v.file) {
      prepared.push({ key: v.key, value, path: pathOf(v.key) });
    } else {
      prepared.push({ key: v.key, value });
    }
  }
  return prepared;
}
