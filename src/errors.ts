/**
 * Typed errors of the API client.
 *
 * @module
 */

/**
 * GitLab answered, but with a status the call cannot use. Carries the status, the endpoint
 * (method and path, never a token) and the response body text (cut to 1 KiB).
 *
 * @example
 * ```ts
 * import { ApiError } from "@x/gitlab-runner";
 * const err = new ApiError({ status: 500, endpoint: "POST /api/v4/jobs/request", body: "oops" });
 * console.log(err.status, err.message);
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
 * The request to GitLab failed before an answer came (DNS, connection refused, reset,
 * timeout, aborted). The underlying error is the `cause`.
 *
 * @example
 * ```ts
 * import { RequestError } from "@x/gitlab-runner";
 * const err = new RequestError("PATCH /api/v4/jobs/1/trace", new TypeError("connection reset"));
 * console.log(err.message);
 * ```
 */
export class RequestError extends Error {
  /** Method and path of the call, e.g. `PUT /api/v4/jobs/42`. */
  readonly endpoint: string;

  /** Creates the error for `endpoint`, wrapping `cause`. */
  constructor(endpoint: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`Request ${endpoint} failed: ${why}`, { cause });
    this.name = "RequestError";
    this.endpoint = endpoint;
  }
}
