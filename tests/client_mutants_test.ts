// The client's exact requests and answers against a stub `fetch`: what goes on the wire (URLs,
// query escaping, headers, bodies, the init given to fetch), the errors and their messages,
// the download's own redirect handling, limits ±1, deadlines, and how bodies are read (the
// buffer a byte stream is offered). Written against the survivors of client.ts's mutation run
// (docs/MUTATION.md).
import { assert, FakeClock } from "./_deps.ts";
import { ApiError, RequestError } from "../mod.ts";
import { Client, type ClientOptions } from "../src/api/client.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const GITLAB = "https://gitlab.example.com";
const BASE = `${GITLAB}/api/v4/`;
/** A runner or job token without a GitLab prefix: only the client's own masking hides it. */
const TOKEN = "plain-secret-0123456789";

type Init = RequestInit & { duplex?: string; headers: Record<string, string> };
type Handler = (url: string, init: Init, n: number) => Response | Promise<Response>;

/** A client over a stub fetch that records each call (the URL as given, and the init). */
function stub(handler: Handler, options: ClientOptions = {}) {
  const clock = new FakeClock();
  const calls: { url: string; init: Init }[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    calls.push({ url, init: init as Init });
    return await handler(url, init as Init, calls.length - 1);
  };
  const client = new Client(GITLAB, {
    fetch: fetch as typeof globalThis.fetch,
    clock,
    random: () => 0.5,
    ...options,
  });
  return { clock, calls, client };
}

/** `response`, as if answered from `url` (a fetch that followed redirects itself). */
function from(url: string, response: Response): Response {
  Object.defineProperty(response, "url", { value: url });
  return response;
}

/** A plain (not byte) stream of `chunks`, then an error if `error` is given. */
function chunks(parts: (string | Uint8Array)[], error?: Error): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) {
        const part = parts[i++];
        controller.enqueue(typeof part === "string" ? enc.encode(part) : part);
      } else if (error) controller.error(error);
      else controller.close();
    },
  });
}

