/**
 * `PUT /jobs/:id`: state updates, keep-alives and the final update (PROTOCOL.md §3.5; result
 * mapping §3.5.1, keep-alive §3.5.2, final update §3.5.3, two-phase commit §3.5.4, failure
 * reasons §8; edge cases §13 items 7, 8, 10 and 18).
 *
 * The `token` must be in the body (400 without it, whatever the headers say); `exit_code` must
 * be an integer; a job that is not running answers like every job-token call (`_rails.ts`).
 * Every answer carries `Job-Status`. A final update with a checksum may get 202 with a backoff
 * in `X-GitLab-Trace-Update-Interval` (`finalUpdateAccepts` times) before it is taken.
 *
 * @module
 */

import { FAILURE_REASONS } from "./_constants.ts";
import type { JobState } from "./_job_state.ts";
import { authJob, isRecord, missingToken, readParams } from "./_rails.ts";
import type { RouteCall } from "./_router.ts";
import type { MockStore } from "./_store.ts";
import { coerceInteger, jsonResponse, textResponse } from "./_util.ts";
import type { MockUpdate } from "./types.ts";

/**
 * GitLab's `Ci::Runner::Backoff#to_seconds` for a pending final update started `elapsedMs` ago.
 */
export function backoffSeconds(elapsedMs: number): number {
  const duration = elapsedMs / 1000;
  const slot = duration <= 1 ? 0 : Math.floor(Math.log2(duration)) - 1;
  return 2 ** Math.min(Math.max(slot, 0), 6);
}

/** `PUT /jobs/:id`. */
export async function updateJob({ store, request, url, jobId, record }: RouteCall): Promise<
  Response
> {
  const params = await readParams(request, url);
  if (params instanceof Response) return params;
  record.body = params;
  const missing = missingToken(params);
  if (missing) return missing;
  const exitCode = coerceInteger(params.exit_code);
  if (Number.isNaN(exitCode)) return jsonResponse(400, { error: "exit_code is invalid" });
  const auth = authJob(store, jobId!, String(params.token), "update");
  if (auth instanceof Response) return auth;
  const job = auth;
  const update = params as MockUpdate;
  job.updates.push(update);
  const answer = (status: number, extra?: Record<string, string>) =>
    textResponse(status, String(status), { "Job-Status": job.state, ...extra });

  if (job.state === "canceled") return answer(200); // cancelResponse "job-status" (older GitLab)
  const state = params.state;

  if (job.state === "pending") {
    // Two-phase commit: the runner took the job but has not started it yet.
    if (state === "pending") return answer(200);
    if (state === "running") {
      job.state = "running";
      job.assigned = false;
      store.notify();
      return answer(200);
    }
  } else if (state === "pending") {
    return answer(400);
  }

  if (state === "success" || state === "failed") {
    job.finalUpdates.push(update);
    const output = isRecord(params.output) ? params.output : {};
    const checksum = output.checksum ?? params.checksum;
    if (
      typeof checksum === "string" && checksum !== "" &&
      job.finalAccepts < store.config.finalUpdateAccepts
    ) {
      const now = store.config.clock.now();
      job.firstFinalAt ??= now;
      job.finalAccepts++;
      return answer(202, {
        "X-GitLab-Trace-Update-Interval": String(backoffSeconds(now - job.firstFinalAt)),
      });
    }
    finishJob(store, job, state, params, exitCode);
    return answer(200);
  }
  if (state === "running") return answer(200);
  return answer(400);
}

/**
 * Takes a final update: `success`, or `failed` with its reason (one GitLab does not know is
 * stored as `unknown_failure`) and the exit code clamped to a `smallint`.
 */
function finishJob(
  store: MockStore,
  job: JobState,
  state: "success" | "failed",
  params: Record<string, unknown>,
  exitCode: number | undefined,
): void {
  if (state === "success") {
    store.finish(job, "success");
    return;
  }
  const reason = typeof params.failure_reason === "string" &&
      FAILURE_REASONS.includes(params.failure_reason)
    ? params.failure_reason
    : "unknown_failure";
  const code = exitCode === undefined ? undefined : Math.max(-32768, Math.min(32767, exitCode));
  store.finish(job, "failed", reason, code);
}
