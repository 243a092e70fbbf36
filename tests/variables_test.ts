// C12.3: one `expandVariables` with GitLab's rules, used wherever the library expands.
import { assert } from "./_deps.ts";
import { harness, until } from "./_harness.ts";
import { expandVariables, type JobHandler } from "../mod.ts";
import { prepareVariables } from "../src/script/_variables.ts";

const v = (
  key: string,
  value: string,
  flags: { raw?: boolean; file?: boolean; masked?: boolean } = {},
) => ({
  key,
  value,
  ...flags,
});

Deno.test("C12.3 expandVariables: $VAR, ${VAR}, $$, unknown names and bad syntax like os.Expand", () => {
  const vars = [v("A", "1"), v("A_B", "ab"), v("EMPTY", "")];
  const cases: [string, string][] = [
    ["plain", "plain"],
    ["$A", "1"],
    ["${A}", "1"],
    ["x$A_B-y", "xab-y"],
    ["x${A}_B", "x1_B"],
    ["$$", "$"],
    ["$$A", "$A"],
    ["a$", "a$"],
    ["$ x", "$ x"],
    ["$(cmd)", "$(cmd)"],
    ["$NOPE|${NOPE}|$EMPTY", "||"],
    ["$1$*$#$@$!$?$0", ""],
    ["${A:-default}", ""], // no shell forms: the name `A:-default` is unknown
    ["${}", ""],
    ["${A", "A"],
    ["\\$A", "\\1"], // no backslash escape in GitLab's expansion
    ["é$A€", "é1€"],
  ];
  for (const [input, want] of cases) assert.equal(expandVariables(input, vars), want, input);
});

Deno.test("C12.3 expandVariables: values expanded once against unexpanded values; raw values verbatim; last key wins", () => {
  const vars = [
    v("A", "old"),
    v("B", "b-$A"), // expanded against the unexpanded values: A is "1" (the last A)
    v("A", "1"),
    v("C", "c-$B"), // one level only: $B gives B's unexpanded value
    v("R", "$A ${A}", { raw: true }),
    v("SELF", "$SELF-x"),
    v("LOOP1", "$LOOP2"),
    v("LOOP2", "$LOOP1"),
  ];
  assert.equal(expandVariables("$B", vars), "b-1");
  assert.equal(expandVariables("$C", vars), "c-b-$A");
  assert.equal(expandVariables("$R", vars), "$A ${A}");
  assert.equal(expandVariables("$SELF", vars), "$SELF-x-x");
  assert.equal(expandVariables("$LOOP1", vars), "$LOOP1");
});

Deno.test("C12.3 expandVariables: file variables stand for their path with fileDir; masked option", () => {
  const vars = [v("F", "content", { file: true }), v("S", "s3cr3t-value", { masked: true })];
  assert.equal(expandVariables("cat $F", vars), "cat content");
  assert.equal(expandVariables("cat $F", vars, { fileDir: "/tmp/vars" }), "cat /tmp/vars/F");
  assert.equal(expandVariables("key=$S", vars), "key=s3cr3t-value");
  assert.equal(expandVariables("key=$S", vars, { masked: true }), "key=[MASKED]");
  const nested = [v("S", "s3cr3t-value", { masked: true }), v("URL", "https://x/?k=$S")];
  assert.equal(expandVariables("$URL", nested, { masked: true }), "https://x/?k=[MASKED]");
});

Deno.test("C12.3 expandVariables agrees with the environment runScript prepares", () => {
  const vars = [
    v("A", "1"),
    v("B", "x-$A-$$-$NOPE"),
    v("R", "$A", { raw: true }),
    v("F", "f", { file: true }),
  ];
  const prepared = prepareVariables(vars, "/tmp/vars");
  for (const p of prepared) {
    const key = p.key;
    const want = p.path ?? p.value;
    assert.equal(expandVariables(`\${${key}}`, vars, { fileDir: "/tmp/vars" }), want, key);
  }
});

Deno.test("C12.3 hostile: a huge text and many variables expand in linear time", () => {
  const vars = Array.from({ length: 10_000 }, (_, i) => v(`V${i}`, `${i}`));
  const text = "$V9999-".repeat(100_000);
  const started = performance.now();
  const out = expandVariables(text, vars);
  assert.equal(out.length, "9999-".length * 100_000);
  assert.ok(performance.now() - started < 5_000);
});

Deno.test("C12.3 artifact names, paths and excludes are expanded with GitLab's rules", async () => {
  await using h = await harness();
  h.mock.job()
    .variable("TARGET", "arm64")
    .variable("OUT", "out/$TARGET")
    .variable("RAWNAME", "$TARGET", { raw: true })
    .artifact({ name: "bin-${TARGET}-$RAWNAME-$$", paths: ["$OUT/"], exclude: ["${OUT}/*.log"] })
    .enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(
    (job) => {
      const handler: JobHandler = {
        async step() {
          await Deno.mkdir(`${job.buildDir}/out/arm64`, { recursive: true });
          await Deno.writeTextFile(`${job.buildDir}/out/arm64/app`, "binary");
          await Deno.writeTextFile(`${job.buildDir}/out/arm64/build.log`, "log");
        },
      };
      return handler;
    },
    1,
    { signal: stop.signal },
  );
  await until(h.clock, () => h.mock.jobs[0].state === "success");
  stop.abort();
  await done;
  const [artifact] = h.mock.jobs[0].artifacts;
  assert.equal(artifact.filename, "bin-arm64-$TARGET-$.zip");
  const log = h.mock.jobs[0].logText;
  assert.ok(log.includes("out/arm64: found 1 matching artifact files and directories"), log);
  assert.ok(log.includes("out/arm64/*.log: excluded 1 files"), log);
});

Deno.test("C12.3 Variable.maskedValue: [MASKED] for masked values, job secrets hidden inside others", async () => {
  await using h = await harness();
  h.mock.job()
    .variable("API_KEY", "s3cr3t-value", { masked: true })
    .variable("BOARD", "rpi4")
    .variable("URL", "https://x.example/?key=s3cr3t-value")
    .enqueue();
  const runner = await h.builder.build();
  const seen: Record<string, string> = {};
  let token = "";
  await runner.requestJob((job) => {
    token = job.payload.token;
    for (const k of ["API_KEY", "BOARD", "URL", "CI_REPOSITORY_URL", "CI_JOB_TOKEN"]) {
      seen[k] = job.variable(k)!.maskedValue;
    }
    seen.expanded = expandVariables("$BOARD $API_KEY $CI_REPOSITORY_URL", job.variables, {
      masked: true,
    });
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  assert.equal(seen.API_KEY, "[MASKED]");
  assert.equal(seen.BOARD, "rpi4");
  assert.equal(seen.URL, "https://x.example/?key=[MASKED]");
  assert.equal(seen.CI_JOB_TOKEN, "[MASKED]");
  assert.ok(!seen.CI_REPOSITORY_URL.includes(token), seen.CI_REPOSITORY_URL);
  assert.ok(seen.CI_REPOSITORY_URL.includes("gitlab-ci-token:[MASKED]@"), seen.CI_REPOSITORY_URL);
  assert.equal(seen.expanded.split(" ")[1], "[MASKED]");
  assert.ok(!seen.expanded.includes(token), seen.expanded);
});