/** A minimal job payload of about `size` bytes (padding in an extra field). */
function payload(id: number, size = 0): string {
  const text = JSON.stringify({ id, token: `jt-${id}`, pad: "" });
  return text.replace(`"pad":""`, `"pad":"${"x".repeat(Math.max(0, size - text.length))}"`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

Deno.test("client: onResponse names each endpoint, with method, status and the seconds until the headers came", async () => {
  const seen: unknown[][] = [];
  const t = stub(async (url, init) => {
    await t.clock.advance(1500);
    if (url.endsWith("runners/verify")) return new Response(`{"id":3}`, { status: 200 });
    if (url.endsWith("jobs/request")) return new Response(null, { status: 204 });
    if (init.method === "PUT") return new Response(null, { status: 200 });
    if (init.method === "PATCH") return new Response(null, { status: 202 });
    if (init.method === "POST") return new Response(null, { status: 201 });
    return new Response("PK", { status: 200 });
  }, { onResponse: (...args) => seen.push(args) });
  await t.client.verify(TOKEN);
  await t.client.requestJob(TOKEN);
  await t.client.updateJob(7, TOKEN, { state: "running" });
  await t.client.patchTrace(7, TOKEN, { offset: 0, data: enc.encode("log") });
  await t.client.uploadArtifact(7, TOKEN, { filename: "a.zip", open: () => new Blob(["a"]) });
  await (await t.client.downloadArtifact(7, TOKEN))?.body?.cancel();
  assert.deepEqual(seen, [
    ["verify_runner", "POST", 200, 1.5],
    ["request_job", "POST", 204, 1.5],
    ["update_job", "PUT", 200, 1.5],
    ["patch_trace", "PATCH", 202, 1.5],
    ["upload_artifacts", "POST", 201, 1.5],
    ["download_artifacts", "GET", 200, 1.5],
  ]);
});

Deno.test("C1.9 verify: the exact request (URL, headers, JSON body, manual redirects, no duplex)", async () => {
  const t = stub(() =>
    new Response(`{"id":3,"token_expires_at":"2027-01-01T00:00:00Z"}`, { status: 200 })
  );
  const result = await t.client.verify(TOKEN, { systemId: "s_0123" });
  assert.deepEqual(result, { valid: true, id: 3, tokenExpiresAt: "2027-01-01T00:00:00Z" });
  assert.equal(t.calls.length, 1);
  const { url, init } = t.calls[0];
  assert.equal(url, `${BASE}runners/verify`);
  assert.equal(init.method, "POST");
  assert.equal(init.redirect, "manual");
  assert.equal("duplex" in init, false);
  assert.match(init.headers["x-request-id"], /^[0-9a-f]{32}$/);
  assert.deepEqual({ ...init.headers, "x-request-id": "" }, {
    "user-agent": "@x/gitlab-runner",
    "x-request-id": "",
    "runner-token": TOKEN,
    "content-type": "application/json",
    accept: "application/json",
  });
  assert.deepEqual(JSON.parse(String(init.body)), { token: TOKEN, system_id: "s_0123" });
});

Deno.test("C9.4 verify: a token GitLab echoes in its answer does not come back in the result", async () => {
  const t = stub(() => new Response(`{"id":3,"token_expires_at":"${TOKEN}"}`, { status: 200 }));
  const result = await t.client.verify(TOKEN);
  assert.equal(result.valid, true);
  if (!result.valid) return;
  assert.equal(result.id, 3);
  assert.ok(result.tokenExpiresAt);
  assert.equal(JSON.stringify(result).includes(TOKEN), false);
});

Deno.test("C1.9 verify: a 200 without a body is valid; a body that breaks off is a RequestError", async () => {
  const bodiless = stub(() => new Response(null, { status: 200 }));
  assert.deepEqual(await bodiless.client.verify(TOKEN), { valid: true });
  const cut = stub(() => new Response(chunks([`{"id":3,`], new Error("cut")), { status: 200 }));
  const error = await rejection(cut.client.verify(TOKEN));
  assert.ok(error instanceof RequestError);
  assert.equal(error.message, "Request POST /api/v4/runners/verify failed: cut");
  assert.equal(cut.calls.length, 1);
});

Deno.test("C1.9 verify reads at most 64 KiB of the answer: exactly 64 KiB is parsed, one byte more is not", async () => {
  for (const size of [64 * 1024, 64 * 1024 + 1]) {
    const text = JSON.stringify({ id: 3, pad: "" }).replace(`""`, `"${"x".repeat(size - 17)}"`);
    assert.equal(text.length, size);
    // One chunk (a plain stream): the limit is applied to a chunk larger than it, too.
    const t = stub(() => new Response(chunks([text]), { status: 200 }));
    const result = await t.client.verify(TOKEN);
    assert.equal(result.valid, true);
    assert.equal("id" in result && result.id, size === 64 * 1024 ? 3 : false, `size ${size}`);
  }
});

Deno.test("C1.4 requestJob: an empty lastUpdate is not sent", async () => {
  const t = stub(() => new Response(null, { status: 204 }));
  await t.client.requestJob(TOKEN, { lastUpdate: "" });
  const body = JSON.parse(String(t.calls[0].init.body));
  assert.equal("last_update" in body, false);
  assert.deepEqual(body, { token: TOKEN });
});

Deno.test("C4.1 patchTrace: from 64 KiB on the body is a stream of the caller's bytes with duplex half; below, the bytes", async () => {
  const t = stub(() => new Response(null, { status: 202 }));
  for (const size of [64 * 1024 - 1, 64 * 1024]) {
    const data = new Uint8Array(size).fill(97);
    const result = await t.client.patchTrace(7, TOKEN, { offset: 10, data });
    assert.equal(result.serverOffset, 10 + size);
    const { url, init } = t.calls.at(-1)!;
    assert.equal(url, `${BASE}jobs/7/trace?debug_trace=false`);
    assert.equal(init.headers["content-range"], `10-${10 + size - 1}`);
    assert.equal(init.headers["content-length"], String(size));
    if (size < 64 * 1024) {
      assert.equal(init.body, data);
      assert.equal("duplex" in init, false);
    } else {
      assert.ok(init.body instanceof ReadableStream);
      assert.equal(init.duplex, "half");
      const reader = init.body.getReader();
      const first = await reader.read();
      assert.equal(first.value, data);
      assert.equal((await reader.read()).done, true);
    }
  }
});

Deno.test("C6.3 uploadArtifact: the query string is exactly the options given, in order, joined by &", async () => {
  const t = stub(() => new Response(null, { status: 201 }));
  const open = () => new Blob(["a"]);
  await t.client.uploadArtifact(7, TOKEN, { filename: "a.zip", open });
  await t.client.uploadArtifact(7, TOKEN, {
    filename: "a.zip",
    open,
    artifactFormat: "zip",
    artifactType: "archive",
  });
  await t.client.uploadArtifact(7, TOKEN, {
    filename: "a.zip",
    open,
    artifactFormat: "gzip",
    artifactType: "junit",
    expireIn: "1d",
  });
  assert.deepEqual(t.calls.map((c) => c.url), [
    `${BASE}jobs/7/artifacts`,
    `${BASE}jobs/7/artifacts?artifact_format=zip&artifact_type=archive`,
    `${BASE}jobs/7/artifacts?artifact_format=gzip&artifact_type=junit&expire_in=1d`,
  ]);
});

Deno.test("C6.3 uploadArtifact: query values that need escaping are escaped like searchParams, and arrive unchanged", async () => {
  const t = stub(() => new Response(null, { status: 201 }));
  const open = () => new Blob(["a"]);
  const expected = (query: Record<string, string>) => {
    const url = new URL(`${BASE}jobs/7/artifacts`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url.href;
  };
  for (const value of ["30 days", "a&b=c", "+", "é", "#1", "50%", "~", "1.5-x_Y"]) {
    await t.client.uploadArtifact(7, TOKEN, { filename: "a.zip", open, expireIn: value });
    const url = t.calls.at(-1)!.url;
    assert.equal(url, expected({ expire_in: value }), value);
    assert.equal(new URL(url).searchParams.get("expire_in"), value);
  }
  assert.equal(t.calls[0].url, `${BASE}jobs/7/artifacts?expire_in=30+days`);
  assert.equal(t.calls.at(-1)!.url, `${BASE}jobs/7/artifacts?expire_in=1.5-x_Y`);
  // A plain value before one that needs escaping.
  await t.client.uploadArtifact(7, TOKEN, {
    filename: "a.zip",
    open,
    artifactFormat: "zip",
    expireIn: "2 weeks",
  });
  assert.equal(
    t.calls.at(-1)!.url,
    `${BASE}jobs/7/artifacts?artifact_format=zip&expire_in=2+weeks`,
  );
});

Deno.test("C6.3 uploadArtifact: the exact multipart body; quotes, backslashes and line breaks of the file name become _", async () => {
  let body = "";
  let contentType = "";
  const t = stub(async (_url, init) => {
    contentType = init.headers["content-type"];
    body = await new Response(init.body).text();
    return new Response(null, { status: 201 });
  });
  await t.client.uploadArtifact(7, TOKEN, {
    filename: 'a"b\\c\r\n.zip',
    open: () => new Blob(["data"]),
  });
  const boundary = contentType.match(/^multipart\/form-data; boundary=(.+)$/)?.[1];
  assert.ok(boundary);
  // RFC 2046: at most 70 characters; and only those that need no quotes in the header.
  assert.match(boundary, /^[0-9A-Za-z'()+_,./:=?-]{1,70}$/);
  assert.equal(
    body,
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a_b_c__.zip"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\ndata\r\n--${boundary}--\r\n`,
  );
});

Deno.test("C6.3 uploadArtifact: a transport that drops the request body cancels the file's stream with its reason", async () => {
  let cancelled: unknown = "not cancelled";
  const t = stub(async (_url, init) => {
    await (init.body as ReadableStream).cancel("gone");
    return new Response(null, { status: 201 });
  });
  await t.client.uploadArtifact(7, TOKEN, {
    filename: "a.zip",
    open: () =>
      new ReadableStream<Uint8Array>({
        cancel(reason) {
          cancelled = reason;
        },
      }),
  });
  assert.equal(cancelled, "gone");
});

Deno.test("C9.4 uploadArtifact: a 413 is an ApiError naming the endpoint, the echoed token masked", async () => {
  const t = stub(() => new Response(`too large for ${TOKEN}`, { status: 413 }));
  const error = await rejection(
    t.client.uploadArtifact(7, TOKEN, { filename: "a.zip", open: () => new Blob(["a"]) }),
  );
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 413);
  assert.equal(error.endpoint, "POST /api/v4/jobs/7/artifacts");
  assert.ok(error.body.startsWith("too large for "));
  assert.equal(error.body.includes(TOKEN), false);
  assert.equal(
    error.message,
    `GitLab answered 413 to POST /api/v4/jobs/7/artifacts: ${error.body}`,
  );
});

Deno.test("C6.7 downloadArtifact: the 200 keeps status text, headers and the URL it came from", async () => {
  const t = stub((url) =>
    from(
      url,
      new Response("PK", {
        status: 200,
        statusText: "Fine",
        headers: { "content-type": "application/zip", "x-object": "1" },
      }),
    )
  );
  const response = await t.client.downloadArtifact(7, TOKEN);
  assert.ok(response);
  assert.equal(response.status, 200);
  assert.equal(response.statusText, "Fine");
  assert.equal(response.headers.get("content-type"), "application/zip");
  assert.equal(response.headers.get("x-object"), "1");
  assert.equal(response.url, `${BASE}jobs/7/artifacts?direct_download=true`);
  assert.equal(await response.text(), "PK");
});

Deno.test("C6.7 downloadArtifact: the body is not read before the caller reads; cancelling it cancels the download", async () => {
  let pulls = 0;
  let cancelled: unknown = "not cancelled";
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(enc.encode("PK"));
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  const t = stub(() => new Response(source, { status: 200 }));
  const response = await t.client.downloadArtifact(7, TOKEN);
  assert.ok(response?.body);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(pulls, 0);
  const reader = response.body.getReader();
  assert.equal(dec.decode((await reader.read()).value), "PK");
  assert.equal(pulls, 1);
  await reader.cancel("enough");
  assert.equal(cancelled, "enough");
});

Deno.test("C6.7 downloadArtifact: bodiless 404 is undefined; a 3xx without Location is an ApiError that says so", async () => {
  const missing = stub(() => new Response(null, { status: 404 }));
  assert.equal(await missing.client.downloadArtifact(7, TOKEN), undefined);
  for (const status of [301, 302, 303, 307, 308]) {
    const t = stub((_url, _init, n) => {
      if (n > 20) throw new Error("followed a redirect without Location");
      return new Response(null, { status });
    });
    const error = await rejection(t.client.downloadArtifact(7, TOKEN, { retry: { attempts: 1 } }));
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, status);
    assert.equal(error.endpoint, "GET /api/v4/jobs/7/artifacts");
    assert.equal(
      error.message,
      `GitLab answered ${status} without Location to GET /api/v4/jobs/7/artifacts`,
    );
    assert.equal(t.calls.length, 1);
  }
});

Deno.test("C9.1 downloadArtifact follows at most 5 redirects, then the 3xx is an ApiError: too many redirects", async () => {
  const t = stub((_url, _init, n) => {
    if (n > 20) throw new Error("endless redirects");
    return new Response(null, { status: 302, headers: { location: `/api/v4/hop/${n + 1}` } });
  });
  const error = await rejection(t.client.downloadArtifact(7, TOKEN, { retry: { attempts: 1 } }));
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 302);
  assert.equal(error.message, "Too many redirects downloading GET /api/v4/jobs/7/artifacts");
  assert.deepEqual(t.calls.map((c) => c.url), [
    `${BASE}jobs/7/artifacts?direct_download=true`,
    `${BASE}hop/1`,
    `${BASE}hop/2`,
    `${BASE}hop/3`,
    `${BASE}hop/4`,
    `${BASE}hop/5`,
  ]);
});

Deno.test("C6.7 downloadArtifact: 301 and 303 are followed for GET; a 200 with a Location is the answer", async () => {
  for (const status of [301, 302, 303]) {
    const t = stub((_url, _init, n) =>
      n === 0
        ? new Response(null, { status, headers: { location: "https://storage.example/o" } })
        : new Response("PK", { status: 200 })
    );
    const response = await t.client.downloadArtifact(7, TOKEN);
    assert.equal(await response?.text(), "PK", `status ${status}`);
    assert.equal(t.calls.length, 2);
    assert.equal(t.calls[1].url, "https://storage.example/o");
    assert.equal(t.calls[1].init.method, "GET");
    assert.equal(t.calls[1].init.headers["job-token"], undefined);
  }
  const t = stub(() =>
    new Response("PK", { status: 200, headers: { location: "https://storage.example/o" } })
  );
  const response = await t.client.downloadArtifact(7, TOKEN);
  assert.equal(await response?.text(), "PK");
  assert.equal(t.calls.length, 1);
});

Deno.test("C6.7 downloadArtifact: another status is an ApiError with GitLab's body", async () => {
  const t = stub(() => new Response("bad request", { status: 400 }));
  const error = await rejection(t.client.downloadArtifact(7, TOKEN));
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 400);
  assert.equal(error.body, "bad request");
  assert.equal(error.message, "GitLab answered 400 to GET /api/v4/jobs/7/artifacts: bad request");
});

Deno.test("C9.2 a redirect Location that is no URL is a RequestError that is not retried", async () => {
  const t = stub(() => new Response(null, { status: 302, headers: { location: "http://[bad" } }));
  const error = await rejection(t.client.downloadArtifact(7, TOKEN, { retry: { attempts: 1 } }));
  assert.ok(error instanceof RequestError);
  assert.equal(
    error.message,
    "Request GET /api/v4/jobs/7/artifacts failed: an invalid redirect Location",
  );
  assert.equal(error.transient, false);
  assert.ok(error.cause instanceof TypeError);
  assert.equal(t.calls.length, 1);
});

Deno.test("C9.1 a same-origin redirect to https is followed; one to another origin says why it is not", async () => {
  const same = stub((_url, _init, n) =>
    n === 0
      ? new Response(null, { status: 307, headers: { location: `${BASE}jobs/request?again` } })
      : new Response(null, { status: 204 })
  );
  const result = await same.client.requestJob(TOKEN);
  assert.equal(result.type, "none");
  assert.deepEqual(same.calls.map((c) => c.url), [
    `${BASE}jobs/request`,
    `${BASE}jobs/request?again`,
  ]);
  assert.equal(same.calls[1].init.headers["runner-token"], TOKEN);
  const other = stub(() =>
    new Response(null, { status: 307, headers: { location: "https://evil.example/x" } })
  );
  const error = await rejection(other.client.requestJob(TOKEN));
  assert.ok(error instanceof RequestError);
  assert.equal(
    error.message,
    "Request POST /api/v4/jobs/request failed: a redirect to another origin " +
      "(https://evil.example), not followed: the token is only sent to GitLab",
  );
  assert.equal(error.transient, false);
  assert.equal(other.calls.length, 1);
});

Deno.test("C8.1 a missed header deadline is the cause even when the transport fails with its own error", async () => {
  const t = stub((_url, init) =>
    new Promise<Response>((_resolve, reject) => {
      init.signal?.addEventListener("abort", () => reject(new TypeError("transport gave up")));
    }), { headerTimeoutMs: 1000 });
  const call = rejection(t.client.verify(TOKEN, { retry: { attempts: 1 } }));
  await t.clock.advance(1000);
  const error = await call;
  assert.ok(error instanceof RequestError);
  assert.equal(error.transient, true);
  assert.ok(error.cause instanceof DOMException);
  assert.equal(error.cause.name, "TimeoutError");
  assert.equal(
    error.message,
    "Request POST /api/v4/runners/verify failed: No answer within 1000 ms",
  );
});

Deno.test("C8.1 the header deadline ends with the headers: a download body read later is not aborted", async () => {
  let signal: AbortSignal | undefined;
  const t = stub((_url, init) => {
    signal = init.signal ?? undefined;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (signal?.aborted) controller.error(signal.reason);
          else {
            controller.enqueue(enc.encode("PK"));
            controller.close();
          }
        },
      }, { highWaterMark: 0 }),
      { status: 200 },
    );
  }, { headerTimeoutMs: 1000, idleTimeoutMs: 60_000 });
  const response = await t.client.downloadArtifact(7, TOKEN);
  await t.clock.advance(5000);
  assert.equal(signal?.aborted, false);
  assert.equal(await response?.text(), "PK");
});

