import { assert } from "./_deps.ts";
import { artifactPathMatches, matchArtifactPaths } from "../src/artifacts/path_match.ts";

function check(cases: Array<[pattern: string, path: string, expected: boolean]>): void {
  for (const [pattern, path, expected] of cases) {
    assert.equal(
      artifactPathMatches(pattern, path),
      expected,
      `pattern ${JSON.stringify(pattern)} vs ${JSON.stringify(path)}`,
    );
  }
}

Deno.test("C6.1 the cases of gitlab-runner-rs's test_artifact_path_matches", () => {
  // gitlab-runner/src/run.rs, test_artifact_path_matches (the `!` cases must not match).
  check([
    ["abc", "abc", true],
    ["a*c", "abc", true],
    ["abc", "abc/d", true],
    ["a*c", "abc/d", true],
    ["a*c", "ab/c", false],
    [".", "abc", true],
    ["./abc//", "abc", true],
    ["a/**/c", "a/b/c", true],
    ["a/**/c", "a/b/d/e/f/c", true],
    ["**/*.yaml", "a/b/c.yaml", true],
    ["[", "[", true],
  ]);
});

Deno.test("C6.1 exact names, and * and ? do not cross /", () => {
  check([
    ["README.md", "README.md", true],
    ["README.md", "README.mdx", false],
    ["README.md", "docs/README.md", false],
    ["*", "a", true],
    ["*", "a/b/c", true], // "a" matches, so everything below it does
    ["*.log", "a.log", true],
    ["*.log", "logs/a.log", false],
    ["logs/*.log", "logs/a.log", true],
    ["logs/*.log", "logs/sub/a.log", false],
    ["a?c", "abc", true],
    ["a?c", "a/c", false],
    ["?", "😀", true], // one character, not one UTF-16 unit
    ["a*", "a", true], // * may match nothing
  ]);
});

Deno.test("C6.1 ** spans directories only as a whole segment", () => {
  check([
    ["**/*.xml", "junit.xml", true], // zero directories
    ["**/*.xml", "a/b/junit.xml", true],
    ["a/**/c", "a/c", true],
    ["a/**/c", "a/xc", false],
    ["a/**", "a", true],
    ["a/**", "a/b/c", true],
    ["a/**", "ab", false],
    ["**", "x/y/z", true],
    ["a**b", "axxb", true], // not a whole segment: like *
    ["a**b", "ax/xb", false],
    ["**.txt", "a.txt", true],
    ["**.txt", "d/a.txt", false],
    ["reports/**/junit-*.xml", "reports/unit/x/junit-1.xml", true],
    ["reports/**/junit-*.xml", "reports/unit/x/coverage.xml", false],
  ]);
});

Deno.test("C6.1 character classes, alternatives and escapes follow doublestar", () => {
  check([
    ["[abc].txt", "b.txt", true],
    ["[abc].txt", "d.txt", false],
    ["[a-c]x", "bx", true],
    ["[a-c]x", "dx", false],
    ["[!a]x", "bx", true], // picomatch gets this one wrong
    ["[!a]x", "ax", false],
    ["[^a]x", "bx", true],
    ["[\\]]", "]", true],
    ["[a-]", "-", true],
    ["{a,b}.txt", "a.txt", true],
    ["{a,b}.txt", "b.txt", true],
    ["{a,b}.txt", "c.txt", false],
    ["{a}", "a", true],
    ["{1..3}", "2", false], // no ranges in doublestar
    ["{1..3}", "1..3", true],
    ["{out,dist/**/bin}", "dist/x/bin/app", true],
    ["x/{y,z{1,2}}", "x/z2", true],
    ["x/{y,z{1,2}}", "x/z3", false],
    ["\\*", "*", true],
    ["\\*", "a", false],
    ["a\\?", "a?", true],
    ["a\\?", "ab", false],
  ]);
});

Deno.test("C6.1 characters special to other glob flavours are literal", () => {
  check([
    ["build (x64)/**", "build (x64)/a.out", true],
    ["build (x64)/**", "build x64/a.out", false],
    ["(a|b)", "a", false],
    ["(a|b)", "(a|b)", true],
    ["a+b", "a+b", true],
    ["a+", "aa", false],
    ["!important", "!important", true],
    ["!important", "other", false],
    ["@(a)", "@(a)", true],
    ["+(a)", "a", false],
    ["$HOME.txt", "$HOME.txt", true],
    ["a.b", "axb", false],
    ["a,b", "a,b", true],
  ]);
});

Deno.test("C6.1 matching is case-sensitive and dotfiles are matched", () => {
  check([
    ["*.TXT", "a.txt", false],
    ["Out/", "out/a", false],
    ["*", ".env", true],
    ["out/*", "out/.hidden", true],
    ["**/*.log", ".cache/x/.y.log", true],
    [".*", ".env", true],
    [".*", "env", false],
  ]);
});

Deno.test("C6.1 a directory pattern matches everything under it", () => {
  check([
    ["out", "out/a/b", true],
    ["out/", "out/a/b", true],
    ["./out//", "out/a/b", true],
    ["out/", "output/a", false],
    ["o*", "out/a/b", true],
    ["out/a", "out/a/b/c", true],
    ["out/a", "out/ab", false],
    ["out/**/", "out/a/b", true],
  ]);
});

