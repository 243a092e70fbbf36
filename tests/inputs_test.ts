// C12.1 job inputs and C12.2 the 2026 failure reasons, parsed, interpolated and reported.
import { assert } from "./_deps.ts";
import { type Harness, harness, until } from "./_harness.ts";
import {
  InputInterpolationError,
  interpolateInputs,
  type Job,
  JobFailure,
  type JobHandler,
  type JobInput,
  MAX_INTERPOLATED_LENGTH,
  type Phase,
} from "../mod.ts";
import { mapFailureReason, parseJobPayload } from "../src/client.ts";
import { applyJobInputs } from "../src/inputs.ts";
import { FAILURE_REASONS } from "../src/mock/_constants.ts";

function input(key: string, content: JobInput["value"]["content"], sensitive = false): JobInput {
  const type = Array.isArray(content)
    ? "array"
    : content !== null && typeof content === "object"
    ? "struct"
    : typeof content as "string" | "number" | "boolean";
  return { key, value: { type, content, sensitive } };
}

const INPUTS: JobInput[] = [
  input("username", "fred"),
  input("fullname", "fred tester"),
  input("age", 1),
  input("ratio", 1.5),
  input("likes_spaghetti", false),
  input("friends", ["bob", "sally"]),
  input("address", { line1: "42 Wallaby Way", "line-2": "Sydney", zip: { code: 2000 } }),
];

function interpolationError(fn: () => unknown): InputInterpolationError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof InputInterpolationError, String(error));
    assert.ok(error instanceof JobFailure);
    assert.equal(error.reason, "runner_configuration_error");
    return error;
  }
  assert.fail("no InputInterpolationError");
}

// ---------------------------------------------------------------------------------------------
// Interpolation (pure)
// ---------------------------------------------------------------------------------------------

Deno.test("C12.1 ${{ job.inputs.NAME }} is interpolated, with or without spaces", () => {
  const text = "Hello ${{ job.inputs.username }}, your fullname is ${{job.inputs.fullname}}";
  assert.equal(interpolateInputs(text, INPUTS), "Hello fred, your fullname is fred tester");
  assert.equal(interpolateInputs("${{\tjob.inputs.username\n}}", INPUTS), "fred");
  assert.equal(interpolateInputs('${{ job.inputs["username"] }}', INPUTS), "fred");
  assert.equal(interpolateInputs("$${{ job.inputs.username }}$", INPUTS), "$fred$");
  assert.equal(interpolateInputs("a }} b {{ c", INPUTS), "a }} b {{ c");
});

Deno.test("C12.1 non-string inputs: numbers, booleans as text; arrays and structs as JSON or by element", () => {
  const cases: [string, string][] = [
    ["${{ job.inputs.age }}", "1"],
    ["${{ str(job.inputs.age) }}", "1"], // the official runner's test: `str(job.inputs.age)` → "1"
    ["${{ job.inputs.ratio }}", "1.5"],
    ["${{ job.inputs.likes_spaghetti }}", "false"],
    ["${{ job.inputs.friends }}", '["bob","sally"]'],
    ["${{ job.inputs.friends[1] }}", "sally"], // official: `job.inputs.field[1]` → "two"
    ["${{ job.inputs.address.line1 }}", "42 Wallaby Way"], // official: struct field access
    ["${{ job.inputs.address['line-2'] }}", "Sydney"],
    ["${{ job.inputs.address.zip.code }}", "2000"],
    [
      "${{ job.inputs.address }}",
      '{"line1":"42 Wallaby Way","line-2":"Sydney","zip":{"code":2000}}',
    ],
  ];
  for (const [text, want] of cases) assert.equal(interpolateInputs(text, INPUTS), want, text);
});

Deno.test("C12.1 without inputs the text is left alone, even malformed ${{", () => {
  for (const text of ["${{ job.inputs.username }}", "${{ 1 + 2 }}", "broken ${{", "${{ ${{ }}"]) {
    assert.equal(interpolateInputs(text, []), text);
  }
});

