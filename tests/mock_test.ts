// The GitLab mock must behave like real GitLab (CONFORMANCE.md section M, PROTOCOL.md §13).
// Driven with plain fetch calls through a tiny request helper, never through the real client.
import { assert, FakeClock } from "./_deps.ts";
import { GitLabMock, type MockJob } from "../src/mock/mod.ts";

type Json = Record<string, unknown>;

interface CallInit {
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  redirect?: RequestRedirect;
}

/** A few raw HTTP calls against the mock; just enough to speak the protocol by hand. */
function api(mock: GitLabMock, fetchFn: typeof fetch = mock.fetch, base: string = mock.url) {
  const call = (method: string, path: string, init: CallInit = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    let body = init.body;
    if (init.json !== undefined) {
      headers["content-type"] ??= "application/json";
      body = JSON.stringify(init.json);
    }
    return fetchFn(`${base}/api/v4${path}`, {
      method,
      headers,
      body,
      signal: init.signal,
      redirect: init.redirect,
    });
  };
  const requestJob = (extra: Json = {}, init: CallInit = {}) =>
    call("POST", "/jobs/request", { ...init, json: { token: mock.runnerToken, ...extra } });
  const take = async (features: Json = {}): Promise<Json & { id: number; token: string }> => {
    const res = await requestJob({ info: { features } });
    assert.equal(res.status, 201);
    return await res.json();
  };
  const patch = (
    id: number,
    token: string,
    start: number,
    data: string | Uint8Array<ArrayBuffer>,
    headers: Record<string, string> = {},
  ) => {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    return call("PATCH", `/jobs/${id}/trace`, {
      body: bytes,
      headers: {
        "job-token": token,
        "content-range": `${start}-${start + bytes.length - 1}`,
        "content-type": "text/plain",
        ...headers,
      },
    });
  };
  const put = (id: number, json: Json, headers: Record<string, string> = {}) =>
    call("PUT", `/jobs/${id}`, { json, headers });
  const upload = (id: number, token: string, form: FormData, query = "") =>
    call("POST", `/jobs/${id}/artifacts${query}`, { body: form, headers: { "job-token": token } });
  const download = (id: number, token: string | undefined, query = "", init: CallInit = {}) =>
    call("GET", `/jobs/${id}/artifacts${query}`, {
      ...init,
      headers: token ? { "job-token": token } : {},
    });
  return { call, requestJob, take, patch, put, upload, download };
}

function fileForm(
  data: Uint8Array<ArrayBuffer> | string,
  filename = "artifacts.zip",
  field = "file",
): FormData {
  const form = new FormData();
  form.append(field, new Blob([data]), filename);
  return form;
}

function variable(payload: Json, key: string): Json | undefined {
  return (payload.variables as Json[]).findLast((v) => v.key === key);
}

// ------------------------------------------------------------------ M1 tokens

Deno.test("M1 /jobs/request without token is 400, an unknown token 403", async () => {
  const mock = new GitLabMock();
  const { call, requestJob } = api(mock);
  assert.equal((await call("POST", "/jobs/request", { json: {} })).status, 400);
  assert.equal((await requestJob({ token: "glrt-wrong" })).status, 403);
  const ok = await requestJob();
  assert.equal(ok.status, 204);
  assert.equal(mock.requestCount("request"), 3);
});

Deno.test("M1 /runners/verify checks the runner token in the body", async () => {
  const mock = new GitLabMock({ runnerToken: "glrt-abc" });
  const { call } = api(mock);
  assert.equal((await call("POST", "/runners/verify", { json: {} })).status, 400);
  const bad = await call("POST", "/runners/verify", {
    json: { token: "nope" },
    headers: { "runner-token": "glrt-abc" }, // the header is not where GitLab looks
  });
  assert.equal(bad.status, 403);
  const good = await call("POST", "/runners/verify", { json: { token: "glrt-abc" } });
  assert.equal(good.status, 200);
  assert.deepEqual(await good.json(), { id: 1, token: "glrt-abc", token_expires_at: null });
});

Deno.test("M1 PUT without token in the body is 400 even with a JOB-TOKEN header", async () => {
  const mock = new GitLabMock();
  const job = mock.job().enqueue();
  const { take, put } = api(mock);
  const payload = await take();
  const res = await put(job.id, { state: "running" }, { "job-token": payload.token });
  assert.equal(res.status, 400);
  assert.equal(job.updates.length, 0);
  // Missing token is a validation error even for a job that does not exist.
  assert.equal((await put(999, { state: "running" })).status, 400);
});

Deno.test("M1 wrong tokens and unknown job ids get 403 without Job-Status, never 404", async () => {
  const mock = new GitLabMock();
  const job = mock.job().artifact({ paths: ["out/"] }).enqueue();
  const other = mock.job().enqueue();
  const { take, patch, put, upload, download, call } = api(mock);
  const payload = await take({ upload_multiple_artifacts: true });
  const otherPayload = await take();
  const answers = [
    await patch(job.id, "glcbt-64_wrong", 0, "x"),
    await patch(job.id, otherPayload.token, 0, "x"), // a valid token of another job
    await patch(999, payload.token, 0, "x"),
    await call("PATCH", `/jobs/${job.id}/trace`, {
      body: "x",
      headers: { "content-range": "0-0" },
    }),
    await put(job.id, { token: "glcbt-64_wrong", state: "running" }),
    await put(999, { token: payload.token, state: "running" }),
    await upload(job.id, "glcbt-64_wrong", fileForm("zip")),
    await upload(999, payload.token, fileForm("zip")),
    await download(job.id, "glcbt-64_wrong"),
    await download(999, payload.token),
  ];
  for (const res of answers) {
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("job-status"), null);
    assert.match(await res.text(), /403 Forbidden/);
  }
  assert.equal(job.logSize, 0);
  assert.equal(job.artifacts.length, 0);
  assert.equal(other.state, "running");
});

Deno.test("M1 job-token calls on a finished job get 403 with Job-Status", async () => {
  const mock = new GitLabMock();
  const job = mock.job().enqueue();
  const { take, patch, put, upload } = api(mock);
  const { token } = await take();
  assert.equal((await put(job.id, { token, state: "success" })).status, 200);
  for (
    const res of [
      await patch(job.id, token, 0, "late"),
      await put(job.id, { token, state: "failed" }),
      await upload(job.id, token, fileForm("zip")),
    ]
  ) {
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("job-status"), "success");
  }
  const failed = mock.job().enqueue();
  const p2 = await take();
  mock.dropJob(failed.id, "no_updates_running");
  const res = await put(failed.id, { token: p2.token, state: "running" });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get("job-status"), "failed");
  assert.equal(failed.failureReason, "no_updates_running");
});

