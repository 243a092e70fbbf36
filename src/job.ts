/**
 * What a handler sees of a job: its id, build directory, variables, payload and log.
 *
 * @module
 */

import type { JobInput, JobPayload, JobVariable } from "./api/payload.ts";
import type { JobLog } from "./log/job_log.ts";
import type { Dependency } from "./artifacts/download.ts";
import { getSources, type SourcesOptions, type SourcesResult } from "./sources/sources.ts";

/** Options of the {@linkcode Variable} constructor. */
export interface VariableOptions {
  /**
   * Hides secrets in a value that is not itself masked (the job's masked values, its token,
   * token-shaped strings), like the job log does. `Job` passes its log's masking. Default: none.
   */
  mask?: (text: string) => string;
}

/**
 * A job variable. A masked variable prints as `[MASKED]` (in template strings, `String()`,
 * `JSON.stringify` and `console.log`), so it does not leak by accident; read `value` to use it,
 * and {@linkcode Variable.maskedValue} to put it in text for other systems.
 *
 * @example
 * ```ts
 * import { Variable } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const v = new Variable({ key: "TOKEN", value: "s3cr3t-value", masked: true, public: false, file: false, raw: false });
 * strictEqual(`${v}`, "[MASKED]");
 * strictEqual(v.value, "s3cr3t-value");
 * strictEqual(v.maskedValue, "[MASKED]");
 * ```
 */
export class Variable {
  /** The variable name. */
  readonly key: string;
  /** The value (`null` from GitLab becomes ""). */
  readonly value: string;
  /** Masked in job logs. */
  readonly masked: boolean;
  /** Public (not a secret). */
  readonly public: boolean;
  /** A file variable: the value is a file's content. */
  readonly file: boolean;
  /** Not to be expanded. */
  readonly raw: boolean;

  #mask?: (text: string) => string;

  /** Wraps a variable of the payload; `options.mask` hides secrets inside other values. */
  constructor(variable: JobVariable, options: VariableOptions = {}) {
    this.#mask = options.mask;
    this.key = variable.key;
    this.value = variable.value;
    this.masked = variable.masked;
    this.public = variable.public;
    this.file = variable.file;
    this.raw = variable.raw;
  }

  /**
   * The value as it may appear in text that leaves the runner (a request to another system, a
   * report, a log line): `[MASKED]` for a masked variable; for the others, the value with the
   * secrets the job log would hide replaced by `[MASKED]` (for a variable of a `Job`: masked
   * values, the job token, token-shaped strings, so `CI_REPOSITORY_URL` does not carry the
   * token).
   *
   * @example Build a command line for another system
   * ```ts
   * import { Variable } from "@x/gitlab-runner";
   * import { strictEqual } from "node:assert";
   * const key = new Variable({ key: "API_KEY", value: "s3cr3t-value", masked: true, public: false, file: false, raw: false });
   * const board = new Variable({ key: "BOARD", value: "rpi4", masked: false, public: true, file: false, raw: false });
   * const command = `submit --board ${board.maskedValue} --key ${key.maskedValue}`;
   * strictEqual(command, "submit --board rpi4 --key [MASKED]");
   * ```
   */
  get maskedValue(): string {
    if (this.masked) return "[MASKED]";
    return this.#mask ? this.#mask(this.value) : this.value;
  }

  /** The value, or `[MASKED]` where it is or holds a secret ({@linkcode Variable.maskedValue}). */
  toString(): string {
    return this.maskedValue;
  }

  /** The JSON form, with `[MASKED]` as the value of a masked variable. */
  toJSON(): Record<string, unknown> {
    return {
      key: this.key,
      value: this.maskedValue,
      masked: this.masked,
      public: this.public,
      file: this.file,
      raw: this.raw,
    };
  }