Deno.test("C12.1 an interpolation naming an unknown input fails with runner_configuration_error", () => {
  const err = interpolationError(() => interpolateInputs("echo ${{ job.inputs.nope }}", INPUTS));
  assert.match(err.message, /^Failed to interpolate job inputs: unknown input "nope"/);
  assert.match(err.message, /"username", "fullname"/);
  interpolationError(() => interpolateInputs("${{ job.inputs.friends[2] }}", INPUTS));
  interpolationError(() => interpolateInputs("${{ job.inputs.friends[-1] }}", INPUTS));
  interpolationError(() => interpolateInputs("${{ job.inputs.address.line3 }}", INPUTS));
  interpolationError(() => interpolateInputs("${{ job.inputs.username.length }}", INPUTS));
  interpolationError(() => interpolateInputs("${{ job.inputs.address.constructor }}", INPUTS));
  interpolationError(() => interpolateInputs("${{ job.inputs.__proto__ }}", INPUTS));
});

Deno.test("C12.1 hostile syntax: nested, unterminated, empty and unsupported expressions fail clearly", () => {
  const cases: [string, RegExp][] = [
    ["${{ ${{ job.inputs.username }} }}", /nested `\$\{\{`/],
    ["echo ${{ job.inputs.username", /unterminated `\$\{\{` at offset 5/],
    ["${{ job.inputs.username }} ${{", /unterminated/],
    ["${{ }}", /empty expression/],
    ["${{ 1 + 2 }}", /expected `job.inputs.NAME`/],
    ["${{ job.inputs.username + 'x' }}", /unsupported expression syntax/],
    ["${{ vars.CI_JOB_ID }}", /unknown name "vars"/],
    ["${{ job.variables.X }}", /unknown name "job.variables"/],
    ["${{ job.inputs }}", /expected an input name/],
    ["${{ job.inputs['username }}", /unterminated/],
    ["${{ job.inputs[username] }}", /expected an index or a quoted key/],
    ["${{ str(job.inputs.age }}", /expected `\)`/],
  ];
  for (const [text, want] of cases) {
    const err = interpolationError(() => interpolateInputs(text, INPUTS));
    assert.match(err.message, want, text);
  }
  // `}}` inside a quoted key does not end the expression.
  const odd = [input("a}}b", "x")];
  assert.equal(interpolateInputs('${{ job.inputs["a}}b"] }}', odd), "x");
});

Deno.test("C12.1 hostile sizes: a huge input is interpolated; an explosion past the limit fails", () => {
  const big = "x".repeat(1024 * 1024);
  const inputs = [input("big", big), input("n", 7)];
  assert.equal(interpolateInputs("<${{ job.inputs.big }}>", inputs).length, big.length + 2);
  const times = Math.floor(MAX_INTERPOLATED_LENGTH / big.length) + 1;
  const err = interpolationError(() =>
    interpolateInputs("${{ job.inputs.big }}".repeat(times), inputs)
  );
  assert.match(err.message, /longer than/);
  // Many small expressions: linear.
  const started = performance.now();
  const many = interpolateInputs("${{ job.inputs.n }},".repeat(100_000), inputs);
  assert.equal(many.length, 200_000);
  assert.ok(performance.now() - started < 5_000);
  // A long expression is cut in the message.
  const long = interpolationError(() =>
    interpolateInputs(`\${{ job.inputs.${"a".repeat(10_000)} }}`, inputs)
  );
  assert.ok(long.message.length < 400, `${long.message.length}`);
});

Deno.test("C12.1 a repeated input key: the first one wins, like the official runner's Inputs.Attr", () => {
  assert.equal(interpolateInputs("${{ job.inputs.k }}", [input("k", "1"), input("k", "2")]), "1");
});

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