Deno.test("M1 PUT validates state, maps unknown failure reasons and stores exit codes", async () => {
  const mock = new GitLabMock();
  const { take, put } = api(mock);
  const a = mock.job().enqueue();
  const pa = await take();
  assert.equal((await put(a.id, { token: pa.token })).status, 400);
  assert.equal((await put(a.id, { token: pa.token, state: "bogus" })).status, 400);
  assert.equal(
    (await put(a.id, { token: pa.token, state: "running", exit_code: "x" })).status,
    400,
  );
  const ok = await put(a.id, {
    token: pa.token,
    state: "failed",
    failure_reason: "made_up_reason",
    exit_code: 2,
    unknown_field: { ignored: true },
  });
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), "200");
  assert.equal(ok.headers.get("job-status"), "failed");
  assert.equal(a.state, "failed");
  assert.equal(a.failureReason, "unknown_failure");
  assert.equal(a.exitCode, 2);

  const b = mock.job().enqueue();
  const pb = await take();
  assert.equal((await put(b.id, { token: pb.token, state: "failed" })).status, 200);
  assert.equal(b.failureReason, "unknown_failure");

  const c = mock.job().enqueue();
  const pc = await take();
  await put(c.id, { token: pc.token, state: "failed", failure_reason: "script_failure" });
  assert.equal(c.failureReason, "script_failure");
});

Deno.test("M1 a /jobs/request body over 32 KiB is 413 (Workhorse)", async () => {
  const mock = new GitLabMock();
  mock.job().enqueue();
  const { requestJob } = api(mock);
  const res = await requestJob({ info: { name: "x".repeat(33 * 1024) } });
  assert.equal(res.status, 413);
  assert.equal(mock.jobs[0].state, "pending");
});

Deno.test("M1 PATCH and download accept the job token as a query parameter", async () => {
  const mock = new GitLabMock();
  const job = mock.job().enqueue();
  const { take, call } = api(mock);
  const { token } = await take();
  const res = await call("PATCH", `/jobs/${job.id}/trace?token=${token}`, {
    body: "hi",
    headers: { "content-range": "0-1", "content-type": "text/plain" },
  });
  assert.equal(res.status, 202);
  assert.equal(job.logText, "hi");
});

Deno.test("M1 an unregistered runner's token is rejected", async () => {
  const mock = new GitLabMock();
  const { call, requestJob } = api(mock);
  assert.equal(
    (await call("DELETE", "/runners", { json: { token: mock.runnerToken } })).status,
    204,
  );
  assert.equal((await requestJob()).status, 403);
});

// ------------------------------------------------------------------ M2 job request, long poll

Deno.test("M2 204 carries X-GitLab-Last-Update, 201 does not, the same last_update is an instant 204", async () => {
  const mock = new GitLabMock();
  const { requestJob } = api(mock);
  const empty = await requestJob();
  assert.equal(empty.status, 204);
  const lastUpdate = empty.headers.get("x-gitlab-last-update");
  assert.ok(lastUpdate && /^[0-9a-f]{32}$/.test(lastUpdate));
  const again = await requestJob({ last_update: lastUpdate });
  assert.equal(again.status, 204);
  assert.equal(again.headers.get("x-gitlab-last-update"), lastUpdate);

  mock.job().enqueue();
  // The queue value changed, so a runner still holding the old one gets a queue scan.
  const cached = await requestJob({ last_update: "not-current" });
  assert.equal(cached.status, 201);
  assert.equal(cached.headers.get("x-gitlab-last-update"), null);
  assert.equal(cached.headers.get("content-type"), "application/json");
  await cached.body?.cancel();
  const after = await requestJob({ last_update: lastUpdate });
  assert.equal(after.status, 204);
  assert.notEqual(after.headers.get("x-gitlab-last-update"), lastUpdate);
});

Deno.test("M2 a paused runner gets 204 with X-GitLab-Last-Update", async () => {
  const mock = new GitLabMock();
  mock.job().enqueue();
  mock.paused = true;
  const res = await api(mock).requestJob();
  assert.equal(res.status, 204);
  assert.ok(res.headers.get("x-gitlab-last-update"));
  assert.equal(mock.jobs[0].state, "pending");
});

Deno.test("M2 a long poll is held on the clock and released by a new job", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, longPollMs: 50_000 });
  const { requestJob } = api(mock);
  const lastUpdate = (await requestJob()).headers.get("x-gitlab-last-update")!;
  let settled = false;
  const held = requestJob({ last_update: lastUpdate }).finally(() => (settled = true));
  await clock.advance(49_000);
  assert.equal(settled, false);
  assert.equal(clock.pending, 1);
  const job = mock.job().enqueue();
  const released = await held;
  assert.equal(released.status, 204);
  assert.equal(released.headers.get("gitlab-ci-builds-polling"), "yes");
  assert.equal(released.headers.get("x-gitlab-last-update"), null);
  assert.equal(clock.pending, 0);
  assert.equal(job.state, "pending");
  const next = await requestJob({ last_update: lastUpdate });
  assert.equal(next.status, 201);
  await next.body?.cancel();
});

Deno.test("M2 a long poll ends with a Workhorse 204 when the hold times out", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, longPollMs: 50_000 });
  const { requestJob, call } = api(mock);
  const lastUpdate = (await requestJob()).headers.get("x-gitlab-last-update")!;
  const held = requestJob({ last_update: lastUpdate });
  await clock.advance(50_000);
  const res = await held;
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("gitlab-ci-builds-polling"), "yes");
  assert.equal(res.headers.get("x-gitlab-last-update"), null);
  // Workhorse only parses JSON bodies: a form body goes straight to Rails.
  const form = await call("POST", "/jobs/request", {
    body: new URLSearchParams({ token: mock.runnerToken, last_update: lastUpdate }),
  });
  assert.equal(form.status, 204);
  assert.equal(form.headers.get("x-gitlab-last-update"), lastUpdate);
  // An unknown token is never held: Rails answers 403.
  const bad = await requestJob({ token: "glrt-bad", last_update: lastUpdate });
  assert.equal(bad.status, 403);
  assert.equal(clock.pending, 0);
});

