import { assert, FakeClock } from "./_deps.ts";
import { ApiError, RequestError } from "../mod.ts";
import { Client } from "../src/client.ts";
import { apiBaseUrl, parseRangeEnd } from "../src/api/client.ts";
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