function parseWithInputs(inputs: unknown) {
  const result = parseJobPayload({ id: 1, token: "glcbt-x", inputs });
  if (!result.ok) throw new Error(result.error);
  return result;
}

Deno.test("C12.1 inputs are parsed typed; sensitive defaults to false", () => {
  const { payload, warnings } = parseWithInputs([
    { key: "s", value: { type: "string", content: "x", sensitive: true } },
    { key: "n", value: { type: "number", content: 2 } },
    { key: "b", value: { type: "boolean", content: true } },
    { key: "a", value: { type: "array", content: [1, "two", null, [3]] } },
    { key: "o", value: { type: "struct", content: { k: { v: [true] } } } },
  ]);
  assert.deepEqual(warnings, []);
  assert.deepEqual(payload.inputs.map((i) => [i.key, i.value.type, i.value.sensitive]), [
    ["s", "string", true],
    ["n", "number", false],
    ["b", "boolean", false],
    ["a", "array", false],
    ["o", "struct", false],
  ]);
  assert.deepEqual(payload.inputs[3].value.content, [1, "two", null, [3]]);
});

Deno.test("C12.1 hostile: malformed inputs arrays are dropped item by item, with warnings that never show content", () => {
  const secret = "hunter2-sensitive";
  const deep: unknown[] = [];
  let cur = deep;
  for (let i = 0; i < 100; i++) {
    const next: unknown[] = [];
    cur.push(next);
    cur = next;
  }
  const { payload, warnings } = parseWithInputs([
    null,
    1,
    "x",
    [],
    {},
    { key: "" },
    { key: 5, value: { type: "string", content: "x" } },
    { key: "novalue" },
    { key: "nullvalue", value: null },
    { key: "nocontent", value: { type: "string" } },
    { key: "nullcontent", value: { type: "string", content: null } },
    { key: "notype", value: { content: secret } },
    { key: "badtype", value: { type: "bytes", content: secret } },
    { key: "mismatch", value: { type: "number", content: secret, sensitive: true } },
    { key: "mismatch2", value: { type: "string", content: 1 } },
    { key: "mismatch3", value: { type: "struct", content: [secret] } },
    { key: "mismatch4", value: { type: "array", content: { a: secret } } },
    { key: "toodeep", value: { type: "array", content: deep } },
    { key: "ok", value: { type: "string", content: secret, sensitive: "yes" } },
  ]);
  assert.deepEqual(payload.inputs, [
    { key: "ok", value: { type: "string", content: secret, sensitive: false } },
  ]);
  assert.equal(warnings.length, 19);
  for (const w of warnings) assert.ok(!w.includes(secret), w);
  assert.ok(warnings.some((w) => w.includes('"mismatch" is announced as number but holds string')));
  for (const notArray of ["x", 1, { key: "a" }, true]) {
    const r = parseWithInputs(notArray);
    assert.deepEqual(r.payload.inputs, []);
    assert.equal(r.warnings.length, 1);
  }
  assert.deepEqual(parseWithInputs(null).payload.inputs, []);
  assert.deepEqual(parseWithInputs(undefined).warnings, []);
});