Deno.test("M2 aborting a held long poll rejects the fetch with AbortError", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, longPollMs: 50_000 });
  const { requestJob } = api(mock);
  const lastUpdate = (await requestJob()).headers.get("x-gitlab-last-update")!;
  const controller = new AbortController();
  const held = requestJob({ last_update: lastUpdate }, { signal: controller.signal });
  await clock.advance(1000);
  assert.equal(clock.pending, 1);
  controller.abort();
  await assert.rejects(held, { name: "AbortError" });
  await mock.waitFor((m) => m.requests.at(-1)!.done);
  assert.equal(mock.requests.at(-1)!.status, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("M2 the 201 payload has GitLab's shape", async () => {
  const mock = new GitLabMock();
  const build = mock.job().name("build").state("success").artifactsFile(new Uint8Array(183))
    .enqueue();
  const lint = mock.job().name("lint").state("success").enqueue();
  const job = mock.job()
    .name("test:unit")
    .stage("test")
    .variable("DEPLOY_KEY", "-----BEGIN KEY-----", { file: true })
    .variable("LITERAL", "$NOT_EXPANDED", { raw: true })
    .variable("EMPTY", null)
    .variable("GREETING", "hello")
    .variable("GREETING", "hello again")
    .beforeScript(["make deps"])
    .script(["make test"])
    .afterScript(["make clean"])
    .timeout(600)
    .dependency(build)
    .dependency(lint)
    .enqueue();
  const { take } = api(mock);
  const p = await take();
  assert.deepEqual(Object.keys(p), [
    "id",
    "token",
    "allow_git_fetch",
    "job_info",
    "git_info",
    "runner_info",
    "variables",
    "steps",
    "hooks",
    "image",
    "services",
    "artifacts",
    "cache",
    "credentials",
    "features",
    "dependencies",
  ]);
  assert.equal(p.id, job.id);
  assert.equal(p.token, job.token);
  assert.match(job.token, /^glcbt-64_[A-Za-z0-9]{20}$/);
  assert.deepEqual(p.runner_info, {
    uuid: "b1e2c3d4-a5f6-4789-8abc-def012345678",
    timeout: 600,
    runner_session_url: null,
  });
  const info = p.job_info as Json;
  assert.equal(info.name, "test:unit");
  assert.equal(typeof info.project_jobs_running_on_instance_runners_count, "string");
  assert.equal(
    (p.git_info as Json).repo_url,
    `http://gitlab-ci-token:${job.token}@gitlab.mock/mock/project.git`,
  );
  assert.deepEqual(variable(p, "CI_JOB_ID"), {
    key: "CI_JOB_ID",
    value: String(job.id),
    public: true,
    masked: false,
  });
  assert.deepEqual(variable(p, "CI_JOB_TOKEN"), {
    key: "CI_JOB_TOKEN",
    value: job.token,
    public: false,
    masked: true,
  });
  assert.equal(variable(p, "CI_SERVER_URL")?.value, mock.url);
  assert.equal(variable(p, "CI_JOB_NAME")?.value, "test:unit");
  assert.equal(variable(p, "CI_PROJECT_DIR")?.value, "/builds/mock/project");
  assert.deepEqual(variable(p, "DEPLOY_KEY"), {
    key: "DEPLOY_KEY",
    value: "-----BEGIN KEY-----",
    public: false,
    masked: false,
    file: true,
  });
  assert.deepEqual(variable(p, "LITERAL"), {
    key: "LITERAL",
    value: "$NOT_EXPANDED",
    public: true,
    masked: false,
    raw: true,
  });
  assert.equal(variable(p, "EMPTY")?.value, null);
  assert.equal((p.variables as Json[]).filter((v) => v.key === "GREETING").length, 2);
  assert.ok(!("file" in variable(p, "GREETING")!) && !("raw" in variable(p, "GREETING")!));
  assert.deepEqual(p.steps, [
    {
      name: "script",
      script: ["make deps", "make test"],
      timeout: 600,
      when: "on_success",
      allow_failure: false,
    },
    {
      name: "after_script",
      script: ["make clean"],
      timeout: 600,
      when: "always",
      allow_failure: true,
    },
  ]);
  assert.equal(p.artifacts, null);
  assert.equal(p.image, null);
  const features = p.features as { trace_sections: boolean; failure_reasons: string[] };
  assert.equal(features.trace_sections, true);
  assert.equal(features.failure_reasons.length, 52);
  assert.equal(features.failure_reasons[0], "unknown_failure");
  assert.ok(features.failure_reasons.includes("trace_size_exceeded"));
  assert.deepEqual(p.dependencies, [
    {
      id: build.id,
      name: "build",
      token: build.token,
      artifacts_file: { filename: "artifacts.zip", size: 183 },
    },
    { id: lint.id, name: "lint", token: lint.token },
  ]);
  assert.deepEqual(job.payload, p);
});

Deno.test("M2 artifact entries follow GitLab's null and omission rules", async () => {
  const mock = new GitLabMock();
  mock.job()
    .artifact({ name: "bin", paths: ["out/"], expireIn: "1 week" })
    .artifact({ untracked: true, paths: null })
    .artifact({ artifactType: "junit", paths: ["junit.xml"] })
    .artifact({ paths: ["a/"], exclude: ["a/tmp/**"] })
    .enqueue();
  const p = await api(mock).take({ upload_multiple_artifacts: true, artifacts_exclude: true });
  assert.deepEqual(p.artifacts, [
    {
      name: "bin",
      paths: ["out/"],
      when: "on_success",
      expire_in: "1 week",
      artifact_type: "archive",
      artifact_format: "zip",
    },
    {
      name: null,
      untracked: true,
      paths: null,
      when: "on_success",
      expire_in: null,
      artifact_type: "archive",
      artifact_format: "zip",
    },
    {
      name: "junit.xml.gz",
      paths: ["junit.xml"],
      when: "always",
      expire_in: null,
      artifact_type: "junit",
      artifact_format: "gzip",
    },
    {
      name: null,
      paths: ["a/"],
      when: "on_success",
      expire_in: null,
      artifact_type: "archive",
      artifact_format: "zip",
      exclude: ["a/tmp/**"],
    },
  ]);
});

Deno.test("M2 payload overrides inject quirks: run jobs, raw bodies, unknown keys", async () => {
  const mock = new GitLabMock();
  const run = mock.job()
    .payload((p) => {
      const { steps: _steps, ...rest } = p;
      return { ...rest, run: JSON.stringify([{ name: "hello", script: "echo hi" }]) };
    })
    .payload({ image: undefined, brand_new_key: { x: 1 } })
    .enqueue();
  const raw = mock.job().payload(() => '{"id": 1, "id": 2, "token": "t"').enqueue();
  const fromJson = mock.addJob({ omit: ["hooks"], payload: { allow_git_fetch: false } });
  const { requestJob } = api(mock);
  const p = await (await requestJob()).json();
  assert.equal("steps" in p, false);
  assert.equal("image" in p, false);
  assert.equal(typeof p.run, "string");
  assert.deepEqual(p.brand_new_key, { x: 1 });
  assert.equal(run.state, "running");
  const rawRes = await requestJob();
  assert.equal(rawRes.status, 201);
  assert.equal(await rawRes.text(), '{"id": 1, "id": 2, "token": "t"');
  assert.equal(raw.payloadText, '{"id": 1, "id": 2, "token": "t"');
  const q = await (await requestJob()).json();
  assert.equal(q.id, fromJson.id);
  assert.equal("hooks" in q, false);
  assert.equal(q.allow_git_fetch, false);
});

Deno.test("M2 two-phase commit keeps the job pending until PUT state=running", async () => {
  const mock = new GitLabMock();
  const job = mock.job().enqueue();
  const { take, put, patch } = api(mock);
  const { token } = await take({ two_phase_job_commit: true });
  assert.equal(job.state, "pending");
  const early = await patch(job.id, token, 0, "x");
  assert.equal(early.status, 403);
  assert.equal(early.headers.get("job-status"), "pending");
  const keep = await put(job.id, { token, state: "pending" });
  assert.equal(keep.status, 200);
  assert.equal(keep.headers.get("job-status"), "pending");
  const start = await put(job.id, { token, state: "running" });
  assert.equal(start.headers.get("job-status"), "running");
  assert.equal(job.state, "running");
  assert.equal((await put(job.id, { token, state: "pending" })).status, 400);
  // A second request does not get the same job again.
  assert.equal((await api(mock).requestJob()).status, 204);
});

// ------------------------------------------------------------------ M3 feature gating

Deno.test("M3 a job needing an unannounced feature fails runner_unsupported and the runner gets 204", async () => {
  const mock = new GitLabMock();
  const job = mock.job().requires("return_exit_code").enqueue();
  const res = await api(mock).requestJob({ info: { features: { return_exit_code: false } } });
  assert.equal(res.status, 204);
  assert.ok(res.headers.get("x-gitlab-last-update"));
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_unsupported");
  assert.equal(job.payload, undefined);
  // Not left for another runner.
  const again = await api(mock).requestJob({ info: { features: { return_exit_code: true } } });
  assert.equal(again.status, 204);
});

Deno.test("M3 after dropping an unsupported job the mock hands out the next one", async () => {
  const mock = new GitLabMock();
  const reports = mock.job().artifact({ artifactType: "junit", paths: ["r.xml"] }).enqueue();
  const release = mock.job().step({ name: "release", script: ["release"] }).enqueue();
  const exclude = mock.job().artifact({ paths: ["a"], exclude: ["a/b"] }).enqueue();
  const fallback = mock.job().cache({ key: "k", fallbackKeys: ["main"] }).enqueue();
  const mr = mock.job().ref("refs/merge-requests/7/head").enqueue();
  const secrets = mock.job({ secrets: { DB: { vault: "db/pass@ops" } } }).enqueue();
  const plain = mock.job().enqueue();
  assert.deepEqual(reports.requires, ["upload_multiple_artifacts"]);
  assert.deepEqual(release.requires, ["multi_build_steps"]);
  assert.deepEqual(exclude.requires, ["artifacts_exclude"]);
  assert.deepEqual(fallback.requires, ["fallback_cache_keys"]);
  assert.deepEqual(mr.requires, ["refspecs"]);
  assert.deepEqual(secrets.requires, ["vault_secrets"]);
  const p = await api(mock).take({ refspecs: true });
  assert.equal(p.id, mr.id);
  for (const j of [reports, release, exclude, fallback]) {
    assert.equal(j.failureReason, "runner_unsupported");
  }
  assert.equal(secrets.state, "pending");
  assert.equal(plain.state, "pending");
  assert.deepEqual(mr.runnerFeatures, { refspecs: true });
});

// ------------------------------------------------------------------ M4 cancellation

async function runningJob(
  mock: GitLabMock,
  features: Json = {},
): Promise<{ job: MockJob; token: string }> {
  const job = mock.job().enqueue();
  const { token } = await api(mock).take(features);
  return { job, token };
}

Deno.test("M4 hard cancel answers a bare 403 by default", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  mock.cancel(job.id);
  assert.equal(job.state, "canceled");
  const { patch, put } = api(mock);
  for (
    const res of [await patch(job.id, token, 0, "x"), await put(job.id, { token, state: "failed" })]
  ) {
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("job-status"), null);
    await res.body?.cancel();
  }
  assert.equal(job.state, "canceled");
});

