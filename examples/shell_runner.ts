/**
 * A complete shell runner: turns this machine into a GitLab runner for shell jobs.
 *
 * ```sh
 * deno run -A jsr:@x/gitlab-runner/example --url https://gitlab.example.com --token-file ./token
 * ```
 *
 * The runner token never needs to be in the command line, which every process on the machine,
 * jobs included, can read (`ps`, `/proc/<pid>/cmdline`): give it with `--token-file` (a file or
 * a pipe such as `--token-file <(pass show runner)`) or in `RUNNER_TOKEN`. A `RUNNER_TOKEN` is
 * removed at start, also from the process's initial environment block, which `/proc/<pid>/environ`
 * would otherwise show to jobs (the runner refuses to start where it cannot do that); jobs never
 * get the runner's environment beyond `DEFAULT_INHERITED_ENV`. Jobs run as the runner's user:
 * they can read every file that user can, a token file too, unless it is a pipe or it is made
 * unreadable after start. `--token` still works, with a warning.
 *
 * Each job runs in `<build dir>/<job id>`: the job's sources are checked out there first with
 * the machine's `git`, like the official shell executor does (`GIT_STRATEGY`, `GIT_DEPTH`,
 * submodules, LFS: `Job.sources()`; the runner announces `refspecs`, so merge-request
 * pipelines work), then dependency artifacts are downloaded and extracted there, then every
 * step's script runs in one shell session (bash, else sh) with the
 * job's variables as environment, its output streamed (masked) into the job log; artifacts
 * are uploaded from there afterwards. SIGINT or SIGTERM stops gracefully (running jobs finish,
 * no new ones are taken); a second signal cancels the running jobs. `--listen-address` serves
 * Prometheus metrics and health checks (`/metrics`, `/health/live`, `/health/ready`; see
 * docs/OPERATING.md for a fleet on Kubernetes). `--help` lists the options.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import { configure, getConsoleSink } from "@logtape/logtape";
import {
  type Job,
  JobFailure,
  type JobHandler,
  type JobOutcome,
  ListenError,
  type MetricsServer,
  outputln,
  parseListenAddress,
  type Phase,
  type Runner,
  RunnerBuilder,
  RunnerMetrics,
  runScript,
  ScriptFailure,
  serveMetrics,
} from "../mod.ts";

const USAGE = `Usage: shell_runner [options]

A GitLab runner for shell jobs, built on @x/gitlab-runner.

Options (each falls back to an environment variable):
  --url URL            GitLab URL                           (CI_SERVER_URL)
  --token-file PATH    file holding the runner authentication token, glrt-…
                       (RUNNER_TOKEN_FILE; or the token itself in RUNNER_TOKEN)
  --token TOKEN        the token itself: NOT RECOMMENDED, the command line is
                       visible to every process, jobs included (ps)
  --concurrency N      jobs run at once (default 4)         (RUNNER_CONCURRENCY)
  --build-dir DIR      where jobs run (default ./builds)    (RUNNER_BUILD_DIR)
  --state-dir DIR      keeps .runner_system_id, so restarts  (RUNNER_STATE_DIR)
                       stay one runner (default: build dir)
  --name NAME          runner name shown in GitLab          (RUNNER_NAME)
  --listen-address H:P serve metrics and health checks on   (RUNNER_LISTEN_ADDRESS)
                       host:port (":9252": every interface; port 0: any free one):
                         GET /metrics       Prometheus text format, the official
                                            runner's names (gitlab_runner_jobs, …)
                         GET /health/live   200 while the process runs
                         GET /health/ready  200 once the token is verified and jobs
                                            are asked for; 503 while stopping
  --verify             check the token with GitLab and exit
  --verify-timeout S   how long checking the token may take, in seconds
                       (default 30; also at start)      (RUNNER_VERIFY_TIMEOUT)
  --request-timeout S  how long any call waits for GitLab's answer before it is
                       retried, in seconds (default 600) (RUNNER_REQUEST_TIMEOUT)
  --verbose            print the runner's diagnostics (debug level)
  -h, --help           show this help

The token: jobs run as this runner's user, so they can read its command line
(ps, /proc/<pid>/cmdline) and its initial environment (/proc/<pid>/environ).
Use --token-file (a pipe works: --token-file <(pass show runner)) or RUNNER_TOKEN,
which the runner removes from its environment, initial one included, at start.

Stop with SIGINT or SIGTERM: running jobs finish first (the listener stays up
and /health/ready says 503 meanwhile), then it exits 0; a second signal cancels
the running jobs.`;

/** Where the runner token came from. */
export type TokenSource = "file" | "argument" | "environment";