Deno.test("C12.1 interpolation applies where the official runner's does, and only when enabled", () => {
  const { payload } = parseJobPayload({
    id: 1,
    token: "glcbt-x",
    inputs: [{ key: "v", value: { type: "string", content: "V" } }],
    steps: [
      { name: "script", script: ["echo ${{ job.inputs.v }}"] },
      { name: "release", script: ["echo ${{ job.inputs.v }}"] },
      { name: "after_script", script: ["echo ${{ job.inputs.v }}"], when: "always" },
    ],
    image: {
      name: "img:${{ job.inputs.v }}",
      executor_opts: { docker: { platform: "${{ job.inputs.v }}" } },
    },
    services: [{ name: "svc-${{ job.inputs.v }}", alias: "${{ job.inputs.v }}" }],
    artifacts: [{
      name: "a-${{ job.inputs.v }}",
      paths: ["${{ job.inputs.v }}/"],
      expire_in: "1 ${{ job.inputs.v }}",
    }],
    cache: [{
      key: "k-${{ job.inputs.v }}",
      paths: ["${{ job.inputs.v }}"],
      fallback_keys: ["f-${{ job.inputs.v }}"],
    }],
  }) as Extract<ReturnType<typeof parseJobPayload>, { ok: true }>;
  const off = applyJobInputs(payload, false);
  assert.equal(off.payload, payload);
  const { payload: p, error } = applyJobInputs(payload, true);
  assert.equal(error, undefined);
  assert.deepEqual(p.steps!.map((s) => s.script[0]), [
    "echo V",
    "echo ${{ job.inputs.v }}",
    "echo V",
  ]);
  assert.equal(p.image!.name, "img:V");
  assert.deepEqual(p.image!.executorOpts, { docker: { platform: "V" } });
  assert.equal(p.services[0].name, "svc-V");
  assert.equal(p.services[0].alias, "${{ job.inputs.v }}"); // not an inputs:"expand" field
  assert.deepEqual([p.artifacts[0].name, p.artifacts[0].paths, p.artifacts[0].expireIn], [
    "a-V",
    ["V/"],
    "1 V",
  ]);
  assert.deepEqual([p.cache[0].key, p.cache[0].paths, p.cache[0].fallbackKeys], ["k-V", ["V"], [
    "f-V",
  ]]);
  assert.equal(payload.steps![0].script[0], "echo ${{ job.inputs.v }}"); // the parsed payload is kept
  const bad = applyJobInputs({
    ...payload,
    cache: [{ ...payload.cache[0], key: "${{ job.inputs.w }}" }],
  }, true);
  assert.equal(bad.payload.cache[0].key, "${{ job.inputs.w }}"); // given back unchanged
  assert.match(bad.error!.message, /cache\[0\]\.key: unknown input "w"/);
});

// ---------------------------------------------------------------------------------------------
// End to end, through the mock
// ---------------------------------------------------------------------------------------------

interface Seen {
  scripts: [Phase, readonly string[]][];
  job?: Job;
  factoryCalls: number;
}

async function runJobs(h: Harness, features: string[] = ["job_inputs"]): Promise<Seen> {
  const seen: Seen = { scripts: [], factoryCalls: 0 };
  const runner = await h.builder.features(features).build();
  const stop = new AbortController();
  const done = runner.run(
    (job) => {
      seen.factoryCalls++;
      seen.job = job;
      const handler: JobHandler = {
        async step(script, phase) {
          seen.scripts.push([phase, script]);
          for (const line of script) job.trace(`$ ${line}\n`);
          const fail = job.variable("FAIL_WITH")?.value;
          if (fail) throw new JobFailure(fail);
        },
      };
      return handler;
    },
    1,
    { signal: stop.signal },
  );
  await until(
    h.clock,
    () => h.mock.jobs.every((j) => j.finishedAt !== undefined) && runner.running === 0,
  );
  stop.abort();
  await done;
  return seen;
}

Deno.test("C12.1 ${{ job.inputs.NAME }} is interpolated in step scripts", async () => {
  await using h = await harness();
  h.mock.job()
    .input("target", "staging")
    .input("replicas", 3)
    .input("regions", ["eu", "us"])
    .beforeScript(["echo before ${{ job.inputs.target }}"])
    .script([
      "deploy --to ${{ job.inputs.target }} -n ${{ job.inputs.replicas }} ${{ job.inputs.regions[0] }}",
    ])
    .afterScript(["echo after ${{ job.inputs.target }}"])
    .step({ name: "release", script: ["echo ${{ job.inputs.target }}"] })
    .artifact({ name: "report-${{ job.inputs.target }}", paths: ["nothing-here"], when: "always" })
    .enqueue();
  const seen = await runJobs(h, ["job_inputs", "multi_build_steps"]);
  assert.deepEqual(seen.scripts, [
    ["script", ["echo before staging", "deploy --to staging -n 3 eu"]],
    ["release", ["echo ${{ job.inputs.target }}"]], // the official runner expands script and after_script only
    ["after_script", ["echo after staging"]],
  ]);
  assert.deepEqual(seen.job!.inputs.map((i) => [i.key, i.value.content]), [
    ["target", "staging"],
    ["replicas", 3],
    ["regions", ["eu", "us"]],
  ]);
  assert.equal(seen.job!.input("replicas")?.value.type, "number");
  assert.equal(seen.job!.payload.artifacts[0].name, "report-staging");
  assert.equal(h.mock.jobs[0].state, "success");
});

