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
  // A new array also when no key repeats.
  const distinct = [v("A", "1"), v("B", "2")];
  const collapsed = effectiveVariables(distinct);
  assert.notEqual(collapsed, distinct);
  assert.deepEqual(collapsed, distinct);
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

// ---------------------------------------------------------------------------------------------
// Every warning names its field (these kill the mutants that survived the tests above, see
// docs/MUTATION.md)
// ---------------------------------------------------------------------------------------------

const o = {};
/** Every field of a payload with a value of a type it cannot have. */
const WRONG_EVERYWHERE = {
  id: "12",
  token: "glcbt-t",
  allow_git_fetch: "yes",
  job_info: Object.fromEntries(
    [
      "id",
      "name",
      "stage",
      "pipeline_id",
      "project_id",
      "project_name",
      "project_full_path",
      "namespace_id",
      "root_namespace_id",
      "organization_id",
      "instance_id",
      "instance_uuid",
      "user_id",
      "scoped_user_id",
      "time_in_queue_seconds",
      "project_jobs_running_on_instance_runners_count",
      "queue_size",
      "queue_depth",
    ].map((k) => [k, o]),
  ),
  git_info: Object.fromEntries(
    [
      "repo_url",
      "ref",
      "sha",
      "before_sha",
      "ref_type",
      "refspecs",
      "depth",
      "repo_object_format",
      "protected",
    ].map((k) => [k, o]),
  ),
  runner_info: { uuid: o, timeout: o, runner_session_url: o },
  variables: [
    { key: "A", value: o, public: "x", masked: 1, file: null, raw: [] },
    { key: "" },
    { value: "no key" },
    { key: o },
    7,
  ],
  hooks: [{ name: o, script: o }, "hook"],
  services: [{
    name: o,
    alias: o,
    command: o,
    entrypoint: o,
    ports: [{ number: o, protocol: o, name: o }, 1],
    executor_opts: 1,
    pull_policy: o,
    variables: [{ key: o, value: o }, "v"],
  }],
  artifacts: [{
    name: o,
    untracked: "x",
    paths: o,
    exclude: o,
    when: "sometimes",
    expire_in: o,
    artifact_type: o,
    artifact_format: o,
  }],
  cache: [{ key: o, untracked: 1, paths: 1, policy: o, when: 5, fallback_keys: true }],
  credentials: [{ type: o, url: o, username: o, password: o }],
  features: { trace_sections: "x", failure_reasons: 1, token_mask_prefixes: o },
  dependencies: [
    { name: o, token: o, artifacts_file: { filename: o, size: "big" } },
    { id: "3", artifacts_file: 1 },
  ],
  steps: [{ name: o, script: o, timeout: o, when: o, allow_failure: "x" }, null],
  run: [1],
  image: {
    name: o,
    alias: o,
    command: o,
    entrypoint: o,
    ports: o,
    executor_opts: [],
    pull_policy: o,
  },
  secrets: 1,
  policy_options: "x",
};

