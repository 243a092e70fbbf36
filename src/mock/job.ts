/**
 * The fluent builder of mock jobs ({@linkcode MockJobBuilder}) and the payload transform type.
 * What the mock stores per job is in `_job_state.ts`; the payload it renders, in `_payload.ts`.
 *
 * @module
 */

import type {
  MockArtifactSpec,
  MockCacheSpec,
  MockDependencySpec,
  MockJob,
  MockJobInput,
  MockJobSpec,
  MockStep,
} from "./types.ts";

/**
 * Edits a job payload before it is handed out. Return the (new) payload object, or a string to
 * send as the 201 body verbatim (duplicate JSON keys, broken JSON, …).
 *
 * @example Turn a job into a `run:` job (no `steps` key)
 * ```ts
 * import { GitLabMock, type PayloadTransform } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const toRunJob: PayloadTransform = (p) => {
 *   const { steps: _steps, ...rest } = p;
 *   return { ...rest, run: JSON.stringify([{ name: "hello", script: "echo hi" }]) };
 * };
 * const mock = new GitLabMock();
 * const job = mock.job().payload(toRunJob).enqueue();
 * await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken }),
 * });
 * strictEqual(job.payload?.steps, undefined);
 * strictEqual(job.payload?.run, '[{"name":"hello","script":"echo hi"}]');
 * ```
 */
export type PayloadTransform = (
  payload: Record<string, unknown>,
) => Record<string, unknown> | string;

/**
 * Fluent builder of a mock job, from {@linkcode GitLabMock.job}: each method changes the draft
 * and returns the builder; {@linkcode MockJobBuilder.enqueue} adds the job to the queue.
 *
 * @example
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 * const mock = new GitLabMock();
 * const build = mock.job().name("build").artifact({ paths: ["out/"] }).enqueue();
 * const test = mock.job()
 *   .name("test")
 *   .variable("API_PASSWORD", "s3cr3t", { masked: true })
 *   .script(["make test"])
 *   .afterScript(["make clean"])
 *   .dependency(build)
 *   .timeout(600)
 *   .enqueue();
 * strictEqual(test.id, 2);
 * strictEqual(test.state, "pending");
 * ```
 */
export class MockJobBuilder {
  #spec: MockJobSpec;
  #transforms: PayloadTransform[] = [];
  #enqueue: (spec: MockJobSpec, transform?: PayloadTransform) => MockJob;

  /**
   * Use {@linkcode GitLabMock.job} rather than this constructor.
   *
   * @param enqueue Adds the finished spec to a mock.
   * @param spec Initial values.
   */
  constructor(
    enqueue: (spec: MockJobSpec, transform?: PayloadTransform) => MockJob,
    spec: Partial<MockJobSpec> = {},
  ) {
    this.#enqueue = enqueue;
    this.#spec = structuredClone(spec);
  }

  /** Sets the job name. */
  name(name: string): this {
    this.#spec.name = name;
    return this;
  }

  /** Sets the stage. */
  stage(stage: string): this {
    this.#spec.stage = stage;
    return this;
  }

  /**
   * Sets the git ref (`refs/merge-requests/…` makes the job require `refspecs`).
   *
   * @param ref Branch, tag or full ref.
   * @param options `type` (`branch`/`tag`) and `protected`.
   */
  ref(ref: string, options: { type?: "branch" | "tag"; protected?: boolean } = {}): this {
    this.#spec.ref = ref;
    if (options.type) this.#spec.refType = options.type;
    if (options.protected !== undefined) this.#spec.protected = options.protected;
    return this;
  }