  /** What Deno's `console.log` and `Deno.inspect` show. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Variable(${this.key}=${this.maskedValue})`;
  }

  /** What Node's `console.log` and `util.inspect` show. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Variable(${this.key}=${this.maskedValue})`;
  }
}

/** Options of the {@linkcode Job} constructor (made by the runner, not by applications). */
export interface JobOptions {
  /** The parsed payload. */
  payload: JobPayload;
  /** The job's build directory. */
  buildDir: string;
  /** The job's log. */
  log: JobLog;
  /** The job's dependencies. */
  dependencies: readonly Dependency[];
  /** The job's abort signal ({@linkcode Job.signal}). */
  signal: AbortSignal;
  /**
   * Variables the runner sets itself (`CI_PROJECT_DIR`, `CI_BUILDS_DIR`, …), after the
   * payload's: they win. Default: none.
   */
  runnerVariables?: readonly JobVariable[];
}

/**
 * A job GitLab handed to this runner, as the factory and handler see it.
 *
 * @example Read a variable in a factory
 * ```ts
 * import type { Job, JobHandler } from "@x/gitlab-runner";
 * function factory(job: Job): JobHandler {
 *   const board = job.variable("BOARD")?.value ?? "default";
 *   return { step: async () => job.trace(`using board ${board}\n`) };
 * }
 * ```
 *
 * @example Use job inputs and expand variables for another system
 * ```ts
 * import { expandVariables, type Job, type JobHandler } from "@x/gitlab-runner";
 * function factory(job: Job): JobHandler {
 *   // `${{ job.inputs.NAME }}` in the scripts is already replaced; the typed values are here:
 *   const replicas = job.input("replicas")?.value.content ?? 1;
 *   // `$VAR` with GitLab's rules, masked values as [MASKED], for a request to another system:
 *   const summary = expandVariables("deploy $CI_COMMIT_REF_NAME", job.variables, { masked: true });
 *   return { step: async () => job.trace(`${summary} x${replicas}\n`) };
 * }
 * ```
 */
export class Job {
  #payload: JobPayload;
  #buildDir: string;
  #log: JobLog;
  #variables?: Map<string, Variable>;
  /** The payload's and the runner's variables, as they were when the job was made. */
  #sources: readonly (readonly JobVariable[])[];
  #dependencies: readonly Dependency[];
  #signal: AbortSignal;

  /** Made by the runner. */
  constructor(options: JobOptions) {
    this.#payload = options.payload;
    this.#buildDir = options.buildDir;
    this.#log = options.log;
    // The variables (~90 a job) are wrapped when a handler first asks for them: many handlers
    // never do. The lists are taken as they are now.
    this.#sources = [options.payload.variables.slice(), options.runnerVariables?.slice() ?? []];
    this.#dependencies = options.dependencies;
    this.#signal = options.signal;
  }

  /**
   * The job's abort signal: it aborts when the job must stop — its timeout, a cancel by GitLab
   * (hard or graceful), a hard stop of the runner — with the reason as `signal.reason`. The
   * factory runs under it (a factory that does not settle within the abort grace after it
   * aborts is left behind), and so should anything a handler starts outside a step, such as
   * downloads, provisioning a VM or a container (CONFORMANCE C8.3). Steps get their own
   * signal, which aborts on the same events and on step timeouts.
   *
   * @example Provision in the factory, abandoning the work when the job is stopped
   * ```ts
   * import { RunnerBuilder, type Job } from "@x/gitlab-runner";
   * import { GitLabMock } from "@x/gitlab-runner/mock";
   * import { strictEqual } from "node:assert";
   * const mock = new GitLabMock();
   * mock.job().script(["make"]).timeout(1).enqueue();
   * const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
   *   .fetch(mock.fetch)
   *   .build();
   * await runner.requestJob(async (job: Job) => {
   *   // A slow provisioning step that listens to the job's signal.
   *   await new Promise((resolve, reject) => {
   *     const timer = setTimeout(resolve, 60_000);
   *     job.signal.addEventListener("abort", () => {
   *       clearTimeout(timer);
   *       reject(job.signal.reason);
   *     });
   *   });
   *   return { step: async () => {} };
   * });
   * await runner.drain();
   * strictEqual(mock.jobs[0].failureReason, "job_execution_timeout");
   * ```
   */
  get signal(): AbortSignal {
    return this.#signal;
  }

  /** The job id. */
  get id(): number {
    return this.#payload.id;
  }

