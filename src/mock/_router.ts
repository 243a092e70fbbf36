/**
 * Routes → rules. {@linkcode ROUTES} is the table of every endpoint the mock serves; a new
 * endpoint is one line there (plus its name in {@linkcode MockRoute}). {@linkcode serve} runs
 * one request: it sweeps stuck jobs, records the request, lets an injected fault
 * (`_faults.ts`) answer or act first, applies what Grape checks before any endpoint code (405
 * for a method the path does not take, 400 `id is invalid` for a job id that is not a number,
 * PROTOCOL.md §2.3), then calls the route's handler. An error thrown by a handler is recorded
 * in `errors` and answered 500.
 *
 * @module
 */

import type { MockStore } from "./_store.ts";
import { downloadArtifact, uploadArtifact } from "./_rules_artifacts.ts";
import { requestJob } from "./_rules_request.ts";
import { unregister, verify } from "./_rules_runners.ts";
import { appendTrace } from "./_rules_trace.ts";
import { updateJob } from "./_rules_update.ts";
import { errorResponse, jsonResponse } from "./_util.ts";
import type { MockRequest, MockRoute } from "./types.ts";

/** Where a request came from: in-process or one of the listeners. */
export interface ServeContext {
  /** Origin that `direct_download` redirects point to. */
  objectsOrigin: string;
  /** Aborts when the listener closes. */
  signal?: AbortSignal;
}

/** What a route's handler gets. */
export interface RouteCall {
  /** The mock's state. */
  store: MockStore;
  request: Request;
  url: URL;
  /** The `id` group of the route's path; always a number for `api` routes that have one. */
  jobId: number | undefined;
  ctx: ServeContext;
  /** This request's entry in the request log (handlers set `body`). */
  record: MockRequest;
}

/** A route's handler; `null` means "drop the connection". */
export type RouteHandler = (call: RouteCall) => Promise<Response | null> | Response;

/** One line of the route table. */
export interface RouteEntry {
  /** The name in the request log, fault matching and `requestCount`. */
  route: MockRoute;
  /** Methods served; another method on a matching path is 405 (`"any"`: the handler decides). */
  methods: readonly string[] | "any";
  /**
   * The path, matched against:
   * - `api` (default): what follows `<base path>/api/v4/`, trailing slashes removed;
   * - `base`: what follows the base path (from its `/`; e.g. a project's git URL);
   * - `root`: the whole path (the object-storage origin).
   *
   * A named group `id` is the job id: under `api`, one that is not a number is 400 (Grape's
   * `requires :id, type: Integer`); elsewhere it is just absent.
   */
  path: RegExp;
  scope?: "api" | "base" | "root";
  handle: RouteHandler;
}

const OBJECT = /^\/objects\/artifacts\/(?<id>[^/]+)\/[^/]+$/;
const JOB = /^jobs\/(?<id>[^/]+)$/;
const TRACE = /^jobs\/(?<id>[^/]+)\/trace$/;
const ARTIFACTS = /^jobs\/(?<id>[^/]+)\/artifacts$/;

/**
 * Every endpoint, first match wins. Entries with the same path (same `scope` and pattern) share
 * it by method.
 */
export const ROUTES: readonly RouteEntry[] = [
  { route: "object", scope: "root", path: OBJECT, methods: "any", handle: objectStorage }, // §3.9

  { route: "verify", path: /^runners\/verify$/, methods: ["POST"], handle: verify }, // §3.1
  { route: "unregister", path: /^runners$/, methods: ["DELETE"], handle: unregister }, // §3.2
  { route: "request", path: /^jobs\/request$/, methods: ["POST"], handle: requestJob }, // §3.3
  { route: "update", path: JOB, methods: ["PUT"], handle: updateJob }, // §3.5
  { route: "trace", path: TRACE, methods: ["PATCH"], handle: appendTrace }, // §3.6
  { route: "upload", path: ARTIFACTS, methods: ["POST"], handle: uploadArtifact }, // §3.8
  { route: "download", path: ARTIFACTS, methods: ["GET", "HEAD"], handle: downloadArtifact }, // §3.9
];

/** The object-storage origin's pre-signed URLs (`_object_storage.ts`). */
function objectStorage({ store, request, url, jobId }: RouteCall): Response {
  return store.objects.serve(request, url, jobId);
}

/** What {@linkcode classify} found for a request. */
export interface RouteMatch {
  route: MockRoute;
  entry?: RouteEntry;
  jobId?: number;
  badId?: boolean;
  badMethod?: boolean;
}

/** Finds the route of a request (`unknown` when none, with `badMethod` for a known path). */
export function classify(basePath: string, method: string, path: string): RouteMatch {
  const api = `${basePath}/api/v4/`;
  const rest = {
    api: path.startsWith(api) ? path.slice(api.length).replace(/\/+$/, "") : undefined,
    base: path.startsWith(`${basePath}/`) ? path.slice(basePath.length) : undefined,
    root: path,
  };
  for (const entry of ROUTES) {
    const scope = entry.scope ?? "api";
    const subject = rest[scope];
    if (subject === undefined) continue;
    const m = entry.path.exec(subject);
    if (!m) continue;
    const chosen = ROUTES.find((e) =>
      (e.scope ?? "api") === scope && e.path.source === entry.path.source &&
      (e.methods === "any" || e.methods.includes(method))
    );
    if (!chosen) return { route: "unknown", badMethod: true };
    const id = m.groups?.id;
    if (id === undefined) return { route: chosen.route, entry: chosen };
    const numeric = /^\d+$/.test(id);
    const badId = scope === "api" && !numeric;
    return { route: chosen.route, entry: chosen, jobId: numeric ? Number(id) : undefined, badId };
  }
  return { route: "unknown" };
}

/** Serves one request as GitLab would; `null` means "drop the connection". */
export async function serve(
  store: MockStore,
  request: Request,
  ctx: ServeContext,
): Promise<Response | null> {
  const git = store.git?.handle(request); // C11.4: /<project>.git/… of a served repository
  if (git) return await git;
  store.sweep();
  const url = new URL(request.url);
  const match = classify(store.config.basePath, request.method, url.pathname);
  const { route, jobId } = match;
  const record: MockRequest = {
    route,
    method: request.method,
    path: url.pathname,
    url: url.href,
    status: 0,
    done: false,
    jobId,
    headers: store.config.recordRequests ? new Headers(request.headers) : new Headers(),
    faulted: false,
    at: store.config.clock.now(),
  };
  store.counts.set(route, (store.counts.get(route) ?? 0) + 1);
  if (store.config.recordRequests) store.requests.push(record);
  store.notify();
  let response: Response | null = null;
  try {
    response = await store.faults.apply(request, record, ctx.signal, () => {
      if (match.badMethod) return errorResponse(405, "405 Method Not Allowed");
      if (match.badId) return jsonResponse(400, { error: "id is invalid" });
      if (!match.entry) return jsonResponse(404, { error: "404 Not Found" });
      return match.entry.handle({ store, request, url, jobId, ctx, record });
    });
  } catch (error) {
    store.errors.push(error);
    response = errorResponse(500);
  }
  record.status = response?.status ?? 0;
  record.done = true;
  store.onRequest?.(record);
  store.notify();
  return response;
}
