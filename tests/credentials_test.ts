// Credentials never cross a boundary (CONFORMANCE C9.1, C9.2, C9.4): a hostile or misconfigured
// GitLab redirects calls to another origin (a second listener on another port plays it), to
// file: and data: URLs, and echoes tokens in error bodies.
import { assert, FakeClock } from "./_deps.ts";
import { captureDiagnostics, until } from "./_harness.ts";
import { inspect } from "node:util";
import { ApiError, type JobHandler, RequestError, RunnerBuilder, Variable } from "../mod.ts";
import { Client } from "../src/client.ts";
import { GitLabMock } from "../src/mock/mod.ts";

interface Seen {
  method: string;
  path: string;
  headers: Headers;
  body: string;
}

/** A listener on another port that records what reaches it and answers 200 to everything. */
function foreign() {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({
      method: req.method,
      path: new URL(req.url).pathname,
      headers: req.headers,
      body: await req.text(),
    });
    return new Response(JSON.stringify({ id: 1, token: "x" }), {
      status: 200,
      headers: { "content-type": "application/json", "Job-Status": "success" },
    });
  });
  return { seen, origin: `http://127.0.0.1:${server.addr.port}`, server };
}

/**
 * GitLab (the mock) behind a listener that answers the requests `redirect` picks with a redirect
 * to where it says.
 */
function front(
  mock: GitLabMock,
  redirect: (req: Request, url: URL) => { status: number; location: string } | undefined,
) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const to = redirect(req, new URL(req.url));
    if (to) {
      await req.body?.cancel();
      return new Response(null, { status: to.status, headers: { location: to.location } });
    }
    return await mock.handle(req);
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, server };
}

async function closeAll(...servers: Deno.HttpServer[]) {
  for (const s of servers) await s.shutdown();
}

// ------------------------------------------------------------------------------------- C9.1

Deno.test("C9.1 /jobs/request and /runners/verify never follow a redirect to another origin (301, 302, 307, 308)", async () => {
  const mock = new GitLabMock();
  const evil = foreign();
  let status = 307;
  const gl = front(
    mock,
    (_req, url) =>
      url.pathname.endsWith("/jobs/request") || url.pathname.endsWith("/runners/verify")
        ? { status, location: `${evil.origin}/steal${url.pathname}` }
        : undefined,
  );
  try {
    const client = new Client(gl.url);
    for (status of [301, 302, 307, 308]) {
      for (
        const call of [
          () => client.requestJob(mock.runnerToken),
          () => client.verify(mock.runnerToken),
        ]
      ) {
        const error = await call().then(() => undefined, (e) => e);
        if (status === 301 || status === 302) {
          // A POST is never redirected to a GET: the 3xx itself is GitLab's (bad) answer.
          assert.ok(error instanceof ApiError, `${status}: ${error}`);
          assert.equal(error.status, status);
        } else {
          assert.ok(error instanceof RequestError, `${status}: ${error}`);
          assert.match(error.message, new RegExp(`another origin \\(${evil.origin}\\)`));
          assert.equal(error.transient, false);
        }
        assert.equal(error.message.includes(mock.runnerToken), false);
      }
    }
    // Nothing reached the other origin: no token, no body.
    assert.deepEqual(evil.seen, []);
  } finally {
    await closeAll(gl.server, evil.server);
  }
});

Deno.test("C9.1 a foreign 200 to a redirected verify never makes a token valid", async () => {
  const mock = new GitLabMock();
  const evil = foreign();
  const gl = front(
    mock,
    (_req, url) =>
      url.pathname.endsWith("/runners/verify")
        ? { status: 308, location: `${evil.origin}/ok` }
        : undefined,
  );
  try {
    const client = new Client(gl.url);
    await assert.rejects(client.verify("glrt-not-a-valid-token"), RequestError);
    assert.deepEqual(evil.seen, []);
  } finally {
    await closeAll(gl.server, evil.server);
  }
});

Deno.test("C9.1 PATCH and PUT with the job token are not redirected to another origin; a foreign 200 is not a delivered state", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const evil = foreign();
  const gl = front(
    mock,
    (req, url) =>
      /\/api\/v4\/jobs\/\d+(\/trace)?$/.test(url.pathname) && req.method !== "POST"
        ? { status: 307, location: `${evil.origin}${url.pathname}` }
        : undefined,
  );
  const dir = await Deno.makeTempDir();
  try {
    const job = mock.job().script(["true"]).enqueue();
    const runner = await new RunnerBuilder(gl.url, mock.runnerToken, dir).clock(clock)
      .deadlines({ finalUpdateMs: 5 * 60_000, flushMs: 60_000 }).build();
    const ok: JobHandler = { step: async () => {} };
    await runner.requestJob(() => ok);
    await until(clock, () => runner.running === 0);
    assert.equal(runner.outcomes[0].state, "lost");
    assert.equal(job.state, "running");
    assert.deepEqual(evil.seen, []);
  } finally {
    await closeAll(gl.server, evil.server);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C9.1 a same-origin 307/308 is followed with method, body and token", async () => {
  const mock = new GitLabMock();
  const gl = front(
    mock,
    (_req, url) =>
      url.pathname.endsWith("/runners/verify") && !url.searchParams.has("again")
        ? { status: 307, location: `${url.pathname}?again=1` }
        : url.pathname.endsWith("/jobs/request") && !url.searchParams.has("again")
        ? { status: 308, location: `${url.pathname}?again=1` }
        : undefined,
  );
  try {
    const client = new Client(gl.url);
    assert.equal((await client.verify(mock.runnerToken)).valid, true);
    mock.job().script(["true"]).enqueue();
    const got = await client.requestJob(mock.runnerToken);
    assert.equal(got.type, "job");
  } finally {
    await closeAll(gl.server);
  }
});

