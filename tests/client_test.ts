import { assert, FakeClock } from "./_deps.ts";
import { ApiError, RequestError } from "../mod.ts";
import { Client } from "../src/client.ts";
import {
  apiBaseUrl,
  constantInfo,
  maskSecrets,
  parseRangeEnd,
  parseUpdateInterval,
} from "../src/api/client.ts";
import { GitLabMock, type MockOptions } from "../src/mock/mod.ts";

const enc = new TextEncoder();

function setup(options: Partial<MockOptions> = {}) {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, ...options });
  const client = new Client(mock.url, { fetch: mock.fetch, clock, random: () => 0.5 });
  return { clock, mock, client };
}

/** Enqueues a job and takes it; returns the mock job. */
async function running(t: ReturnType<typeof setup>) {
  const mj = t.mock.job().script(["true"]).enqueue();
  const r = await t.client.requestJob(t.mock.runnerToken, {
    info: { features: { cancel_gracefully: true } },
  });
  assert.equal(r.type, "job");
  return mj;
}

Deno.test("client: the GitLab URL is normalised like the official runner", () => {
  assert.equal(apiBaseUrl("https://gitlab.example.com").href, "https://gitlab.example.com/api/v4/");
  assert.equal(
    apiBaseUrl("https://gitlab.example.com/ci/").href,
    "https://gitlab.example.com/api/v4/",
  );
  assert.equal(apiBaseUrl("https://x.org/gitlab/").href, "https://x.org/gitlab/api/v4/");
  assert.throws(() => apiBaseUrl("ftp://x.org"), TypeError);
  assert.throws(() => apiBaseUrl("not a url"), TypeError);
});

Deno.test("client: requestJob 201 gives the parsed job", async () => {
  const t = setup();
  const mj = t.mock.job().name("build").script(["make"]).enqueue();
  const r = await t.client.requestJob(t.mock.runnerToken);
  assert.equal(r.type, "job");
  if (r.type !== "job" || !r.job.ok) throw new Error("no job");
  assert.equal(r.job.payload.id, mj.id);
  assert.equal(r.job.payload.token, mj.token);
  assert.equal(r.job.payload.jobInfo.name, "build");
  assert.equal(mj.state, "running");
});

Deno.test("C1.4 requestJob 204 reports X-GitLab-Last-Update; last_update is sent back", async () => {
  const t = setup();
  const r1 = await t.client.requestJob(t.mock.runnerToken);
  assert.equal(r1.type, "none");
  if (r1.type !== "none") return;
  assert.ok(r1.lastUpdate);
  assert.equal(r1.longPolled, false);
  let body: Record<string, unknown> = {};
  const spy = new Client(t.mock.url, {
    clock: t.clock,
    fetch: async (input, init) => {
      body = JSON.parse(String(init?.body));
      return await t.mock.fetch(input, init);
    },
  });
  await spy.requestJob(t.mock.runnerToken, { lastUpdate: r1.lastUpdate });
  assert.equal(body.last_update, r1.lastUpdate);
});

Deno.test("C1.4 a long poll is held until a job arrives, then ends with a Workhorse 204", async () => {
  const t = setup({ longPollMs: 50_000 });
  const first = await t.client.requestJob(t.mock.runnerToken);
  assert.equal(first.type, "none");
  if (first.type !== "none") return;
  let result: Awaited<ReturnType<Client["requestJob"]>> | undefined;
  t.client.requestJob(t.mock.runnerToken, { lastUpdate: first.lastUpdate }).then((r) => result = r);
  await t.clock.advance(20_000);
  assert.equal(result, undefined);
  t.mock.job().script(["x"]).enqueue();
  await t.clock.advance(0);
  assert.deepEqual(result, { type: "none", lastUpdate: undefined, longPolled: true });
  const next = await t.client.requestJob(t.mock.runnerToken, { lastUpdate: first.lastUpdate });
  assert.equal(next.type, "job");
});

Deno.test("C1.6 requestJob 409 is a conflict, 403 an ApiError without the token in it", async () => {
  const t = setup();
  t.mock.fault({ route: "request", status: 409 });
  assert.deepEqual(await t.client.requestJob(t.mock.runnerToken), { type: "conflict" });
  await assert.rejects(t.client.requestJob("glrt-secret-wrong-token"), (e) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 403);
    assert.equal(e.endpoint, "POST /api/v4/jobs/request");
    assert.equal(e.message.includes("glrt-secret-wrong-token"), false);
    return true;
  });
});

Deno.test("C8.1 transport failures are retried like a 5xx, then become RequestError with the cause, no token", async () => {
  const clock = new FakeClock();
  let calls = 0;
  const client = new Client("https://gitlab.example.com", {
    clock,
    random: () => 1,
    fetch: () => {
      calls++;
      return Promise.reject(new TypeError("connection refused"));
    },
  });
  const call = client.patchTrace(1, "glcbt-secret", { offset: 0, data: enc.encode("x") }).then(
    () => assert.fail("no error"),
    (e: unknown) => e,
  );
  await clock.runUntil(() => calls === 5);
  const e = await call;
  assert.equal(calls, 5);
  // 100 + 200 + 400 + 800 ms of backoff between the five attempts
  assert.equal(clock.now() - Date.UTC(2026, 0, 1), 1500);
  assert.ok(e instanceof RequestError);
  assert.ok(e.cause instanceof TypeError);
  assert.match(e.message, /PATCH \/api\/v4\/jobs\/1\/trace failed: connection refused/);
  assert.equal(e.message.includes("glcbt-secret"), false);
});

