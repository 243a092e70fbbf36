/**
 * Matching of artifact `paths` and `exclude` patterns against relative file paths, with the
 * semantics of the official GitLab runner (`commands/helpers/file_archiver.go`, which globs with
 * `github.com/bmatcuk/doublestar/v4`):
 *
 * - a pattern is cleaned first (`./out//` is `out`, `a/../b` is `b`); a pattern leaving the
 *   project directory matches nothing; `.` (and the empty pattern) match every file;
 * - `*` and `?` do not cross `/`, `**` as a whole segment spans directories, `[a-z]`, `[!a]`,
 *   `{a,b}` and `\` escapes work, everything else is literal; matching is case-sensitive and
 *   dotfiles are matched like other files;
 * - a pattern that matches a directory matches every file below it (`out`, `out/` and `o*`
 *   match `out/a/b`), because the official runner walks each directory the glob returns;
 * - a pattern that is not a valid glob (`[`, `a{b`) is compared literally, as
 *   gitlab-runner-rs does (the official runner would match nothing and log a warning);
 * - `exclude` patterns are matched against the whole file path only, as in the official
 *   runner: excluding `out` does not exclude `out/a`, use `out/**` for that.
 *
 * Untracked files (`artifacts:untracked`) are not matched here: the official runner adds the
 * output of `git ls-files -o` to the matches and then applies `exclude` to them too, which is
 * `matchArtifactPaths(untracked, { paths: ["."], exclude })`.
 *
 * @module
 */

import { compileDoublestar } from "./_doublestar.ts";
import { cleanPath, compareCodePoints, escapesBase } from "./_path.ts";

/** Options of {@link matchArtifactPaths}. */
export interface MatchArtifactPathsOptions {
  /** The artifact's `paths` patterns (`artifacts:paths`); a file must match one of them. */
  paths: readonly string[];
  /** The artifact's `exclude` patterns (`artifacts:exclude`); a file matching one is dropped. */
  exclude?: readonly string[];
  /**
   * The absolute project directory the relative file paths are relative to. When given,
   * absolute patterns inside it are made relative (`/builds/p/out` → `out`), as the official
   * runner does; otherwise absolute patterns match nothing.
   */
  projectDir?: string;
}

interface CompiledPattern {
  /** The cleaned pattern. */
  text: string;
  /** The compiled glob, `undefined` for an invalid glob (compared literally). */
  regexp: RegExp | undefined;
}

/**
 * Cleans a pattern and resolves it against the project; `undefined` when it matches nothing
 * because it leaves the project.
 */
function relativePattern(pattern: string, projectDir: string | undefined): string | undefined {
  let cleaned = cleanPath(pattern);
  if (cleaned.startsWith("/")) {
    if (projectDir === undefined) return undefined;
    const root = cleanPath(projectDir);
    if (cleaned === root) cleaned = ".";
    else if (root === "/") cleaned = cleaned.slice(1);
    else if (cleaned.startsWith(root + "/")) cleaned = cleaned.slice(root.length + 1);
    else return undefined;
  }
  return escapesBase(cleaned) ? undefined : cleaned;
}

function compile(
  patterns: readonly string[],
  projectDir: string | undefined,
): CompiledPattern[] {
  const out: CompiledPattern[] = [];
  for (const pattern of patterns) {
    const text = relativePattern(pattern, projectDir);
    if (text === undefined) continue;
    out.push({ text, regexp: text === "." ? undefined : compileDoublestar(text) });
  }
  return out;
}

/** Cleans a relative file path; `undefined` for paths that are not inside the project. */
function relativeFile(path: string): string | undefined {
  const cleaned = cleanPath(path);
  if (cleaned === "." || cleaned.startsWith("/") || escapesBase(cleaned)) return undefined;
  return cleaned;
}

/** The path itself and each of its ancestors: `a/b/c` → `a`, `a/b`, `a/b/c`. */
function* selfAndAncestors(file: string): Generator<string> {
  let i = file.indexOf("/");
  while (i >= 0) {
    yield file.slice(0, i);
    i = file.indexOf("/", i + 1);
  }
  yield file;
}

function matchesPath(pattern: CompiledPattern, file: string): boolean {
  if (pattern.text === ".") return true;
  for (const candidate of selfAndAncestors(file)) {
    if (
      pattern.regexp === undefined ? candidate === pattern.text : pattern.regexp.test(candidate)
    ) {
      return true;
    }
  }
  return false;
}

function matchesExclude(pattern: CompiledPattern, file: string): boolean {
  // doublestar.Match on the whole path; an invalid exclude pattern excludes nothing.
  return pattern.regexp !== undefined && pattern.regexp.test(file);
}

/**
 * Tells whether one artifact `paths` pattern selects a file: the file or one of its parent
 * directories matches the pattern (see the module documentation for the rules).
 *
 * @param pattern A pattern from `artifacts:paths`, e.g. `out/`, `*.log`, `reports/**\/*.xml`.
 * @param path A file path relative to the project directory, with `/` separators.
 * @returns `true` when the file belongs to the artifact.
 *
 * @example Directory patterns and globs
 * ```ts
 * import { artifactPathMatches } from "./path_match.ts";
 * import { strictEqual } from "node:assert";
 * strictEqual(artifactPathMatches("out/", "out/a/b.txt"), true);
 * strictEqual(artifactPathMatches("*.log", "logs/x.txt"), false);
 * strictEqual(artifactPathMatches("*.log", "a.log"), true);
 * strictEqual(artifactPathMatches("**\/*.yaml", "a/b/c.yaml"), true);
 * ```
 */
export function artifactPathMatches(pattern: string, path: string): boolean {
  const file = relativeFile(path);
  if (file === undefined) return false;
  const [compiled] = compile([pattern], undefined);
  return compiled !== undefined && matchesPath(compiled, file);
}

/**
 * Selects the files of an artifact: those matching one of `paths` (themselves or through a
 * parent directory) and none of `exclude` (on their whole path).
 *
 * @param files Candidate file paths relative to the project directory (`/` separators); paths
 *   that are absolute or leave the project are ignored.
 * @param options The `paths` and `exclude` patterns of the artifact.
 * @returns The matching files, cleaned (`./a//b` → `a/b`), without duplicates, sorted by code
 *   point (the byte order of UTF-8, like the official runner).
 *
 * @example Paths with an exclusion
 * ```ts
 * import { matchArtifactPaths } from "./path_match.ts";
 * import { deepStrictEqual } from "node:assert";
 * const files = ["out/app", "out/app.log", "out/sub/x.log", "src/main.c", "README"];
 * const matched = matchArtifactPaths(files, { paths: ["out/"], exclude: ["out/**\/*.log"] });
 * deepStrictEqual(matched, ["out/app"]);
 * ```
 */
export function matchArtifactPaths(
  files: Iterable<string>,
  options: MatchArtifactPathsOptions,
): string[] {
  const paths = compile(options.paths, options.projectDir);
  const exclude = compile(options.exclude ?? [], options.projectDir);
  const matched = new Set<string>();
  if (paths.length === 0) return [];
  for (const path of files) {
    const file = relativeFile(path);
    if (file === undefined || matched.has(file)) continue;
    if (!paths.some((p) => matchesPath(p, file))) continue;
    if (exclude.some((p) => matchesExclude(p, file))) continue;
    matched.add(file);
  }
  return [...matched].sort(compareCodePoints);
}
