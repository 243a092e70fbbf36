import { assert } from "./_deps.ts";
import {
  effectiveVariables,
  type JobPayload,
  type JobVariable,
  parseJobPayload,
  parseJobPayloadText,
  type ParseResult,
} from "../src/api/payload.ts";
import {
  ALWAYS_SUPPORTED_FAILURE_REASONS,
  FAILURE_REASON_COMPATIBILITY_MAP,
  mapFailureReason,
  RUNNER_FAILURE_REASONS,
} from "../src/api/failure_reasons.ts";

const FIXTURE_URL = new URL("./fixtures/job_full.json", import.meta.url);
const FULL_TEXT = await Deno.readTextFile(FIXTURE_URL);
const TOKEN = "glcbt-64_x9Yz2kQv8WmN4pL7rT1s";

/** A fresh decoded copy of the §12.2 sample. */
function sample(): Record<string, unknown> {
  return JSON.parse(FULL_TEXT);
}

function expectOk(result: ParseResult): { payload: JobPayload; warnings: string[] } {
  if (!result.ok) assert.fail(`Expected ok, got error: ${result.error}`);
  return result;
}

function expectErr(result: ParseResult): { error: string; id?: number; token?: string } {
  if (result.ok) assert.fail("Expected ok:false, got a payload");
  return result;
}

/** Parses `sample()` with `edit` applied; returns payload and warnings. */
function parseEdited(edit: (o: Record<string, unknown>) => void) {
  const o = sample();
  edit(o);
  return expectOk(parseJobPayload(o));
}

function variable(key: string, value: string | null, extra: Record<string, unknown> = {}) {
  return { key, value, public: false, masked: false, ...extra };
}

// ---------------------------------------------------------------------------------------------
// C2.3: the §12.2 sample, every section where it should be
// ---------------------------------------------------------------------------------------------

Deno.test("C2.3 the full §12.2 sample parses without warnings", () => {
  const { payload, warnings } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(warnings, []);
  assert.equal(payload.id, 7311);
  assert.equal(payload.token, TOKEN);
  assert.equal(payload.allowGitFetch, true);
  assert.deepEqual(payload.raw, sample());
});

Deno.test("C2.3 job_info fields are typed, the runner count stays a string", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.jobInfo, {
    id: 7311,
    name: "build:linux",
    stage: "build",
    pipelineId: 1580,
    projectId: 42,
    projectName: "widget",
    projectFullPath: "acme/widget",
    namespaceId: 17,
    rootNamespaceId: 9,
    organizationId: 1,
    instanceId: "1",
    instanceUuid: "4d9c1f0e-6a3b-4f5e-9b7a-2c8d1e0f3a4b",
    userId: 5,
    scopedUserId: undefined,
    timeInQueueSeconds: 4,
    projectJobsRunningOnInstanceRunnersCount: "+Inf",
    queueSize: 2,
    queueDepth: 1,
  });
});

Deno.test("C2.3 git_info and runner_info (timeout in seconds)", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.gitInfo, {
    repoUrl: `https://gitlab-ci-token:${TOKEN}@gitlab.example.com/acme/widget.git`,
    ref: "main",
    sha: "0f8e2c4a9b1d7e6f5a3c2b1d0e9f8a7b6c5d4e3f",
    beforeSha: "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    refType: "branch",
    refspecs: [
      "+refs/pipelines/1580:refs/pipelines/1580",
      "+refs/heads/main:refs/remotes/origin/main",
    ],
    depth: 20,
    repoObjectFormat: "sha1",
    protected: true,
  });
  assert.deepEqual(payload.runnerInfo, {
    uuid: "b1e2c3d4-a5f6-4789-8abc-def012345678",
    timeout: 3600,
    runnerSessionUrl: undefined,
  });
});

Deno.test("C2.3 steps carry when, timeout and allow_failure", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.steps, [
    {
      name: "script",
      script: ["make deps", "make build", "make test"],
      timeout: 3600,
      when: "on_success",
      allowFailure: false,
    },
    {
      name: "after_script",
      script: ["make clean"],
      timeout: 3600,
      when: "always",
      allowFailure: true,
    },
  ]);
  assert.equal(payload.run, undefined);
  assert.deepEqual(payload.hooks, [{ name: "pre_get_sources_script", script: ["echo fetching"] }]);
});

