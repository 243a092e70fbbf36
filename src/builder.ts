/**
 * `RunnerBuilder`: an immutable builder for {@linkcode Runner}.
 *
 * @module
 */

import { resolve } from "node:path";
import { type Clock, systemClock } from "./clock.ts";
import { apiBaseUrl, Client, constantInfo, type RunnerMetadata } from "./api/client.ts";
import {
  DEFAULT_FINAL_UPDATE_DEADLINE_MS,
  DEFAULT_FLUSH_DEADLINE_MS,
  DEFAULT_OUTPUT_LIMIT,
} from "./log/_defaults.ts";
import {
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_PAYLOAD_BYTES,
} from "./api/client.ts";
import type { RunnerMetrics } from "./metrics/registry.ts";
import { ALL_FEATURES, LIBRARY_FEATURES, Runner } from "./runner.ts";
import { generateSystemId, persistedSystemId } from "./system_id.ts";
import { loadLogTapeIfUsed } from "./log/_logger.ts";

/** The library's version, sent in `info.version` unless the application sets its own. */
export const VERSION = "0.1.0";

interface BuilderState {
  server: string;
  token: string;
  buildDir: string;
  systemId?: string;
  name?: string;
  version?: string;
  revision?: string;
  platform?: string;
  architecture?: string;
  executor?: string;
  shell?: string;
  fetch?: typeof fetch;
  clock?: Clock;
  random?: () => number;
  features: readonly string[];
  outputLimit: number;
  checkIntervalMs: number;
  updateIntervalMs: number;
  keepAliveMs: number;
  abortGraceMs: number;
  unhealthyRequestsLimit: number;
  unhealthyIntervalMs: number;
  machineIdPath: string;
  deadlines: Required<Deadlines>;
  payloadLimit: number;
  systemIdState?: string;
  metrics?: RunnerMetrics;
}

/**
 * The deadlines of a runner (CONFORMANCE C8), all in milliseconds, measured on the runner's
 * clock. Every wait is bounded by one of them:
 *
 * ```text
 * headerTimeoutMs  10 min  a call's wait for GitLab's response headers (redirects included);
 *                          then it is aborted and retried like a 5xx. Keep it above GitLab's
 *                          long-poll hold (~50 s).
 * idleTimeoutMs     2 min  a response body's wait for its next bytes (job payload, artifact
 *                          download, error bodies).
 * finalUpdateMs     1 h    how long a job's final state is retried (outages, 202s) before it
 *                          is given up; GitLab's sweeper fails a silent job after about 1 h.
 * flushMs           5 min  how long sending the end of a job's log may fail before the final
 *                          state is sent without it (the diagnostics say how many bytes).
 * ```
 *
 * @example Shorter deadlines for a GitLab on the same network
 * ```ts
 * import { RunnerBuilder, type Deadlines } from "@x/gitlab-runner";
 * import { ok } from "node:assert";
 * const deadlines: Deadlines = { headerTimeoutMs: 120_000, finalUpdateMs: 30 * 60_000 };
 * const builder = new RunnerBuilder("https://gitlab.example.com", "glrt-x", "builds")
 *   .deadlines(deadlines);
 * ok(builder instanceof RunnerBuilder);
 * ```
 */
export interface Deadlines {
  /** A call's wait for response headers (default 10 min). */
  headerTimeoutMs?: number;
  /** A response body's wait for its next bytes (default 2 min). */
  idleTimeoutMs?: number;
  /** How long a job's final update is retried (default 1 h). */
  finalUpdateMs?: number;
  /** How long the end of a job's log may fail to send before the state goes without it (default 5 min). */
  flushMs?: number;
}

function truncate(value: string | undefined, max: number): string | undefined {
  if (value === undefined) return undefined;
  // Cut by code point, never inside a surrogate pair.
  const chars = [...value];
  return chars.length > max ? chars.slice(0, max).join("") : value;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  }
  return value;
}

