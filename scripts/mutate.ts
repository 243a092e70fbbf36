/**
 * Mutation testing with StrykerJS (`@stryker-mutator/core`, pinned in tools/package.json) and its
 * command runner calling `deno test` on the module's own test files.
 *
 * Run: `deno task mutate <module>…` after `npm ci --prefix tools`, e.g. `deno task mutate src/log`
 * or `deno task mutate src/api/retry.ts` or `deno task mutate src/log/masker.ts:1-200` (only the
 * mutants on those lines, with a report of their own: a large file in parts). A directory stands for every mapped file under it; the
 * lifecycle is `deno task mutate lifecycle` (src/run.ts, src/job.ts, src/runner.ts).
 *
 * Each source file gets its own Stryker run with only the test files listed for it in
 * {@linkcode TESTS} (the command runner has no per-test coverage, so every mutant runs the whole
 * list: keep it short). Stryker instruments a copy of the tree in `.stryker-tmp/` (mutant
 * switching: the active mutant comes from `process.env.__STRYKER_ACTIVE_MUTANT__`, which Deno 2
 * provides as `globalThis.process`), runs `deno test -P --no-check` there (the instrumented code
 * does not type-check), and writes `reports/mutation/<file>.{html,json}` plus an incremental file
 * so that a re-run only tests mutants whose code or tests changed.
 *
 * Options: `--concurrency=N` (default 2: the machine is small), `--full` (ignore the incremental
 * file), `--dry` (write the Stryker config and print it, do not run).
 *
 * @module
 */

/** Test files that exercise each source file (the command runs all of them per mutant). */
export const TESTS: Record<string, string[]> = {
  "src/log/crc32.ts": ["tests/crc32_test.ts"],
  "src/log/masker.ts": [
    "tests/masker_test.ts",
    "tests/masker_edges_test.ts",
    "tests/log_masking_long_test.ts",
  ],
  "src/log/job_log.ts": [
    "tests/job_log_test.ts",
    "tests/job_log_spool_test.ts",
    "tests/job_log_edges_test.ts",
  ],
  "src/log/_spool.ts": ["tests/spool_test.ts", "tests/job_log_spool_test.ts"],
  "src/log/_logger.ts": ["tests/logger_test.ts"],
  "src/_run_loader.ts": ["tests/run_loader_test.ts"],
  "src/api/client.ts": [
    "tests/client_test.ts",
    "tests/credentials_test.ts",
    "tests/client_sockets_test.ts",
    "tests/client_mutants_test.ts",
  ],
  "src/api/payload.ts": ["tests/payload_test.ts"],
  "src/api/retry.ts": ["tests/retry_test.ts"],
  "src/api/failure_reasons.ts": ["tests/payload_test.ts"],
  "src/run.ts": [
    "tests/lifecycle_run_test.ts",
    "tests/run_test.ts",
    "tests/cancel_test.ts",
    "tests/crate_port_test.ts",
    "tests/diagnostics_test.ts",
  ],
  "src/job.ts": [
    "tests/lifecycle_job_test.ts",
    "tests/run_test.ts",
    "tests/cancel_test.ts",
    "tests/crate_port_test.ts",
  ],
  "src/runner.ts": ["tests/runner_test.ts", "tests/lifecycle_runner_test.ts"],
  "src/_timer.ts": ["tests/timer_test.ts"],
};

/** Named groups of source files. */
const GROUPS: Record<string, string[]> = {
  lifecycle: ["src/run.ts", "src/job.ts", "src/runner.ts"],
};

const STRYKER = "tools/node_modules/@stryker-mutator/core/bin/stryker.js";
const OUT = "reports/mutation";

/** Expands the command line's modules to the mapped source files. */
function expand(modules: string[]): string[] {
  const files: string[] = [];
  for (const raw of modules) {
    const [module, lines] = raw.replace(/^\.\//, "").replace(/\/$/, "").split(":");
    if (lines !== undefined) {
      if (!TESTS[module] || !/^\d+-\d+$/.test(lines)) {
        throw new Error(
          `'${raw}' is not a mapped file with a line range such as src/log/masker.ts:1-200`,
        );
      }
      files.push(raw);
      continue;
    }
    const group = GROUPS[module];
    const matched = group ??
      Object.keys(TESTS).filter((file) => file === module || file.startsWith(`${module}/`));
    if (matched.length === 0) {
      throw new Error(
        `No test files are mapped for '${raw}': add it to TESTS in scripts/mutate.ts`,
      );
    }
    for (const file of matched) if (!files.includes(file)) files.push(file);
  }
  return files;
}

/** The report name of a file or file:lines target: src/log/job_log.ts:1-9 → log_job_log_1-9. */
function slugOf(target: string): string {
  return target.replace(/^src\//, "").replace(/\.ts/, "").replaceAll("/", "_").replace(":", "_");
}

/** The Stryker configuration for one source file. */
function config(target: string, concurrency: number, full: boolean): Record<string, unknown> {
  const slug = slugOf(target);
  const tests = TESTS[target.split(":")[0]].join(" ");
  return {
    $schema: "../../tools/node_modules/@stryker-mutator/core/schema/stryker-schema.json",
    testRunner: "command",
    commandRunner: {
      command: `${Deno.execPath()} test -P --no-check --fail-fast --quiet ${tests}`,
    },
    coverageAnalysis: "off",
    mutate: [target],
    concurrency,
    incremental: true,
    force: full,
    incrementalFile: `${OUT}/${slug}.incremental.json`,
    reporters: ["clear-text", "progress", "html", "json"],
    htmlReporter: { fileName: `${OUT}/${slug}.html` },
    jsonReporter: { fileName: `${OUT}/${slug}.json` },
    clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
    ignorePatterns: [
      "/tools",
      "/npm",
      "/cov",
      "/bench",
      "/builds",
      "/docs",
      "/npm-test",
      "/reports",
      "/.stryker-tmp",
    ],
    tempDirName: ".stryker-tmp",
    cleanTempDir: true,
    timeoutMS: 5_000,
    timeoutFactor: 2,
    thresholds: { high: 90, low: 80, break: null },
    logLevel: "info",
    fileLogLevel: "off",
  };
}

if (import.meta.main) {
  const args = Deno.args.filter((arg) => !arg.startsWith("--"));
  const flags = Deno.args.filter((arg) => arg.startsWith("--"));
  const concurrency = Number(
    flags.find((flag) => flag.startsWith("--concurrency="))?.split("=")[1] ?? 2,
  );
  const full = flags.includes("--full");
  const dry = flags.includes("--dry");
  if (args.length === 0) {
    console.error(
      "Usage: deno task mutate <src/dir | src/file.ts | lifecycle>… [--concurrency=N] [--full] [--dry]",
    );
    Deno.exit(2);
  }
  await Deno.mkdir(OUT, { recursive: true });
  let failed = false;
  for (const file of expand(args)) {
    const path = `${OUT}/${slugOf(file)}.config.json`;
    const text = JSON.stringify(config(file, concurrency, full), null, 2);
    await Deno.writeTextFile(path, `${text}\n`);
    console.log(`== ${file}: ${TESTS[file.split(":")[0]].join(", ")} (${path})`);
    if (dry) {
      console.log(text);
      continue;
    }
    const { code } = await new Deno.Command("node", {
      args: [STRYKER, "run", path],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) failed = true;
  }
  if (failed) Deno.exit(1);
}