Deno.test("C2.3 image and services", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.image, {
    name: "debian:bookworm",
    alias: undefined,
    command: undefined,
    entrypoint: undefined,
    ports: [],
    executorOpts: {},
    pullPolicy: undefined,
  });
  assert.equal(payload.services.length, 1);
  const db = payload.services[0];
  assert.equal(db.name, "postgres:16");
  assert.equal(db.alias, "db");
  assert.equal(db.entrypoint, undefined);
  assert.equal(db.command, undefined);
  assert.deepEqual(db.pullPolicy, ["if-not-present"]);
  assert.deepEqual(db.variables, [{ key: "POSTGRES_PASSWORD", value: "postgres" }]);
});

Deno.test("C2.3 artifacts: the archive and a report", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.artifacts, [
    {
      name: "widget-bin",
      untracked: false,
      paths: ["out/", "build/*.log"],
      exclude: [],
      when: "on_success",
      expireIn: "1 week",
      artifactType: "archive",
      artifactFormat: "zip",
    },
    {
      name: "junit.xml",
      untracked: false,
      paths: ["reports/junit-*.xml"],
      exclude: [],
      when: "always",
      expireIn: "1 week",
      artifactType: "junit",
      artifactFormat: "gzip",
    },
  ]);
});

Deno.test("C2.3 cache, credentials, features and dependencies", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.cache, [{
    key: "deps-main-protected",
    untracked: false,
    paths: ["vendor/"],
    policy: "pull-push",
    when: "on_success",
    fallbackKeys: [],
  }]);
  assert.deepEqual(payload.credentials, [{
    type: "registry",
    url: "registry.example.com",
    username: "gitlab-ci-token",
    password: TOKEN,
  }]);
  assert.equal(payload.features.traceSections, true);
  assert.equal(payload.features.failureReasons.length, 52);
  assert.equal(payload.features.failureReasons[0], "unknown_failure");
  assert.ok(payload.features.failureReasons.includes("runner_configuration_error"));
  assert.deepEqual(payload.features.tokenMaskPrefixes, []);
  assert.equal(payload.features.tracing, undefined);
  assert.deepEqual(payload.dependencies, [
    {
      id: 7305,
      name: "prepare",
      token: TOKEN,
      artifactsFile: { filename: "artifacts.zip", size: 183502 },
    },
    { id: 7306, name: "lint", token: TOKEN },
  ]);
  assert.equal(payload.secrets, undefined);
  assert.equal(payload.policyOptions, undefined);
  assert.deepEqual(payload.inputs, []);
});

Deno.test("C2.3 EE and newer keys: secrets, policy_options, inputs, token_mask_prefixes, tracing", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.secrets = { DB: { vault: { path: "db", field: "pw" }, file: false } };
    o.policy_options = { execution_policy_job: true, policy_name: "scan" };
    o.inputs = [{ key: "env", value: { type: "string", content: "prod" } }];
    (o.features as Record<string, unknown>).token_mask_prefixes = ["glpat-", "glcbt-"];
    (o.features as Record<string, unknown>).tracing = { trace_id: "abc" };
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.secrets, { DB: { vault: { path: "db", field: "pw" }, file: false } });
  assert.deepEqual(payload.policyOptions, { execution_policy_job: true, policy_name: "scan" });
  assert.deepEqual(payload.inputs, [
    { key: "env", value: { type: "string", content: "prod", sensitive: false } },
  ]);
  assert.deepEqual(payload.features.tokenMaskPrefixes, ["glpat-", "glcbt-"]);
  assert.deepEqual(payload.features.tracing, { trace_id: "abc" });
});

// ---------------------------------------------------------------------------------------------
// C2.4: variables
// ---------------------------------------------------------------------------------------------