Deno.test("C1.9 verify: valid, invalid (403)", async () => {
  const t = setup();
  assert.deepEqual((await t.client.verify(t.mock.runnerToken)).valid, true);
  assert.deepEqual(await t.client.verify("glrt-nope"), { valid: false, status: 403 });
});

Deno.test("client: updateJob sends the full body and reads 200 with Job-Status", async () => {
  const t = setup();
  const mj = await running(t);
  const r = await t.client.updateJob(mj.id, mj.token, {
    state: "failed",
    failureReason: "script_failure",
    exitCode: 42,
    output: { checksum: "crc32:00000000", bytesize: 0 },
  });
  assert.equal(r.outcome, "abort"); // 200 + Job-Status: failed: the job is done
  assert.equal(r.status, 200);
  assert.equal(r.jobStatus, "failed");
  assert.equal(mj.state, "failed");
  assert.equal(mj.failureReason, "script_failure");
  assert.equal(mj.exitCode, 42);
  const sent = mj.updates[0];
  assert.equal(sent.token, mj.token);
  assert.deepEqual(sent.output, { checksum: "crc32:00000000", bytesize: 0 });
});

Deno.test("C5.1 updateJob reports 202 with the backoff interval", async () => {
  const t = setup({ finalUpdateAccepts: 1 });
  const mj = await running(t);
  const r = await t.client.updateJob(mj.id, mj.token, {
    state: "success",
    output: { checksum: "crc32:00000000", bytesize: 0 },
  });
  assert.equal(r.outcome, "accepted");
  assert.equal(r.status, 202);
  assert.ok(r.updateInterval! >= 1);
  const again = await t.client.updateJob(mj.id, mj.token, {
    state: "success",
    output: { checksum: "crc32:00000000", bytesize: 0 },
  });
  assert.equal(again.outcome, "ok");
  assert.equal(mj.state, "success");
});

Deno.test("C5.2 updateJob: a bare 403 is an abort; Job-Status canceling asks for a graceful cancel", async () => {
  const t = setup();
  const mj = await running(t);
  t.mock.cancel(mj.id);
  const graceful = await t.client.updateJob(mj.id, mj.token, { state: "running" });
  assert.equal(graceful.outcome, "ok");
  assert.equal(graceful.cancelRequested, true);
  const t2 = setup({ cancelResponse: "bare-forbidden" });
  const mj2 = await running(t2);
  t2.mock.cancel(mj2.id, { graceful: false });
  const hard = await t2.client.updateJob(mj2.id, mj2.token, { state: "running" });
  assert.equal(hard.outcome, "abort");
  assert.equal(hard.status, 403);
  assert.equal(hard.jobStatus, undefined);
});

Deno.test("C4.1 patchTrace sends Content-Range, text/plain and JOB-TOKEN; 202 gives the new offset", async () => {
  const t = setup();
  const mj = await running(t);
  const r = await t.client.patchTrace(mj.id, mj.token, { offset: 0, data: enc.encode("hello\n") });
  assert.equal(r.outcome, "accepted");
  assert.equal(r.serverOffset, 6);
  assert.equal(r.updateInterval, 60);
  const req = t.mock.requests.filter((q) => q.route === "trace").at(-1)!;
  assert.equal(req.headers.get("content-range"), "0-5");
  assert.equal(req.headers.get("content-type"), "text/plain");
  assert.equal(req.headers.get("job-token"), mj.token);
  assert.match(req.url, /debug_trace=false/);
  assert.equal(mj.logText, "hello\n");
});

