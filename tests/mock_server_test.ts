// The GitLab mock over real sockets (Deno.serve and the node:http twin) and as a command
// (CONFORMANCE.md M10, with M7/M8 behaviours that depend on the transport).
import { assert, FakeClock } from "./_deps.ts";
import { GitLabMock, type MockServer } from "../src/mock/mod.ts";

type Json = Record<string, unknown>;
const encoder = new TextEncoder();

function post(url: string, json: unknown): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(json),
  });
}

/** A multipart body streamed in chunks (no Content-Length: chunked transfer encoding). */
function streamedMultipart(data: Uint8Array<ArrayBuffer>, filename: string) {
  const boundary = "9051914041544843365972754266";
  const parts = [
    encoder.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n`,
    ),
    encoder.encode("Content-Type: application/octet-stream\r\n\r\n"),
    data.slice(0, 3),
    data.slice(3),
    encoder.encode(`\r\n--${boundary}--\r\n`),
  ];
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    body: ReadableStream.from(parts),
  };
}

async function fullFlow(mock: GitLabMock, server: MockServer): Promise<void> {
  const api = `${server.url}/api/v4`;
  const build = mock.job().name("build").state("success").artifactsFile(
    new Uint8Array([80, 75, 5, 6]),
  )
    .enqueue();
  const job = mock.job().name("remote").dependency(build).enqueue();

  const verify = await post(`${api}/runners/verify`, { token: mock.runnerToken });
  assert.equal(verify.status, 200);
  await verify.body?.cancel();

  const res = await post(`${api}/jobs/request`, { token: mock.runnerToken });
  assert.equal(res.status, 201);
  const payload = await res.json();
  assert.equal(payload.id, job.id);
  const serverUrl = (payload.variables as Json[]).find((v) => v.key === "CI_SERVER_URL");
  assert.equal(serverUrl?.value, server.url);

  // Streamed trace body.
  const patch = await fetch(`${api}/jobs/${job.id}/trace?debug_trace=false`, {
    method: "PATCH",
    headers: { "job-token": payload.token, "content-range": "0-11", "content-type": "text/plain" },
    body: ReadableStream.from([encoder.encode("hello "), encoder.encode("world\n")]),
    duplex: "half",
  } as RequestInit);
  assert.equal(patch.status, 202);
  assert.equal(patch.headers.get("range"), "0-12");
  assert.equal(patch.headers.get("job-status"), "running");
  await patch.body?.cancel();
  const wrong = await fetch(`${api}/jobs/${job.id}/trace`, {
    method: "PATCH",
    headers: { "job-token": payload.token, "content-range": "5-6", "content-type": "text/plain" },
    body: "xy",
  });
  assert.equal(wrong.status, 416);
  assert.equal(wrong.headers.get("range"), "0-12");
  await wrong.body?.cancel();

  // Streamed multipart upload.
  const zip = encoder.encode("PK-artifact-bytes");
  const { contentType, body } = streamedMultipart(zip, "bin.zip");
  const up = await fetch(
    `${api}/jobs/${job.id}/artifacts?artifact_format=zip&artifact_type=archive`,
    {
      method: "POST",
      headers: { "job-token": payload.token, "content-type": contentType },
      body,
      duplex: "half",
    } as RequestInit,
  );
  assert.equal(up.status, 201);
  assert.equal(await up.text(), "201");
  assert.deepEqual(job.artifacts[0].data, zip);
  assert.equal(job.artifacts[0].filename, "bin.zip");

  // Download redirect to a second origin (same port, another host name).
  const dl = await fetch(`${api}/jobs/${build.id}/artifacts?direct_download=true`, {
    headers: { "job-token": payload.dependencies[0].token },
    redirect: "manual",
  });
  assert.equal(dl.status, 302);
  await dl.body?.cancel();
  const location = new URL(dl.headers.get("location")!);
  assert.equal(location.origin, server.objectsUrl);
  assert.equal(location.hostname, "localhost");
  assert.equal(Number(location.port), server.port);
  // The test permissions allow 127.0.0.1 only: fetch the object through it (same listener).
  location.hostname = "127.0.0.1";
  const object = await fetch(location);
  assert.equal(object.status, 200);
  assert.deepEqual(new Uint8Array(await object.arrayBuffer()), new Uint8Array([80, 75, 5, 6]));
  assert.equal(mock.requests.at(-1)!.route, "object");

  const fin = await fetch(`${api}/jobs/${job.id}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      token: payload.token,
      state: "success",
      output: { checksum: job.logChecksum, bytesize: 12 },
    }),
  });
  assert.equal(fin.status, 200);
  assert.equal(fin.headers.get("job-status"), "success");
  await fin.body?.cancel();
  assert.equal(job.state, "success");
  assert.equal(job.logText, "hello world\n");
  assert.equal(mock.errors.length, 0);
}