Deno.test("C2.4 variables keep public/masked/file/raw flags and CI_JOB_ID is readable", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  const byKey = new Map(payload.variables.map((v) => [v.key, v]));
  assert.deepEqual(byKey.get("CI_JOB_ID"), {
    key: "CI_JOB_ID",
    value: "7311",
    public: true,
    masked: false,
    file: false,
    raw: false,
  });
  assert.deepEqual(byKey.get("CI_JOB_TOKEN"), {
    key: "CI_JOB_TOKEN",
    value: TOKEN,
    public: false,
    masked: true,
    file: false,
    raw: false,
  });
  assert.equal(byKey.get("API_PASSWORD")?.masked, true);
  assert.equal(byKey.get("DEPLOY_KEY")?.file, true);
  assert.equal(byKey.get("DEPLOY_KEY")?.raw, false);
  assert.equal(byKey.get("LITERAL")?.raw, true);
  assert.equal(byKey.get("LITERAL")?.value, "$NOT_EXPANDED");
  assert.equal(byKey.get("LITERAL")?.file, false);
});

Deno.test("C2.4 variables are the effective list: one per key, last occurrence wins", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(payload.variables.map((v) => v.key), [
    "CI_JOB_ID",
    "CI_JOB_TOKEN",
    "CI_SERVER_URL",
    "CI_PROJECT_DIR",
    "CI_JOB_NAME",
    "DEPLOY_KEY",
    "API_PASSWORD",
    "LITERAL",
    "EMPTY_ONE",
    "GREETING",
  ]);
  const greeting = payload.variables.find((v) => v.key === "GREETING");
  assert.equal(greeting?.value, "hello from the pipeline");
  assert.equal(greeting?.public, false);
  // The list as sent is still in raw.
  assert.equal((payload.raw.variables as unknown[]).length, 11);
});

Deno.test("C2.4 effectiveVariables keeps the order of last occurrences", () => {
  const v = (key: string, value: string): JobVariable => ({
    key,
    value,
    public: false,
    masked: false,
    file: false,
    raw: false,
  });
  const list = [v("A", "1"), v("B", "2"), v("A", "3"), v("C", "4"), v("B", "5")];
  assert.deepEqual(
    effectiveVariables(list).map((x) => `${x.key}=${x.value}`),
    ["A=3", "C=4", "B=5"],
  );
  assert.deepEqual(effectiveVariables([]), []);
  assert.equal(list.length, 5, "the input is not modified");
});

// ---------------------------------------------------------------------------------------------
// C2.1: GitLab's quirks, one by one
// ---------------------------------------------------------------------------------------------

Deno.test("C2.1 artifacts: null gives an empty list", () => {
  const { payload, warnings } = parseEdited((o) => o.artifacts = null);
  assert.deepEqual(payload.artifacts, []);
  assert.deepEqual(warnings, []);
});

Deno.test("C2.1 artifacts: paths null (untracked-only archive) gives []", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.artifacts = [{
      name: null,
      untracked: true,
      paths: null,
      when: null,
      expire_in: null,
      artifact_type: "archive",
      artifact_format: "zip",
    }];
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.artifacts, [{
    name: undefined,
    untracked: true,
    paths: [],
    exclude: [],
    when: "on_success",
    expireIn: undefined,
    artifactType: "archive",
    artifactFormat: "zip",
  }]);
});

Deno.test("C2.1 artifacts: missing untracked/exclude/type/format get defaults, exclude kept when sent", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.artifacts = [
      { name: "a", paths: ["x"], when: "on_failure" },
      { name: "b", paths: ["y"], exclude: ["y/tmp/**"], when: "always", untracked: false },
    ];
  });
  assert.deepEqual(warnings, []);
  const [a, b] = payload.artifacts;
  assert.equal(a.untracked, false);
  assert.deepEqual(a.exclude, []);
  assert.equal(a.when, "on_failure");
  assert.equal(a.artifactType, "archive");
  assert.equal(a.artifactFormat, "zip");
  assert.deepEqual(b.exclude, ["y/tmp/**"]);
  assert.equal(b.when, "always");
});

Deno.test("C2.1 variables: value null becomes an empty string", () => {
  const { payload, warnings } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.deepEqual(warnings, []);
  const empty = payload.variables.find((v) => v.key === "EMPTY_ONE");
  assert.equal(empty?.value, "");
});