Deno.test("C12.1 sensitive inputs are masked in the job log", async () => {
  await using h = await harness();
  h.mock.job()
    .input("password", "correct-horse-battery", { sensitive: true })
    .input("creds", { user: "bob", pin: 987654321 }, { sensitive: true })
    .input("visible", "plain-value")
    .script([
      "login ${{ job.inputs.password }} ${{ job.inputs.visible }}",
      "pin ${{ job.inputs.creds.pin }}",
    ])
    .enqueue();
  const seen = await runJobs(h);
  assert.deepEqual(seen.scripts[0][1], [
    "login correct-horse-battery plain-value",
    "pin 987654321",
  ]);
  const log = h.mock.jobs[0].logText;
  assert.ok(!log.includes("correct-horse-battery"), log);
  assert.ok(!log.includes("987654321"), log);
  assert.ok(log.includes("$ login [MASKED] plain-value"), log);
  assert.ok(log.includes("$ pin [MASKED]"), log);
});

Deno.test("C12.1 an unknown input fails the job clearly (runner_configuration_error), before the factory", async () => {
  await using h = await harness();
  h.mock.job().input("target", "staging").script(["echo ok", "deploy ${{ job.inputs.tagret }}"])
    .enqueue();
  const seen = await runJobs(h);
  assert.equal(seen.factoryCalls, 0);
  const job = h.mock.jobs[0];
  assert.equal(job.state, "failed");
  assert.equal(job.failureReason, "runner_configuration_error");
  assert.ok(
    job.logText.includes(
      'ERROR: Job failed: failed to interpolate job inputs: steps[0] (script) script[1]: unknown input "tagret"',
    ),
    job.logText,
  );
});

Deno.test("C12.1 C12.2 on a GitLab without runner_configuration_error the interpolation failure is sent as script_failure", async () => {
  await using h = await harness();
  const older = FAILURE_REASONS.filter((r) =>
    !r.startsWith("runner_") || r === "runner_system_failure" || r === "runner_unsupported"
  );
  h.mock.job().failureReasons(older).input("a", "x").script(["${{ job.inputs.b }}"]).enqueue();
  await runJobs(h);
  const job = h.mock.jobs[0];
  assert.equal(job.finalUpdates.at(-1)?.failure_reason, "script_failure");
  assert.equal(job.failureReason, "script_failure");
});

Deno.test("C12.1 without inputs, ${{ }} in scripts reaches the handler untouched", async () => {
  await using h = await harness();
  h.mock.job().script(["echo ${{ job.inputs.any }}", "echo ${{ broken"]).enqueue();
  const seen = await runJobs(h);
  assert.deepEqual(seen.scripts[0][1], ["echo ${{ job.inputs.any }}", "echo ${{ broken"]);
  assert.equal(h.mock.jobs[0].state, "success");
});