/** What the command line says. */
export interface ShellRunnerConfig {
  /** GitLab URL. */
  url: string;
  /** Runner token. */
  token: string;
  /**
   * Where the token came from: `--token-file`/`RUNNER_TOKEN_FILE` (`"file"`), `--token`
   * (`"argument"`, visible to every process on the machine) or `RUNNER_TOKEN`.
   */
  tokenSource: TokenSource;
  /** Jobs at once. */
  concurrency: number;
  /** Build directory. */
  buildDir: string;
  /** Where `.runner_system_id` is kept (default: the build directory). */
  stateDir: string;
  /** Runner name. */
  name?: string;
  /** Only verify the token. */
  verifyOnly: boolean;
  /** How long the token check may take, in milliseconds. */
  verifyTimeoutMs: number;
  /** The response-header deadline of every call, in milliseconds. */
  requestTimeoutMs: number;
  /** Debug diagnostics. */
  verbose: boolean;
  /** Where to serve `/metrics` and `/health/*`, if anywhere. */
  listen?: { hostname: string; port: number };
}

/** A bad command line: the message says what is wrong. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Reads the command line (with environment fallbacks). Returns undefined for `--help`.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./shell_runner.ts";
 * import { strictEqual } from "node:assert";
 * const config = parseConfig(["--url", "https://gitlab.example.com", "--token", "glrt-x"], {});
 * strictEqual(config?.concurrency, 4);
 * ```
 */
export function parseConfig(
  args: string[],
  env: Record<string, string | undefined>,
): ShellRunnerConfig | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        token: { type: "string" },
        "token-file": { type: "string" },
        concurrency: { type: "string" },
        "build-dir": { type: "string" },
        "state-dir": { type: "string" },
        name: { type: "string" },
        "listen-address": { type: "string" },
        verify: { type: "boolean" },
        "verify-timeout": { type: "string" },
        "request-timeout": { type: "string" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return undefined;
  const url = values.url ?? env.CI_SERVER_URL;
  if (values.token !== undefined && values["token-file"] !== undefined) {
    throw new UsageError("Pass either --token-file or --token, not both");
  }
  let token: string | undefined;
  let tokenSource: TokenSource;
  const tokenFile = values["token-file"] ??
    (values.token === undefined ? env.RUNNER_TOKEN_FILE || undefined : undefined);
  if (tokenFile !== undefined) {
    tokenSource = "file";
    try {
      token = readFileSync(tokenFile, "utf8").trim();
    } catch (cause) {
      throw new UsageError(
        `Cannot read the token file ${tokenFile}: ${
          cause instanceof Error ? cause.message : cause
        }`,
      );
    }
    if (!token) throw new UsageError(`The token file ${tokenFile} is empty`);
  } else if (values.token !== undefined) {
    tokenSource = "argument";
    token = values.token;
  } else {
    tokenSource = "environment";
    token = env.RUNNER_TOKEN;
  }
  if (!url) throw new UsageError("Missing GitLab URL: pass --url or set CI_SERVER_URL");
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error();
  } catch {
    throw new UsageError(`Invalid GitLab URL: ${url} (expected http:// or https://)`);
  }
  if (!token) {
    throw new UsageError("Missing runner token: pass --token-file or set RUNNER_TOKEN");
  }
  const rawConcurrency = values.concurrency ?? env.RUNNER_CONCURRENCY ?? "4";
  const concurrency = Number(rawConcurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new UsageError(
      `--concurrency must be a whole number of at least 1, got ${rawConcurrency}`,
    );
  }
  const buildDir = values["build-dir"] ?? env.RUNNER_BUILD_DIR ?? "builds";
  const seconds = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback * 1000;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) {
      throw new UsageError(`--${name} must be a positive number of seconds, got ${raw}`);
    }
    return n * 1000;
  };
  const listenAddress = values["listen-address"] ?? (env.RUNNER_LISTEN_ADDRESS || undefined);
  let listen: ShellRunnerConfig["listen"];
  if (listenAddress !== undefined) {
    try {
      listen = parseListenAddress(listenAddress);
    } catch (error) {
      throw new UsageError(`--listen-address: ${(error as Error).message}`);
    }
  }
  return {
    url,
    token,
    tokenSource,
    concurrency,
    buildDir,
    stateDir: values["state-dir"] ?? env.RUNNER_STATE_DIR ?? buildDir,
    name: values.name ?? env.RUNNER_NAME,
    verifyOnly: values.verify ?? false,
    verifyTimeoutMs: seconds(
      "verify-timeout",
      values["verify-timeout"] ?? env.RUNNER_VERIFY_TIMEOUT,
      30,
    ),
    requestTimeoutMs: seconds(
      "request-timeout",
      values["request-timeout"] ?? env.RUNNER_REQUEST_TIMEOUT,
      600,
    ),
    verbose: values.verbose ?? false,
    listen,
  };
}

