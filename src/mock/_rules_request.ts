/**
 * `POST /jobs/request` (PROTOCOL.md §3.3, the payload of §4, long polling of §5.1, feature
 * gating of §9; edge cases §13 items 1–5 and 20). Two layers answer it, as in GitLab:
 *
 * - Workhorse reads at most 32 KiB of the body (413 beyond) and, with long polling on, holds a
 *   JSON request whose `last_update` is current until the queue changes or the hold ends: a
 *   bare 204 with `Gitlab-Ci-Builds-Polling: yes` either way.
 * - Rails: 400 without `token`, 403 for a wrong one, 204 + `X-GitLab-Last-Update` when paused,
 *   when `last_update` is current or when nothing matches; otherwise it walks the queue, fails
 *   jobs that need a feature the runner lacks (`runner_unsupported`) and hands out the first
 *   other one (201, no `X-GitLab-Last-Update`): `running`, or still `pending` for a runner that
 *   announced `two_phase_job_commit`.
 *
 * @module
 */

import { MAX_REGISTER_BODY_SIZE } from "./_constants.ts";
import { missingFeatures } from "./_job_state.ts";
import { renderPayload } from "./_payload.ts";
import { isRecord, missingToken, readParams, validRunnerToken } from "./_rails.ts";
import type { RouteCall } from "./_router.ts";
import type { MockStore } from "./_store.ts";
import { errorResponse } from "./_util.ts";

const HOLD_RELEASED = "released";
const HOLD_TIMEOUT = "timeout";
const HOLD_ABORTED = "aborted";
type HoldOutcome = typeof HOLD_RELEASED | typeof HOLD_TIMEOUT | typeof HOLD_ABORTED;

/** `POST /jobs/request`; `null` when the client went away during a long poll. */
export async function requestJob(call: RouteCall): Promise<Response | null> {
  const { store, request, url, record } = call;
  const params = await readParams(request, url, MAX_REGISTER_BODY_SIZE);
  if (params instanceof Response) return params;
  record.body = params;

  // Workhorse: with long polling on, a JSON body with the runner's token and a current
  // last_update is held until the queue changes or the hold ends; either way a bare 204.
  const contentType = (request.headers.get("content-type") ?? "").toLowerCase();
  if (
    store.config.longPollMs > 0 && contentType.includes("application/json") &&
    validRunnerToken(store, params.token) && typeof params.last_update === "string" &&
    params.last_update !== "" && params.last_update === store.queueValue
  ) {
    const outcome = await hold(store, request.signal, call.ctx.signal);
    if (outcome === HOLD_ABORTED) return null;
    return new Response(null, {
      status: 204,
      statusText: "No Content",
      headers: { "Gitlab-Ci-Builds-Polling": "yes" },
    });
  }

  // Rails
  const missing = missingToken(params);
  if (missing) return missing;
  if (!validRunnerToken(store, params.token)) return errorResponse(403);
  if (store.isPaused()) return noJob(store.queueValue);
  if (typeof params.last_update === "string" && params.last_update === store.queueValue) {
    return noJob(params.last_update);
  }
  const info = isRecord(params.info) ? params.info : {};
  const features = isRecord(info.features) ? info.features : {};
  const queueValue = store.queueValue;
  return assignJob(store, features, `${url.origin}${store.config.basePath}`) ?? noJob(queueValue);
}

/** Rails' 204: no job, with the queue value to send as `last_update` next time. */
function noJob(value: string): Response {
  return new Response(null, {
    status: 204,
    statusText: "No Content",
    headers: { "X-GitLab-Last-Update": value },
  });
}

/**
 * Walks the queue for a runner with these features: jobs needing a feature it lacks are
 * failed `runner_unsupported`, the first other one is taken and its 201 rendered.
 */
function assignJob(
  store: MockStore,
  features: Record<string, unknown>,
  serverUrl: string,
): Response | undefined {
  const now = store.config.clock.now();
  let depth = 0;
  for (const job of store.pending) {
    if (missingFeatures(job.requires, features).length > 0) {
      store.finish(job, "failed", "runner_unsupported");
      depth++;
      continue;
    }
    store.pending.delete(job);
    job.pickedAt = now;
    store.nextSweepAt = Math.min(store.nextSweepAt, job.pickedAt + store.config.stuckAfterMs);
    job.runnerFeatures = { ...features };
    if (features.two_phase_job_commit === true) job.assigned = true;
    else job.state = "running";
    const { payload, text } = renderPayload(job, {
      serverUrl,
      getJob: (id) => store.byId.get(id),
      dependencyToken: store.config.dependencyToken,
      queueSize: store.pending.size,
      queueDepth: depth,
    }, now);
    job.payload = payload;
    job.payloadText = text;
    return new Response(text, {
      status: 201,
      statusText: "Created",
      headers: { "content-type": "application/json" },
    });
  }
  return undefined;
}

/** Holds a long poll until the queue changes, the hold ends, or the client goes away. */
function hold(
  store: MockStore,
  requestSignal: AbortSignal,
  closing?: AbortSignal,
): Promise<HoldOutcome> {
  return new Promise<HoldOutcome>((resolve) => {
    const timer = new AbortController();
    let done = false;
    const finish = (outcome: HoldOutcome) => {
      if (done) return;
      done = true;
      store.holds.delete(release);
      timer.abort();
      requestSignal.removeEventListener("abort", onAbort);
      closing?.removeEventListener("abort", release);
      resolve(outcome);
    };
    const release = () => finish(HOLD_RELEASED);
    const onAbort = () => finish(HOLD_ABORTED);
    if (requestSignal.aborted) return finish(HOLD_ABORTED);
    if (closing?.aborted) return finish(HOLD_RELEASED);
    requestSignal.addEventListener("abort", onAbort, { once: true });
    closing?.addEventListener("abort", release, { once: true });
    store.holds.add(release);
    store.config.clock.sleep(store.config.longPollMs, timer.signal).then(
      () => finish(HOLD_TIMEOUT),
      () => {},
    );
    store.notify();
  });
}