  /** The job's build directory (`<build dir>/<job id>`), created before the factory runs. */
  get buildDir(): string {
    return this.#buildDir;
  }

  /** The whole parsed payload: job_info, git_info, runner_info, image, services, cache, … */
  get payload(): JobPayload {
    return this.#payload;
  }

  /**
   * All variables (duplicates resolved: the last one wins): GitLab's, then the runner's own,
   * which win — `CI_PROJECT_DIR` (the build dir), `CI_BUILDS_DIR`, `CI_SERVER`,
   * `CI_JOB_STATUS`, `CI_JOB_TIMEOUT` — so that `$CI_PROJECT_DIR` in a variable's value expands.
   */
  get variables(): Variable[] {
    return [...this.#variableMap().values()];
  }

  /** One variable by name. */
  variable(key: string): Variable | undefined {
    return this.#variableMap().get(key);
  }

  /** The variables by key, made on first use (the runner's own win). */
  #variableMap(): Map<string, Variable> {
    if (this.#variables) return this.#variables;
    // One options object for all and no [key, variable] pairs: ~90 variables a job.
    const variableOptions = { mask: (text: string) => this.#log.mask(text) };
    const variables = new Map<string, Variable>();
    for (const list of this.#sources) {
      for (const v of list) variables.set(v.key, new Variable(v, variableOptions));
    }
    this.#variables = variables;
    return variables;
  }

  /**
   * The job's inputs (`inputs:` of the job, GitLab 18.x+), typed. By the time the handler
   * runs, `${{ job.inputs.NAME }}` in the step scripts, artifacts, caches, image and services
   * has been replaced with their values (when the runner announces `job_inputs`, which it does
   * by default); the values of `sensitive` inputs are masked in the job log. Use
   * `interpolateInputs` for other text.
   */
  get inputs(): readonly JobInput[] {
    return this.#payload.inputs;
  }

  /** One input by name (the first, if GitLab sent the name twice). */
  input(key: string): JobInput | undefined {
    return this.#payload.inputs.find((i) => i.key === key);
  }

  /**
   * The jobs whose artifacts this job depends on. `download()` fetches one (with that job's
   * token; never forwarding it to object storage) as an `Artifact` to list, read or extract.
   */
  dependencies(): Dependency[] {
    return [...this.#dependencies];
  }

  /**
   * Gets the job's sources with the machine's `git`, like the official runner's get_sources
   * stage: `GIT_STRATEGY`, `git_info.refspecs` and depth, checkout, clean, submodules, LFS, the
   * get_sources hooks, `GET_SOURCES_ATTEMPTS` (see {@linkcode getSources}). Its lines go to the
   * job log; the job token stays out of `.git/config`, command lines and the log. Announce the
   * `refspecs` feature when you use it. Rejects with a `SourcesError` (a `JobFailure`, which
   * fails the job with the reason) when git fails, and with the signal's reason on abort.
   *
   * @param dir Where to put the sources. Default: {@linkcode Job.buildDir}.
   * @param options Signal (default: the job's), output (default: the job log), environment.
   * @returns The strategy used, the directory, the commit checked out.
   *
   * @example Check out the sources in the factory, then run the script there
   * ```ts ignore
   * import { type Job, type JobHandler, runScript, ScriptFailure } from "@x/gitlab-runner";
   * async function factory(job: Job): Promise<JobHandler> {
   *   const { dir } = await job.sources();
   *   return {
   *     step: async (script, _phase, signal) => {
   *       const code = await runScript(script, { cwd: dir, variables: job.variables, signal });
   *       if (code !== 0) throw new ScriptFailure(code);
   *     },
   *   };
   * }
   * ```
   */
  sources(dir: string = this.#buildDir, options: SourcesOptions = {}): Promise<SourcesResult> {
    return getSources(this, dir, options);
  }

  /** Appends raw bytes or text to the job log (masked and limited like all output). */
  trace(data: Uint8Array | string): void {
    this.#log.write(data);
  }

  /** A stream into the job log, with backpressure. */
  get log(): WritableStream<Uint8Array> {
    return this.#log.writable;
  }
}
