/**
 * Typed errors of the API client.
 *
 * @module
 */

import type { RunnerFailureReason } from "./api/failure_reasons.ts";

/**
 * GitLab answered, but with a status the call cannot use. Carries the status, the endpoint
 * (method and path, never a token) and the response body text (cut to 1 KiB).
 *
 * @example
 * ```ts
 * import { ApiError } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const err = new ApiError({ status: 500, endpoint: "POST /api/v4/jobs/request", body: "oops" });
 * strictEqual(err.status, 500);
 * strictEqual(err.message, "GitLab answered 500 to POST /api/v4/jobs/request: oops");
 * ```
 */
export class ApiError extends Error {
  /** The HTTP status GitLab answered with. */
  readonly status: number;
  /** Method and path of the call, e.g. `PUT /api/v4/jobs/42`. */
  readonly endpoint: string;
  /** The response body as text, at most 1 KiB. */
  readonly body: string;

  /** Creates the error; the message is built from status, endpoint and body. */
  constructor(options: { status: number; endpoint: string; body?: string; message?: string }) {
    const body = (options.body ?? "").slice(0, 1024);
    super(
      options.message ??
        `GitLab answered ${options.status} to ${options.endpoint}${body ? `: ${body}` : ""}`,
    );
    this.name = "ApiError";
    this.status = options.status;
    this.endpoint = options.endpoint;
    this.body = body;
  }
}

/**
 * The request to GitLab failed before an answer came (DNS, connection refused, reset, a missed
 * deadline, aborted), or GitLab's answer could not be used: a redirect to another origin or to
 * a non-HTTP URL, which is never followed with a token (CONFORMANCE C9.1, C9.2). The
 * underlying error, if any, is the `cause`.
 *
 * @example
 * ```ts
 * import { RequestError } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const err = new RequestError("PATCH /api/v4/jobs/1/trace", new TypeError("connection reset"));
 * strictEqual(err.message, "Request PATCH /api/v4/jobs/1/trace failed: connection reset");
 * strictEqual(err.transient, true);
 * ```
 */
export class RequestError extends Error {
  /** Method and path of the call, e.g. `PUT /api/v4/jobs/42`. */
  readonly endpoint: string;

  /**
   * Whether another attempt may succeed (a transport error or a missed deadline); false for
   * answers that will not change, such as a redirect to another origin.
   */
  readonly transient: boolean;

  /**
   * Creates the error for `endpoint`, wrapping `cause`; `options.message` says what went wrong
   * instead of the cause's message.
   */
  constructor(
    endpoint: string,
    cause: unknown,
    options: { message?: string; transient?: boolean } = {},
  ) {
    const why = options.message ?? (cause instanceof Error ? cause.message : String(cause));
    super(`Request ${endpoint} failed: ${why}`, { cause });
    this.name = "RequestError";
    this.endpoint = endpoint;
    this.transient = options.transient ?? options.message === undefined;
  }
}

/**
 * Reject a step with this to fail the job as `script_failure` with the script's exit code
 * (reported to GitLab, which uses it for `allow_failure: exit_codes`).
 *
 * @example
 * ```ts
 * import { ScriptFailure } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const failure = new ScriptFailure(2);
 * strictEqual(failure.exitCode, 2);
 * strictEqual(failure.message, "Script exited with code 2");
 * ```
 */
export class ScriptFailure extends Error {
  /** The script's exit code. */
  readonly exitCode: number;

  /** Creates the failure for `exitCode`; `options.cause` keeps the underlying error. */
  constructor(exitCode: number, options: { message?: string; cause?: unknown } = {}) {
    super(options.message ?? `Script exited with code ${exitCode}`, { cause: options.cause });
    this.name = "ScriptFailure";
    this.exitCode = exitCode;
  }
}

/**
 * Reject a step (or throw from the factory) with this to fail the job with an explicit
 * failure reason, e.g. `runner_system_failure` when the hardware under test did not boot.
 * Reasons GitLab does not know are mapped like the official runner does.
 *
 * @example
 * ```ts
 * import { JobFailure } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const failure = new JobFailure("runner_system_failure", { message: "Board did not boot" });
 * strictEqual(failure.reason, "runner_system_failure");
 * strictEqual(failure.message, "Board did not boot");
 * ```
 *
 * @example A reason newer than some GitLab versions (sent as `script_failure` to those)
 * ```ts
 * import { JobFailure } from "@x/gitlab-runner";
 * import { mapFailureReason } from "@x/gitlab-runner/client";
 * import { strictEqual } from "node:assert";
 * const failure = new JobFailure("runner_configuration_error", { message: "No board named x" });
 * strictEqual(mapFailureReason(failure.reason, ["script_failure"]), "script_failure");
 * ```
 */
export class JobFailure extends Error {
  /**
   * The failure reason to report (a GitLab `failure_reason`): one the runner produces
   * ({@linkcode RunnerFailureReason}, e.g. `runner_configuration_error`,
   * `runner_external_dependency_failure`, `runner_interrupted`) or any other GitLab reason.
   * A reason the job's GitLab does not list is mapped down before sending
   * (`mapFailureReason`).
   */
  readonly reason: RunnerFailureReason | (string & Record<never, never>);
  /** Exit code to report, if any. */
  readonly exitCode?: number;

  /** Creates the failure with `reason`. */
  constructor(
    reason: RunnerFailureReason | (string & Record<never, never>),
    options: { message?: string; exitCode?: number; cause?: unknown } = {},
  ) {
    super(options.message ?? `Job failed: ${reason}`, { cause: options.cause });
    this.name = "JobFailure";
    this.reason = reason;
    this.exitCode = options.exitCode;
  }
}

/**
 * A job's `${{ job.inputs.NAME }}` could not be interpolated: malformed (`${{` not closed,
 * nested), an expression this library does not evaluate, or an input the job does not have.
 * A {@linkcode JobFailure} with reason `runner_configuration_error`, like the official
 * runner's `InputInterpolationError` (gitlab-runner `common/build.go` `expandInputs`); GitLab
 * versions that do not know that reason get `script_failure`.
 *
 * @example
 * ```ts
 * import { InputInterpolationError, interpolateInputs } from "@x/gitlab-runner";
 * import { strictEqual, throws } from "node:assert";
 * throws(
 *   () =>
 *     interpolateInputs("echo ${{ job.inputs.nope }}", [
 *       { key: "env", value: { type: "string", content: "prod", sensitive: false } },
 *     ]),
 *   (error) => {
 *     strictEqual(error instanceof InputInterpolationError, true);
 *     strictEqual((error as InputInterpolationError).reason, "runner_configuration_error");
 *     return true;
 *   },
 * );
 * ```
 */
export class InputInterpolationError extends JobFailure {
  /** What is wrong, without the "Failed to interpolate job inputs" prefix. */
  readonly detail: string;

  /** Creates the error; `detail` says what is wrong and where. */
  constructor(detail: string, options: { cause?: unknown } = {}) {
    super("runner_configuration_error", {
      message: `Failed to interpolate job inputs: ${detail}`,
      cause: options.cause,
    });
    this.name = "InputInterpolationError";
    this.detail = detail;
  }
}