Deno.test("C8.1 the idle deadline aborts the request with a TimeoutError and fails the read with one", async () => {
  let signal: AbortSignal | undefined;
  const t = stub((_url, init) => {
    signal = init.signal ?? undefined;
    return new Response(new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }), {
      status: 200,
    });
  }, { idleTimeoutMs: 1000 });
  const response = await t.client.downloadArtifact(7, TOKEN);
  const read = rejection(response!.body!.getReader().read());
  await t.clock.advance(1000);
  const error = await read;
  assert.ok(error instanceof RequestError);
  assert.equal(error.message, "Request GET /api/v4/jobs/7/artifacts failed: No data for 1000 ms");
  assert.ok(error.cause instanceof DOMException);
  assert.equal(error.cause.name, "TimeoutError");
  assert.equal(signal?.aborted, true);
  assert.ok(signal?.reason instanceof DOMException);
  assert.equal(signal.reason.name, "TimeoutError");
  assert.equal(signal.reason.message, "No data for 1000 ms");
});

Deno.test("C10.3 a payload over maxPayloadBytes ends its request (the connection is not left open)", async () => {
  let signal: AbortSignal | undefined;
  const text = payload(7, 300);
  const t = stub((_url, init) => {
    signal = init.signal ?? undefined;
    return new Response(chunks([text.slice(0, 150), text.slice(150)]), { status: 201 });
  }, { maxPayloadBytes: 100 });
  const result = await t.client.requestJob(TOKEN);
  assert.ok(result.type === "job" && !result.job.ok);
  assert.equal(result.job.error, "the job payload exceeds the limit of 100 bytes");
  assert.equal(result.job.id, 7);
  assert.equal(result.job.token, "jt-7");
  assert.equal(signal?.aborted, true);
});