/**
 * The handler of one shell job: checks out the job's sources into the build dir and downloads
 * the dependencies' artifacts there, then runs each step with `runScript` there. Artifacts are
 * uploaded by the library afterwards from the build dir (the default of `uploadableFiles()`).
 */
export class ShellJob implements JobHandler {
  #job: Job;

  /** Prepares the job: gets its sources, downloads and extracts the dependencies' artifacts. */
  static async create(job: Job): Promise<ShellJob> {
    await job.sources(); // like the shell executor's get_sources; a failure fails the job
    for (const dependency of job.dependencies()) {
      if (!dependency.hasArtifacts) continue;
      let artifact;
      try {
        artifact = await dependency.download();
      } catch (cause) {
        throw new JobFailure("script_failure", {
          message: `downloading the artifacts of ${dependency.name} failed: ${
            cause instanceof Error ? cause.message : cause
          }`,
          cause,
        });
      }
      if (!artifact) continue;
      const files = await artifact.extractTo(job.buildDir);
      outputln(`Extracted ${files.length} files from ${dependency.name}'s artifacts`);
    }
    return new ShellJob(job);
  }

  private constructor(job: Job) {
    this.#job = job;
  }

  /** Runs the step's lines in one shell in the build dir. */
  async step(script: readonly string[], _phase: Phase, signal: AbortSignal): Promise<void> {
    const code = await runScript(script, {
      cwd: this.#job.buildDir,
      variables: this.#job.variables,
      fileVariablesDir: `${this.#job.buildDir}.tmp`,
      signal,
    });
    if (code !== 0) throw new ScriptFailure(code);
  }

  /** Removes the file variables' directory. */
  async cleanup(): Promise<void> {
    const { rm } = await import("node:fs/promises");
    await rm(`${this.#job.buildDir}.tmp`, { recursive: true, force: true });
  }
}

/** Where the NUL-separated `block` has entries `NAME=…`. */
function findEntries(block: Uint8Array, name: string): { at: number; length: number }[] {
  const prefix = new TextEncoder().encode(`${name}=`);
  const found = [];
  let at = 0;
  while (at < block.length) {
    let end = block.indexOf(0, at);
    if (end === -1) end = block.length;
    if (end - at >= prefix.length && prefix.every((byte, i) => block[at + i] === byte)) {
      found.push({ at, length: end - at });
    }
    at = end + 1;
  }
  return found;
}

/**
 * Removes `name` from this process's environment, and from its initial environment block, which
 * the kernel shows in `/proc/<pid>/environ` to every process of the same user (jobs included)
 * whatever the process does to its environment later. The block is overwritten with zeros
 * through `/proc/self/mem` (at `env_start`, field 50 of `/proc/self/stat`); the strings there
 * are no longer used once the variable is unset. Linux only (Deno: needs `--allow-all`). Throws
 * when the variable stays readable.
 */
async function eraseFromEnvironment(name: string): Promise<void> {
  delete process.env[name];
  const stat = await readFile("/proc/self/stat", "latin1");
  const envStart = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[47]);
  if (!Number.isSafeInteger(envStart) || envStart <= 0) {
    throw new Error("/proc/self/stat shows no env_start (Linux 3.5 or later needed)");
  }
  const entries = findEntries(await readFile("/proc/self/environ"), name);
  if (entries.length > 0) {
    const mem = await open("/proc/self/mem", "r+");
    try {
      for (const { at, length } of entries) {
        await mem.write(new Uint8Array(length), 0, length, envStart + at);
      }
    } finally {
      await mem.close();
    }
  }
  if (findEntries(await readFile("/proc/self/environ"), name).length > 0) {
    throw new Error(`${name} is still in /proc/self/environ after overwriting it`);
  }
  if (process.env[name] !== undefined) throw new Error(`${name} is still set`);
}

function describeOutcome(o: JobOutcome): string {
  const seconds = (o.durationMs / 1000).toFixed(1);
  const what = o.state === "failed"
    ? `failed (${o.failureReason ?? "unknown"}${o.exitCode ? `, exit code ${o.exitCode}` : ""})`
    : o.state === "aborted"
    ? "canceled"
    : o.state;
  return `job ${o.id} ${o.name ?? ""} ${what} in ${seconds} s`.replace(/\s+/g, " ");
}

/**
 * Runs the shell runner with `args`; resolves to the exit code.
 *
 * @example Bad arguments give a clear message and exit code 2
 * ```ts
 * import { main } from "./shell_runner.ts";
 * import { strictEqual } from "node:assert";
 * strictEqual(await main(["--concurrency", "zero"], { CI_SERVER_URL: "https://x.org", RUNNER_TOKEN: "t" }), 2);
 * ```
 */
