/**
 * Redirects, on both sides of the wire.
 *
 * - {@linkcode uploadRedirect}: the `uploadRedirect` option, a proxy in front of GitLab that
 *   answers an artifact upload with a 307 (PROTOCOL.md §3.8, §13 item 16), to the same origin
 *   or to the object-storage origin.
 * - {@linkcode fetchInProcess}: the mock's in-process `fetch`, which follows redirects the way
 *   the Fetch standard does (303 and POST-on-301/302 become GET; 307/308 resend the body, which
 *   a streamed body cannot; `Authorization` is dropped across origins but `JOB-TOKEN` is not),
 *   so a download's 302 to the object storage (§3.9) and an upload's 307 reach the client as
 *   they would over a socket.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { ServeContext } from "./_router.ts";
import { abortError, textResponse } from "./_util.ts";

/** Query parameter that marks an upload the `uploadRedirect` option already redirected. */
const UPLOAD_REDIRECT_MARKER = "mock_redirected";

/**
 * The `uploadRedirect` option (M13): a first upload (no marker in the query) gets a 307 like
 * a proxy in front of GitLab would send, before any authentication; on the object-storage
 * origin, the redirected upload is recorded and answered 201 without being stored. Either
 * way the body is read and dropped.
 * Undefined when the upload is GitLab's to serve.
 */
export function uploadRedirect(
  mode: "none" | "same-origin" | "other-origin",
  request: Request,
  url: URL,
  ctx: ServeContext,
): Promise<Response> | undefined {
  if (mode === "none") return undefined;
  if (mode === "other-origin" && url.origin === ctx.objectsOrigin) {
    // What a careless client takes for success; the request and its headers are in
    // `requests`. Nothing is stored.
    return discardBody(request).then(() => textResponse(201, "201"));
  }
  if (url.searchParams.has(UPLOAD_REDIRECT_MARKER)) return undefined;
  const target = new URL(url);
  target.searchParams.set(UPLOAD_REDIRECT_MARKER, "1");
  if (mode === "other-origin") {
    const objects = new URL(ctx.objectsOrigin);
    target.protocol = objects.protocol;
    target.host = objects.host;
  }
  // The body is read and dropped before answering: cutting it short would reset the
  // connection under a client still sending (node:http), and it might miss the 307.
  return discardBody(request).then(() =>
    new Response(null, {
      status: 307,
      statusText: "Temporary Redirect",
      headers: { Location: target.href },
    })
  );
}

/** Reads a request body to its end and drops it (bounded memory); errors end it quietly. */
async function discardBody(request: Request): Promise<void> {
  if (!request.body) return;
  const reader = request.body.getReader();
  try {
    while (!(await reader.read()).done) {
      // dropped
    }
  } catch {
    // The client went away: whatever is answered is lost anyway.
  } finally {
    reader.releaseLock();
  }
}

/**
 * A `fetch` over `serve` (no socket) for the given origins: redirects followed unless
 * `redirect: "manual"`, `init.signal` honoured; other origins reject with a `TypeError` as a
 * failed DNS lookup would, and so does a dropped connection (`serve` answered `null`).
 */
export async function fetchInProcess(
  serve: (request: Request) => Promise<Response | null>,
  origins: readonly string[],
  input: Request | string | URL,
  init?: RequestInit,
): Promise<Response> {
  // Like a socket, every call yields to the event loop first: a client's hot loop shows up as
  // a failing test, not as a hung one (M12).
  await new Promise<void>((resolve) => setImmediate(resolve));
  let request = new Request(input, init);
  const signal = request.signal;
  const bodySource = init?.body !== undefined && init.body !== null &&
      !(init.body instanceof ReadableStream)
    ? init.body
    : undefined;
  const streamed = bodySource === undefined && init?.body != null;
  for (let redirects = 0;; redirects++) {
    if (signal.aborted) throw abortError(signal);
    const url = new URL(request.url);
    if (!origins.includes(url.origin)) {
      throw new TypeError(
        `error sending request for url (${url.href}): dns error: no such host (GitLab mock)`,
      );
    }
    const response = await raceAbort(serve(request), signal);
    if (response === null) {
      throw new TypeError(
        `error sending request for url (${url.href}): connection closed before message completed`,
      );
    }
    const location = response.headers.get("location");
    if (isRedirect(response.status) && location !== null && request.redirect !== "manual") {
      if (request.redirect === "error") throw new TypeError("Redirect was not allowed");
      if (redirects >= 20) throw new TypeError("Too many redirects");
      await response.body?.cancel();
      request = redirectedRequest(request, response.status, url, new URL(location, url), {
        bodySource,
        streamed,
        signal,
      });
      continue;
    }
    Object.defineProperty(response, "url", { value: url.href });
    if (redirects > 0) Object.defineProperty(response, "redirected", { value: true });
    return response;
  }
}

/** The request a redirect with `status` to `next` leads to (Fetch standard, "HTTP-redirect fetch"). */
function redirectedRequest(
  request: Request,
  status: number,
  url: URL,
  next: URL,
  init: { bodySource: BodyInit | undefined; streamed: boolean; signal: AbortSignal },
): Request {
  const headers = new Headers(request.headers);
  let method = request.method;
  let resent: BodyInit | undefined;
  if (
    (status === 303 && method !== "GET" && method !== "HEAD") ||
    ((status === 301 || status === 302) && method === "POST")
  ) {
    method = "GET";
    for (const h of ["content-type", "content-length", "content-encoding", "content-language"]) {
      headers.delete(h);
    }
  } else if (method !== "GET" && method !== "HEAD") {
    if (init.streamed) throw new TypeError("Cannot follow a redirect with a streamed request body");
    resent = init.bodySource;
  }
  // Fetch drops only Authorization on a cross-origin redirect: custom headers such as
  // JOB-TOKEN go along unless the client strips them itself.
  if (next.origin !== url.origin) headers.delete("authorization");
  return new Request(next, {
    method,
    headers,
    body: resent,
    redirect: request.redirect,
    signal: init.signal,
  });
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