Deno.test("C10.3 a payload of exactly maxPayloadBytes, declared, is read and parsed", async () => {
  const text = payload(7, 500);
  const t = stub(
    () => new Response(text, { status: 201, headers: { "content-length": String(text.length) } }),
    { maxPayloadBytes: text.length },
  );
  const result = await t.client.requestJob(TOKEN);
  assert.ok(result.type === "job" && result.job.ok, JSON.stringify(result));
  assert.equal(result.job.payload.id, 7);
});

Deno.test("C10.3 a payload declared over the limit is failed with its id and token, even when whole or cut", async () => {
  const text = payload(7, 80);
  const whole = stub(
    () => new Response(text, { status: 201, headers: { "content-length": String(text.length) } }),
    {
      maxPayloadBytes: 50,
    },
  );
  assert.deepEqual(await whole.client.requestJob(TOKEN), {
    type: "job",
    job: {
      ok: false,
      error: `the job payload of ${text.length} bytes exceeds the limit of 50 bytes`,
      id: 7,
      token: "jt-7",
    },
  });
  const cut = stub(() =>
    new Response(chunks([text.slice(0, 40)], new Error("cut")), {
      status: 201,
      headers: { "content-length": "1000000" },
    }), { maxPayloadBytes: 50 });
  const result = await cut.client.requestJob(TOKEN);
  assert.ok(result.type === "job" && !result.job.ok);
  assert.equal(result.job.error, "the job payload of 1000000 bytes exceeds the limit of 50 bytes");
  assert.equal(result.job.id, 7);
  assert.equal(result.job.token, "jt-7");
  const bodiless = stub(() =>
    new Response(null, { status: 201, headers: { "content-length": "1000000000" } })
  );
  const none = await bodiless.client.requestJob(TOKEN);
  assert.ok(none.type === "job" && !none.job.ok);
  assert.equal(
    none.job.error,
    "the job payload of 1000000000 bytes exceeds the limit of 67108864 bytes",
  );
});