Deno.test("C12.1 hostile: malformed inputs from the mock never break the job; valid ones still work", async () => {
  await using h = await harness();
  h.mock.job()
    .inputs([
      { key: "", value: { type: "string", content: "x" } },
      { key: "n", value: { type: "number", content: "not a number" } },
      { key: "ok", value: { type: "boolean", content: true } },
    ])
    .script(["echo ${{ job.inputs.ok }}"])
    .enqueue();
  h.mock.job().inputs([{ key: "n", value: { type: "number", content: "x" } }]).script([
    "echo ${{ job.inputs.n }}",
  ]).enqueue();
  const seen = await runJobs(h);
  assert.deepEqual(seen.scripts[0][1], ["echo true"]);
  assert.equal(h.mock.jobs[0].state, "success");
  // The only input was dropped (invalid): no inputs, so the text is left alone, like the official runner.
  assert.equal(h.mock.jobs[1].state, "success");
});

// ---------------------------------------------------------------------------------------------
// C12.2: failure reasons of 2026
// ---------------------------------------------------------------------------------------------

Deno.test("C12.2 the 2026 reasons are sent as they are when GitLab lists them, else mapped down", () => {
  const all = [...FAILURE_REASONS];
  const older = all.filter((r) =>
    !["runner_configuration_error", "runner_external_dependency_failure", "runner_interrupted"]
      .includes(r)
  );
  for (
    const r of [
      "runner_configuration_error",
      "runner_external_dependency_failure",
      "runner_interrupted",
    ]
  ) {
    assert.equal(mapFailureReason(r, all), r);
  }
  assert.equal(mapFailureReason("runner_configuration_error", older), "script_failure");
  assert.equal(
    mapFailureReason("runner_external_dependency_failure", older),
    "runner_system_failure",
  );
  assert.equal(mapFailureReason("runner_interrupted", older), "unknown_failure");
  assert.equal(mapFailureReason("runner_interrupted", []), "unknown_failure");
});

for (
  const [reason, onOlder] of [
    ["runner_configuration_error", "script_failure"],
    ["runner_external_dependency_failure", "runner_system_failure"],
    ["runner_interrupted", "unknown_failure"],
  ] as const
) {
  Deno.test(`C12.2 JobFailure("${reason}") reaches GitLab as ${reason}, or ${onOlder} where GitLab does not list it`, async () => {
    await using h = await harness();
    const older = FAILURE_REASONS.filter((r) => r !== reason);
    h.mock.job().variable("FAIL_WITH", reason).enqueue();
    h.mock.job().variable("FAIL_WITH", reason).failureReasons(older).enqueue();
    await runJobs(h);
    const [current, old] = h.mock.jobs;
    assert.equal(current.finalUpdates.at(-1)?.failure_reason, reason);
    assert.equal(current.failureReason, reason);
    assert.equal(old.finalUpdates.at(-1)?.failure_reason, onOlder);
    assert.deepEqual(old.payload?.features, { trace_sections: true, failure_reasons: older });
  });
}

Deno.test("C12 the mock sends git_info.repo_object_format (sha256 repositories)", async () => {
  await using h = await harness();
  const sha256 = h.mock.job().repoObjectFormat("sha256").enqueue();
  const sha1 = h.mock.job().enqueue();
  const formats = new Map<number, string | undefined>();
  const runner = await h.builder.build();
  for (let i = 0; i < 2; i++) {
    await runner.requestJob((job) => {
      formats.set(job.id, job.payload.gitInfo.repoObjectFormat);
      return { step: async () => {} };
    });
  }
  await until(h.clock, () => runner.running === 0);
  // The two jobs' factories run at once: compare by job, not by order.
  assert.equal(formats.get(sha256.id), "sha256");
  assert.equal(formats.get(sha1.id), "sha1");
});

Deno.test("C12.1 job_inputs is announced by default and the steps are interpolated without opting in", async () => {
  await using h = await harness();
  h.mock.job().input("v", "V").script(["echo ${{ job.inputs.v }}"]).enqueue();
  const seen = await runJobs(h, []);
  assert.deepEqual(seen.scripts[0][1], ["echo V"]);
  assert.equal(h.mock.jobs[0].runnerFeatures?.job_inputs, true);
});