Deno.test("C2.1 a value of the wrong type anywhere is a warning naming its path, the types and the fallback", () => {
  const r = expectOk(parseJobPayload(WRONG_EVERYWHERE));
  assert.deepEqual(r.warnings, [
    "id: expected number, got string; converted",
    "allow_git_fetch: expected boolean, got string; using false",
    "job_info.id: expected number, got object; using nothing",
    'job_info.name: expected string, got object; using ""',
    'job_info.stage: expected string, got object; using ""',
    "job_info.pipeline_id: expected number, got object; using nothing",
    "job_info.project_id: expected number, got object; using nothing",
    'job_info.project_name: expected string, got object; using ""',
    'job_info.project_full_path: expected string, got object; using ""',
    "job_info.namespace_id: expected number, got object; using nothing",
    "job_info.root_namespace_id: expected number, got object; using nothing",
    "job_info.organization_id: expected number, got object; using nothing",
    "job_info.instance_id: expected string, got object; using nothing",
    "job_info.instance_uuid: expected string, got object; using nothing",
    "job_info.user_id: expected number, got object; using nothing",
    "job_info.scoped_user_id: expected number, got object; using nothing",
    "job_info.time_in_queue_seconds: expected number, got object; using nothing",
    "job_info.project_jobs_running_on_instance_runners_count: expected string, got object; using nothing",
    "job_info.queue_size: expected number, got object; using nothing",
    "job_info.queue_depth: expected number, got object; using nothing",
    'git_info.repo_url: expected string, got object; using ""',
    'git_info.ref: expected string, got object; using ""',
    'git_info.sha: expected string, got object; using ""',
    'git_info.before_sha: expected string, got object; using ""',
    'git_info.ref_type: expected string, got object; using ""',
    "git_info.refspecs: expected array, got object; using []",
    "git_info.depth: expected number, got object; using 0",
    "git_info.repo_object_format: expected string, got object; using nothing",
    "git_info.protected: expected boolean, got object; using nothing",
    "runner_info.uuid: expected string, got object; using nothing",
    "runner_info.timeout: expected number, got object; using nothing",
    "runner_info.runner_session_url: expected string, got object; using nothing",
    "variables[4]: expected object, got number; dropped",
    'variables[0].value: expected string, got object; using ""',
    "variables[0].public: expected boolean, got string; using false",
    "variables[0].masked: expected boolean, got number; using false",
    "variables[0].raw: expected boolean, got array; using false",
    "variables[1]: variable without a key; dropped",
    "variables[2]: variable without a key; dropped",
    "variables[3].key: expected string, got object; using nothing",
    "variables[3]: variable without a key; dropped",
    "hooks[1]: expected object, got string; dropped",
    'hooks[0].name: expected string, got object; using ""',
    "hooks[0].script: expected array, got object; using []",
    'services[0].name: expected string, got object; using ""',
    "services[0].alias: expected string, got object; using nothing",
    "services[0].command: expected array, got object; using []",
    "services[0].entrypoint: expected array, got object; using []",
    "services[0].ports[1]: expected object, got number; dropped",
    "services[0].ports[0].number: expected number, got object; using nothing",
    "services[0].ports[0].protocol: expected string, got object; using nothing",
    "services[0].ports[0].name: expected string, got object; using nothing",
    "services[0].executor_opts: expected object, got number; using nothing",
    "services[0].pull_policy: expected array, got object; using []",
    "services[0].variables[1]: expected object, got string; dropped",
    'services[0].variables[0].key: expected string, got object; using ""',
    'services[0].variables[0].value: expected string, got object; using ""',
    "artifacts[0].name: expected string, got object; using nothing",
    "artifacts[0].untracked: expected boolean, got string; using false",
    "artifacts[0].paths: expected array, got object; using []",
    "artifacts[0].exclude: expected array, got object; using []",
    'artifacts[0].when: unknown value "sometimes"; using "on_success"',
    "artifacts[0].expire_in: expected string, got object; using nothing",
    'artifacts[0].artifact_type: expected string, got object; using ""',
    'artifacts[0].artifact_format: expected string, got object; using ""',
    'cache[0].key: expected string, got object; using ""',
    "cache[0].untracked: expected boolean, got number; using false",
    "cache[0].paths: expected array, got number; using []",
    'cache[0].policy: expected string, got object; using ""',
    'cache[0].when: unknown value 5; using "on_success"',
    "cache[0].fallback_keys: expected array, got boolean; using []",
    'credentials[0].type: expected string, got object; using ""',
    'credentials[0].url: expected string, got object; using ""',
    'credentials[0].username: expected string, got object; using ""',
    'credentials[0].password: expected string, got object; using ""',
    "features.trace_sections: expected boolean, got string; using false",
    "features.failure_reasons: expected array, got number; using []",
    "features.token_mask_prefixes: expected array, got object; using []",
    "dependencies[0].id: missing; using 0",
    'dependencies[0].name: expected string, got object; using ""',
    'dependencies[0].token: expected string, got object; using ""',
    'dependencies[0].artifacts_file.filename: expected string, got object; using ""',
    "dependencies[0].artifacts_file.size: expected number, got string; using 0",
    "dependencies[1].id: expected number, got string; converted",
    "dependencies[1].artifacts_file: expected object, got number; using nothing",
    "steps[1]: expected object, got null; dropped",
    'steps[0].name: expected string, got object; using ""',
    "steps[0].script: expected array, got object; using []",
    "steps[0].timeout: expected number, got object; using nothing",
    'steps[0].when: unknown value object; using "on_success"',
    "steps[0].allow_failure: expected boolean, got string; using false",
    "run: expected a JSON string, got array; re-encoded",
    'image.name: expected string, got object; using ""',
    "image.alias: expected string, got object; using nothing",
    "image.command: expected array, got object; using []",
    "image.entrypoint: expected array, got object; using []",
    "image.ports: expected array, got object; using []",
    "image.executor_opts: expected object, got array; using nothing",
    "image.pull_policy: expected array, got object; using []",
    "secrets: expected object, got number; using nothing",
    "policy_options: expected object, got string; using nothing",
  ]);
  const p = r.payload;
  assert.equal(p.id, 12);
  assert.equal(p.allowGitFetch, false);
  assert.deepEqual(p.jobInfo, {
    id: undefined,
    name: "",
    stage: "",
    pipelineId: undefined,
    projectId: undefined,
    projectName: "",
    projectFullPath: "",
    namespaceId: undefined,
    rootNamespaceId: undefined,
    organizationId: undefined,
    instanceId: undefined,
    instanceUuid: undefined,
    userId: undefined,
    scopedUserId: undefined,
    timeInQueueSeconds: undefined,
    projectJobsRunningOnInstanceRunnersCount: undefined,
    queueSize: undefined,
    queueDepth: undefined,
  });
  assert.deepEqual(p.variables, [
    { key: "A", value: "", public: false, masked: false, file: false, raw: false },
  ]);
  assert.deepEqual(p.artifacts, [{
    name: undefined,
    untracked: false,
    paths: [],
    exclude: [],
    when: "on_success",
    expireIn: undefined,
    artifactType: "archive",
    artifactFormat: "zip",
  }]);
  assert.equal(p.cache[0].policy, "pull-push");
  assert.deepEqual(p.dependencies, [
    { id: 0, name: "", token: "", artifactsFile: { filename: "", size: 0 } },
    { id: 3, name: "", token: "" },
  ]);
  assert.deepEqual(p.steps, [
    { name: "", script: [], timeout: undefined, when: "on_success", allowFailure: false },
  ]);
  assert.equal(p.run, "[1]");
  assert.deepEqual(p.image, {
    name: "",
    alias: undefined,
    command: [],
    entrypoint: [],
    ports: [],
    executorOpts: undefined,
    pullPolicy: [],
  });
  for (const key of ["secrets", "policyOptions"]) assert.ok(!(key in p), key);
});