Deno.test("client: an error body that breaks off leaves the ApiError without a body", async () => {
  const t = stub(() => new Response(chunks(["partial "], new Error("cut")), { status: 400 }));
  const error = await rejection(t.client.requestJob(TOKEN));
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 400);
  assert.equal(error.body, "");
  assert.equal(error.message, "GitLab answered 400 to POST /api/v4/jobs/request");
});

Deno.test("C9.1 C9.2 a fetch that followed redirects itself: what its answer's URL decides", async () => {
  // Another URL of GitLab's origin: the answer counts.
  const same = stub(() =>
    from(`${BASE}jobs/request?followed`, new Response(null, { status: 204 }))
  );
  assert.deepEqual(await same.client.requestJob(TOKEN), {
    type: "none",
    lastUpdate: undefined,
    longPolled: false,
  });
  // The same over plain http (a GitLab without TLS).
  const plain = new Client("http://gitlab.example.com", {
    fetch: () =>
      Promise.resolve(
        from(
          "http://gitlab.example.com/api/v4/jobs/request?followed",
          new Response(null, { status: 204 }),
        ),
      ),
    clock: new FakeClock(),
  });
  assert.equal((await plain.requestJob(TOKEN)).type, "none");
  const refused = async (url: string, body: string | null, message: string) => {
    const t = stub(() => from(url, new Response(body, { status: 200 })));
    const error = await rejection(t.client.verify(TOKEN));
    assert.ok(error instanceof RequestError, String(error));
    assert.equal(error.message, `Request POST /api/v4/runners/verify failed: ${message}`);
    assert.equal(error.transient, false);
    assert.equal(t.calls.length, 1);
  };
  await refused("no url at all", "x", "an answer from a malformed URL");
  await refused(
    "file:///etc/passwd",
    "x",
    "an answer from a file: URL: only http and https are followed",
  );
  await refused(
    "https://evil.example/verify",
    null,
    "an answer from another origin (https://evil.example), which is not GitLab's",
  );
  // A download past object storage (no token any more) may end anywhere http(s).
  const download = stub((_url, _init, n) =>
    n === 0
      ? new Response(null, { status: 302, headers: { location: "https://storage.example/o" } })
      : from("https://cdn.example/o", new Response("PK", { status: 200 }))
  );
  const response = await download.client.downloadArtifact(7, TOKEN);
  assert.equal(await response?.text(), "PK");
});