function nodePlatform(): { platform?: string; architecture?: string } {
  const deno = (globalThis as { Deno?: { build?: { os?: string; arch?: string } } }).Deno;
  const os = deno?.build?.os ??
    (globalThis as { process?: { platform?: string } }).process?.platform;
  const arch = deno?.build?.arch ?? (globalThis as { process?: { arch?: string } }).process?.arch;
  const goArch: Record<string, string> = { x86_64: "amd64", x64: "amd64", aarch64: "arm64" };
  return {
    platform: os === "win32" ? "windows" : os,
    architecture: arch ? goArch[arch] ?? arch : undefined,
  };
}

/**
 * Builds a {@linkcode Runner}. Immutable: every setter returns a new builder, so a base
 * builder can be shared.
 *
 * @example
 * ```ts
 * import { RunnerBuilder } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const builder = new RunnerBuilder("https://gitlab.example.com", "glrt-example", "/tmp/builds")
 *   .version("1.2.3")
 *   .features(["refspecs"])
 *   .outputLimit(16 * 1024 * 1024);
 * const runner = await builder.systemId("s_0123456789ab").build();
 * strictEqual(runner.systemId, "s_0123456789ab");
 * strictEqual(runner.features.refspecs, true);
 * strictEqual(runner.info.version, "1.2.3");
 * ```
 */
export class RunnerBuilder {
  #state: Readonly<BuilderState>;

