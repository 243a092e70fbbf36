/**
 * Job variables as the official runner turns them into a shell's environment (gitlab-runner
 * `common/spec/variables.go`: `Expand`, `ExpandWith`, `value`; `shells/bash.go`: `Variable`).
 * Internal.
 *
 * @module
 */

/** The fields of a job variable that matter here (`Variable` and `JobVariable` both have them). */
export interface VariableLike {
  /** Name. */
  readonly key: string;
  /** Value (for a file variable: the file's content). */
  readonly value: string;
  /** A file variable. */
  readonly file?: boolean;
  /** Not expanded. */
  readonly raw?: boolean;
}

/** A variable ready for the environment. */
export interface PreparedVariable {
  /** Name. */
  key: string;
  /** The expanded value (the file's content for a file variable). */
  value: string;
  /** For a file variable: where its content goes; the environment gets this path. */
  path?: string;
}

const SPECIAL = "*#$@!?-0123456789";

function isAlphaNum(c: string): boolean {
  return c === "_" || (c >= "0" && c <= "9") || (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
}

/** Go's `os.getShellName`: the name after a `$` and how many characters it takes. */
function shellName(s: string, at: number): [string, number] {
  if (s[at] === "{") {
    if (s.length - at > 2 && SPECIAL.includes(s[at + 1]) && s[at + 2] === "}") {
      return [s[at + 1], 3];
    }
    for (let i = at + 1; i < s.length; i++) {
      if (s[i] === "}") {
        if (i === at + 1) return ["", 2]; // "${}": bad syntax, eaten
        return [s.slice(at + 1, i), i - at + 1];
      }
    }
    return ["", 1]; // "${" without "}": bad syntax, "${" eaten
  }
  if (SPECIAL.includes(s[at])) return [s[at], 1];
  let i = at;
  while (i < s.length && isAlphaNum(s[i])) i++;
  return [s.slice(at, i), i - at];
}

/**
 * Go's `os.Expand`: replaces `$NAME` and `${NAME}` with `lookup(NAME)`. A `$` not followed by
 * a name stays; `${}` and an unclosed `${` are dropped; `${A:-b}` looks up the name `A:-b`.
 */
export function expand(value: string, lookup: (name: string) => string): string {
  let out = "";
  let changed = false;
  let i = 0;
  for (let j = 0; j < value.length; j++) {
    if (value[j] === "$" && j + 1 < value.length) {
      changed = true;
      out += value.slice(i, j);
      const [name, width] = shellName(value, j + 1);
      if (name === "" && width > 0) {
        // invalid syntax: eaten
      } else if (name === "") {
        out += "$";
      } else {
        out += lookup(name);
      }
      j += width;
      i = j + 1;
    }
  }
  return changed ? out + value.slice(i) : value;
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
  const last = new Map<string, VariableLike>();
  for (const v of variables) {
    if (!isEnvName(v.key)) continue;
    last.delete(v.key); // keep the order of the last occurrences
    last.set(v.key, v);
  }
  const pathOf = (key: string) => `${fileDir}/${key}`;
  const lookup = (name: string): string => {
    if (name === "$") return "$";
    if ("*#@!?0123456789".includes(name) && name.length === 1) return "";
    const v = last.get(name);
    if (v === undefined) return "";
    return v.file ? pathOf(v.key) : v.value;
  };
  const prepared: PreparedVariable[] = [];
  for (const v of last.values()) {
    const value = v.raw ? v.value : expand(v.value, lookup);
    if (v.file) {
      prepared.push({ key: v.key, value, path: pathOf(v.key) });
    } else {
      prepared.push({ key: v.key, value });
    }
  }
  return prepared;
}