/** A byte stream of `text` that records the size of each buffer it is offered (-1: none). */
function byteBody(text: string, offered: number[]): ReadableStream<Uint8Array> {
  const bytes = enc.encode(text);
  let at = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest;
      const view = request?.view;
      offered.push(view ? view.byteLength : -1);
      if (at >= bytes.length) {
        controller.close();
        request?.respond(0);
        return;
      }
      if (!request || !view) {
        controller.enqueue(bytes.slice(at));
        at = bytes.length;
        return;
      }
      const n = Math.min(view.byteLength, bytes.length - at);
      new Uint8Array(view.buffer, view.byteOffset, n).set(bytes.subarray(at, at + n));
      at += n;
      request.respond(n);
    },
  });
}

Deno.test("client: a byte-stream body is read into one buffer of the declared length + 1, at most the limit + 1 and 64 KiB", async () => {
  const text = payload(7, 100);
  const cases: [Record<string, string>, number | undefined, number, boolean][] = [
    [{ "content-length": String(text.length) }, undefined, text.length + 1, true],
    [{}, undefined, 16 * 1024, true],
    [{ "content-length": "0" }, undefined, 16 * 1024, true],
    [{ "content-length": String(10 * 1024 * 1024) }, undefined, 64 * 1024, true],
    [{}, 1000, 1001, true],
    [{}, 50, 51, false],
  ];
  for (const [headers, maxPayloadBytes, expected, ok] of cases) {
    const offered: number[] = [];
    const t = stub(
      () => new Response(byteBody(text, offered), { status: 201, headers }),
      { maxPayloadBytes },
    );
    const result = await t.client.requestJob(TOKEN);
    const label = `${JSON.stringify(headers)}, maxPayloadBytes ${maxPayloadBytes}`;
    assert.ok(result.type === "job" && result.job.ok === ok, label);
    assert.equal(offered[0], expected, label);
    // Each read reuses the one buffer; a read never gets more.
    for (const size of offered) assert.ok(size <= expected, label);
  }
});