Deno.test("C2.1 variables: duplicate keys, the last one wins", () => {
  const { payload } = parseEdited((o) => {
    o.variables = [
      variable("X", "first", { masked: true }),
      variable("Y", "y"),
      variable("X", "second"),
    ];
  });
  assert.deepEqual(payload.variables.map((v) => [v.key, v.value, v.masked]), [
    ["Y", "y", false],
    ["X", "second", false],
  ]);
});

Deno.test("C2.1 variables: file/raw keys only when true, false otherwise", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.variables = [
      variable("PLAIN", "1"),
      variable("F", "c", { file: true }),
      variable("R", "$x", { raw: true }),
    ];
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.variables.map((v) => [v.key, v.file, v.raw]), [
    ["PLAIN", false, false],
    ["F", true, false],
    ["R", false, true],
  ]);
});

Deno.test("C2.1 variables: null list gives [], key-less entries are dropped with a warning", () => {
  const nullList = parseEdited((o) => o.variables = null);
  assert.deepEqual(nullList.payload.variables, []);
  assert.deepEqual(nullList.warnings, []);
  const bad = parseEdited((o) => o.variables = [{ value: "v" }, 5, variable("OK", "1")]);
  assert.deepEqual(bad.payload.variables.map((v) => v.key), ["OK"]);
  assert.deepEqual([...bad.warnings].sort(), [
    "variables[0]: variable without a key; dropped",
    "variables[1]: expected object, got number; dropped",
  ]);
});

Deno.test("C2.1 dependency without artifacts_file", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.dependencies = [{ id: 9, name: "old", token: "t" }];
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.dependencies, [{ id: 9, name: "old", token: "t" }]);
  assert.equal("artifactsFile" in payload.dependencies[0], false);
  assert.deepEqual(parseEdited((o) => o.dependencies = null).payload.dependencies, []);
});

Deno.test("C2.1 image: null gives no image", () => {
  const { payload, warnings } = parseEdited((o) => o.image = null);
  assert.equal(payload.image, undefined);
  assert.equal("image" in payload, false);
  assert.deepEqual(warnings, []);
});

Deno.test("C2.1 a run: job (no steps, run string) parses, steps undefined and run kept", () => {
  const run = '[{"name":"hello","step":"gitlab.com/gitlab-org/ci-cd/runner-tools/echo@v1"}]';
  const { payload, warnings } = parseEdited((o) => {
    delete o.steps;
    o.run = run;
  });
  assert.deepEqual(warnings, []);
  assert.equal(payload.steps, undefined);
  assert.equal("steps" in payload, false);
  assert.equal(payload.run, run);
  assert.equal(JSON.parse(payload.run!)[0].name, "hello");
  // steps: null is treated like a missing key.
  assert.equal(parseEdited((o) => o.steps = null).payload.steps, undefined);
});

Deno.test("C2.1 steps: unknown names are kept, missing fields get defaults", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.steps = [{ name: "release", script: ["release-cli create"] }, {
      name: "future",
      script: null,
    }];
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.steps, [
    {
      name: "release",
      script: ["release-cli create"],
      timeout: undefined,
      when: "on_success",
      allowFailure: false,
    },
    { name: "future", script: [], timeout: undefined, when: "on_success", allowFailure: false },
  ]);
});

Deno.test("C2.1 string-typed project_jobs_running_on_instance_runners_count is kept as a string", () => {
  const { payload, warnings } = parseEdited((o) => {
    const info = o.job_info as Record<string, unknown>;
    info.project_jobs_running_on_instance_runners_count = "3+";
    info.instance_id = 1; // GitLab sends a string; a number is accepted quietly
    info.time_in_queue_seconds = null;
  });
  assert.deepEqual(warnings, []);
  assert.equal(payload.jobInfo.projectJobsRunningOnInstanceRunnersCount, "3+");
  assert.equal(payload.jobInfo.instanceId, "1");
  assert.equal(payload.jobInfo.timeInQueueSeconds, undefined);
});