Deno.test("C4.1 a large patch goes as a stream of the caller's bytes, not a copy; resent whole after a 5xx", async () => {
  const t = setup();
  const mj = await running(t);
  const data = new Uint8Array(256 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = 32 + (i * 31) % 90;
  const seen: { streamed: boolean; length: string | null }[] = [];
  const spy = new Client(t.mock.url, {
    clock: t.clock,
    random: () => 0.5,
    fetch: async (input, init) => {
      seen.push({
        streamed: init?.body instanceof ReadableStream,
        length: new Headers(init?.headers).get("content-length"),
      });
      return await t.mock.fetch(input, init);
    },
  });
  t.mock.fault({ route: "trace", status: 502, times: 1 });
  let result: Awaited<ReturnType<Client["patchTrace"]>> | undefined;
  spy.patchTrace(mj.id, mj.token, { offset: 0, data }).then((r) => result = r);
  await t.clock.runUntil(() => result !== undefined, 600_000);
  assert.equal(result?.outcome, "accepted");
  assert.equal(result?.serverOffset, data.length);
  assert.deepEqual(seen, [
    { streamed: true, length: String(data.length) },
    { streamed: true, length: String(data.length) },
  ]);
  assert.deepEqual(mj.log, data, "GitLab holds exactly the bytes, once");
  // A small patch stays plain bytes.
  seen.length = 0;
  await spy.patchTrace(mj.id, mj.token, { offset: data.length, data: enc.encode("end\n") });
  assert.deepEqual(seen, [{ streamed: false, length: "4" }]);
});

Deno.test("C4.2 patchTrace at a wrong offset reports 416 with the server's Range", async () => {
  const t = setup();
  const mj = await running(t);
  await t.client.patchTrace(mj.id, mj.token, { offset: 0, data: enc.encode("0123456789") });
  const r = await t.client.patchTrace(mj.id, mj.token, { offset: 4, data: enc.encode("x") });
  assert.equal(r.outcome, "range");
  assert.equal(r.serverOffset, 10);
  assert.equal(parseRangeEnd("0-0"), 0);
  assert.equal(parseRangeEnd("bytes=0-77"), 77);
  assert.equal(parseRangeEnd(null), undefined);
});

Deno.test("C5.2 patchTrace: canceled job → abort; 409 and 5xx → ApiError for a later retry", async () => {
  const t = setup({ cancelResponse: "forbidden" });
  const mj = await running(t);
  t.mock.fault({ route: "trace", status: 409 });
  await assert.rejects(
    t.client.patchTrace(mj.id, mj.token, { offset: 0, data: enc.encode("x") }),
    (e: unknown) => e instanceof ApiError && e.status === 409,
  );
  t.mock.cancel(mj.id, { graceful: false });
  const r = await t.client.patchTrace(mj.id, mj.token, { offset: 0, data: enc.encode("x") });
  assert.equal(r.outcome, "abort");
  assert.equal(r.jobStatus, "canceled");
});

Deno.test("C6.3 uploadArtifact: one file part, parameters in the query string, streamed body", async () => {
  const t = setup();
  const mj = await running(t);
  let opens = 0;
  await t.client.uploadArtifact(mj.id, mj.token, {
    filename: "junit.xml.gz",
    artifactType: "junit",
    artifactFormat: "gzip",
    expireIn: "1 week",
    open: () => {
      opens++;
      return new ReadableStream({
        start(c) {
          c.enqueue(enc.encode("part one,"));
          c.enqueue(enc.encode("part two"));
          c.close();
        },
      });
    },
  });
  assert.equal(opens, 1);
  const art = mj.artifacts[0];
  assert.equal(art.filename, "junit.xml.gz");
  assert.equal(art.type, "junit");
  assert.equal(art.format, "gzip");
  assert.equal(art.expireIn, "1 week");
  assert.deepEqual(art.paramsFrom, { type: "query", format: "query" });
  assert.equal(new TextDecoder().decode(art.data), "part one,part two");
});

Deno.test("C6.5 uploadArtifact: each retry opens a fresh stream; 413 is an ApiError", async () => {
  const t = setup();
  const mj = await running(t);
  t.mock.fault({ route: "upload", status: 502, times: 2 });
  let opens = 0;
  const open = () => {
    opens++;
    return new Blob(["abc"]);
  };
  let done = false;
  const p = t.client.uploadArtifact(mj.id, mj.token, { filename: "a.zip", open }).then(() =>
    done = true
  );
  await t.clock.runUntil(() => done);
  await p;
  assert.equal(opens, 3);
  t.mock.fault({ route: "upload", status: 413 });
  await assert.rejects(
    t.client.uploadArtifact(mj.id, mj.token, { filename: "b.zip", open }),
    (e: unknown) => e instanceof ApiError && e.status === 413,
  );
});

Deno.test("C6.7 downloadArtifact: direct_download=true, 200 body, 404 → undefined", async () => {
  const t = setup();
  const producer = t.mock.addJob({ name: "producer", state: "success", artifactsFile: "UEsFBg==" });
  const none = t.mock.addJob({ name: "no-artifacts", state: "success" });
  const consumer = t.mock.job().dependency(producer).dependency(none).script(["x"]).enqueue();
  // Take jobs until we get the consumer.
  for (;;) {
    const r = await t.client.requestJob(t.mock.runnerToken);
    if (r.type !== "job" || !r.job.ok) throw new Error("no job");
    if (r.job.payload.jobInfo.name === consumer.name) {
      const depSpec = r.job.payload.dependencies[0];
      assert.equal(depSpec.id, producer.id);
      const response = await t.client.downloadArtifact(depSpec.id, depSpec.token);
      assert.ok(response);
      assert.deepEqual(
        new Uint8Array(await response.arrayBuffer()),
        new Uint8Array([0x50, 0x4b, 5, 6]),
      );
      const req = t.mock.requests.filter((q) => q.route === "download").at(-1)!;
      assert.match(req.url, /direct_download=true/);
      const noneSpec = r.job.payload.dependencies[1];
      assert.equal(noneSpec.artifactsFile, undefined);
      assert.equal(await t.client.downloadArtifact(none.id, noneSpec.token), undefined);
      break;
    }
  }
});

Deno.test("C6.7 downloadArtifact follows a redirect to another origin without JOB-TOKEN", async () => {
  const t = setup({ downloadRedirect: true });
  const producer = t.mock.addJob({ name: "producer", state: "success", artifactsFile: "UEsFBg==" });
  const consumer = t.mock.job().dependency(producer).script(["x"]).enqueue();
  const r = await t.client.requestJob(t.mock.runnerToken);
  if (r.type !== "job" || !r.job.ok) throw new Error("no job");
  assert.equal(r.job.payload.id, consumer.id);
  const dep = r.job.payload.dependencies[0];
  const response = await t.client.downloadArtifact(dep.id, dep.token);
  assert.ok(response);
  assert.equal((await response.arrayBuffer()).byteLength, 4);
  const download = t.mock.requests.find((q) => q.route === "download")!;
  assert.equal(download.status, 302);
  assert.equal(download.headers.get("job-token"), dep.token);
  const object = t.mock.requests.find((q) => q.route === "object")!;
  assert.equal(object.status, 200);
  assert.equal(object.headers.get("job-token"), null);
  for (const [, v] of object.headers) assert.equal(v.includes(dep.token), false);
});

Deno.test("client over a real socket: job, log, streamed upload, redirected download", async () => {
  const mock = new GitLabMock({ downloadRedirect: true });
  const server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const client = new Client(server.url);
    const producer = mock.addJob({ name: "producer", state: "success", artifactsFile: "UEsFBg==" });
    const mj = mock.job().dependency(producer).script(["x"]).enqueue();
    const r = await client.requestJob(mock.runnerToken);
    if (r.type !== "job" || !r.job.ok) throw new Error("no job");
    const patch = await client.patchTrace(mj.id, mj.token, { offset: 0, data: enc.encode("hi\n") });
    assert.equal(patch.outcome, "accepted");
    await client.uploadArtifact(mj.id, mj.token, {
      filename: "big.zip",
      open: () =>
        new ReadableStream(
          {
            pull(c) {
              c.enqueue(new Uint8Array(64 * 1024).fill(1));
              if (++this.n! >= 16) c.close();
            },
            n: 0,
          } as UnderlyingDefaultSource<Uint8Array> & { n?: number },
        ),
    });
    assert.equal(mj.artifacts[0].data.byteLength, 16 * 64 * 1024);
    const dep = r.job.payload.dependencies[0];
    const response = await client.downloadArtifact(dep.id, dep.token);
    assert.equal((await response!.arrayBuffer()).byteLength, 4);
    const object = mock.requests.find((q) => q.route === "object")!;
    assert.equal(new URL(object.url).hostname, "localhost");
    assert.equal(object.headers.get("job-token"), null);
    const done = await client.updateJob(mj.id, mj.token, { state: "success" });
    assert.equal(done.status, 200);
    assert.equal(mj.state, "success");
  } finally {
    await server.close();
  }
});