Deno.test("C2.1 numbers and booleans become strings, decimal strings numbers; other strings do not", () => {
  const r = expectOk(parseJobPayload({
    id: 5,
    token: "glcbt-t",
    job_info: {
      id: " 12 ",
      name: 5,
      stage: true,
      pipeline_id: "1.5",
      project_id: "-3",
      namespace_id: "x1",
      root_namespace_id: "1x",
      organization_id: "1.",
      instance_id: 7,
      instance_uuid: false,
      user_id: ".5",
      scoped_user_id: "1 2",
      time_in_queue_seconds: NaN,
      project_jobs_running_on_instance_runners_count: 3,
      queue_size: "\t4\n",
      queue_depth: "1.25",
    },
    git_info: { depth: "7", refspecs: "+refs/heads/*", protected: "true", ref: 9 },
    runner_info: { timeout: "3600", uuid: 1 },
    variables: [{ key: 5, value: 6, public: true }],
    features: { failure_reasons: ["a", 1, true, null, {}] },
    steps: {},
  }));
  assert.deepEqual(r.warnings, [
    "job_info.id: expected number, got string; converted",
    "job_info.name: expected string, got number; converted",
    "job_info.stage: expected string, got boolean; converted",
    "job_info.pipeline_id: expected number, got string; converted",
    "job_info.project_id: expected number, got string; converted",
    "job_info.namespace_id: expected number, got string; using nothing",
    "job_info.root_namespace_id: expected number, got string; using nothing",
    "job_info.organization_id: expected number, got string; using nothing",
    "job_info.instance_uuid: expected string, got boolean; converted",
    "job_info.user_id: expected number, got string; using nothing",
    "job_info.scoped_user_id: expected number, got string; using nothing",
    "job_info.time_in_queue_seconds: expected number, got number; using nothing",
    "job_info.queue_size: expected number, got string; converted",
    "job_info.queue_depth: expected number, got string; converted",
    "git_info.ref: expected string, got number; converted",
    "git_info.refspecs: expected array, got string; using it as a one-item list",
    "git_info.depth: expected number, got string; converted",
    "git_info.protected: expected boolean, got string; using nothing",
    "runner_info.uuid: expected string, got number; converted",
    "runner_info.timeout: expected number, got string; converted",
    "variables[0].key: expected string, got number; converted",
    "variables[0].value: expected string, got number; converted",
    "features.failure_reasons[1]: expected string, got number; converted",
    "features.failure_reasons[2]: expected string, got boolean; converted",
    "features.failure_reasons[3]: expected string, got null; dropped",
    "features.failure_reasons[4]: expected string, got object; dropped",
    "steps: expected array, got object; using no steps",
  ]);
  const { jobInfo, gitInfo, runnerInfo, variables, features } = r.payload;
  assert.equal(jobInfo.id, 12);
  assert.equal(jobInfo.name, "5");
  assert.equal(jobInfo.stage, "true");
  assert.equal(jobInfo.pipelineId, 1.5);
  assert.equal(jobInfo.projectId, -3);
  for (const k of ["namespaceId", "rootNamespaceId", "organizationId", "userId"] as const) {
    assert.equal(jobInfo[k], undefined, k);
  }
  assert.equal(jobInfo.instanceId, "7");
  assert.equal(jobInfo.instanceUuid, "false");
  assert.equal(jobInfo.projectJobsRunningOnInstanceRunnersCount, "3");
  assert.equal(jobInfo.timeInQueueSeconds, undefined);
  assert.equal(jobInfo.queueSize, 4);
  assert.equal(jobInfo.queueDepth, 1.25);
  assert.deepEqual(gitInfo.refspecs, ["+refs/heads/*"]);
  assert.equal(gitInfo.depth, 7);
  assert.equal(gitInfo.protected, undefined);
  assert.equal(runnerInfo.timeout, 3600);
  assert.equal(runnerInfo.uuid, "1");
  assert.deepEqual(variables, [
    { key: "5", value: "6", public: true, masked: false, file: false, raw: false },
  ]);
  assert.deepEqual(features.failureReasons, ["a", "1", "true"]);
  assert.ok(!("steps" in r.payload));
});