Deno.test("C2.1 unknown extra keys are ignored but kept in raw", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.suspend_options = { suspend_on_failure: true };
    o.brand_new_thing = [1, 2, 3];
    (o.git_info as Record<string, unknown>).partial_clone_filter = "blob:none";
    (o.steps as Record<string, unknown>[])[0].new_step_field = true;
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.raw.brand_new_thing, [1, 2, 3]);
  assert.deepEqual(payload.raw.suspend_options, { suspend_on_failure: true });
  assert.equal("partialCloneFilter" in payload.gitInfo, false);
  assert.equal(payload.steps?.[0].name, "script");
});

Deno.test("C2.1 a minimal payload (id and token only) parses with defaults", () => {
  const { payload, warnings } = expectOk(parseJobPayload({ id: 1, token: "t" }));
  assert.deepEqual(warnings, []);
  assert.equal(payload.allowGitFetch, false);
  assert.deepEqual(payload.variables, []);
  assert.equal(payload.steps, undefined);
  assert.deepEqual(payload.artifacts, []);
  assert.deepEqual(payload.cache, []);
  assert.deepEqual(payload.services, []);
  assert.deepEqual(payload.hooks, []);
  assert.deepEqual(payload.credentials, []);
  assert.deepEqual(payload.dependencies, []);
  assert.deepEqual(payload.features, {
    traceSections: false,
    failureReasons: [],
    tokenMaskPrefixes: [],
    tracing: undefined,
  });
  assert.equal(payload.gitInfo.depth, 0);
  assert.equal(payload.gitInfo.repoUrl, "");
  assert.equal(payload.runnerInfo.timeout, undefined);
  assert.equal(payload.jobInfo.name, "");
});

Deno.test("C2.1 wrong types for optional fields: default and a warning, never a failure", () => {
  const { payload, warnings } = parseEdited((o) => {
    o.allow_git_fetch = "yes";
    o.git_info = 5;
    o.variables = "A=1";
    o.steps = [{
      name: "script",
      script: "make",
      when: "sometimes",
      allow_failure: "no",
      timeout: "60",
    }];
    o.artifacts = { name: "x" };
    o.image = "debian";
    o.services = [null, { name: "redis", ports: [{ number: "6379" }], variables: null }];
    o.cache = [{ key: 7, policy: "", when: 3, paths: ["a", 1, null] }];
    o.features = [];
    o.dependencies = [{
      id: "7305",
      name: "p",
      token: "t",
      artifacts_file: { filename: "a.zip", size: "10" },
    }];
    o.runner_info = { timeout: "3600", uuid: 12 };
    o.secrets = "nope";
  });
  assert.equal(payload.allowGitFetch, false);
  assert.equal(payload.gitInfo.repoUrl, "");
  assert.deepEqual(payload.variables, []);
  assert.deepEqual(payload.steps, [{
    name: "script",
    script: ["make"],
    timeout: 60,
    when: "on_success",
    allowFailure: false,
  }]);
  assert.deepEqual(payload.artifacts, []);
  assert.equal(payload.image, undefined);
  assert.equal(payload.services.length, 1);
  assert.equal(payload.services[0].name, "redis");
  assert.equal(payload.services[0].ports[0].number, 6379);
  assert.deepEqual(payload.cache, [{
    key: "7",
    untracked: false,
    paths: ["a", "1"],
    policy: "pull-push",
    when: "on_success",
    fallbackKeys: [],
  }]);
  assert.deepEqual(payload.features.failureReasons, []);
  assert.deepEqual(payload.dependencies, [{
    id: 7305,
    name: "p",
    token: "t",
    artifactsFile: { filename: "a.zip", size: 10 },
  }]);
  assert.equal(payload.runnerInfo.timeout, 3600);
  assert.equal(payload.runnerInfo.uuid, "12");
  assert.equal(payload.secrets, undefined);
  const expected = [
    "allow_git_fetch: expected boolean, got string; using false",
    "git_info: expected object, got number; using defaults",
    "runner_info.uuid: expected string, got number; converted",
    "runner_info.timeout: expected number, got string; converted",
    "variables: expected array, got string; using []",
    "services[0]: expected object, got null; dropped",
    "services[1].ports[0].number: expected number, got string; converted",
    "artifacts: expected array, got object; using []",
    "cache[0].key: expected string, got number; converted",
    "cache[0].paths[1]: expected string, got number; converted",
    "cache[0].paths[2]: expected string, got null; dropped",
    'cache[0].when: unknown value 3; using "on_success"',
    "features: expected object, got array; using defaults",
    "dependencies[0].id: expected number, got string; converted",
    "dependencies[0].artifacts_file.size: expected number, got string; converted",
    "steps[0].script: expected array, got string; using it as a one-item list",
    "steps[0].timeout: expected number, got string; converted",
    'steps[0].when: unknown value "sometimes"; using "on_success"',
    "steps[0].allow_failure: expected boolean, got string; using false",
    "image: expected object, got string; using nothing",
    "secrets: expected object, got string; using nothing",
  ];
  assert.deepEqual([...warnings].sort(), [...expected].sort());
});