Deno.test("C6.5 uploadArtifact follows a 307 with a fresh body", async () => {
  const t = setup();
  const mj = await running(t);
  t.mock.fault({
    route: "upload",
    status: 307,
    headers: { location: `${t.mock.url}/api/v4/jobs/${mj.id}/artifacts?artifact_type=archive` },
    times: 1,
  });
  let opens = 0;
  await t.client.uploadArtifact(mj.id, mj.token, {
    filename: "a.zip",
    artifactType: "archive",
    open: () => {
      opens++;
      return new Blob(["abc"]);
    },
  });
  assert.equal(opens, 2);
  assert.equal(new TextDecoder().decode(mj.artifacts[0].data), "abc");
});

Deno.test("C8.1 a 201 body that trickles for longer than the idle deadline, never idle that long, is read whole", async () => {
  const clock = new FakeClock();
  const text = JSON.stringify({ id: 5, token: "glcbt-trickle", steps: [], variables: [] });
  const parts = Array.from(
    { length: 10 },
    (_, i) => text.slice(i * 8, i === 9 ? undefined : i * 8 + 8),
  );
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i === parts.length) return controller.close();
      await clock.sleep(90_000); // under the 2 min idle deadline, 15 min in all
      controller.enqueue(new TextEncoder().encode(parts[i++]));
    },
  }, { highWaterMark: 0 });
  const client = new Client("http://gitlab.test", {
    clock,
    fetch: () => Promise.resolve(new Response(body, { status: 201 })),
  });
  let result: Awaited<ReturnType<Client["requestJob"]>> | undefined;
  client.requestJob("glrt-x").then((r) => result = r);
  assert.ok(await clock.runUntil(() => result !== undefined));
  assert.equal(result?.type, "job");
  if (result?.type !== "job") return;
  assert.equal(result.job.ok, true);
  assert.equal(result.job.ok && result.job.payload.id, 5);
});

// ---------------------------------------------------------------------------------------------
// Exact requests and answers against a scripted GitLab (these kill mutants that survived the
// tests above, see docs/MUTATION.md)
// ---------------------------------------------------------------------------------------------

interface Seen {
  method: string;
  url: URL;
  headers: Headers;
  body: string;
}

/** A client whose GitLab answers with `answer(request)`; every request is recorded. */
function scripted(
  answer: (seen: Seen) => Response | Promise<Response>,
  options: { userAgent?: string; maxAttempts?: number } = {},
) {
  const seen: Seen[] = [];
  const clock = new FakeClock();
  const client = new Client("https://gitlab.example.com/", {
    clock,
    random: () => 0.5,
    maxAttempts: options.maxAttempts ?? 1,
    userAgent: options.userAgent,
    fetch: async (input, init) => {
      const request = new Request(input, init);
      const s: Seen = {
        method: request.method,
        url: new URL(request.url),
        headers: request.headers,
        body: request.body ? await request.text() : "",
      };
      seen.push(s);
      return answer(s);
    },
  });
  return { client, seen, clock };
}

/** A token without a GitLab prefix: only the client's own list of secrets can mask it. */
const PLAIN = "plain-secret-4f9a2c";