Deno.test("C9.1 an artifact upload is not redirected to another origin", async () => {
  const mock = new GitLabMock();
  const evil = foreign();
  const gl = front(
    mock,
    (_req, url) =>
      url.pathname.endsWith("/artifacts")
        ? { status: 307, location: `${evil.origin}/up` }
        : undefined,
  );
  try {
    const client = new Client(gl.url);
    mock.job().script(["true"]).enqueue();
    const got = await client.requestJob(mock.runnerToken);
    if (got.type !== "job" || !got.job.ok) throw new Error("no job");
    const { id, token } = got.job.payload;
    const error = await client.uploadArtifact(id, token, {
      open: () => new Blob(["zip bytes"]),
      filename: "a.zip",
    }).then(() => undefined, (e) => e);
    assert.ok(error instanceof RequestError, String(error));
    assert.match(error.message, /another origin/);
    assert.deepEqual(evil.seen, []);
  } finally {
    await closeAll(gl.server, evil.server);
  }
});

Deno.test("C9.1 a custom fetch that follows redirects itself: another origin's answer is refused", async () => {
  const mock = new GitLabMock();
  // A fetch that ignores redirect: "manual" and reports the final URL, like a naive proxy.
  const follows: typeof fetch = async () => {
    const response = new Response(JSON.stringify({ id: 7 }), { status: 200 });
    Object.defineProperty(response, "url", { value: "https://evil.example/api/v4/runners/verify" });
    return response;
  };
  const client = new Client(mock.url, { fetch: follows });
  const error = await client.verify(mock.runnerToken).then(() => undefined, (e) => e);
  assert.ok(error instanceof RequestError, String(error));
  assert.match(error.message, /another origin \(https:\/\/evil\.example\)/);
});

Deno.test("C9.1 a global fetch replaced by one that follows redirects (no fetch option): another origin's answer is refused", async () => {
  const mock = new GitLabMock();
  const runtimeFetch = globalThis.fetch;
  // The client skips the URL check only for the runtime's own fetch, whose answers come from
  // the URL asked; a replacement installed before the client is built is checked.
  globalThis.fetch = async () => {
    const response = new Response(JSON.stringify({ id: 7 }), { status: 200 });
    Object.defineProperty(response, "url", { value: "https://evil.example/api/v4/runners/verify" });
    return response;
  };
  try {
    const client = new Client(mock.url);
    const error = await client.verify(mock.runnerToken).then(() => undefined, (e) => e);
    assert.ok(error instanceof RequestError, String(error));
    assert.match(error.message, /another origin \(https:\/\/evil\.example\)/);
  } finally {
    globalThis.fetch = runtimeFetch;
  }
});

// ------------------------------------------------------------------------------------- C9.2

Deno.test("C9.2 redirects to file:, data:, blob: and ftp: URLs are errors, never fetched", async () => {
  const mock = new GitLabMock();
  let target = "";
  const gl = front(mock, () => ({ status: 307, location: target }));
  const secret = await Deno.makeTempFile();
  await Deno.writeTextFile(secret, '{"id": 1}');
  try {
    const client = new Client(gl.url);
    for (
      target of [`file://${secret}`, "data:application/json,{}", "blob:null/x", "ftp://x/y"]
    ) {
      const error = await client.verify(mock.runnerToken).then(() => undefined, (e) => e);
      assert.ok(error instanceof RequestError, `${target}: ${error}`);
      assert.match(error.message, /only http and https are followed/);
    }
  } finally {
    await closeAll(gl.server);
    await Deno.remove(secret);
  }
});

Deno.test("C9.2 the GitLab URL itself must be http or https", () => {
  for (const url of ["file:///etc", "data:,x", "ftp://gitlab.example.com"]) {
    assert.throws(() => new Client(url), TypeError);
    assert.throws(() => new RunnerBuilder(url, "glrt-x", "/tmp"), TypeError);
  }
});

// ------------------------------------------------------------------------------------- C9.4

