/**
 * What every Rails (Grape) endpoint of the runner API shares: how parameters are read from the
 * query and a JSON or form body (PROTOCOL.md §2.3, §2.4), and the two authentications of §2.2:
 * the runner token (`authenticate_runner!`) and the job token (`authenticate_job!`, which also
 * answers for finished and canceled jobs: §6, §13 items 9 and 10).
 *
 * @module
 */

import type { JobState } from "./_job_state.ts";
import type { MockStore } from "./_store.ts";
import { errorResponse, jsonResponse } from "./_util.ts";
import type { MockRoute } from "./types.ts";

/** Whether a JSON value is a plain object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Query + JSON/form body params, Grape-style; a Response for a body that cannot be parsed. */
export async function readParams(
  request: Request,
  url: URL,
  maxBytes?: number,
): Promise<Record<string, unknown> | Response> {
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (maxBytes !== undefined && bytes.length > maxBytes) {
    return errorResponse(413, "413 Request Entity Too Large");
  }
  const params: Record<string, unknown> = Object.fromEntries(url.searchParams);
  if (bytes.length === 0) return params;
  const contentType = (request.headers.get("content-type") ?? "").toLowerCase();
  const text = new TextDecoder().decode(bytes);
  if (contentType.includes("application/x-www-form-urlencoded")) {
    for (const [k, v] of new URLSearchParams(text)) params[k] = v;
    return params;
  }
  if (contentType === "" || contentType.includes("json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return jsonResponse(400, { error: "There was a problem with the JSON you submitted" });
    }
    if (!isRecord(parsed)) return jsonResponse(400, { error: "The JSON body must be an object" });
    Object.assign(params, parsed);
  }
  return params;
}

/** The 400 Grape answers when the `token` parameter is absent, else undefined. */
export function missingToken(params: Record<string, unknown>): Response | undefined {
  if (params.token === undefined || params.token === null) {
    return jsonResponse(400, { error: "token is missing" });
  }
  return undefined;
}

/** Whether `token` is the runner's (and the runner was not unregistered). */
export function validRunnerToken(store: MockStore, token: unknown): boolean {
  return !store.runnerDeleted && typeof token === "string" && token === store.config.runnerToken;
}

/** The job token of a header-authenticated call: `JOB-TOKEN`, else the `token` query value. */
export function jobToken(request: Request, url: URL): string | null {
  return request.headers.get("job-token") ?? url.searchParams.get("token");
}

/**
 * Job-token authentication (`authenticate_job!`): the job, or the 403 to answer. A job that is
 * not running answers 403 with its `Job-Status`, except a two-phase job's PUTs and, with
 * `cancelResponse: "job-status"`, a canceled job's PUT and PATCH.
 */
export function authJob(
  store: MockStore,
  id: number,
  token: string | null | undefined,
  route: MockRoute,
): JobState | Response {
  const job = store.byId.get(id);
  if (!job || !token || token !== job.token) return errorResponse(403, "403 Forbidden");
  if (job.executing) {
    job.contactAt = store.config.clock.now();
    return job;
  }
  if (job.state === "pending" && job.assigned && route === "update") return job;
  if (job.state === "canceled") {
    const { cancelResponse } = store.config;
    if (cancelResponse === "bare-forbidden") return errorResponse(403, "403 Forbidden");
    if (cancelResponse === "job-status" && route !== "upload") return job;
  }
  return errorResponse(403, "403 Forbidden - Job is not processing on runner", {
    "Job-Status": job.state,
  });
}