Deno.test("C2.1 only a missing or invalid id/token makes the result ok:false", () => {
  const noId = expectErr(parseJobPayload({ token: "tok" }));
  assert.equal(noId.id, undefined);
  assert.equal(noId.token, "tok");
  assert.match(noId.error, /^Job payload has no valid id/);

  const noToken = expectErr(parseJobPayload({ id: 12, token: "" }));
  assert.equal(noToken.id, 12);
  assert.equal(noToken.token, undefined);
  assert.match(noToken.error, /no valid token \(got an empty string\)$/);

  for (const badId of [0, -1, 1.5, Number.NaN, 2 ** 60, true, null, "abc", "", {}, []]) {
    const r = expectErr(parseJobPayload({ id: badId, token: "t" }));
    assert.equal(r.id, undefined, `id ${String(badId)}`);
    assert.equal(r.token, "t");
  }
  const both = expectErr(parseJobPayload({ variables: [] }));
  assert.equal(
    both.error,
    "Job payload has no valid id (got nothing) and no valid token (got nothing)",
  );
  // The error never echoes a token value.
  const wrongToken = expectErr(parseJobPayload({ id: 3, token: 12345 }));
  assert.equal(wrongToken.error, "Job payload has no valid token (got 12345)");
});

Deno.test("C2.1 an id sent as a decimal string is accepted with a warning", () => {
  const { payload, warnings } = expectOk(parseJobPayload({ id: "7311", token: "t" }));
  assert.equal(payload.id, 7311);
  assert.deepEqual(warnings, ["id: expected number, got string; converted"]);
});