Deno.test("M4 cancelResponse forbidden answers 403 with Job-Status: canceled", async () => {
  const mock = new GitLabMock({ cancelResponse: "forbidden" });
  const { job, token } = await runningJob(mock, { cancel_gracefully: true });
  mock.cancel(job.id, { graceful: false });
  const { patch, put } = api(mock);
  for (
    const res of [
      await patch(job.id, token, 0, "x"),
      await put(job.id, { token, state: "running" }),
    ]
  ) {
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("job-status"), "canceled");
  }
});

Deno.test("M4 cancelResponse job-status answers 2xx with Job-Status: canceled (older GitLab)", async () => {
  const mock = new GitLabMock({ cancelResponse: "job-status" });
  const { job, token } = await runningJob(mock);
  mock.cancel(job.id);
  const { patch, put } = api(mock);
  const p = await patch(job.id, token, 0, "x");
  assert.equal(p.status, 202);
  assert.equal(p.headers.get("job-status"), "canceled");
  const u = await put(job.id, { token, state: "success" });
  assert.equal(u.status, 200);
  assert.equal(u.headers.get("job-status"), "canceled");
  assert.equal(job.state, "canceled");
});

Deno.test("M4 graceful cancel answers Job-Status: canceling until the final PUT cancels the job", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock, { cancel_gracefully: true });
  mock.cancel(job.id);
  assert.equal(job.state, "canceling");
  const { patch, put, upload } = api(mock);
  const p = await patch(job.id, token, 0, "after_script output\n");
  assert.equal(p.status, 202);
  assert.equal(p.headers.get("job-status"), "canceling");
  const keep = await put(job.id, { token, state: "running" });
  assert.equal(keep.status, 200);
  assert.equal(keep.headers.get("job-status"), "canceling");
  assert.equal((await upload(job.id, token, fileForm("zip"))).status, 201);
  mock.cancel(job.id); // canceling again gracefully changes nothing
  assert.equal(job.state, "canceling");
  const fin = await put(job.id, { token, state: "failed", failure_reason: "unknown_failure" });
  assert.equal(fin.status, 200);
  assert.equal(fin.headers.get("job-status"), "canceled");
  assert.equal(job.state, "canceled");
  assert.equal(job.failureReason, undefined);
  assert.equal((await patch(job.id, token, job.logSize, "x")).status, 403);
  // A forced cancel of a canceling job ends it at once.
  const second = await runningJob(mock, { cancel_gracefully: true });
  mock.cancel(second.job.id);
  mock.cancel(second.job.id, { graceful: false });
  assert.equal(second.job.state, "canceled");
});

