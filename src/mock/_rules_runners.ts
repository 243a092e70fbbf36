/**
 * Runner-token endpoints: `POST /runners/verify` (PROTOCOL.md §3.1) and `DELETE /runners`
 * (§3.2). Both require `token` (400 without it) and answer 403 for any other token.
 *
 * @module
 */

import { missingToken, readParams, validRunnerToken } from "./_rails.ts";
import type { RouteCall } from "./_router.ts";
import { errorResponse, jsonResponse } from "./_util.ts";

/** `POST /runners/verify`: 200 with the runner's details. */
export async function verify(call: RouteCall): Promise<Response> {
  const refused = await refusedRunner(call);
  if (refused) return refused;
  const { store } = call;
  return jsonResponse(200, { id: 1, token: store.config.runnerToken, token_expires_at: null });
}

/** `DELETE /runners`: 204, and the runner token is no longer valid anywhere. */
export async function unregister(call: RouteCall): Promise<Response> {
  const refused = await refusedRunner(call);
  if (refused) return refused;
  const { store } = call;
  store.runnerDeleted = true;
  return new Response(null, { status: 204 });
}

/** Grape's answer when the body cannot be read, lacks a token, or has another runner's (§2.2). */
async function refusedRunner(
  { store, request, url, record }: RouteCall,
): Promise<Response | undefined> {
  const params = await readParams(request, url);
  if (params instanceof Response) return params;
  record.body = params;
  const missing = missingToken(params);
  if (missing) return missing;
  if (!validRunnerToken(store, params.token)) return errorResponse(403);
  return undefined;
}
