/**
 * Prometheus metrics named and labelled like the official GitLab runner's, so that its
 * dashboards and alerts work unchanged (CONFORMANCE C13.1).
 *
 * The exposition is this module's own (`_exposition.ts`, the text `prom-client` writes, without
 * its 9 MB of RSS): web-standard JavaScript, it runs on Deno without extra permissions and on
 * Node from the npm build. No process metrics are collected (the official runner's `go_*` ones
 * would not match a JavaScript runtime's anyway).
 *
 * @module
 */

import { CONTENT_TYPE, Counter, Gauge, Histogram, Registry } from "./_exposition.ts";
import type { ApiEndpoint, ResponseObserver } from "../api/client.ts";
import { VERSION } from "../builder.ts";
import type { JobOutcome } from "../run.ts";

/** Buckets of `gitlab_runner_job_duration_seconds`, the official runner's (30 s to 10 h). */
export const JOB_DURATION_BUCKETS: readonly number[] = [
  30,
  60,
  300,
  600,
  1800,
  3600,
  7200,
  10800,
  18000,
  36000,
];

/** Buckets of `gitlab_runner_api_request_duration_seconds`, the official runner's. */
export const API_REQUEST_DURATION_BUCKETS: readonly number[] = [
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** The log levels `gitlab_runner_errors_total` counts, as the official runner names them. */
const ERROR_LEVELS = ["panic", "fatal", "error", "warning"] as const;

/** Options of {@linkcode RunnerMetrics}. */
export interface RunnerMetricsOptions {
  /** `name` of `gitlab_runner_version_info` (default `@x/gitlab-runner`). */
  name?: string;
  /** `version` of `gitlab_runner_version_info` (default this library's version). */
  version?: string;
  /** `revision` of `gitlab_runner_version_info`. */
  revision?: string;
  /** `branch` of `gitlab_runner_version_info`. */
  branch?: string;
  /** `built_at` of `gitlab_runner_version_info`. */
  builtAt?: string;
}

/** What a runner tells its {@linkcode RunnerMetrics} (made by `RunnerBuilder.build()`). */
export interface RunnerRecorder {
  /** A job was received and starts. */
  jobStarted(): void;
  /** A job ended. */
  jobEnded(outcome: JobOutcome): void;
  /** `run()` runs at most `maximum` jobs at once. */
  concurrent(maximum: number): void;
  /** The client's response observer. */
  response: ResponseObserver;
}

/** What {@linkcode RunnerMetrics.attach} needs to know about a runner. */
export interface AttachedRunner {
  /** The runner token (only its short form, as the official runner shows it, is used). */
  token: string;
  /** The system id. */
  systemId: string;
  /** The runner's name (`runner_name` of `gitlab_runner_failed_jobs_total`). */
  name?: string;
  /** How many jobs run now. */
  running(): number;
}

/**
 * The short token the official runner labels its metrics with (`runner`): 9 characters after
 * a `glrt-` prefix, else the first 8. A token too short to shorten gives an empty label rather
 * than being shown whole.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { shortToken } from "@x/gitlab-runner";
 * strictEqual(shortToken("glrt-abcdefghijklmnopqrst"), "abcdefghi");
 * ```
 *
 * @param token The runner token.
 * @returns The short token.
 */
export function shortToken(token: string): string {
  if (token.length < 16) return "";
  for (const prefix of ["glrt-", "glrtr-", "glcbt-"]) {
    if (token.startsWith(prefix)) return token.slice(prefix.length, prefix.length + 9);
  }
  if (/^GR[0-9A-Fa-f]{7}/.test(token) && token.length >= 17) return token.slice(0, 17);
  return token.slice(0, 8);
}

function runtimeVersion(): string {
  const g = globalThis as {
    Deno?: { version?: { deno?: string } };
    process?: { version?: string };
  };
  if (g.Deno?.version?.deno) return `deno ${g.Deno.version.deno}`;
  return g.process?.version ? `node ${g.process.version}` : "unknown";
}

function platform(): { os: string; architecture: string } {
  const g = globalThis as {
    Deno?: { build?: { os?: string; arch?: string } };
    process?: { platform?: string; arch?: string };
  };
  const os = g.Deno?.build?.os ?? g.process?.platform ?? "unknown";
  const arch = g.Deno?.build?.arch ?? g.process?.arch ?? "unknown";
  const goArch: Record<string, string> = { x86_64: "amd64", x64: "amd64", aarch64: "arm64" };
  return { os: os === "win32" ? "windows" : os, architecture: goArch[arch] ?? arch };
}

/**
 * The runner's Prometheus metrics. Give it to `RunnerBuilder.metrics()`, serve it with
 * `serveMetrics()`, and add {@linkcode RunnerMetrics.sink} to the LogTape configuration for
 * `gitlab_runner_errors_total`. One registry can serve several runners of a process (each
 * runner's series carry its `runner` and `system_id` labels).
 *
 * Metrics, with the official runner's names, labels and buckets:
 * - `gitlab_runner_jobs{runner,system_id,state,stage,executor_stage}`: jobs running now
 *   (`state="running"`; an `idle` series with 0 is always there, as in the official runner);
 * - `gitlab_runner_jobs_total{runner,system_id}`: jobs received;
 * - `gitlab_runner_job_duration_seconds{runner,system_id}`: histogram of job durations;
 * - `gitlab_runner_failed_jobs_total{runner,runner_name,failure_reason}`: failed jobs;
 * - `gitlab_runner_api_request_statuses_total{runner,system_id,endpoint,status,method}` and
 *   `gitlab_runner_api_request_duration_seconds{runner,system_id,endpoint,status_class,method}`:
 *   every answer GitLab gave (endpoints `request_job`, `update_job`, `patch_trace`,
 *   `verify_runner`, `upload_artifacts`, `download_artifacts`; methods lower case);
 * - `gitlab_runner_errors_total{level}`: warnings and errors logged (through the sink);
 * - `gitlab_runner_concurrent`: the `maximum` of `Runner.run()`;
 * - `gitlab_runner_version_info{name,version,revision,branch,go_version,built_at,os,architecture}`
 *   (`go_version` holds the JavaScript runtime, e.g. `deno 2.5.0`).
 *
 * @example Count a job and read the exposition
 * ```ts
 * import { ok } from "node:assert";
 * import { RunnerBuilder, RunnerMetrics } from "@x/gitlab-runner";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * const mock = new GitLabMock();
 * mock.job().script(["true"]).enqueue();
 * const metrics = new RunnerMetrics();
 * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
 *   .fetch(mock.fetch)
 *   .metrics(metrics)
 *   .build();
 * await runner.requestJob(() => ({ step: async () => {} }));
 * await runner.drain();
 * const text = await metrics.metrics();
 * ok(text.includes("gitlab_runner_jobs_total{"));
 * ```
 */
export class RunnerMetrics {
  #registry = new Registry();
  #runners = new Set<{ runner: string; systemId: string; running: () => number }>();
  #jobs: Gauge;
  #jobsTotal: Counter;
  #duration: Histogram;
  #failed: Counter;
  #statuses: Counter;
  #requestDuration: Histogram;
  #errors: Counter;
  #concurrent: Gauge;

  /** Creates the registry with every metric (none has series until something happens). */
  constructor(options: RunnerMetricsOptions = {}) {
    const registry = this.#registry;
    const runners = this.#runners;
    this.#jobs = new Gauge(
      registry,
      "gitlab_runner_jobs",
      "The current number of running builds.",
      ["runner", "system_id", "state", "stage", "executor_stage"],
      (gauge) => {
        gauge.reset();
        for (const r of runners) {
          const base = { runner: r.runner, system_id: r.systemId };
          gauge.set({ ...base, state: "idle", stage: "idle", executor_stage: "idle" }, 0);
          const running = r.running();
          if (running > 0) {
            gauge.set({ ...base, state: "running", stage: "", executor_stage: "" }, running);
          }
        }
      },
    );
    this.#jobsTotal = new Counter(
      registry,
      "gitlab_runner_jobs_total",
      "Total number of handled jobs",
      ["runner", "system_id"],
    );
    this.#duration = new Histogram(
      registry,
      "gitlab_runner_job_duration_seconds",
      "Histogram of job durations",
      ["runner", "system_id"],
      JOB_DURATION_BUCKETS,
    );
    this.#failed = new Counter(
      registry,
      "gitlab_runner_failed_jobs_total",
      "Total number of failed jobs",
      ["runner", "runner_name", "failure_reason"],
    );
    this.#statuses = new Counter(
      registry,
      "gitlab_runner_api_request_statuses_total",
      "The total number of API requests made by GitLab Runner, partitioned by runner, " +
        "system_id, endpoint, status and method.",
      ["runner", "system_id", "endpoint", "status", "method"],
    );
    this.#requestDuration = new Histogram(
      registry,
      "gitlab_runner_api_request_duration_seconds",
      "Latency histogram of API requests made by GitLab Runner, partitioned by runner, " +
        "system_id, endpoint, status_class and method.",
      ["runner", "system_id", "endpoint", "status_class", "method"],
      API_REQUEST_DURATION_BUCKETS,
    );
    this.#errors = new Counter(
      registry,
      "gitlab_runner_errors_total",
      "The number of caught errors.",
      ["level"],
    );
    for (const level of ERROR_LEVELS) this.#errors.inc({ level }, 0);
    this.#concurrent = new Gauge(
      registry,
      "gitlab_runner_concurrent",
      "The current value of concurrent setting",
    );
    const { os, architecture } = platform();
    new Gauge(
      registry,
      "gitlab_runner_version_info",
      "A metric with a constant '1' value labeled by different build stats fields.",
      ["name", "version", "revision", "branch", "go_version", "built_at", "os", "architecture"],
    ).set({
      name: options.name ?? "@x/gitlab-runner",
      version: options.version ?? VERSION,
      revision: options.revision ?? "",
      branch: options.branch ?? "",
      go_version: runtimeVersion(),
      built_at: options.builtAt ?? "",
      os,
      architecture,
    }, 1);
  }

  /** The `Content-Type` of {@linkcode RunnerMetrics.metrics}'s text. */
  get contentType(): string {
    return CONTENT_TYPE;
  }

  /** The metrics in the Prometheus text exposition format. */
  async metrics(): Promise<string> {
    return this.#registry.metrics();
  }

  /**
   * A LogTape sink that counts warnings and errors in `gitlab_runner_errors_total{level}`,
   * like the official runner's log hook: add it to the sinks of the `["gitlab-runner"]`
   * logger (it ignores records below `warning`).
   */
  get sink(): (record: { readonly level: string }) => void {
    return (record) => {
      const level = record.level === "warning"
        ? "warning"
        : record.level === "error"
        ? "error"
        : record.level === "fatal"
        ? "fatal"
        : undefined;
      if (level) this.#errors.inc({ level });
    };
  }

  /** Sets `gitlab_runner_concurrent` (`Runner.run()` does it with its `maximum`). */
  setConcurrent(value: number): void {
    this.#concurrent.set({}, value);
  }

  /**
   * Adds a runner (`RunnerBuilder.build()` does it); returns what the runner records with.
   *
   * @param runner The runner's token, system id, name and running jobs.
   * @returns The recorder for that runner.
   */
  attach(runner: AttachedRunner): RunnerRecorder {
    const label = shortToken(runner.token);
    const systemId = runner.systemId;
    const runnerName = runner.name ?? "";
    this.#runners.add({ runner: label, systemId, running: runner.running });
    const jobsTotal = this.#jobsTotal.labels(label, systemId);
    const duration = this.#duration.labels(label, systemId);
    const statuses = this.#statuses;
    const requestDuration = this.#requestDuration;
    return {
      jobStarted: () => jobsTotal.inc(),
      jobEnded: (outcome) => {
        duration.observe(outcome.durationMs / 1000);
        if (outcome.state === "failed") {
          this.#failed.inc({
            runner: label,
            runner_name: runnerName,
            failure_reason: outcome.failureReason ?? "unknown_failure",
          });
        }
      },
      concurrent: (maximum) => this.setConcurrent(maximum),
      response: (endpoint: ApiEndpoint, method: string, status: number, seconds: number) => {
        const m = method.toLowerCase();
        statuses.labels(label, systemId, endpoint, String(status), m).inc();
        requestDuration.labels(label, systemId, endpoint, statusClass(status), m).observe(seconds);
      },
    };
  }
}

function statusClass(status: number): string {
  if (status >= 500) return "5xx";
  if (status >= 400) return "4xx";
  if (status >= 300) return "3xx";
  if (status >= 200) return "2xx";
  if (status >= 100) return "1xx";
  return "unknown";
}