// ------------------------------------------------------------------ M5 trace

Deno.test("M5 PATCH at a wrong offset gets 416 with Range", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { patch } = api(mock);
  assert.equal((await patch(job.id, token, 0, "hello world")).status, 202);
  for (const start of [15, 8, 0]) {
    const res = await patch(job.id, token, start, "xyz");
    assert.equal(res.status, 416);
    assert.equal(res.headers.get("range"), "0-11");
    assert.match(await res.text(), /416/);
  }
  const empty = await patch(job.id, token, 3, "");
  assert.equal(empty.status, 416);
  assert.equal(job.logText, "hello world");
  assert.equal(job.patches, 1);
  assert.equal(job.traceRequests, 5);
});

Deno.test("M5 PATCH 202 carries Job-Status, Range and the update interval (60, 3 when watched)", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { patch } = api(mock);
  const first = await patch(job.id, token, 0, "0123456789", {});
  assert.equal(first.status, 202);
  assert.equal(first.headers.get("job-status"), "running");
  assert.equal(first.headers.get("range"), "0-10");
  assert.equal(first.headers.get("x-gitlab-trace-update-interval"), "60");
  mock.watchTrace(job.id, true);
  const watched = await patch(job.id, token, 10, "abc");
  assert.equal(watched.headers.get("range"), "0-13");
  assert.equal(watched.headers.get("x-gitlab-trace-update-interval"), "3");
  mock.watchTrace(job.id, 0);
  assert.equal(
    (await patch(job.id, token, 13, "d")).headers.get("x-gitlab-trace-update-interval"),
    "0",
  );
  const custom = new GitLabMock({ traceUpdateInterval: 30 });
  const r = await runningJob(custom);
  const res = await api(custom).patch(r.job.id, r.token, 0, "x");
  assert.equal(res.headers.get("x-gitlab-trace-update-interval"), "30");
});

Deno.test("M5 PATCH without Content-Range is 400, a /total suffix is accepted, an empty body is a no-op", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { call, patch } = api(mock);
  const missing = await call("PATCH", `/jobs/${job.id}/trace`, {
    body: "x",
    headers: { "job-token": token, "content-type": "text/plain" },
  });
  assert.equal(missing.status, 400);
  assert.deepEqual(await missing.json(), { message: "400 Missing header Content-Range" });
  const total = await patch(job.id, token, 0, "abcde", { "content-range": "0-4/5" });
  assert.equal(total.status, 202);
  // Only the start counts; the end is computed from the body.
  const sloppy = await patch(job.id, token, 5, "fgh", { "content-range": "5-1" });
  assert.equal(sloppy.headers.get("range"), "0-8");
  const empty = await patch(job.id, token, 8, "");
  assert.equal(empty.status, 202);
  assert.equal(empty.headers.get("range"), "0-8");
  assert.equal(job.logText, "abcdefgh");
  assert.equal(job.patches, 3);
});

Deno.test("M5 a log over the size limit fails the job trace_size_exceeded with a bare 403", async () => {
  const mock = new GitLabMock({ traceSizeLimit: 16 });
  const { job, token } = await runningJob(mock);
  const { patch, put } = api(mock);
  assert.equal((await patch(job.id, token, 0, "0123456789")).status, 202);
  const res = await patch(job.id, token, 10, "0123456789");
  assert.equal(res.status, 403);
  assert.equal(res.headers.get("job-status"), null);
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "trace_size_exceeded");
  assert.equal(job.logSize, 10);
  const after = await put(job.id, { token, state: "success" });
  assert.equal(after.status, 403);
  assert.equal(after.headers.get("job-status"), "failed");
});

Deno.test("M5 the server masks the job token and the runner token in each chunk", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { patch } = api(mock);
  const line =
    `clone https://gitlab-ci-token:${token}@host/x.git with ${mock.runnerToken} and ${token}\n`;
  assert.equal((await patch(job.id, token, 0, line)).status, 202);
  const expected = line.replaceAll(token, "x".repeat(token.length))
    .replace(mock.runnerToken, "x".repeat(mock.runnerToken.length));
  assert.equal(job.logText, expected);
  assert.equal(job.logSize, new TextEncoder().encode(line).length);
  // A token split across two patches is not masked (GitLab masks per chunk).
  const half = Math.floor(token.length / 2);
  await patch(job.id, token, job.logSize, token.slice(0, half));
  await patch(job.id, token, job.logSize, token.slice(half));
  assert.ok(job.logText.endsWith(token));
});

Deno.test("M5 a lost trace answers 416 with Range: 0-0 and accepts a resend from 0", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { patch } = api(mock);
  await patch(job.id, token, 0, "first part ");
  mock.loseTrace(job.id);
  const lost = await patch(job.id, token, 11, "second");
  assert.equal(lost.status, 416);
  assert.equal(lost.headers.get("range"), "0-0");
  assert.equal((await patch(job.id, token, 0, "first part second")).status, 202);
  assert.equal(job.logText, "first part second");
});

// ------------------------------------------------------------------ M6 final update

Deno.test("M6 a final PUT with checksum gets 202 with GitLab's backoff N times, then 200", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, finalUpdateAccepts: 3 });
  const { job, token } = await runningJob(mock);
  const { put, patch } = api(mock);
  await patch(job.id, token, 0, "log");
  const body = {
    token,
    state: "success",
    checksum: job.logChecksum,
    output: { checksum: job.logChecksum, bytesize: 3 },
  };
  const intervals: (string | null)[] = [];
  for (const waitMs of [0, 1000, 4000]) {
    await clock.advance(waitMs);
    const res = await put(job.id, body);
    assert.equal(res.status, 202);
    assert.equal(await res.text(), "202");
    assert.equal(res.headers.get("job-status"), "running");
    intervals.push(res.headers.get("x-gitlab-trace-update-interval"));
  }
  assert.deepEqual(intervals, ["1", "1", "2"]);
  assert.equal(job.state, "running");
  const done = await put(job.id, body);
  assert.equal(done.status, 200);
  assert.equal(done.headers.get("job-status"), "success");
  assert.equal(done.headers.get("x-gitlab-trace-update-interval"), null);
  assert.equal(job.state, "success");
  assert.equal(job.finalUpdates.length, 4);
  assert.equal(job.finishedAt, clock.now());
});

