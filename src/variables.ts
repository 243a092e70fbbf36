/**
 * GitLab's variable expansion, as the official runner does it (CONFORMANCE C12.3): the one
 * expansion the library uses (artifact names, paths and excludes; the environment of
 * `runScript`), exported for handlers that expand `$VAR` in their own text.
 *
 * Source: gitlab-runner `common/spec/variables.go` (`ExpandValue` = Go's `os.Expand` with
 * `Variables.Get`; `Expand`/`ExpandWith`: the values of variables that are not `raw` are
 * expanded once, against the unexpanded values), read at gitlabhq/gitlab-runner@d79f3e7.
 *
 * @module
 */

/** The fields of a job variable that expansion reads (`Variable` and `JobVariable` have them). */
export interface VariableLike {
  /** The name. */
  readonly key: string;
  /** The value (for a file variable: the file's content). */
  readonly value: string;
  /** A file variable: `$NAME` stands for the file's path when a `fileDir` is given. */
  readonly file?: boolean;
  /** A raw variable: its own value is never expanded. */
  readonly raw?: boolean;
  /** A masked variable: `[MASKED]` instead of its value with `{ masked: true }`. */
  readonly masked?: boolean;
  /**
   * The value with secrets hidden (a `Variable` has it: the job token inside
   * `CI_REPOSITORY_URL` too), used instead of `value` with `{ masked: true }`.
   */
  readonly maskedValue?: string;
}

/** Options of {@linkcode expandVariables}. */
export interface ExpandVariablesOptions {
  /**
   * Where file variables are written: `$NAME` of a file variable then expands to
   * `<fileDir>/<NAME>`, its path (the official runner's `Variables.Get`). Without it, a file
   * variable expands to its content.
   */
  fileDir?: string;
  /**
   * `true`: masked variables expand to `[MASKED]`, and a variable's `maskedValue` is used when
   * it has one (the `Variable`s of a job: no job token inside `CI_REPOSITORY_URL`), for text
   * that goes to another system or a log. Default `false`.
   */
  masked?: boolean;
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
 * Internal: {@linkcode expandVariables} is the public form.
 */
export function osExpand(value: string, lookup: (name: string) => string): string {
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

/** The last occurrence of each key, in the order of those last occurrences. */
export function lastOfEachKey<T extends VariableLike>(variables: Iterable<T>): Map<string, T> {
  const last = new Map<string, T>();
  for (const v of variables) {
    last.delete(v.key);
    last.set(v.key, v);
  }
  return last;
}

/**
 * The official runner's `Variables.Get` over `variables`: `$` for `$$`, empty for the shell's
 * special parameters (`$1`, `$*`, `$#`, `$@`, `$!`, `$?`) and unknown names, a file
 * variable's path when `fileDir` is given. `value` says what a known variable gives.
 */
export function variableLookup<T extends VariableLike>(
  last: ReadonlyMap<string, T>,
  value: (v: T) => string,
  fileDir: string | undefined,
): (name: string) => string {
  return lookupWith((name) => {
    const v = last.get(name);
    if (v === undefined) return undefined;
    if (v.file && fileDir !== undefined) return `${fileDir}/${v.key}`;
    return value(v);
  });
}

/**
 * What `$NAME` of a known variable gives, GitLab's one level (`Variables.Expand`): a `raw`
 * variable's value verbatim, any other's value expanded once through `inner`, the lookup of the
 * unexpanded values. Internal: {@linkcode expandVariables} and `runScript`'s environment share it.
 */
export function expandOnce<T extends VariableLike>(
  v: T,
  value: (v: T) => string,
  inner: (name: string) => string,
): string {
  return v.raw ? value(v) : osExpand(value(v), inner);
}

/**
 * The lookup `osExpand` needs, over `get`: `$` for `$$`, empty for the shell's special
 * parameters (`$1`, `$*`, `$#`, `$@`, `$!`, `$?`) and for names `get` does not know.
 *
 * @param get The value of a variable, or undefined.
 * @returns The lookup.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * const lookup = lookupWith((name) => name === "A" ? "a" : undefined);
 * strictEqual(osExpand("$A-$B-$$-$1", lookup), "a--$-");
 * ```
 */
export function lookupWith(get: (name: string) => string | undefined): (name: string) => string {
  return (name) => {
    if (name === "$") return "$";
    if (name.length === 1 && "*#@!?0123456789".includes(name)) return "";
    return get(name) ?? "";
  };
}

/**
 * Expands `$NAME` and `${NAME}` in `text` from job variables, with GitLab's rules (the official
 * runner's `ExpandValue` on its expanded variables):
 *
 * - `$NAME` and `${NAME}` become the variable's value; an unknown name becomes nothing;
 * - `$$` is a literal `$`; a `$` not followed by a name stays (`a$`, `$ x`, `$(cmd)`);
 * - `$1`…`$9`, `$*`, `$#`, `$@`, `$!`, `$?` are empty; `${}` and an unclosed `${` are dropped;
 *   no shell forms: `${A:-b}` looks up the (unknown) name `A:-b` and is empty;
 * - the value of a variable that is not `raw` is itself expanded once, against the other
 *   variables' unexpanded values (one level: no recursion, no loops); a `raw` variable's value
 *   is used verbatim; the process environment is never consulted;
 * - when a key repeats, the last occurrence wins (as GitLab's job payload means it).
 *
 * @param text The text to expand, e.g. an artifact path `build/$CI_COMMIT_REF_SLUG/`.
 * @param variables The job's variables (`job.variables`, `payload.variables`, or plain objects).
 * @param options `fileDir` (file variables stand for their path), `masked` (masked variables
 *   become `[MASKED]`).
 * @returns The expanded text.
 *
 * @example Expand a path from the job's variables
 * ```ts
 * import { expandVariables } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const variables = [
 *   { key: "TARGET", value: "arm64" },
 *   { key: "OUT", value: "build/$TARGET" },
 *   { key: "PATTERN", value: "$NOT_EXPANDED", raw: true },
 * ];
 * strictEqual(
 *   expandVariables("${OUT}/app-$$1 $PATTERN $UNKNOWN.", variables),
 *   "build/arm64/app-$1 $NOT_EXPANDED .",
 * );
 * ```
 *
 * @example Text for another system, with masked values hidden
 * ```ts
 * import { expandVariables } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const variables = [{ key: "API_KEY", value: "s3cr3t-value", masked: true }];
 * strictEqual(
 *   expandVariables("curl -H 'key: $API_KEY'", variables, { masked: true }),
 *   "curl -H 'key: [MASKED]'",
 * );
 * ```
 */
export function expandVariables(
  text: string,
  variables: Iterable<VariableLike>,
  options: ExpandVariablesOptions = {},
): string {
  if (!text.includes("$")) return text;
  const last = lastOfEachKey(variables);
  const { fileDir, masked = false } = options;
  const base = (v: VariableLike) =>
    masked ? v.maskedValue ?? (v.masked ? "[MASKED]" : v.value) : v.value;
  // One level, like `Variables.Expand`: a value is expanded against the unexpanded values.
  const inner = variableLookup(last, base, fileDir);
  const outer = variableLookup(
    last,
    (v) => masked && v.masked ? "[MASKED]" : expandOnce(v, base, inner),
    fileDir,
  );
  return osExpand(text, outer);
}