Deno.test("C6.1 patterns are cleaned; patterns leaving the project match nothing", () => {
  check([
    ["./x//", "x/y", true],
    ["a/./b", "a/b", true],
    ["a/../b", "b/c", true],
    ["a/*/../b", "a/b", true], // cleaned like Go's filepath.Join
    ["", "anything/at/all", true], // the official runner globs "." for an empty path
    ["./", "x", true],
    ["..", "x", false],
    ["../x", "x", false],
    ["a/../../x", "x", false],
    ["/abs/x", "abs/x", false], // absolute without projectDir
  ]);
  // File paths are cleaned too; paths outside the project never match.
  check([
    ["a/b", "./a//b", true],
    ["*", "../x", false],
    ["*", "/etc/passwd", false],
    [".", ".", false],
  ]);
});

Deno.test("C6.1 absolute patterns inside projectDir become relative", () => {
  const files = ["out/a", "src/b"];
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["/builds/g/p/out"], projectDir: "/builds/g/p/" }),
    ["out/a"],
  );
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["/builds/g/p"], projectDir: "/builds/g/p" }),
    ["out/a", "src/b"],
  );
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["/builds/g/other/out"], projectDir: "/builds/g/p" }),
    [],
  );
  assert.deepEqual(matchArtifactPaths(files, { paths: ["/builds/g/p/out"] }), []);
});

Deno.test("C6.1 invalid globs are compared literally", () => {
  check([
    ["[", "[", true],
    ["[", "[/inside", true], // a literal directory name works like any other
    ["[", "a", false],
    ["a[b", "a[b", true],
    ["a[b", "ab", false],
    ["[]", "[]", true], // empty class: invalid
    ["[!]", "[!]", true],
    ["a{b", "a{b", true],
    ["a}b", "a}b", true],
    ["{a,b", "{a,b", true],
    ["{a,b", "a", false],
    ["x\\", "x\\", true], // trailing backslash
    ["x\\", "x", false],
  ]);
});

Deno.test("C6.1 matchArtifactPaths combines paths and applies exclude", () => {
  const files = [
    "binaries/app",
    "binaries/app.o",
    "binaries/sub/lib.o",
    "binaries/sub/lib.so",
    "docs/index.html",
    "docs/.nojekyll",
    "src/main.c",
    "coverage.xml",
  ];
  // The example of GitLab's artifacts:exclude documentation.
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["binaries/"], exclude: ["binaries/**/*.o"] }),
    ["binaries/app", "binaries/sub/lib.so"],
  );
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["binaries/", "docs", "*.xml"] }),
    [
      "binaries/app",
      "binaries/app.o",
      "binaries/sub/lib.o",
      "binaries/sub/lib.so",
      "coverage.xml",
      "docs/.nojekyll",
      "docs/index.html",
    ],
  );
  assert.deepEqual(matchArtifactPaths(files, { paths: [] }), []);
  assert.deepEqual(matchArtifactPaths(files, { paths: ["nothing/here"] }), []);
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["."], exclude: ["**/.*", "src/**", "binaries/**"] }),
    ["coverage.xml", "docs/index.html"],
  );
});

Deno.test("C6.1 exclude matches whole paths only, like the official runner", () => {
  const files = ["out/a", "out/b/c", "out.txt"];
  // Excluding a directory does not exclude what is below it (file_archiver.go isExcluded).
  assert.deepEqual(matchArtifactPaths(files, { paths: ["out"], exclude: ["out"] }), [
    "out/a",
    "out/b/c",
  ]);
  assert.deepEqual(matchArtifactPaths(files, { paths: ["out"], exclude: ["out/"] }), [
    "out/a",
    "out/b/c",
  ]);
  assert.deepEqual(matchArtifactPaths(files, { paths: ["out"], exclude: ["out/**"] }), []);
  assert.deepEqual(matchArtifactPaths(files, { paths: ["out"], exclude: ["out/*"] }), ["out/b/c"]);
  assert.deepEqual(
    matchArtifactPaths(files, { paths: ["*"], exclude: ["./out//b/c"] }),
    ["out.txt", "out/a"],
  );
  // An invalid exclude pattern excludes nothing (doublestar.Match fails).
  assert.deepEqual(matchArtifactPaths(["[", "a"], { paths: ["*"], exclude: ["["] }), ["[", "a"]);
  // An exclude pattern outside the project is ignored.
  assert.deepEqual(matchArtifactPaths(["a"], { paths: ["*"], exclude: ["../a", "/a"] }), ["a"]);
});

Deno.test("C6.1 matchArtifactPaths cleans, dedupes and sorts by code point", () => {
  const files = [
    "./b//x",
    "b/x",
    "a",
    "\uff5e", // U+FF5E: after every BMP letter, but before U+1F600 in UTF-8 order
    "\u{1f600}",
    "B",
    "../outside",
    "/etc/passwd",
    ".",
    "",
  ];
  assert.deepEqual(matchArtifactPaths(files, { paths: ["."] }), [
    "B",
    "a",
    "b/x",
    "\uff5e",
    "\u{1f600}",
  ]);
  // The same order as UTF-8 bytes (Go's sort.Strings).
  const encoded = ["\u{1f600}", "\uff5e"].map((s) => [...new TextEncoder().encode(s)]);
  assert.ok(encoded[1][0] < encoded[0][0]);
});