Deno.test("M6 the backoff grows to 64 s; a final PUT without checksum is accepted at once", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, finalUpdateAccepts: 10 });
  const { job, token } = await runningJob(mock);
  const { put } = api(mock);
  const body = { token, state: "failed", output: { checksum: "crc32:00000000", bytesize: 0 } };
  const seen: string[] = [];
  for (const at of [0, 8_000, 16_000, 40_000, 100_000, 200_000, 900_000]) {
    await clock.advance(at - (clock.now() - Date.UTC(2026, 0, 1)));
    seen.push((await put(job.id, body)).headers.get("x-gitlab-trace-update-interval")!);
  }
  assert.deepEqual(seen, ["1", "4", "8", "16", "32", "64", "64"]);
  const other = await runningJob(mock);
  const res = await put(other.job.id, { token: other.token, state: "success" });
  assert.equal(res.status, 200);
  assert.equal(other.job.state, "success");
});

// ------------------------------------------------------------------ M7 artifacts

Deno.test("M7 upload takes one file part named file, params from the query or fields", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { upload } = api(mock);
  const res = await upload(
    job.id,
    token,
    fileForm("zipbytes"),
    "?artifact_type=archive&artifact_format=zip&expire_in=1+week",
  );
  assert.equal(res.status, 201);
  assert.equal(await res.text(), "201");
  const form = fileForm("junit", "junit.xml.gz");
  form.append("artifact_type", "junit");
  form.append("artifact_format", "gzip");
  form.append("expire_in", "2 days");
  assert.equal((await upload(job.id, token, form)).status, 201);
  assert.equal(
    (await upload(
      job.id,
      token,
      fileForm("raw", "sast.json"),
      "?artifact_type=sast&artifact_format=raw",
    )).status,
    201,
  );
  const plain = mock.job().enqueue();
  const p2 = await api(mock).take();
  assert.equal((await upload(plain.id, p2.token, fileForm("defaults"))).status, 201);
  assert.deepEqual(
    job.artifacts.map((
      a,
    ) => [
      a.filename,
      a.type,
      a.format,
      a.expireIn,
      a.paramsFrom.type,
      new TextDecoder().decode(a.data),
    ]),
    [
      ["artifacts.zip", "archive", "zip", "1 week", "query", "zipbytes"],
      ["junit.xml.gz", "junit", "gzip", "2 days", "field", "junit"],
      ["sast.json", "sast", "raw", undefined, "query", "raw"],
    ],
  );
  assert.deepEqual([
    plain.artifacts[0].type,
    plain.artifacts[0].format,
    plain.artifacts[0].paramsFrom,
  ], [
    "archive",
    "zip",
    { type: "default", format: "default" },
  ]);
});

Deno.test("M7 upload rejects other file parts, two files, bad enums and a different second archive", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { upload, call } = api(mock);
  const two = fileForm("a");
  two.append("file", new Blob(["b"]), "b.zip");
  const metadata = fileForm("a");
  metadata.append("metadata", new Blob(["m"]), "metadata.gz");
  const named = fileForm("a", "a.zip", "archive");
  const textOnly = new FormData();
  textOnly.append("file", "not a file");
  for (
    const res of [
      await upload(job.id, token, two),
      await upload(job.id, token, metadata),
      await upload(job.id, token, named),
      await upload(job.id, token, textOnly),
      await upload(job.id, token, fileForm("a"), "?artifact_type=bogus"),
      await upload(job.id, token, fileForm("a"), "?artifact_format=zipzstd"),
      await call("POST", `/jobs/${job.id}/artifacts`, {
        body: "raw",
        headers: { "job-token": token },
      }),
    ]
  ) {
    assert.equal(res.status, 400);
    await res.body?.cancel();
  }
  assert.equal(job.artifacts.length, 0);
  assert.equal((await upload(job.id, token, fileForm("same"))).status, 201);
  assert.equal((await upload(job.id, token, fileForm("same"))).status, 201);
  const different = await upload(job.id, token, fileForm("different"));
  assert.equal(different.status, 400);
  assert.deepEqual(await different.json(), {
    message: "another artifact of the same type already exists",
  });
  assert.equal(job.artifacts.length, 1);
});

Deno.test("M7 an artifact over maxArtifactSize is 413", async () => {
  const mock = new GitLabMock({ maxArtifactSize: 10 });
  const { job, token } = await runningJob(mock);
  const res = await api(mock).upload(job.id, token, fileForm("0123456789A"));
  assert.equal(res.status, 413);
  assert.equal(job.artifacts.length, 0);
  assert.equal((await api(mock).upload(job.id, token, fileForm("0123456789"))).status, 201);
});

Deno.test("M7 download: 200 with a dependency token, 404 without an archive, 403 otherwise", async () => {
  const mock = new GitLabMock();
  const zip = new Uint8Array([0x50, 0x4b, 5, 6, 0, 0]);
  const build = mock.job().name("build").state("success").artifactsFile(zip).enqueue();
  const empty = mock.job().name("empty").state("success").enqueue();
  const job = mock.job().dependency(build).dependency(empty).enqueue();
  const stranger = mock.job().enqueue();
  const { take, download } = api(mock);
  const p = await take();
  const ps = await take();
  const deps = p.dependencies as Json[];
  const viaDepToken = await download(build.id, deps[0].token as string);
  assert.equal(viaDepToken.status, 200);
  assert.deepEqual(new Uint8Array(await viaDepToken.arrayBuffer()), zip);
  const viaJobToken = await download(build.id, p.token);
  assert.equal(viaJobToken.status, 200);
  await viaJobToken.body?.cancel();
  assert.equal((await download(empty.id, deps[1].token as string)).status, 404);
  assert.equal((await download(build.id, ps.token)).status, 403); // not a dependency of that job
  assert.equal((await download(build.id, undefined)).status, 403);
  assert.equal((await download(build.id, p.token, "?direct_download=maybe")).status, 400);
  // Uploaded archives are served too; erased ones are gone.
  assert.equal((await api(mock).upload(job.id, p.token, fileForm("own"))).status, 201);
  const own = await download(job.id, p.token);
  assert.equal(await own.text(), "own");
  mock.eraseArtifacts(build.id);
  assert.equal((await download(build.id, p.token)).status, 404);
  assert.equal(stranger.state, "running");
});