Deno.test("C2.1 the parser never throws, whatever the input", () => {
  const throwing = {
    get id(): number {
      throw new Error("boom");
    },
  };
  const proxy = new Proxy({}, {
    get() {
      throw new Error("trap");
    },
    has() {
      throw new Error("trap");
    },
    getOwnPropertyDescriptor() {
      throw new Error("trap");
    },
    ownKeys() {
      throw new Error("trap");
    },
    getPrototypeOf() {
      throw new Error("trap");
    },
  });
  const cyclic: Record<string, unknown> = { id: 1, token: "t" };
  cyclic.variables = [cyclic];
  cyclic.image = cyclic;
  cyclic.run = cyclic;
  const everythingWrong: Record<string, unknown> = { id: 5, token: "t" };
  for (
    const key of [
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
      "run",
      "secrets",
      "policy_options",
      "inputs",
    ]
  ) everythingWrong[key] = [[{ x: [null, 1, "s", true, { y: {} }] }], 3, Symbol.iterator];
  let deep: unknown = { id: 1, token: "t" };
  for (let i = 0; i < 10_000; i++) deep = { steps: [deep], artifacts: deep, job_info: deep };
  const inputs: unknown[] = [
    null,
    undefined,
    [],
    [{ id: 1, token: "t" }],
    42,
    "text",
    true,
    Symbol("s"),
    () => 1,
    new Date(),
    throwing,
    proxy,
    cyclic,
    everythingWrong,
    deep,
    Object.create(null),
    JSON.parse('{"__proto__": {"id": 1, "token": "t"}, "constructor": 1}'),
  ];
  for (const input of inputs) {
    let result: ParseResult | undefined;
    try {
      result = parseJobPayload(input);
    } catch (err) {
      assert.fail(`parseJobPayload threw for ${typeof input}: ${err}`);
    }
    assert.equal(typeof result.ok, "boolean");
    if (!result.ok) assert.equal(typeof result.error, "string");
  }
  assert.equal(parseJobPayload(null).ok, false);
  assert.equal(
    expectErr(parseJobPayload([])).error,
    "Job payload is not a JSON object (got array)",
  );
  assert.match(expectErr(parseJobPayload(throwing)).error, /^Job payload could not be read: boom$/);
  // The own-property rule: an inherited or __proto__ id is not the job id.
  assert.equal(parseJobPayload(inputs[16]).ok, false);
  // A cyclic payload still parses (cycles only reach ignored or opaque places).
  const c = expectOk(parseJobPayload(cyclic));
  assert.equal(c.payload.image?.name, "");
  assert.ok(c.warnings.some((w) => w.startsWith("run: expected a JSON string")));
  // Every field of the wrong type: still ok, with warnings.
  const e = expectOk(parseJobPayload(everythingWrong));
  assert.ok(e.warnings.length >= 15);
  for (const text of [null, 5, "", "   ", "{", "[", "}", '{"id":', "\u0000", "{".repeat(100_000)]) {
    try {
      const r = parseJobPayloadText(text as string);
      assert.equal(r.ok, false);
    } catch (err) {
      assert.fail(`parseJobPayloadText threw for ${JSON.stringify(text)?.slice(0, 20)}: ${err}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// C2.2: a body that is not JSON at all
// ---------------------------------------------------------------------------------------------

Deno.test("C2.2 a truncated body still yields the top-level id and token", () => {
  const cut = FULL_TEXT.slice(0, FULL_TEXT.indexOf('"variables"') + 20);
  const r = expectErr(parseJobPayloadText(cut));
  assert.match(r.error, /^Job payload is not valid JSON: /);
  assert.equal(r.id, 7311);
  assert.equal(r.token, TOKEN);
});

Deno.test("C2.2 recovery only takes keys of the outermost object", () => {
  // Nested ids/tokens come first here; strings contain braces, brackets and escaped quotes.
  const text = '{"job_info": {"id": 1, "token": "nested"}, "note": "a {[\\" tricky } string",' +
    ' "dependencies": [{"id": 2, "token": "dep"}], "id": 7311, "token": "real\\"tok", "variables": [';
  const r = expectErr(parseJobPayloadText(text));
  assert.equal(r.id, 7311);
  assert.equal(r.token, 'real"tok');
});

Deno.test("C2.2 recovery accepts a string id and stops at the end of the top object", () => {
  const r = expectErr(parseJobPayloadText('{"id": "99", "token": "t", "x": }'));
  assert.equal(r.id, 99);
  assert.equal(r.token, "t");
  // A key after the object closes is not the job's.
  const after = expectErr(parseJobPayloadText('{"a": 1} {"id": 5, "token": "t"}'));
  assert.equal(after.id, undefined);
  assert.equal(after.token, undefined);
});

Deno.test("C2.2 unparseable text without an id or token gives neither", () => {
  for (
    const text of [
      "<html><body>502 Bad Gateway</body></html>",
      '{"id": -4, "token": 5, "oops"',
      '{"id": 12.5, "token": ""',
      '{"token',
      "not json at all",
    ]
  ) {
    const r = expectErr(parseJobPayloadText(text));
    assert.equal(r.id, undefined, text);
    assert.equal(r.token, undefined, text);
    assert.match(r.error, /^Job payload is not valid JSON: /);
  }
});

Deno.test("C2.2 id without token (and the reverse) are recovered separately", () => {
  const onlyId = expectErr(parseJobPayloadText('{"id": 8, "allow_git_fetch": tru'));
  assert.equal(onlyId.id, 8);
  assert.equal(onlyId.token, undefined);
  const onlyToken = expectErr(parseJobPayloadText('{"token": "abc", "id": nul'));
  assert.equal(onlyToken.id, undefined);
  assert.equal(onlyToken.token, "abc");
});

Deno.test("C2.2 valid JSON that is not an object, and an empty body", () => {
  assert.equal(
    expectErr(parseJobPayloadText("[1,2]")).error,
    "Job payload is not a JSON object (got array)",
  );
  assert.equal(
    expectErr(parseJobPayloadText("null")).error,
    "Job payload is not a JSON object (got null)",
  );
  assert.equal(expectErr(parseJobPayloadText("")).error, "Job payload is empty");
});

// ---------------------------------------------------------------------------------------------
// C3.5: failure reason mapping (gitlab-runner common/failure_reason_mapper.go)
// ---------------------------------------------------------------------------------------------

Deno.test("C3.5 failure reasons: empty means script_failure", () => {
  assert.equal(mapFailureReason(undefined, []), "script_failure");
  assert.equal(mapFailureReason("", []), "script_failure");
});

Deno.test("C3.5 failure reasons: a reason that is not a string (from JavaScript) is unknown_failure", () => {
  for (const odd of [42, {}, true, ["script_failure"]]) {
    assert.equal(mapFailureReason(odd as unknown as string, ["script_failure"]), "unknown_failure");
  }
  // A supported list that is not an array (from JavaScript) counts as empty.
  const notAList = "runner_interrupted" as unknown as string[];
  assert.equal(mapFailureReason("runner_interrupted", notAList), "unknown_failure");
});

Deno.test("C3.5 failure reasons: always-supported reasons are sent as is", () => {
  assert.deepEqual([...ALWAYS_SUPPORTED_FAILURE_REASONS], [
    "script_failure",
    "runner_system_failure",
    "job_execution_timeout",
  ]);
  for (const r of ALWAYS_SUPPORTED_FAILURE_REASONS) assert.equal(mapFailureReason(r, []), r);
});

Deno.test("C3.5 failure reasons: reasons the job's GitLab lists are sent as is", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  const supported = payload.features.failureReasons;
  for (
    const r of [
      "runner_configuration_error",
      "runner_external_dependency_failure",
      "runner_interrupted",
      "unknown_failure",
      "stuck_or_timeout_failure",
    ]
  ) assert.equal(mapFailureReason(r, supported), r);
  assert.equal(
    mapFailureReason("image_pull_failure", ["image_pull_failure"]),
    "image_pull_failure",
  );
});

Deno.test("C3.5 failure reasons: the compatibility map applies when the precise reason is unknown", () => {
  const old = ["unknown_failure", "script_failure", "runner_system_failure"];
  const table: Array<[string, string]> = [
    ["image_pull_failure", "runner_system_failure"],
    ["runner_configuration_error", "script_failure"],
    ["runner_external_dependency_failure", "runner_system_failure"],
    ["runner_interrupted", "unknown_failure"],
    ["job_canceled", "unknown_failure"],
    ["made_up_reason", "unknown_failure"],
    ["constructor", "unknown_failure"],
    ["__proto__", "unknown_failure"],
  ];
  for (const [input, want] of table) {
    assert.equal(mapFailureReason(input, old), want, input);
    assert.equal(mapFailureReason(input, []), want, `${input} (empty list)`);
  }
  assert.deepEqual([...FAILURE_REASON_COMPATIBILITY_MAP.entries()], [
    ["image_pull_failure", "runner_system_failure"],
    ["runner_configuration_error", "script_failure"],
    ["runner_external_dependency_failure", "runner_system_failure"],
  ]);
});

Deno.test("C3.5 failure reasons: job_canceled is runner-internal and becomes unknown_failure", () => {
  const { payload } = expectOk(parseJobPayloadText(FULL_TEXT));
  assert.equal(
    mapFailureReason("job_canceled", payload.features.failureReasons),
    "unknown_failure",
  );
});

Deno.test("C3.5 failure reasons: every runner reason maps to something GitLab accepts", () => {
  const supported: string[] = [];
  for (const r of RUNNER_FAILURE_REASONS) {
    const mapped = mapFailureReason(r, supported);
    assert.ok(
      ALWAYS_SUPPORTED_FAILURE_REASONS.includes(mapped) || mapped === "unknown_failure",
      `${r} -> ${mapped}`,
    );
  }
});