  /**
   * Starts a builder for the GitLab at `server`, with the runner authentication token
   * (`glrt-…`) and the directory under which each job gets `<buildDir>/<job id>`.
   */
  constructor(server: string | URL, token: string, buildDir: string) {
    apiBaseUrl(server); // validates
    if (!token) throw new TypeError("The runner token must not be empty");
    if (!buildDir) throw new TypeError("The build directory must not be empty");
    this.#state = {
      server: String(server),
      token,
      buildDir,
      features: [],
      outputLimit: DEFAULT_OUTPUT_LIMIT,
      checkIntervalMs: 3_000,
      updateIntervalMs: 3_000,
      keepAliveMs: 30_000,
      abortGraceMs: 30_000,
      unhealthyRequestsLimit: 3,
      unhealthyIntervalMs: 60 * 60_000,
      machineIdPath: "/etc/machine-id",
      deadlines: {
        headerTimeoutMs: DEFAULT_HEADER_TIMEOUT_MS,
        idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
        finalUpdateMs: DEFAULT_FINAL_UPDATE_DEADLINE_MS,
        flushMs: DEFAULT_FLUSH_DEADLINE_MS,
      },
      payloadLimit: DEFAULT_MAX_PAYLOAD_BYTES,
    };
  }

  #with(patch: Partial<BuilderState>): RunnerBuilder {
    const next = new RunnerBuilder(this.#state.server, this.#state.token, this.#state.buildDir);
    next.#state = { ...this.#state, ...patch };
    return next;
  }

  /** The system id to send (at most 64 characters). Default: made like the official runner. */
  systemId(value: string): RunnerBuilder {
    return this.#with({ systemId: value });
  }

  /** `info.name` (at most 255 characters). */
  name(value: string): RunnerBuilder {
    return this.#with({ name: value });
  }

  /** `info.version` (at most 2048 characters). Default: this library's version. */
  version(value: string): RunnerBuilder {
    return this.#with({ version: value });
  }

  /** `info.revision` (at most 255 characters). */
  revision(value: string): RunnerBuilder {
    return this.#with({ revision: value });
  }

  /** `info.platform` (at most 255 characters). Default: this machine's OS. */
  platform(value: string): RunnerBuilder {
    return this.#with({ platform: value });
  }

  /** `info.architecture` (at most 255 characters). Default: this machine's CPU. */
  architecture(value: string): RunnerBuilder {
    return this.#with({ architecture: value });
  }

  /** `info.executor` (at most 255 characters). Default `custom`. */
  executor(value: string): RunnerBuilder {
    return this.#with({ executor: value });
  }

  /** `info.shell` (at most 255 characters). */
  shell(value: string): RunnerBuilder {
    return this.#with({ shell: value });
  }

  /** The `fetch` for every request (proxies, custom TLS, the in-process mock). */
  fetch(value: typeof fetch): RunnerBuilder {
    return this.#with({ fetch: value });
  }

  /** The clock (tests use `FakeClock`). */
  clock(value: Clock): RunnerBuilder {
    return this.#with({ clock: value });
  }

  /** The random source for backoff jitter (tests make it deterministic). */
  random(value: () => number): RunnerBuilder {
    return this.#with({ random: value });
  }

  /**
   * Extra features to announce, for what the application's handler implements (e.g.
   * `refspecs` when it fetches the job's refspecs, `image`, `services`). Unknown names are
   * rejected.
   */
  features(names: readonly string[]): RunnerBuilder {
    for (const n of names) {
      if (!ALL_FEATURES.includes(n)) throw new TypeError(`Unknown runner feature: ${n}`);
      if (n === "two_phase_job_commit") {
        throw new TypeError("two_phase_job_commit is not implemented by this library");
      }
    }
    return this.#with({ features: [...this.#state.features, ...names] });
  }

  /** The job log limit in bytes (default 4 MiB). */
  outputLimit(bytes: number): RunnerBuilder {
    return this.#with({ outputLimit: positive("outputLimit", bytes) });
  }

  /** Wait between job requests when GitLab has none, in milliseconds (default 3000). */
  checkInterval(ms: number): RunnerBuilder {
    return this.#with({ checkIntervalMs: positive("checkInterval", ms) });
  }

  /** The log update interval at job start, in milliseconds (default 3000). */
  updateInterval(ms: number): RunnerBuilder {
    return this.#with({ updateIntervalMs: positive("updateInterval", ms) });
  }

  /** Keep-alive after this long without a successful contact, in milliseconds (default 30 s). */
  keepAliveInterval(ms: number): RunnerBuilder {
    return this.#with({ keepAliveMs: positive("keepAliveInterval", ms) });
  }

  /**
   * The runner's deadlines (see {@linkcode Deadlines} for each and its default); those not
   * given keep their value.
   */
  deadlines(value: Deadlines): RunnerBuilder {
    const next = { ...this.#state.deadlines };
    for (const key of Object.keys(next) as (keyof Deadlines)[]) {
      const v = value[key];
      if (v !== undefined) next[key] = positive(`deadlines.${key}`, v);
    }
    return this.#with({ deadlines: next });
  }

  /**
   * The largest job payload read, in bytes (default 64 MiB). A larger one is not read whole:
   * the job is failed (`runner_system_failure`) with a line saying why (CONFORMANCE C10.3).
   */
  payloadLimit(bytes: number): RunnerBuilder {
    return this.#with({ payloadLimit: positive("payloadLimit", bytes) });
  }

  /** How long an aborted step may take to settle before the job moves on (default 30 s). */
  abortGrace(ms: number): RunnerBuilder {
    return this.#with({ abortGraceMs: positive("abortGrace", ms) });
  }

  /** Pause after this many 403s in a row for `intervalMs` (default 3 and 1 hour). */
  unhealthy(limit: number, intervalMs: number): RunnerBuilder {
    return this.#with({
      unhealthyRequestsLimit: positive("unhealthy limit", limit),
      unhealthyIntervalMs: positive("unhealthy interval", intervalMs),
    });
  }

  /** Where the machine id is read from for the system id (default `/etc/machine-id`). */
  machineIdPath(path: string): RunnerBuilder {
    return this.#with({ machineIdPath: path });
  }

  /**
   * Keeps the generated system id in a state file, like the official runner's
   * `.runner_system_id` next to its `config.toml`: the first start writes the id there, later
   * starts read it back, so a runner restarted in a container without `/etc/machine-id` (whose
   * id would otherwise be random each time) stays the same runner manager in GitLab instead of
   * adding one per restart. An explicit {@linkcode RunnerBuilder.systemId} wins over the file.
   * A file that exists but cannot be read makes `build()` reject; one that cannot be written,
   * holds no valid id, or is a symbolic link is logged as a warning (category
   * `["gitlab-runner", "system-id"]`) and the id is used for this run only.
   *
   * @param path The state file, e.g. `/var/lib/my-runner/.runner_system_id`; its directory is
   *   created (mode `0700`) when missing.
   * @returns A new builder.
   *
   * @example Keep the id in the build directory's parent
   * ```ts
   * import { RunnerBuilder } from "@x/gitlab-runner";
   * import { strictEqual } from "node:assert";
   * const dir = await Deno.makeTempDir();
   * const builder = new RunnerBuilder("https://gitlab.example.com", "glrt-example", `${dir}/builds`)
   *   .systemIdState(`${dir}/.runner_system_id`);
   * const first = await builder.build();
   * const again = await builder.build();
   * strictEqual(first.systemId, again.systemId);
   * ```
   */
  systemIdState(path: string): RunnerBuilder {
    if (!path) throw new TypeError("The system id state file path must not be empty");
    return this.#with({ systemIdState: path });
  }

  /**
   * Records the runner's jobs and GitLab's answers in `metrics` (Prometheus, with the official
   * runner's names: see `RunnerMetrics`); serve them with `serveMetrics()`.
   */
  metrics(registry: RunnerMetrics): RunnerBuilder {
    return this.#with({ metrics: registry });
  }

  /** Makes the runner (generates the system id if none was set). */
  async build(): Promise<Runner> {
    await loadLogTapeIfUsed();
    const s = this.#state;
    const clock = s.clock ?? systemClock;
    const random = s.random ?? Math.random;
    const generate = () => generateSystemId(s.machineIdPath);
    const systemId = truncate(
      s.systemId ??
        (s.systemIdState === undefined
          ? await generate()
          : await persistedSystemId(s.systemIdState, generate)),
      64,
    )!;
    const announced = new Set([...LIBRARY_FEATURES, ...s.features]);
    const features: Record<string, boolean> = {};
    for (const f of ALL_FEATURES) features[f] = announced.has(f);
    const detected = nodePlatform();
    const version = truncate(s.version ?? VERSION, 2048);
    // Never changed, and nothing outside reaches it (`Runner.info` is a copy): the client writes
    // its JSON once.
    const info: RunnerMetadata = constantInfo({
      name: truncate(s.name, 255),
      version,
      revision: truncate(s.revision, 255),
      platform: truncate(s.platform ?? detected.platform, 255),
      architecture: truncate(s.architecture ?? detected.architecture, 255),
      executor: truncate(s.executor ?? "custom", 255),
      shell: truncate(s.shell, 255),
      features,
      config: { gpus: "" },
    });
    // The recorder asks the runner, made below, how many jobs run.
    const made: { runner?: Runner } = {};
    const recorder = s.metrics?.attach({
      token: s.token,
      systemId,
      name: info.name,
      running: () => made.runner?.running ?? 0,
    });
    const client = new Client(s.server, {
      onResponse: recorder?.response,
      fetch: s.fetch,
      clock,
      random,
      userAgent: `@x/gitlab-runner ${VERSION} (${detected.platform ?? "unknown"}/${
        detected.architecture ?? "unknown"
      })`,
      headerTimeoutMs: s.deadlines.headerTimeoutMs,
      idleTimeoutMs: s.deadlines.idleTimeoutMs,
      maxPayloadBytes: s.payloadLimit,
    });
    made.runner = new Runner({
      metrics: recorder,
      client,
      token: s.token,
      systemId,
      info,
      features,
      clock,
      random,
      // Absolute: a relative one would give relative CI_PROJECT_DIR and file-variable paths,
      // wrong after the script's first `cd`.
      buildDir: resolve(s.buildDir),
      outputLimit: s.outputLimit,
      checkIntervalMs: s.checkIntervalMs,
      updateIntervalMs: s.updateIntervalMs,
      keepAliveMs: s.keepAliveMs,
      abortGraceMs: s.abortGraceMs,
      unhealthyRequestsLimit: s.unhealthyRequestsLimit,
      unhealthyIntervalMs: s.unhealthyIntervalMs,
      version: VERSION,
      finalUpdateDeadlineMs: s.deadlines.finalUpdateMs,
      flushDeadlineMs: s.deadlines.flushMs,
    });
    return made.runner;
  }
}