Deno.test("M7 direct_download=true redirects to a presigned URL on a second origin", async () => {
  const mock = new GitLabMock({ downloadRedirect: true });
  const build = mock.job().state("success").artifactsFile("UEsFBg==").enqueue();
  mock.job().dependency(build).enqueue();
  const { take, download } = api(mock);
  const p = await take();
  const plain = await download(build.id, p.token);
  assert.equal(plain.status, 200); // no redirect without direct_download
  await plain.body?.cancel();
  const res = await download(build.id, p.token, "?direct_download=true", { redirect: "manual" });
  assert.equal(res.status, 302);
  const location = new URL(res.headers.get("location")!);
  assert.equal(location.origin, "http://objects.mock");
  assert.match(location.search, /X-Amz-Signature=[0-9a-f]{64}/);
  const object = await mock.fetch(location);
  assert.equal(object.status, 200);
  assert.deepEqual(new Uint8Array(await object.arrayBuffer()), new Uint8Array([0x50, 0x4b, 5, 6]));
  const objectRequest = mock.requests.at(-1)!;
  assert.equal(objectRequest.route, "object");
  assert.equal(objectRequest.headers.get("job-token"), null);
  const forged = new URL(location);
  forged.searchParams.set("X-Amz-Signature", "0".repeat(64));
  assert.equal((await mock.fetch(forged)).status, 403);
  // fetch's own redirect handling forwards custom headers: the object route records the leak.
  const followed = await download(build.id, p.token, "?direct_download=true");
  assert.equal(followed.status, 200);
  assert.equal(followed.redirected, true);
  assert.ok(followed.url.startsWith("http://objects.mock/objects/"));
  await followed.body?.cancel();
  assert.equal(mock.requests.at(-1)!.headers.get("job-token"), p.token);
  assert.equal(mock.requestCount("object"), 3);
});

// ------------------------------------------------------------------ M8 faults

Deno.test("M8 N× 5xx then normal answers", async () => {
  const mock = new GitLabMock();
  mock.fault({ route: "request", status: 502, times: 3 });
  const { requestJob } = api(mock);
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await requestJob()).status);
  assert.deepEqual(statuses, [502, 502, 502, 204]);
  assert.deepEqual(mock.requests.map((r) => r.faulted), [true, true, true, false]);
});

Deno.test("M8 409 and 429 with Retry-After on any route", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  mock.fault({ route: "trace", status: 409 });
  mock.fault({ route: "update", status: 429, headers: { "Retry-After": "60" } });
  const { patch, put } = api(mock);
  const conflict = await patch(job.id, token, 0, "x");
  assert.equal(conflict.status, 409);
  assert.equal(job.logSize, 0);
  const limited = await put(job.id, { token, state: "running" });
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("retry-after"), "60");
  assert.deepEqual(await limited.json(), {
    message: { error: "This endpoint has been requested too many times. Try again later." },
  });
  assert.equal(job.updates.length, 0);
  assert.equal((await patch(job.id, token, 0, "x")).status, 202);
});

Deno.test("M8 a dropped connection rejects the in-process fetch with TypeError", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const { patch } = api(mock);
  mock.fault({ route: "trace", drop: true });
  await assert.rejects(patch(job.id, token, 0, "lost"), TypeError);
  assert.equal(job.logSize, 0); // never reached GitLab
  mock.fault({ route: "trace", drop: "after" });
  await assert.rejects(patch(job.id, token, 0, "kept"), TypeError);
  assert.equal(job.logText, "kept"); // handled, only the answer was lost
  const retry = await patch(job.id, token, 0, "kept");
  assert.equal(retry.status, 416);
  assert.equal(retry.headers.get("range"), "0-4");
  assert.deepEqual(mock.requests.filter((r) => r.route === "trace").map((r) => r.status), [
    0,
    0,
    416,
  ]);
  mock.fault({ route: "request", drop: true });
  await assert.rejects(
    mock.handle(new Request(`${mock.url}/api/v4/jobs/request`, { method: "POST" })),
    TypeError,
  );
});

Deno.test("M8 a slow response waits on the mock's clock", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  mock.fault({ route: "request", delayMs: 30_000 });
  let settled = false;
  const slow = api(mock).requestJob().finally(() => (settled = true));
  await clock.advance(29_999);
  assert.equal(settled, false);
  await clock.advance(1);
  assert.equal((await slow).status, 204);
  mock.fault({ route: "request", delayMs: 5_000, status: 503 });
  const both = api(mock).requestJob();
  await clock.advance(5_000);
  assert.equal((await both).status, 503);
});

Deno.test("M8 random faults are deterministic and can target a job or every route", async () => {
  const rolls = [0.9, 0.05, 0.5, 0.01];
  const mock = new GitLabMock({ random: () => rolls.shift() ?? 1 });
  mock.fault({ route: "*", status: 500, probability: 0.1, times: Infinity });
  const { requestJob } = api(mock);
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await requestJob()).status);
  assert.deepEqual(statuses, [204, 500, 204, 500, 204]);
  mock.clearFaults();

  const seeded = () => {
    const m = new GitLabMock();
    m.fault({ route: "request", status: 503, probability: 0.3, times: Infinity });
    return m;
  };
  const a = seeded();
  const b = seeded();
  const runA = [];
  const runB = [];
  for (let i = 0; i < 20; i++) {
    runA.push((await api(a).requestJob()).status);
    runB.push((await api(b).requestJob()).status);
  }
  assert.deepEqual(runA, runB);
  assert.ok(runA.includes(503) && runA.includes(204));

  const first = await runningJob(mock);
  const second = await runningJob(mock);
  mock.fault({ route: "trace", jobId: second.job.id, status: 500, times: Infinity });
  const { patch } = api(mock);
  assert.equal((await patch(first.job.id, first.token, 0, "a")).status, 202);
  assert.equal((await patch(second.job.id, second.token, 0, "b")).status, 500);
  assert.throws(() => mock.fault({ route: "trace", status: 101 }), RangeError);
  assert.throws(() => mock.fault({ route: "trace" }), TypeError);
});

// ------------------------------------------------------------------ M9 inspection

