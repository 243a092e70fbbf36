/**
 * `PATCH /jobs/:id/trace`: appending to the job log (PROTOCOL.md §3.6, limits §10, server-side
 * masking §11; edge cases §13 items 11–14).
 *
 * Job token from `JOB-TOKEN` or `?token=`; `Content-Range` required (400). Like Rails, only
 * the number before the first `-` counts, the end comes from the body length: a start other
 * than the stored size is 416 with `Range: 0-<size>`; past `traceSizeLimit` the job fails
 * `trace_size_exceeded` (403). Job and runner tokens in the chunk are masked with `x…x`. A 202
 * carries `Job-Status`, `Range` and `X-GitLab-Trace-Update-Interval` (60, or the watched value).
 *
 * @module
 */

import { authJob, jobToken } from "./_rails.ts";
import type { RouteCall } from "./_router.ts";
import { errorResponse, maskSecret, rubyToI, utf8 } from "./_util.ts";

/** `PATCH /jobs/:id/trace`. */
export async function appendTrace({ store, request, url, jobId }: RouteCall): Promise<Response> {
  const body = new Uint8Array(await request.arrayBuffer());
  const job = store.byId.get(jobId!);
  if (job) job.traceRequests++;
  const auth = authJob(store, jobId!, jobToken(request, url), "trace");
  if (auth instanceof Response) return auth;
  const contentRange = request.headers.get("content-range");
  if (contentRange === null) return errorResponse(400, "400 Missing header Content-Range");
  if (url.searchParams.get("debug_trace") === "true") auth.debugTrace = true;
  const start = rubyToI(contentRange.split("-")[0]);
  const end = start + body.length;
  if (end > store.config.traceSizeLimit) {
    store.finish(auth, "failed", "trace_size_exceeded");
    return errorResponse(403, "403 Forbidden");
  }
  if (auth.logSize !== start) {
    return errorResponse(416, "416 Range Not Satisfiable", { Range: `0-${auth.logSize}` });
  }
  maskSecret(body, utf8(auth.token));
  maskSecret(body, store.config.runnerTokenBytes);
  auth.appendLog(body);
  auth.patches++;
  return new Response(null, {
    status: 202,
    statusText: "Accepted",
    headers: {
      "Job-Status": auth.state,
      Range: `0-${auth.logSize}`,
      "X-GitLab-Trace-Update-Interval": String(
        auth.watchedInterval ?? store.config.traceUpdateInterval,
      ),
    },
  });
}