Deno.test("C4.1 parseUpdateInterval: positive whole seconds, at most 15 min; anything else is none", () => {
  assert.equal(parseUpdateInterval("5"), 5);
  assert.equal(parseUpdateInterval(" 7 "), 7);
  assert.equal(parseUpdateInterval("100000"), 900);
  for (const bad of [null, "0", "-3", "x5", "5x", "5.5", "", " "]) {
    assert.equal(parseUpdateInterval(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("C4.2 parseRangeEnd reads N of 0-N, with or without a bytes unit", () => {
  for (const v of ["0-10", "bytes=0-10", "bytes 0-10", "BYTES=0-10", " 0-10", "0-10/11"]) {
    assert.equal(parseRangeEnd(v), 10, v);
  }
  assert.equal(parseRangeEnd("12-15"), 15);
  for (const bad of [null, "x0-10", "-10", "0-", "bytes:0-10"]) {
    assert.equal(parseRangeEnd(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("client: URL normalisation strips every trailing slash and a final /ci only; errors say why", () => {
  assert.equal(apiBaseUrl("https://x.org/gitlab///").href, "https://x.org/gitlab/api/v4/");
  assert.equal(apiBaseUrl("https://x.org/ci/gitlab").href, "https://x.org/ci/gitlab/api/v4/");
  assert.equal(apiBaseUrl("https://x.org/a/ci//?q=1#h").href, "https://x.org/a/api/v4/");
  assert.equal(apiBaseUrl(new URL("http://x.org:8080")).href, "http://x.org:8080/api/v4/");
  assert.throws(() => apiBaseUrl("not a url"), (e: unknown) => {
    assert.ok(e instanceof TypeError);
    assert.equal(e.message, "Invalid GitLab URL: not a url");
    assert.ok(e.cause instanceof TypeError, "the URL parser's error is the cause");
    return true;
  });
  assert.throws(() => apiBaseUrl("ftp://x.org"), {
    name: "TypeError",
    message: "GitLab URL must use http or https, got ftp:",
  });
  const client = new Client("https://x.org/gitlab/");
  assert.equal(client.baseUrl.href, "https://x.org/gitlab/api/v4/");
  client.baseUrl.pathname = "/changed";
  assert.equal(client.baseUrl.href, "https://x.org/gitlab/api/v4/", "a copy each time");
});

Deno.test("C1.9 verify: what GitLab answers, exactly; the token goes in the header and the body only", async () => {
  const answers: Array<[Response, unknown]> = [
    [Response.json({ id: 5, token_expires_at: "2030-01-01T00:00:00Z" }), {
      valid: true,
      id: 5,
      tokenExpiresAt: "2030-01-01T00:00:00Z",
    }],
    [Response.json({ id: "5", token_expires_at: 5 }), {
      valid: true,
      id: undefined,
      tokenExpiresAt: undefined,
    }],
    [new Response("200"), { valid: true }],
    [new Response("null"), { valid: true }],
    [new Response("not json"), { valid: true }],
    [new Response(null, { status: 403 }), { valid: false, status: 403 }],
    [new Response("{}", { status: 422 }), { valid: false, status: 422 }],
  ];
  for (const [response, expected] of answers) {
    const t = scripted(() => response);
    assert.deepEqual(
      await t.client.verify(PLAIN, { systemId: "s_1", info: { name: "n", version: undefined } }),
      expected,
    );
    const [s] = t.seen;
    assert.equal(s.method, "POST");
    assert.equal(s.url.href, "https://gitlab.example.com/api/v4/runners/verify");
    assert.equal(s.headers.get("runner-token"), PLAIN);
    assert.equal(s.headers.get("user-agent"), "@x/gitlab-runner");
    assert.deepEqual(JSON.parse(s.body), { token: PLAIN, system_id: "s_1", info: { name: "n" } });
  }
  const failing = scripted(() => new Response(`no such runner ${PLAIN}`, { status: 500 }));
  const e = await failing.client.verify(PLAIN).catch((error) => error);
  assert.ok(e instanceof ApiError);
  assert.equal(e.status, 500);
  assert.equal(e.endpoint, "POST /api/v4/runners/verify");
  assert.ok(!`${e.message} ${e.body}`.includes(PLAIN), `${e.message} ${e.body}`);
  assert.match(e.body, /no such runner/);
});

Deno.test("client: the User-Agent is the library's unless set; maxAttempts defaults to 5", async () => {
  const t = scripted(() => new Response(null, { status: 204 }), { userAgent: "my-runner/1" });
  await t.client.requestJob(PLAIN);
  assert.equal(t.seen[0].headers.get("user-agent"), "my-runner/1");
  const seen: string[] = [];
  const clock = new FakeClock();
  const client = new Client("https://gitlab.example.com", {
    clock,
    fetch: (input) => {
      seen.push(String(input));
      return Promise.resolve(new Response(null, { status: 503 }));
    },
  });
  const p = client.requestJob(PLAIN).catch((error) => error);
  await clock.runUntil(() => seen.length >= 5 && clock.pending === 0);
  assert.ok((await p) instanceof ApiError);
  assert.equal(seen.length, 5);
});

Deno.test("C1.4 requestJob: the token in header and body, last_update only when known; bodiless answers", async () => {
  const t = scripted((s) =>
    s.url.pathname.endsWith("/jobs/request") && JSON.parse(s.body).last_update
      ? new Response(null, { status: 409 })
      : new Response(null, { status: 204, headers: { "x-gitlab-last-update": "abc" } })
  );
  assert.deepEqual(await t.client.requestJob(PLAIN, { systemId: "s_1" }), {
    type: "none",
    lastUpdate: "abc",
    longPolled: false,
  });
  assert.deepEqual(await t.client.requestJob(PLAIN, { lastUpdate: "abc" }), { type: "conflict" });
  const [first, second] = t.seen;
  assert.equal(first.headers.get("runner-token"), PLAIN);
  assert.deepEqual(Object.keys(JSON.parse(first.body)).sort(), ["system_id", "token"]);
  assert.equal(JSON.parse(second.body).last_update, "abc");
  const failing = scripted(() => new Response(`bad ${PLAIN}`, { status: 400 }));
  const e = await failing.client.requestJob(PLAIN).catch((error) => error);
  assert.ok(e instanceof ApiError);
  assert.equal(e.endpoint, "POST /api/v4/jobs/request");
  assert.ok(!`${e.message} ${e.body}`.includes(PLAIN));
});

Deno.test("C5.1 C5.2 updateJob: each status and Job-Status, and the body's optional fields", async () => {
  const cases: Array<[number, string | null, Record<string, unknown>]> = [
    [200, null, { outcome: "ok", abort: false, cancelRequested: false }],
    [200, "running", { outcome: "ok", abort: false, cancelRequested: false }],
    [200, "canceling", { outcome: "ok", abort: false, cancelRequested: true }],
    [200, "canceled", { outcome: "abort", abort: true, cancelRequested: false }],
    [200, "failed", { outcome: "abort", abort: true, cancelRequested: false }],
    [403, null, { outcome: "abort", abort: true, cancelRequested: false }],
    [404, null, { outcome: "abort", abort: true, cancelRequested: false }],
    [202, null, { outcome: "accepted", abort: false, cancelRequested: false }],
    [412, null, { outcome: "reset", abort: false, cancelRequested: false }],
  ];
  for (const [status, jobStatus, expected] of cases) {
    const headers: Record<string, string> = { "x-gitlab-trace-update-interval": "3" };
    if (jobStatus) headers["job-status"] = jobStatus;
    const t = scripted(() => new Response(null, { status, headers }));
    const r = await t.client.updateJob(9, PLAIN, { state: "running" });
    assert.deepEqual(r, {
      status,
      jobStatus: jobStatus ?? undefined,
      updateInterval: 3,
      ...expected,
    }, `${status} ${jobStatus}`);
    assert.equal(t.seen[0].method, "PUT");
    assert.equal(t.seen[0].url.pathname, "/api/v4/jobs/9");
    assert.equal(t.seen[0].headers.get("job-token"), PLAIN);
  }
  const conflict = scripted(() => new Response(`no ${PLAIN}`, { status: 409 }));
  const e = await conflict.client.updateJob(9, PLAIN, { state: "running" }).catch((x) => x);
  assert.ok(e instanceof ApiError);
  assert.equal(e.status, 409);
  assert.equal(e.endpoint, "PUT /api/v4/jobs/9");
  // failure_reason and exit_code only when there is one (exit code 0 is none).
  const bodies: Record<string, unknown>[] = [];
  const t = scripted((s) => {
    bodies.push(JSON.parse(s.body));
    return new Response(null, { status: 200 });
  });
  await t.client.updateJob(9, PLAIN, { state: "success" });
  await t.client.updateJob(9, PLAIN, { state: "success", exitCode: 0 });
  await t.client.updateJob(9, PLAIN, {
    state: "failed",
    failureReason: "script_failure",
    exitCode: 3,
  });
  assert.deepEqual(bodies.map((b) => [b.failure_reason, b.exit_code]), [
    [undefined, undefined],
    [undefined, undefined],
    ["script_failure", 3],
  ]);
  assert.ok(!("failure_reason" in bodies[0]) && !("exit_code" in bodies[1]));
});

Deno.test("C4.1 patchTrace: offset without a Range answer, debug_trace, 404, errors name the endpoint", async () => {
  const t = scripted((s) =>
    s.url.searchParams.get("debug_trace") === "true"
      ? new Response(null, { status: 404 })
      : new Response(null, { status: 202 })
  );
  const accepted = await t.client.patchTrace(3, PLAIN, { offset: 10, data: enc.encode("abc") });
  assert.equal(accepted.outcome, "accepted");
  assert.equal(accepted.serverOffset, 13, "no Range in the answer: what was sent");
  assert.equal(t.seen[0].url.searchParams.get("debug_trace"), "false");
  assert.equal(t.seen[0].headers.get("content-range"), "10-12");
  const gone = await t.client.patchTrace(3, PLAIN, {
    offset: 0,
    data: enc.encode("x"),
    debugTrace: true,
  });
  assert.equal(gone.outcome, "not-found");
  const failing = scripted(() => new Response(null, { status: 400 }));
  const e = await failing.client.patchTrace(3, PLAIN, { offset: 0, data: enc.encode("x") })
    .catch((x) => x);
  assert.ok(e instanceof ApiError);
  assert.equal(e.endpoint, "PATCH /api/v4/jobs/3/trace");
});

Deno.test("C6.7 downloadArtifact asks for direct_download unless told not to", async () => {
  const t = scripted(() => new Response("zip"));
  const first = await t.client.downloadArtifact(3, PLAIN);
  await first?.body?.cancel();
  const second = await t.client.downloadArtifact(3, PLAIN, { directDownload: false });
  await second?.body?.cancel();
  assert.deepEqual(t.seen.map((s) => s.url.searchParams.get("direct_download")), ["true", "false"]);
  assert.equal(t.seen[0].url.pathname, "/api/v4/jobs/3/artifacts");
  assert.equal(t.seen[0].headers.get("job-token"), PLAIN);
  const failing = scripted(() => new Response(`denied ${PLAIN}`, { status: 401 }));
  const e = await failing.client.downloadArtifact(3, PLAIN).catch((x) => x);
  assert.ok(e instanceof ApiError);
  assert.equal(e.endpoint, "GET /api/v4/jobs/3/artifacts");
  assert.ok(!`${e.message} ${e.body}`.includes(PLAIN));
});

/** A client over `fetch` with short deadlines on a fake clock. */
function deadlined(fetch: typeof globalThis.fetch, options: Record<string, number> = {}) {
  const clock = new FakeClock();
  const client = new Client("https://gitlab.example.com", {
    clock,
    fetch,
    maxAttempts: 1,
    headerTimeoutMs: 1_000,
    idleTimeoutMs: 2_000,
    ...options,
  });
  return { clock, client };
}

/** A fetch that never answers; it rejects when its signal aborts. */
const silent: typeof fetch = (_input, init) =>
  new Promise((_, reject) => {
    const signal = init?.signal;
    signal?.addEventListener("abort", () => reject(signal.reason));
  });

/** A body that sends `first` and then nothing, ever. */
function stalling(first: string): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (sent) return new Promise(() => {});
      sent = true;
      controller.enqueue(enc.encode(first));
    },
  }, { highWaterMark: 0 });
}

Deno.test("C8.1 no answer within the header deadline: a transient RequestError with a TimeoutError cause", async () => {
  const t = deadlined(silent);
  const p = t.client.verify(PLAIN).catch((e) => e);
  await t.clock.advance(999);
  await t.clock.advance(1);
  const e = await p;
  assert.ok(e instanceof RequestError, String(e));
  assert.equal(e.transient, true);
  assert.ok(e.cause instanceof DOMException);
  assert.equal(e.cause.name, "TimeoutError");
  assert.equal(e.cause.message, "No answer within 1000 ms");
  assert.equal(t.clock.now() - Date.UTC(2026, 0, 1), 1_000);
  // The caller's own abort is not a timeout, and not transient.
  const mine = new AbortController();
  const q = t.client.verify(PLAIN, { signal: mine.signal }).catch((x) => x);
  const reason = new Error("mine");
  mine.abort(reason);
  assert.equal(await q, reason, "the caller's reason, not a RequestError to retry");
});

Deno.test("C8.1 patchTrace and updateJob: the caller's abort ends the attempt in flight, and no listener stays on the caller's signal", async () => {
  /** The signal of `ctl`, tracking which "abort" listeners are on it. */
  function counted(ctl: AbortController) {
    const signal = ctl.signal;
    const on = new Set<unknown>();
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = (...args: Parameters<typeof add>) => {
      if (args[0] === "abort") on.add(args[1]);
      return add(...args);
    };
    signal.removeEventListener = (...args: Parameters<typeof remove>) => {
      if (args[0] === "abort") on.delete(args[1]);
      return remove(...args);
    };
    return { signal, on };
  }
  const calls = [
    (client: Client, signal: AbortSignal) =>
      client.patchTrace(1, PLAIN, { offset: 0, data: enc.encode("x\n"), signal }),
    (client: Client, signal: AbortSignal) =>
      client.updateJob(1, PLAIN, { state: "success" }, { signal }),
  ];
  for (const call of calls) {
    // In flight: the abort reaches the fetch (which only ends when its signal aborts).
    const t = deadlined(silent);
    const mine = new AbortController();
    const { signal, on } = counted(mine);
    const q = call(t.client, signal).catch((x) => x);
    await new Promise((r) => setTimeout(r, 10));
    const reason = new Error("mine");
    mine.abort(reason);
    const hung = new Promise((r) => setTimeout(() => r("hung"), 2_000));
    assert.equal(await Promise.race([q, hung]), reason);
    assert.equal(on.size, 0, "no abort listener left");
    // Answered: many calls with one long-lived signal leave nothing on it.
    const answered = new Client("https://gitlab.example.com", {
      fetch: () => Promise.resolve(new Response(null, { status: 202, headers: { range: "0-1" } })),
    });
    const long = counted(new AbortController());
    for (let i = 0; i < 50; i++) await call(answered, long.signal).catch(() => {});
    assert.equal(long.on.size, 0, "no abort listener left");
  }
});

Deno.test("C8.1 requestJob with a signal: the caller's abort also ends the payload read after the answer's headers", async () => {
  let release = () => {};
  const stalled = new Promise<void>((r) => (release = r));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent) {
          await stalled;
          return controller.close();
        }
        sent = true;
        controller.enqueue(enc.encode('{"id": 7, "token": "glcbt-x", '));
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: 201, headers: { "content-type": "application/json" } });
  });
  try {
    const client = new Client(`http://127.0.0.1:${server.addr.port}`, {
      maxAttempts: 1,
      idleTimeoutMs: 10_000,
    });
    const mine = new AbortController();
    const q = client.requestJob(PLAIN, { signal: mine.signal }).then((r) => r, (e) => e);
    await new Promise((r) => setTimeout(r, 300)); // the headers are in, the body stalls
    mine.abort(new Error("mine"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise((r) => (timer = setTimeout(() => r("hung"), 5_000)));
    const result = await Promise.race([q, hung]);
    clearTimeout(timer);
    assert.notEqual(result, "hung", "the read ended with the abort, not at the idle deadline");
  } finally {
    release();
    await server.shutdown();
  }
});

Deno.test("C8.1 deadline options that are not positive mean the defaults (10 min, 2 min)", async () => {
  for (const headerTimeoutMs of [0, -5]) {
    const t = deadlined(silent, { headerTimeoutMs });
    const p = t.client.verify(PLAIN).catch((e) => e);
    let settled = false;
    p.then(() => (settled = true));
    await t.clock.advance(10 * 60_000 - 1);
    assert.equal(settled, false, `${headerTimeoutMs}: still waiting just before 10 min`);
    await t.clock.advance(1);
    assert.ok((await p) instanceof RequestError);
  }
  const t = deadlined(
    () =>
      Promise.resolve(new Response(stalling('{"id": 7, "token": "glcbt-x", '), { status: 201 })),
    { idleTimeoutMs: 0 },
  );
  let result: unknown;
  const p = t.client.requestJob(PLAIN).then((r) => (result = r));
  await t.clock.advance(2 * 60_000 - 1);
  assert.equal(result, undefined);
  await t.clock.advance(1);
  await p;
  assert.deepEqual(result, {
    type: "job",
    job: {
      ok: false,
      error:
        "the job payload could not be read: Request POST /api/v4/jobs/request failed: No data for 120000 ms",
      id: 7,
      token: "glcbt-x",
    },
  });
});

Deno.test("C10.3 a job payload over maxPayloadBytes, declared or streamed, names its id and token and the limit", async () => {
  const prefix = '{"id": 7, "token": "glcbt-x", "variables": [';
  const declared = deadlined(() =>
    Promise.resolve(
      new Response(prefix + " ".repeat(200), {
        status: 201,
        headers: { "content-length": String(prefix.length + 200) },
      }),
    ), { maxPayloadBytes: 100 });
  assert.deepEqual(await declared.client.requestJob(PLAIN), {
    type: "job",
    job: {
      ok: false,
      error: `the job payload of ${prefix.length + 200} bytes exceeds the limit of 100 bytes`,
      id: 7,
      token: "glcbt-x",
    },
  });
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(enc.encode(pulled === 1 ? prefix : " ".repeat(64)));
    },
  });
  const streamed = deadlined(() => Promise.resolve(new Response(endless, { status: 201 })), {
    maxPayloadBytes: 1_000,
  });
  assert.deepEqual(await streamed.client.requestJob(PLAIN), {
    type: "job",
    job: {
      ok: false,
      error: "the job payload exceeds the limit of 1000 bytes",
      id: 7,
      token: "glcbt-x",
    },
  });
  assert.ok(pulled < 40, `${pulled} chunks read`);
  // A complete payload exactly at the limit is fine, and so is a valid one over it: it is
  // parsed for its id and token but still refused.
  const text = JSON.stringify({ id: 8, token: "glcbt-y" });
  const exact = deadlined(() => Promise.resolve(new Response(text, { status: 201 })), {
    maxPayloadBytes: text.length,
  });
  const ok = await exact.client.requestJob(PLAIN);
  assert.ok(ok.type === "job" && ok.job.ok);
  const over = deadlined(() => Promise.resolve(new Response(text, { status: 201 })), {
    maxPayloadBytes: text.length - 1,
  });
  assert.deepEqual(await over.client.requestJob(PLAIN), {
    type: "job",
    job: {
      ok: false,
      error: `the job payload exceeds the limit of ${text.length - 1} bytes`,
      id: 8,
      token: "glcbt-y",
    },
  });
});