Deno.test("M9 inspection: state, failure reason, exit code, log, patches, updates, artifacts, counts", async () => {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock });
  const job = mock.job().name("build").enqueue();
  const done = mock.waitFor(() => job.state === "failed");
  await clock.advance(4000);
  const { take, patch, put, upload } = api(mock);
  const p = await take({ cancel_gracefully: true, trace_checksum: true });
  assert.equal(job.state, "running");
  assert.equal(job.pickedAt! - job.enqueuedAt, 4000);
  assert.equal((p.job_info as Json).time_in_queue_seconds, 4);
  await patch(job.id, p.token, 0, "line 1\n");
  await patch(job.id, p.token, 7, "line 2\n", {}).then((r) => r.body?.cancel());
  await put(job.id, {
    token: p.token,
    state: "running",
    output: { checksum: job.logChecksum, bytesize: 14 },
  });
  await upload(job.id, p.token, fileForm("zip"));
  await put(job.id, {
    token: p.token,
    state: "failed",
    failure_reason: "script_failure",
    exit_code: 2,
    output: { checksum: job.logChecksum, bytesize: job.logSize },
  });
  await done;
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "script_failure");
  assert.equal(job.exitCode, 2);
  assert.equal(job.logText, "line 1\nline 2\n");
  assert.deepEqual(job.log, new TextEncoder().encode("line 1\nline 2\n"));
  assert.match(job.logChecksum, /^crc32:[0-9a-f]{8}$/);
  assert.equal(job.patches, 2);
  assert.equal(job.updates.length, 2);
  assert.equal(job.finalUpdates.length, 1);
  assert.equal(job.updates[0].output?.bytesize, 14);
  assert.equal(job.artifacts.length, 1);
  assert.deepEqual(job.runnerFeatures, { cancel_gracefully: true, trace_checksum: true });
  assert.equal(mock.requestCount("request"), 1);
  assert.equal(mock.requestCount("trace"), 2);
  assert.equal(mock.requestCount("update"), 2);
  assert.equal(mock.requestCount("upload"), 1);
  assert.equal(mock.requestCount(), 6);
  const last = mock.requests.at(-1)!;
  assert.equal(last.route, "update");
  assert.equal(last.jobId, job.id);
  assert.equal(last.status, 200);
  assert.equal(last.at, clock.now());
  assert.equal((last.body as Json).failure_reason, "script_failure");
  assert.equal(mock.requests[1].headers.get("content-range"), "0-6");
  assert.equal(mock.errors.length, 0);
});

Deno.test("M9 the log checksum is GitLab's crc32:%08x", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  assert.equal(job.logChecksum, "crc32:00000000");
  await api(mock).patch(job.id, token, 0, "123456789");
  assert.equal(job.logChecksum, "crc32:cbf43926"); // the CRC-32 check value
  await api(mock).patch(job.id, token, 9, "");
  assert.equal(job.logChecksum, "crc32:cbf43926");
});

Deno.test("M9 waitFor times out, and requests can be left unrecorded", async () => {
  const mock = new GitLabMock({ recordRequests: false });
  await assert.rejects(mock.waitFor(() => false, { timeoutMs: 10 }), /Timed out/);
  await api(mock).requestJob();
  assert.equal(mock.requests.length, 0);
  assert.equal(mock.requestCount("request"), 1);
});

// ------------------------------------------------------------------ M10 in-process fetch

Deno.test("M10 the in-process fetch knows only the mock's origins and routes like GitLab", async () => {
  const mock = new GitLabMock({ baseUrl: "http://gitlab.example.test/gitlab" });
  await assert.rejects(mock.fetch("http://elsewhere.test/api/v4/jobs/request"), TypeError);
  const res = await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: mock.runnerToken }),
  });
  assert.equal(res.status, 204);
  assert.equal(res.url, "http://gitlab.example.test/gitlab/api/v4/jobs/request");
  assert.equal(
    (await mock.fetch("http://gitlab.example.test/api/v4/jobs/request", { method: "POST" })).status,
    404,
  );
  assert.equal((await mock.fetch(`${mock.url}/api/v4/jobs/request`)).status, 405);
  assert.equal((await mock.fetch(`${mock.url}/api/v4/jobs/abc`, { method: "PUT" })).status, 400);
  const job = mock.job().enqueue();
  const p = await (await mock.fetch(`${mock.url}/api/v4/jobs/request`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: mock.runnerToken }),
  })).json();
  assert.equal(p.id, job.id);
  const server = p.variables.find((v: Json) => v.key === "CI_SERVER_URL");
  assert.equal(server.value, "http://gitlab.example.test/gitlab");
  // A streamed body is accepted.
  const stream = ReadableStream.from([
    new TextEncoder().encode("str"),
    new TextEncoder().encode("eam"),
  ]);
  const patch = await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/trace`, {
    method: "PATCH",
    headers: { "job-token": p.token, "content-range": "0-5", "content-type": "text/plain" },
    body: stream,
    duplex: "half",
  } as RequestInit);
  assert.equal(patch.status, 202);
  assert.equal(job.logText, "stream");
});

// ------------------------------------------------------------------ M10 routing

Deno.test("M10 routing answers like Grape: 405 for a path's other methods, 400 for a bad id, 404 elsewhere", async () => {
  const mock = new GitLabMock();
  const at = (path: string, method: string) =>
    mock.fetch(`${mock.url}/api/v4${path}`, { method, redirect: "manual" });
  // A path claims its methods: PUT on jobs/request is 405, not "update with a bad id".
  assert.equal((await at("/jobs/request", "PUT")).status, 405);
  assert.equal((await at("/jobs/1/artifacts", "DELETE")).status, 405);
  assert.equal((await at("/runners", "GET")).status, 405);
  // The method is checked before the id; then the id must be a number.
  assert.equal((await at("/jobs/abc", "POST")).status, 405);
  const bad = await at("/jobs/abc/trace", "PATCH");
  assert.equal(bad.status, 400);
  assert.deepEqual(await bad.json(), { error: "id is invalid" });
  // Trailing slashes do not matter under /api/v4.
  assert.equal((await at("/jobs/request/", "POST")).status, 400);
  // Anything else is a JSON 404 (hostile shapes included), or 403 for a job that does not exist.
  for (const path of ["/jobs/1/trace/extra", "//jobs/request", "/jobs", "/nothing"]) {
    const res = await at(path, "POST");
    assert.equal(res.status, 404, path);
    assert.deepEqual(await res.json(), { error: "404 Not Found" });
  }
  assert.equal((await at("/jobs/99999999999999999999999/trace", "PATCH")).status, 403);
  // The object-storage origin: an id that is not a number is a bad signature, not a 400.
  const object = await mock.fetch(`${mock.objectsUrl}/objects/artifacts/abc/a.zip`);
  assert.equal(object.status, 403);
  assert.match(await object.text(), /SignatureDoesNotMatch/);
  assert.deepEqual(
    mock.requests.map((r) => [r.route, r.jobId]),
    [
      ["unknown", undefined],
      ["unknown", undefined],
      ["unknown", undefined],
      ["unknown", undefined],
      ["trace", undefined],
      ["request", undefined],
      ["unknown", undefined],
      ["unknown", undefined],
      ["unknown", undefined],
      ["unknown", undefined],
      ["trace", 1e23],
      ["object", undefined],
    ],
  );
  assert.equal(mock.requestCount("unknown"), 8);
  assert.deepEqual(mock.errors, []);
});