Deno.test("C2.2 the job id: a positive safe integer or a decimal string of one; errors say what came", () => {
  const token = "glcbt-t";
  for (const [id, want] of [[7, 7], [" 7 ", 7], ["12", 12]] as const) {
    assert.equal(expectOk(parseJobPayload({ id, token })).payload.id, want, JSON.stringify(id));
  }
  const cases: Array<[unknown, string]> = [
    ["x12", "a string"],
    ["12x", "a string"],
    ["1 2", "a string"],
    ["0", "a string"],
    ["99999999999999999999", "a string"],
    ["", "an empty string"],
    [0, "0"],
    [-4, "-4"],
    [1.5, "1.5"],
    [true, "boolean"],
    [null, "null"],
    [[7], "array"],
  ];
  for (const [id, shown] of cases) {
    assert.deepEqual(parseJobPayload({ id, token }), {
      ok: false,
      error: `Job payload has no valid id (got ${shown})`,
      token,
    }, JSON.stringify(id));
  }
  assert.deepEqual(parseJobPayload({ token }), {
    ok: false,
    error: "Job payload has no valid id (got nothing)",
    token,
  });
  assert.deepEqual(parseJobPayload({ id: 7, token: "" }), {
    ok: false,
    error: "Job payload has no valid token (got an empty string)",
    id: 7,
  });
  assert.deepEqual(parseJobPayload({ id: "no", token: 5 }), {
    ok: false,
    error: "Job payload has no valid id (got a string) and no valid token (got 5)",
  });
});

Deno.test("C2.2 parseJobPayloadText: not a string, blank, or not JSON are errors, never throws", () => {
  assert.deepEqual(parseJobPayloadText(42 as unknown as string), {
    ok: false,
    error: "Job payload text is not a string (got number)",
  });
  assert.deepEqual(parseJobPayloadText(" \n\t "), { ok: false, error: "Job payload is empty" });
  const r = parseJobPayloadText("nothing here");
  assert.equal(r.ok, false);
  assert.deepEqual(Object.keys(r).sort(), ["error", "ok"]);
});