export async function main(
  args: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let config: ShellRunnerConfig | undefined;
  try {
    config = parseConfig(args, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`shell_runner: ${error.message}\nRun with --help for the options.`);
    return 2;
  }
  if (!config) {
    console.log(USAGE);
    return 0;
  }
  if (env === process.env && process.env.RUNNER_TOKEN !== undefined) {
    // C9.3: a job must not find the token in our environment, initial one included.
    try {
      await eraseFromEnvironment("RUNNER_TOKEN");
    } catch (error) {
      console.error(
        "shell_runner: cannot remove RUNNER_TOKEN from this process's initial environment, " +
          "which jobs could read in /proc/<pid>/environ " +
          `(${error instanceof Error ? error.message : error}). ` +
          "Pass the token with --token-file instead (Deno needs --allow-all for this).",
      );
      return 1;
    }
  }
  if (config.tokenSource === "argument") {
    console.error(
      "shell_runner: warning: --token puts the runner token in the command line, which every " +
        "process on this machine can read, jobs included (ps, /proc/<pid>/cmdline): " +
        "use --token-file or RUNNER_TOKEN instead",
    );
  }
  const metrics = new RunnerMetrics();
  await configure({
    sinks: { console: getConsoleSink(), metrics: metrics.sink },
    loggers: [
      {
        category: ["gitlab-runner"],
        sinks: ["console", "metrics"],
        lowestLevel: config.verbose ? "debug" : "warning",
      },
      { category: ["logtape", "meta"], sinks: ["console"], lowestLevel: "warning" },
    ],
    reset: true,
  });

  let builder = new RunnerBuilder(config.url, config.token, config.buildDir).shell("bash")
    .features(["refspecs"]) // job.sources() fetches git_info.refspecs (C11.5)
    .systemIdState(`${config.stateDir}/.runner_system_id`)
    .deadlines({ headerTimeoutMs: config.requestTimeoutMs })
    .metrics(metrics);
  if (config.name) builder = builder.name(config.name);
  const runner = await builder.build();

  let server: MetricsServer | undefined;
  if (config.listen && !config.verifyOnly) {
    try {
      server = await serveMetrics({ ...config.listen, metrics, ready: () => runner.ready });
    } catch (error) {
      if (!(error instanceof ListenError)) throw error;
      console.error(`shell_runner: ${error.message}`);
      return 1;
    }
    console.log(
      `Serving /metrics, /health/live and /health/ready on ${server.url} ` +
        `(listening on ${server.hostname}:${server.port})`,
    );
  }
  try {
    return await serve(config, runner);
  } finally {
    await server?.close();
  }
}

/** Verifies the token, then runs jobs until a signal; resolves to the exit code. */
async function serve(
  config: ShellRunnerConfig,
  runner: Runner,
): Promise<number> {
  let verified;
  try {
    // Bounded (C8.1): one deadline for the answer, retries only within it.
    verified = await runner.verify({
      timeoutMs: config.verifyTimeoutMs,
      retry: { deadlineMs: config.verifyTimeoutMs, attempts: 3 },
    });
  } catch (error) {
    const timedOut = error instanceof Error && /No answer within/.test(error.message);
    console.error(
      timedOut
        ? `shell_runner: GitLab at ${config.url} did not answer within ${
          config.verifyTimeoutMs / 1000
        } s (--verify-timeout): ${error.message}`
        : `shell_runner: cannot reach GitLab at ${config.url}: ${
          error instanceof Error ? error.message : error
        }`,
    );
    return 1;
  }
  if (!verified.valid) {
    console.error(
      `shell_runner: GitLab rejected the runner token (HTTP ${verified.status}): check the token`,
    );
    return 1;
  }
  console.log(`Runner token verified with ${config.url} (system id ${runner.systemId})`);
  if (config.verifyOnly) return 0;

  const stop = new AbortController();
  const cancel = new AbortController();
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals === 1) {
      console.log("Stopping: running jobs finish first (signal again to cancel them)");
      stop.abort();
    } else {
      console.log("Canceling running jobs");
      cancel.abort();
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  console.log(`Waiting for jobs (at most ${config.concurrency} at once) in ${config.buildDir}`);
  try {
    await runner.run((job) => ShellJob.create(job), config.concurrency, {
      signal: stop.signal,
      cancelSignal: cancel.signal,
      onJobStart: (job) => console.log(`job ${job.id} ${job.name ?? ""} started`),
      onJobEnd: (outcome) => console.log(describeOutcome(outcome)),
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  console.log("Stopped");
  return 0;
}

if (import.meta.main) {
  process.exit(await main(process.argv.slice(2)));
}