  /**
   * Adds a variable (after the predefined `CI_*` ones; keys may repeat).
   *
   * @param key Name.
   * @param value Value (`null` is sent as JSON null).
   * @param options `masked`, `public`, `file`, `raw`.
   */
  variable(
    key: string,
    value: string | null,
    options: { masked?: boolean; public?: boolean; file?: boolean; raw?: boolean } = {},
  ): this {
    (this.#spec.variables ??= []).push({ key, value, ...options });
    return this;
  }

  /** Sets the `before_script` lines (joined with `script` into the `script` step). */
  beforeScript(lines: string[]): this {
    this.#spec.beforeScript = [...lines];
    return this;
  }

  /** Sets the `script` lines. */
  script(lines: string[]): this {
    this.#spec.script = [...lines];
    return this;
  }

  /** Sets the `after_script` lines. */
  afterScript(lines: string[]): this {
    this.#spec.afterScript = [...lines];
    return this;
  }

  /** Adds an extra step (e.g. `release`, which makes the job require `multi_build_steps`). */
  step(step: MockStep): this {
    (this.#spec.steps ??= []).push({ ...step, script: [...step.script] });
    return this;
  }

  /** Sets the image (a name or the full payload object). */
  image(image: string | Record<string, unknown> | null): this {
    this.#spec.image = image;
    return this;
  }

  /** Adds a service (a name or the full payload object). */
  service(service: string | Record<string, unknown>): this {
    (this.#spec.services ??= []).push(service);
    return this;
  }

  /** Adds an `artifacts:` entry (archive or report). */
  artifact(artifact: MockArtifactSpec): this {
    (this.#spec.artifacts ??= []).push({ ...artifact });
    return this;
  }

  /** Adds a cache entry. */
  cache(cache: MockCacheSpec): this {
    (this.#spec.cache ??= []).push({ ...cache });
    return this;
  }

  /**
   * Adds a dependency.
   *
   * @param job The dependency: a mock job, a job id, or a job name.
   * @param options `artifacts: false` leaves out `artifacts_file` (as if expired).
   */
  dependency(job: MockJob | number | string, options: { artifacts?: boolean } = {}): this {
    const ref = typeof job === "object" ? job.id : job;
    (this.#spec.dependencies ??= []).push(
      options.artifacts === undefined ? ref : { job: ref, artifacts: options.artifacts },
    );
    return this;
  }

  /**
   * Adds a job input (`inputs[]`), referenced in scripts as `${{ job.inputs.KEY }}`.
   *
   * @param key The input's name.
   * @param content Its value; the type is inferred (`string`, `number`, `boolean`, `array`,
   *   `struct`) unless `options.type` says otherwise (to send a mismatching one on purpose).
   * @param options `sensitive` (masked in the log), `type`.
   */
  input(
    key: string,
    content: unknown,
    options: { sensitive?: boolean; type?: string } = {},
  ): this {
    const type = options.type ??
      (Array.isArray(content)
        ? "array"
        : content !== null && typeof content === "object"
        ? "struct"
        : typeof content);
    (this.#spec.inputs ??= []).push({
      key,
      value: { type, content, sensitive: options.sensitive ?? false },
    });
    return this;
  }

  /** Sets the raw `inputs` array (hostile shapes included), replacing earlier inputs. */
  inputs(inputs: MockJobInput[]): this {
    this.#spec.inputs = structuredClone(inputs);
    return this;
  }

  /** Sets `features.failure_reasons`: the reasons this (older) GitLab knows. */
  failureReasons(reasons: string[]): this {
    this.#spec.failureReasons = [...reasons];
    return this;
  }

  /** Sets `git_info.repo_object_format` (`sha1` or `sha256`). */
  repoObjectFormat(format: string): this {
    this.#spec.repoObjectFormat = format;
    return this;
  }

  /** Sets the job timeout in seconds (`runner_info.timeout` and step timeouts). */
  timeout(seconds: number): this {
    this.#spec.timeout = seconds;
    return this;
  }

  /** Adds required runner features (e.g. `return_exit_code`). */
  requires(...features: string[]): this {
    (this.#spec.requires ??= []).push(...features);
    return this;
  }

  /**
   * Gives the job an archive without running it (serve it to dependents).
   *
   * @param data Bytes or base64.
   * @param options `filename` (default `artifacts.zip`).
   */
  artifactsFile(data: Uint8Array | string, options: { filename?: string } = {}): this {
    this.#spec.artifactsFile = data;
    if (options.filename) this.#spec.artifactsFilename = options.filename;
    return this;
  }

  /** Sets the initial state (a finished job is never handed out). */
  state(state: "pending" | "success" | "failed" | "canceled"): this {
    this.#spec.state = state;
    return this;
  }

  /**
   * Edits the rendered payload: an object sets top-level keys (`undefined` removes one), a
   * function can change anything or return the body text verbatim. Calls accumulate.
   */
  payload(overrides: Record<string, unknown> | PayloadTransform): this {
    if (typeof overrides === "function") {
      this.#transforms.push(overrides);
    } else {
      this.#transforms.push((p) => {
        const out = { ...p };
        for (const [k, v] of Object.entries(overrides)) {
          if (v === undefined) delete out[k];
          else out[k] = v;
        }
        return out;
      });
    }
    return this;
  }

  /** A copy of the spec built so far. */
  spec(): MockJobSpec {
    return structuredClone(this.#spec);
  }

  /** Adds the job to the mock (pending unless a finished state was set) and returns it. */
  enqueue(): MockJob {
    const transforms = [...this.#transforms];
    let transform: PayloadTransform | undefined;
    if (transforms.length > 0) {
      transform = (payload) => {
        let current: Record<string, unknown> | string = payload;
        for (const t of transforms) {
          if (typeof current === "string") break;
          current = t(current);
        }
        return current;
      };
    }
    return this.#enqueue(this.spec(), transform);
  }
}

/** Normalises a dependency spec into `{job, artifacts}`. */
export function dependencyRef(
  d: MockDependencySpec,
): { job: number | string; artifacts: boolean } {
  if (typeof d === "object") return { job: d.job, artifacts: d.artifacts ?? true };
  return { job: d, artifacts: true };
}