Deno.test("C2.2 recovery from broken JSON: only the outermost id and token, whatever comes around them", () => {
  const recover = (text: string) => {
    const r = parseJobPayloadText(text);
    assert.equal(r.ok, false, text);
    if (r.ok) throw new Error("unreachable");
    assert.match(r.error, /^Job payload is not valid JSON: /);
    const { ok: _ok, error: _error, ...found } = r;
    return found;
  };
  // Text before the object, with a quote in it.
  assert.deepEqual(recover('garbage " {"id": 7, "token": "glcbt-x", ['), {
    id: 7,
    token: "glcbt-x",
  });
  // The token first.
  assert.deepEqual(recover('{"token": "glcbt-x", "id": 7, ['), { id: 7, token: "glcbt-x" });
  // A value that reads "token" or "id" is not a key.
  assert.deepEqual(
    recover('{"id": 7, "name": "token", "other": "glcbt-wrong", "token": "glcbt-right", ['),
    {
      id: 7,
      token: "glcbt-right",
    },
  );
  // The first id counts.
  assert.deepEqual(recover('{"id": 7, "id": 9, "token": "glcbt-x", ['), {
    id: 7,
    token: "glcbt-x",
  });
  // An id or token of the wrong kind is not taken (no key for it at all).
  assert.deepEqual(recover('{"id": "abc", "token": "glcbt-x", ['), { token: "glcbt-x" });
  assert.deepEqual(recover('{"id": 7, "token": 12345, "x": "y", ['), { id: 7 });
  assert.deepEqual(recover('{"id": 7, "token": "", ['), { id: 7 });
  // A token cut short is not taken.
  assert.deepEqual(recover('{"id": 7, "token": "glcbt-cut'), { id: 7 });
  // A string with an invalid escape is taken as it stands between its quotes.
  assert.deepEqual(recover('{"id": 7, "token": "glcbt-a\\qb", ['), { id: 7, token: "glcbt-a\\qb" });
  assert.deepEqual(recover('{"id": 7, "token": "glcbt-\\u0041", ['), { id: 7, token: "glcbt-A" });
});