/**
 * Requests a job whose 201 body is `text` as a byte stream giving at most `most` bytes a pull;
 * the job's answer and the size of each buffer the client offered.
 */
async function readInParts(text: string, headers: Record<string, string>, most: number) {
  const offered: number[] = [];
  const bytes = enc.encode(text);
  let at = 0;
  const body = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest!;
      const view = request.view!;
      offered.push(view.byteLength);
      if (at >= bytes.length) {
        controller.close();
        request.respond(0);
        return;
      }
      const k = Math.min(view.byteLength, bytes.length - at, most);
      new Uint8Array(view.buffer, view.byteOffset, k).set(bytes.subarray(at, at + k));
      at += k;
      request.respond(k);
    },
  });
  const t = stub(() => new Response(body, { status: 201, headers }));
  return { result: await t.client.requestJob(TOKEN), offered };
}

Deno.test("client: a body read in parts keeps each part whole; a buffer 7/8 filled or more is handed out and the next read is offered what the declared length leaves", async () => {
  // n + 1 = 8 × 2501: 7/8 of the first buffer is a whole number of bytes.
  const text = payload(7, 20_007);
  const n = text.length;
  const k = (n + 1) / 8 * 7;
  // [declared length, the most bytes one pull gives, the buffer sizes offered]
  const cases: [string | undefined, number, number[]][] = [
    // All in one read, then a 1-byte buffer to see the end: the payload is never copied.
    [String(n), n, [n + 1, 1]],
    // 90 % of the buffer, then the rest (all of a buffer of what is left + 1), then the end.
    [String(n), Math.ceil(n * 0.9), [n + 1, n - Math.ceil(n * 0.9) + 1, 1]],
    // Exactly 7/8: handed out; one byte less: copied, and the same buffer offered again.
    [String(n), k, [n + 1, n - k + 1, 1]],
    [String(n), k - 1, [n + 1, n + 1, n + 1]],
    // 60 %: copied out, and the same buffer offered again, up to the end.
    [String(n), Math.ceil(n * 0.6), [n + 1, n + 1, n + 1]],
    // No declared length: 16 KiB buffers (a new one after a read of 7/8 of one or more).
    [undefined, 15_000, [16 * 1024, 16 * 1024, 16 * 1024]],
    // Hostile: more bytes than declared (a custom fetch's stream): past the declared length,
    // whole buffers again.
    [String(n - 100), n, [n - 99, n - 99, n - 99]],
  ];
  for (const [declared, most, sizes] of cases) {
    const headers: Record<string, string> = declared ? { "content-length": declared } : {};
    const { result, offered } = await readInParts(text, headers, most);
    const label = `declared ${declared}, at most ${most} a read`;
    assert.ok(result.type === "job" && result.job.ok, label);
    assert.equal(result.job.payload.id, 7, label);
    assert.equal(result.job.payload.raw.pad, JSON.parse(text).pad, label);
    assert.deepEqual(offered, sizes, label);
  }
});

Deno.test("C8.1 a transport failure of a call with a signal (not aborted) is retried like one without", async () => {
  const t = stub((_url, _init, n) => {
    if (n === 0) throw new TypeError("connection reset");
    return new Response(null, { status: 403 });
  });
  let result: unknown;
  t.client.verify(TOKEN, { signal: new AbortController().signal }).then(
    (r) => result = r,
    (e) => result = e,
  );
  await t.clock.runUntil(() => result !== undefined);
  assert.deepEqual(result, { valid: false, status: 403 });
  assert.equal(t.calls.length, 2);
});