Deno.test("C9.4 maskSecrets masks the given secrets (empty ones ignored) and token-shaped strings", () => {
  assert.equal(maskSecrets("", [PLAIN]), "");
  assert.equal(maskSecrets(`a ${PLAIN} b`, ["", PLAIN]), "a [MASKED] b");
  assert.equal(maskSecrets("nothing here", [""]), "nothing here");
  assert.equal(maskSecrets(`x ${PLAIN}`, []), `x ${PLAIN}`);
  assert.equal(maskSecrets("t glrt-abcdefghijklmnopqrst", []), "t glrt-[MASKED]");
});

Deno.test("C1.1 C1.3 requestJob and updateJob send `info` first, as it is at each call; the runner's own is written once", async () => {
  const bodies: string[] = [];
  const t = scripted((s) => {
    bodies.push(s.body);
    return new Response(null, { status: s.method === "PUT" ? 200 : 204 });
  });
  const info = {
    name: "r1",
    version: undefined,
    features: { cancel_gracefully: true, refspecs: false },
    config: { gpus: "" },
  };
  const sent = {
    name: "r1",
    features: { cancel_gracefully: true, refspecs: false },
    config: { gpus: "" },
  };
  await t.client.requestJob(PLAIN, { info, systemId: "s_1", lastUpdate: "u1" });
  await t.client.requestJob(PLAIN, { info, systemId: "s_1" });
  await t.client.updateJob(9, PLAIN, { state: "failed", failureReason: "script_failure", info });
  assert.deepEqual(bodies.map((b) => JSON.parse(b)), [
    { info: sent, token: PLAIN, system_id: "s_1", last_update: "u1" },
    { info: sent, token: PLAIN, system_id: "s_1" },
    { info: sent, token: PLAIN, state: "failed", failure_reason: "script_failure" },
  ]);
  // The text is exactly what `JSON.stringify` writes of the whole body, `info` first.
  assert.equal(bodies[1], JSON.stringify({ info: sent, token: PLAIN, system_id: "s_1" }));
  assert.equal(
    bodies[2],
    JSON.stringify({ info: sent, token: PLAIN, state: "failed", failure_reason: "script_failure" }),
  );
  // An application's `info` is written at each call: a change shows in the next request.
  info.features.refspecs = true;
  await t.client.updateJob(9, PLAIN, { state: "running", info });
  assert.equal(JSON.parse(bodies[3]).info.features.refspecs, true);
  // The runner's own (marked constant) is written once, when marked, and sent as it was.
  const own = constantInfo({
    name: "own",
    features: { refspecs: true } as Record<string, boolean>,
  });
  own.features.refspecs = false; // (nothing does this to the runner's: it is out of reach)
  await t.client.requestJob(PLAIN, { info: own });
  assert.deepEqual(JSON.parse(bodies[4]), {
    info: { name: "own", features: { refspecs: true } },
    token: PLAIN,
  });
  // No `info`: none is sent.
  await t.client.updateJob(9, PLAIN, { state: "success" });
  assert.equal(bodies[5], JSON.stringify({ token: PLAIN, state: "success" }));
});

Deno.test("C1.1 the runner's info cannot be changed from outside: what it sends stays what was built", async () => {
  const { RunnerBuilder } = await import("../mod.ts");
  const mock = new GitLabMock();
  mock.job().script(["true"]).enqueue();
  const infos: Record<string, unknown>[] = [];
  const runner = await new RunnerBuilder(mock.url, mock.runnerToken, await Deno.makeTempDir())
    .fetch(async (input, init) => {
      const request = new Request(input, init);
      if (request.method !== "PATCH") infos.push(JSON.parse(await request.clone().text()).info);
      return mock.fetch(request);
    })
    .name("built")
    .features(["refspecs"])
    .build();
  const copy = runner.info;
  copy.name = "changed";
  copy.features!.refspecs = false;
  await runner.requestJob(() => ({ step: async () => {} }));
  await runner.drain();
  assert.ok(infos.length >= 2, `${infos.length} requests`);
  for (const info of infos) {
    assert.equal(info.name, "built");
    assert.equal((info.features as Record<string, boolean>).refspecs, true);
  }
});