Deno.test("C9.4 a 500 whose body echoes the request keeps no token in ApiError, its message or diagnostics", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const pat = "glpat-abcdefghijklmnopqrst";
  const other = "glcbt-64_abcdefghijklmnopqrstuvwxyz";
  mock.fault({
    route: "request",
    status: 500,
    body: `{"echo": {"token": "${mock.runnerToken}", "also": "${pat} ${other}"}}`,
    times: Infinity,
  });
  await using diagnostics = await captureDiagnostics();
  const records = diagnostics.records;
  const client = new Client(mock.url, { fetch: mock.fetch, clock, maxAttempts: 1 });
  const error = await client.requestJob(mock.runnerToken).then(() => undefined, (e) => e);
  assert.ok(error instanceof ApiError);
  for (const text of [error.body, error.message, JSON.stringify(error), inspect(error)]) {
    for (const secret of [mock.runnerToken, pat, other]) {
      assert.equal(text.includes(secret), false, `${secret} in ${text}`);
    }
  }
  assert.match(error.body, /\[MASKED\]/);
  // The runner's warning about it, through LogTape.
  const runner = await new RunnerBuilder(mock.url, mock.runnerToken, "/tmp").fetch(mock.fetch)
    .clock(clock).build();
  const stop = new AbortController();
  const done = runner.run(() => ({ step: async () => {} }), 1, { signal: stop.signal });
  await until(clock, () => records.length > 0);
  stop.abort();
  await done;
  const logged = records.map((r) => JSON.stringify(r.properties) + r.message.join(""));
  assert.ok(logged.some((l) => l.includes("[MASKED]")), logged.join("\n"));
  for (const l of logged) {
    for (const secret of [mock.runnerToken, pat]) assert.equal(l.includes(secret), false, l);
  }
});

Deno.test("C9.4 library objects print no token: Variable, Job variables, Client, Runner", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  mock.job().script(["true"]).variable("SECRET", "hunter2-secret", { masked: true })
    .enqueue();
  const dir = await Deno.makeTempDir();
  try {
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, dir).fetch(mock.fetch)
      .clock(clock).build();
    const seen: string[] = [];
    let jobToken = "";
    await runner.requestJob((job) => {
      jobToken = job.payload.token;
      const url = job.variables.find((v) => v.key === "CI_REPOSITORY_URL");
      assert.ok(url && url.value.includes(jobToken), "CI_REPOSITORY_URL holds the job token");
      seen.push(
        Deno.inspect(job.variables),
        inspect(job.variables),
        JSON.stringify(job.variables),
        String(url),
        Deno.inspect(job),
        inspect(job),
      );
      return { step: async () => {} };
    });
    await until(clock, () => runner.running === 0);
    seen.push(Deno.inspect(runner), inspect(runner), JSON.stringify(runner));
    const client = new Client(mock.url);
    seen.push(Deno.inspect(client), inspect(client));
    for (const text of seen) {
      for (const secret of [jobToken, mock.runnerToken, "hunter2-secret"]) {
        assert.equal(text.includes(secret), false, `${secret} in ${text.slice(0, 500)}`);
      }
    }
    const masked = new Variable({
      key: "K",
      value: "v4lue-secret",
      masked: true,
      public: false,
      file: false,
      raw: false,
    });
    assert.equal(Deno.inspect(masked).includes("v4lue-secret"), false);
    assert.equal(inspect(masked).includes("v4lue-secret"), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C9.4 the runner's catch-all diagnostic for a job is masked", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const job = mock.job().script(["true"]).variable("PASSWORD", "s3cr3t-value", { masked: true })
    .enqueue();
  // A clock that breaks once inside the job's run, with an error quoting the job's secrets.
  let calls = -1;
  const broken = {
    now: () => {
      if (calls >= 0 && ++calls === 2) {
        throw new Error(`clock broke near ${job.token} and s3cr3t-value`);
      }
      return clock.now();
    },
    sleep: (ms: number, signal?: AbortSignal) => clock.sleep(ms, signal),
  };
  mock.onRequest((r) => {
    if (r.route === "request" && r.status === 201) calls = 0;
  });
  await using diagnostics = await captureDiagnostics();
  const records = diagnostics.records;
  const dir = await Deno.makeTempDir();
  try {
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, dir).fetch(mock.fetch)
      .clock(broken).build();
    await runner.requestJob(() => ({ step: async () => {} }));
    await until(clock, () => runner.running === 0);
    const logged = records.map((r) => JSON.stringify(r.properties));
    assert.ok(logged.some((l) => l.includes("clock broke near [MASKED]")), logged.join("\n"));
    for (const l of logged) {
      assert.equal(l.includes(job.token), false, l);
      assert.equal(l.includes("s3cr3t-value"), false, l);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C9.2 a custom fetch that followed a download to a file: URL: the answer is refused", async () => {
  const mock = new GitLabMock();
  const follows: typeof fetch = async () => {
    const response = new Response("root:x:0:0", { status: 200 });
    Object.defineProperty(response, "url", { value: "file:///etc/passwd" });
    return response;
  };
  const client = new Client(mock.url, { fetch: follows });
  const error = await client.downloadArtifact(1, "glcbt-x").then(() => undefined, (e) => e);
  assert.ok(error instanceof RequestError, String(error));
  assert.match(error.message, /file: URL: only http and https are followed/);
  assert.equal(error.transient, false);
});