for (const kind of ["deno", "node"] as const) {
  Deno.test(`M10 serves the runner API over a socket (${kind === "deno" ? "Deno.serve" : "node:http"})`, async () => {
    const mock = new GitLabMock({ downloadRedirect: true });
    const server = await mock.listen({ hostname: "127.0.0.1", port: 0, server: kind });
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      await fullFlow(mock, server);
    } finally {
      await server.close();
    }
  });

  Deno.test(`M8 a dropped connection fails the client's fetch over a socket (${kind})`, async () => {
    const mock = new GitLabMock();
    await using server = await mock.listen({ server: kind });
    mock.fault({ route: "request", drop: true });
    await assert.rejects(async () => {
      const res = await post(`${server.url}/api/v4/jobs/request`, { token: mock.runnerToken });
      await res.arrayBuffer(); // Deno.serve can only break the body
    }, TypeError);
    const after = await post(`${server.url}/api/v4/jobs/request`, { token: mock.runnerToken });
    assert.equal(after.status, 204);
    await after.body?.cancel();
    assert.deepEqual(mock.requests.map((r) => r.status), [0, 204]);
  });

  Deno.test(`M2 close() releases a long poll held over a socket (${kind})`, async () => {
    const mock = new GitLabMock({ longPollMs: 60_000 });
    const server = await mock.listen({ server: kind });
    const url = `${server.url}/api/v4/jobs/request`;
    const first = await post(url, { token: mock.runnerToken });
    const lastUpdate = first.headers.get("x-gitlab-last-update");
    await first.body?.cancel();
    const held = post(url, { token: mock.runnerToken, last_update: lastUpdate });
    await mock.waitFor((m) => m.requestCount("request") === 2);
    const started = Date.now();
    await server.close();
    const res = await held;
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("gitlab-ci-builds-polling"), "yes");
    await res.body?.cancel();
    assert.ok(Date.now() - started < 5_000);
  });
}

Deno.test("M2 a client that goes away ends its hold over a socket", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, longPollMs: 50_000 });
  await using server = await mock.listen();
  const url = `${server.url}/api/v4/jobs/request`;
  const first = await post(url, { token: mock.runnerToken });
  const lastUpdate = first.headers.get("x-gitlab-last-update");
  await first.body?.cancel();
  const controller = new AbortController();
  const held = fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: mock.runnerToken, last_update: lastUpdate }),
    signal: controller.signal,
  });
  await mock.waitFor(() => clock.pending === 1);
  controller.abort();
  await assert.rejects(held, { name: "AbortError" });
  await mock.waitFor((m) => m.requests.length === 2 && m.requests[1].done);
  assert.equal(mock.requests[1].status, 0);
  assert.equal(clock.pending, 0);
});

async function readLines(
  reader: ReadableStreamDefaultReader<string>,
  n: number,
): Promise<string[]> {
  const lines: string[] = [];
  let buffer = "";
  while (lines.length < n) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0 && lines.length < n) {
      lines.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  }
  return lines;
}

const MOD = new URL("../src/mock/mod.ts", import.meta.url).pathname;
const JOBS = new URL("./fixtures/mock/jobs.json", import.meta.url).pathname;

Deno.test("M10 the command serves a jobs file until SIGTERM and prints a summary", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MOD,
      "--jobs",
      JOBS,
      "--port",
      "0",
      "--hostname",
      "127.0.0.1",
      "--runner-token",
      "glrt-cli",
    ],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let finished = false;
  try {
    const lines = await readLines(reader, 2);
    assert.match(lines[0], /^GITLAB_URL=http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(lines[1], "RUNNER_TOKEN=glrt-cli");
    const url = lines[0].slice("GITLAB_URL=".length);
    const res = await post(`${url}/api/v4/jobs/request`, { token: "glrt-cli" });
    assert.equal(res.status, 201);
    const payload = await res.json();
    assert.equal(payload.job_info.name, "build");
    assert.equal(payload.artifacts[0].expire_in, "1 week");
    const fin = await fetch(`${url}/api/v4/jobs/${payload.id}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: payload.token, state: "success" }),
    });
    assert.equal(fin.status, 200);
    await fin.body?.cancel();
    child.kill("SIGTERM");
    const [summary] = await readLines(reader, 1);
    const parsed = JSON.parse(summary);
    assert.deepEqual(parsed.jobs.map((j: Json) => [j.id, j.name, j.state]), [
      [1, "build", "success"],
      [2, "test", "pending"],
    ]);
    finished = true;
  } finally {
    if (!finished) child.kill("SIGKILL");
    await reader.cancel();
  }
  const status = await child.status;
  assert.equal(status.code, 0);
});

Deno.test("M10 the command exits by itself with --exit-when-done", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "--jobs", JOBS, "--exit-when-done"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const [urlLine, tokenLine] = await readLines(reader, 2);
  const url = urlLine.slice("GITLAB_URL=".length);
  const token = tokenLine.slice("RUNNER_TOKEN=".length);
  for (const state of ["success", "failed"]) {
    const res = await post(`${url}/api/v4/jobs/request`, { token });
    const payload = await res.json();
    const put = await fetch(`${url}/api/v4/jobs/${payload.id}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        token: payload.token,
        state,
        failure_reason: "script_failure",
        exit_code: 3,
      }),
    });
    await put.body?.cancel();
  }
  const [summary] = await readLines(reader, 1);
  await reader.cancel();
  const { jobs } = JSON.parse(summary);
  assert.deepEqual(jobs.map((j: Json) => [j.state, j.failureReason, j.exitCode]), [
    ["success", null, null],
    ["failed", "script_failure", 3],
  ]);
  assert.equal((await child.status).code, 1); // one job did not succeed
});

Deno.test("M10 the command explains itself with --help and rejects bad options", async () => {
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "--help"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /Usage: deno run -A src\/mock\/mod\.ts/);
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "--cancel-response", "nope"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /--cancel-response/);
});