/** `content` nested in `levels` arrays. */
function nested(levels: number, content: unknown): unknown {
  let v = content;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

Deno.test("C12.1 inputs: each type, validated like the official runner; warnings never show the content", () => {
  const input = (key: unknown, value: unknown) => ({ key, value });
  const r = expectOk(parseJobPayload({
    id: 1,
    token: "glcbt-t",
    inputs: [
      input("s", { type: "string", content: "secret-s" }),
      input("n", { type: "number", content: 1.5 }),
      input("b", { type: "boolean", content: false }),
      input("a", { type: "array", content: [1, "x", null, [true], { k: "v" }] }),
      input("o", { type: "struct", content: { a: 1, b: [null], c: { d: "e" } }, sensitive: true }),
      input("deep64", { type: "array", content: nested(64, "x") }),
      input(5, { type: "string", content: "secret-1" }),
      input("", { type: "string", content: "secret-2" }),
      input("nc", { type: "string" }),
      input("nul", { type: "string", content: null }),
      input("nv", "secret-3"),
      input("ut", { type: "date", content: "secret-4" }),
      input("ut2", { type: 5, content: "secret-5" }),
      input("long", { type: "t".repeat(100), content: "secret-6" }),
      input("m1", { type: "number", content: "secret-7" }),
      input("m2", { type: "boolean", content: 1 }),
      input("m3", { type: "string", content: true }),
      input("m4", { type: "array", content: { secret: "8" } }),
      input("m5", { type: "struct", content: ["secret-9"] }),
      input("m6", { type: "string", content: 5 }),
      input("nan", { type: "number", content: NaN }),
      input("badarr", { type: "array", content: [1, NaN] }),
      input("badobj", { type: "struct", content: { a: Infinity } }),
      input("deep65", { type: "array", content: nested(65, "x") }),
      input("sens", { type: "string", content: "secret-10", sensitive: "yes" }),
      "not an object",
    ],
  }));
  assert.deepEqual(r.payload.inputs.map((i) => [i.key, i.value.type, i.value.sensitive]), [
    ["s", "string", false],
    ["n", "number", false],
    ["b", "boolean", false],
    ["a", "array", false],
    ["o", "struct", true],
    ["deep64", "array", false],
    ["sens", "string", false],
  ]);
  assert.deepEqual(r.payload.inputs[3].value.content, [1, "x", null, [true], { k: "v" }]);
  assert.deepEqual(r.warnings, [
    "inputs[25]: expected object, got string; dropped",
    "inputs[6]: input without a key; dropped",
    "inputs[7]: input without a key; dropped",
    'inputs[8]: input "nc" has no content; dropped',
    'inputs[9]: input "nul" has no content; dropped',
    'inputs[10]: input "nv" has no content; dropped',
    'inputs[11]: input "ut" has an unknown type "date"; dropped',
    'inputs[12]: input "ut2" has an unknown type number; dropped',
    `inputs[13]: input "long" has an unknown type "${"t".repeat(40)}"; dropped`,
    'inputs[14]: input "m1" is announced as number but holds string; dropped',
    'inputs[15]: input "m2" is announced as boolean but holds number; dropped',
    'inputs[16]: input "m3" is announced as string but holds boolean; dropped',
    'inputs[17]: input "m4" is announced as array but holds struct; dropped',
    'inputs[18]: input "m5" is announced as struct but holds array; dropped',
    'inputs[19]: input "m6" is announced as string but holds number; dropped',
    'inputs[20]: input "nan" is announced as number but holds an unusable value; dropped',
    'inputs[21]: input "badarr" is announced as array but holds an unusable value; dropped',
    'inputs[22]: input "badobj" is announced as struct but holds an unusable value; dropped',
    'inputs[23]: input "deep65" is announced as array but holds an unusable value; dropped',
    "inputs[24].value.sensitive: expected boolean, got string; using false",
  ]);
  assert.ok(!r.warnings.join("\n").includes("secret"), "no content in the warnings");
  // Every input type is known.
  for (const type of ["string", "number", "boolean", "array", "struct"]) {
    const content = { string: "x", number: 1, boolean: true, array: [], struct: {} }[type];
    const one = expectOk(parseJobPayload({
      id: 1,
      token: "glcbt-t",
      inputs: [input("k", { type, content })],
    }));
    assert.deepEqual(one.warnings, [], type);
    assert.equal(one.payload.inputs.length, 1, type);
  }
  const notAList = expectOk(parseJobPayload({ id: 1, token: "glcbt-t", inputs: { k: 1 } }));
  assert.deepEqual(notAList.warnings, ["inputs: expected array, got object; using []"]);
});

Deno.test("C2.1 more wrong types: NaN and one-item arrays are not numbers, non-object sections, an empty when", () => {
  const r = expectOk(parseJobPayload({
    id: 1,
    token: "glcbt-t",
    job_info: "not an object",
    runner_info: 5,
    git_info: { depth: NaN },
    variables: [{ key: "K", value: "v", file: "yes" }],
    dependencies: [{ id: ["3"], artifacts_file: { size: ["10"] } }],
    steps: [{ name: "script", when: "", timeout: ["60"] }],
  }));
  assert.deepEqual(r.warnings, [
    "job_info: expected object, got string; using defaults",
    "git_info.depth: expected number, got number; using 0",
    "runner_info: expected object, got number; using defaults",
    "variables[0].file: expected boolean, got string; using false",
    "dependencies[0].id: expected number, got array; using 0",
    "dependencies[0].artifacts_file.size: expected number, got array; using 0",
    "steps[0].timeout: expected number, got array; using nothing",
  ]);
  assert.equal(r.payload.gitInfo.depth, 0);
  assert.equal(r.payload.dependencies[0].id, 0);
  assert.equal(r.payload.steps![0].when, "on_success");
  assert.equal(r.payload.steps![0].timeout, undefined);
  for (const key of ["run", "image", "secrets", "policyOptions"]) {
    assert.ok(!(key in r.payload), key);
  }
});

Deno.test("C12.1 inputs: undefined inside the content and structs nested too deep are unusable", () => {
  let deep: unknown = "x";
  for (let i = 0; i < 65; i++) deep = { k: deep };
  let fine: unknown = "x";
  for (let i = 0; i < 64; i++) fine = { k: fine };
  const r = expectOk(parseJobPayload({
    id: 1,
    token: "glcbt-t",
    inputs: [
      { key: "u", value: { type: "array", content: [1, undefined] } },
      { key: "deep", value: { type: "struct", content: deep } },
      { key: "fine", value: { type: "struct", content: fine } },
    ],
  }));
  assert.deepEqual(r.warnings, [
    'inputs[0]: input "u" is announced as array but holds an unusable value; dropped',
    'inputs[1]: input "deep" is announced as struct but holds an unusable value; dropped',
  ]);
  assert.deepEqual(r.payload.inputs.map((i) => i.key), ["fine"]);
});

Deno.test("C2.2 recovery: the first token counts too", () => {
  const r = parseJobPayloadText('{"token": "glcbt-a", "token": "glcbt-b", [');
  assert.deepEqual(r, {
    ok: false,
    error: r.ok ? "" : r.error,
    token: "glcbt-a",
  });
});

// ---------------------------------------------------------------------------------------------
// The parser's fast paths (plain reads of JSON.parse's variables, the duplicate-key table) give
// what the general readers give
// ---------------------------------------------------------------------------------------------

/** The effective list by the rule itself, quadratic: an entry counts if no later one has its key. */
function lastWins(list: ReadonlyArray<{ key: string }>): string[] {
  return list.filter((v, i) => !list.slice(i + 1).some((u) => u.key === v.key))
    .map((v) => JSON.stringify(v));
}

/** The sample's text with `variables` replaced (as GitLab would render it). */
function textWithVariables(vars: unknown[]): string {
  const o = sample();
  o.variables = vars;
  return JSON.stringify(o);
}

Deno.test("C2.4 variables from the body text: the effective list wherever the duplicates are", () => {
  const v = (key: string, value: string) => ({
    key,
    value,
    public: true,
    masked: false,
    file: false,
    raw: false,
  });
  const numbered = (n: number, key = (i: number) => `VAR_${i}`) =>
    Array.from({ length: n }, (_, i) => v(key(i), `v${i}`));
  // Same length, same first, middle and last character: the same slot of the table, one chain.
  const alike = (i: number) => `K${String(i).padStart(3, "0")}xK${String(i).padStart(3, "0")}Z`;
  const cases: Array<[string, ReturnType<typeof v>[]]> = [
    ["none", numbered(86)],
    ["first and last", [v("A", "1"), ...numbered(20), v("A", "2")]],
    ["adjacent", [...numbered(5), v("B", "1"), v("B", "2"), ...numbered(5, (i) => `W${i}`)]],
    ["one key only", Array.from({ length: 12 }, (_, i) => v("SAME", `${i}`))],
    ["in one chain, none", numbered(40, alike)],
    ["in one chain, at its end", [...numbered(40, alike), v(alike(3), "again")]],
    ["keys of Object.prototype", [
      v("__proto__", "1"),
      v("constructor", "2"),
      v("toString", "3"),
      v("__proto__", "4"),
      v("hasOwnProperty", "5"),
      v("constructor", "6"),
    ]],
    ["256 entries, none", numbered(256)],
    ["256 entries, the last a repeat", [...numbered(255), v("VAR_0", "again")]],
    ["257 entries, none", numbered(257)],
    ["257 entries, the last a repeat", [...numbered(256), v("VAR_7", "again")]],
    ["600 entries, none", numbered(600)],
    ["600 entries, the last a repeat", [...numbered(599), v("VAR_1", "again")]],
    ["3000 entries, some repeats", numbered(3000, (i) => `VAR_${i % 2900}`)],
  ];
  for (const [name, vars] of cases) {
    const want = lastWins(vars);
    const fromText = expectOk(parseJobPayloadText(textWithVariables(vars)));
    assert.deepEqual(fromText.payload.variables.map((x) => JSON.stringify(x)), want, name);
    assert.deepEqual(fromText.warnings, [], name);
    const fromValue = expectOk(parseJobPayload(JSON.parse(textWithVariables(vars))));
    assert.deepEqual(fromValue.payload.variables, fromText.payload.variables, name);
    assert.deepEqual(effectiveVariables(vars).map((x) => JSON.stringify(x)), want, name);
  }
});

Deno.test("C2.1 variables from the body text: __proto__ as a key or inside an entry is only data", () => {
  const text = textWithVariables([]).replace(
    '"variables":[]',
    '"variables":[{"__proto__":{"key":"INHERITED","masked":true},"key":"K","value":"v"},' +
      '{"key":"__proto__","value":"p","masked":true},{"__proto__":null,"value":"no key"}]',
  );
  const { payload, warnings } = expectOk(parseJobPayloadText(text));
  assert.deepEqual(payload.variables.map((x) => [x.key, x.value, x.masked]), [
    ["K", "v", false],
    ["__proto__", "p", true],
  ]);
  assert.deepEqual(warnings, ["variables[2]: variable without a key; dropped"]);
});

Deno.test("C2.1 variables from the body text: own properties only, even with Object.prototype polluted", () => {
  const text = textWithVariables([
    { key: "A", value: "1" },
    { key: "B", value: "2", public: false, masked: true },
    { value: "no key" },
    { key: "C" },
  ]);
  const clean = expectOk(parseJobPayloadText(text));
  let getterCalls = 0;
  // Descriptors without a prototype: a polluted `value` or `get` must not leak into them.
  const descriptor = (d: PropertyDescriptor) => Object.assign(Object.create(null), d);
  const polluted: Array<[string, PropertyDescriptor]> = [
    ["key", descriptor({ value: "POLLUTED", configurable: true, writable: true })],
    ["value", descriptor({ value: "POLLUTED", configurable: true, writable: true })],
    ["public", descriptor({ value: true, configurable: true, writable: true, enumerable: true })],
    ["masked", descriptor({ value: true, configurable: true, writable: true })],
    [
      "file",
      descriptor({
        get() {
          getterCalls++;
          return true;
        },
        configurable: true,
      }),
    ],
    [
      "raw",
      descriptor({
        get() {
          getterCalls++;
          throw new Error("an inherited getter ran");
        },
        configurable: true,
      }),
    ],
  ];
  // Each key alone (the check must cover every one of the six), then all at once; the results
  // are compared once Object.prototype is clean again.
  const results: Array<[string, ParseResult]> = [];
  for (const keys of [...polluted.map((p) => [p]), polluted]) {
    for (const [key, d] of keys) Object.defineProperty(Object.prototype, key, d);
    try {
      results.push([keys.length === 1 ? keys[0][0] : "all", parseJobPayloadText(text)]);
    } finally {
      for (const [key] of keys) delete (Object.prototype as Record<string, unknown>)[key];
    }
  }
  for (const [what, result] of results) {
    const { payload, warnings } = expectOk(result);
    assert.deepEqual(payload.variables, clean.payload.variables, what);
    assert.deepEqual(warnings, clean.warnings, what);
  }
  assert.equal(getterCalls, 0);
  assert.deepEqual(clean.payload.variables.map((x) => [x.key, x.value, x.public, x.masked]), [
    ["A", "1", false, false],
    ["B", "2", false, true],
    ["C", "", false, false],
  ]);
});

Deno.test("C2.1 parseJobPayloadText with a replaced JSON.parse still reads own properties only", () => {
  const real = JSON.parse;
  const text = textWithVariables([{ key: "A", value: "1" }]);
  JSON.parse = (s: string) => {
    const o = real(s);
    o.variables[0] = Object.assign(Object.create({ masked: true, file: true }), o.variables[0]);
    return o;
  };
  let result: ParseResult;
  try {
    result = parseJobPayloadText(text);
  } finally {
    JSON.parse = real;
  }
  assert.deepEqual(expectOk(result).payload.variables, [
    { key: "A", value: "1", public: false, masked: false, file: false, raw: false },
  ]);
});

Deno.test("C2.1 parseJobPayload reads own variable fields only: inherited ones and other objects", () => {
  const o = sample();
  const inherited = Object.assign(Object.create({ masked: true, file: true, raw: "x" }), {
    key: "OWN",
    value: "v",
  });
  const noKey = Object.create({ key: "INHERITED_KEY", value: "i" });
  o.variables = [inherited, noKey, variable("PLAIN", "p")];
  const { payload, warnings } = expectOk(parseJobPayload(o));
  assert.deepEqual(payload.variables, [
    { key: "OWN", value: "v", public: false, masked: false, file: false, raw: false },
    { key: "PLAIN", value: "p", public: false, masked: false, file: false, raw: false },
  ]);
  assert.deepEqual(warnings, ["variables[1]: variable without a key; dropped"]);
});

Deno.test("C2.1 variables: one wrong field alone (value or a flag) is converted with its warning", () => {
  const vars = [
    { key: "NUMBER", value: 5, public: true },
    { key: "BOOLEAN", value: true },
    { key: "OBJECT", value: { x: 1 }, masked: false },
    // Every flag sent, one of them wrong.
    { key: "PUBLIC", value: "v", public: "yes", masked: false, file: false, raw: false },
    { key: "MASKED", value: "v", public: false, masked: 1, file: false, raw: false },
    { key: "FILE", value: "v", public: false, masked: false, file: {}, raw: false },
    { key: "RAW", value: "v", public: false, masked: false, file: false, raw: [true] },
  ];
  const want = [
    ["NUMBER", "5", true, false, false, false],
    ["BOOLEAN", "true", false, false, false, false],
    ["OBJECT", "", false, false, false, false],
    ["PUBLIC", "v", false, false, false, false],
    ["MASKED", "v", false, false, false, false],
    ["FILE", "v", false, false, false, false],
    ["RAW", "v", false, false, false, false],
  ];
  const warnings = [
    "variables[0].value: expected string, got number; converted",
    "variables[1].value: expected string, got boolean; converted",
    'variables[2].value: expected string, got object; using ""',
    "variables[3].public: expected boolean, got string; using false",
    "variables[4].masked: expected boolean, got number; using false",
    "variables[5].file: expected boolean, got object; using false",
    "variables[6].raw: expected boolean, got array; using false",
  ];
  const text = textWithVariables(vars);
  for (const result of [parseJobPayloadText(text), parseJobPayload(JSON.parse(text))]) {
    const { payload, warnings: got } = expectOk(result);
    assert.deepEqual(
      payload.variables.map((x) => [x.key, x.value, x.public, x.masked, x.file, x.raw]),
      want,
    );
    assert.deepEqual(got, warnings);
  }
});
