// What a handler sees of a job (src/job.ts): `Variable`'s printed forms, and a `Job`'s
// variables, inputs, dependencies, signal and sources as the factory gets them (CONFORMANCE
// C2.3, C2.4, C8.3, C12.1, C12.3). Written for the mutation score of src/job.ts
// (docs/MUTATION.md).
import { inspect } from "node:util";
import { assert, FakeClock } from "./_deps.ts";
import { harness, until } from "./_harness.ts";
import { Job, type JobVariable, Variable } from "../mod.ts";
import { Client } from "../src/api/client.ts";
import { JobLog } from "../src/log/job_log.ts";

const variable = (key: string, value: string, masked = false): JobVariable => ({
  key,
  value,
  masked,
  public: !masked,
  file: false,
  raw: false,
});

Deno.test("C2.4 a masked Variable prints [MASKED] in every form, without any masking given", () => {
  const secret = new Variable({ ...variable("API_KEY", "s3cr3t-value", true), file: true });
  assert.equal(secret.value, "s3cr3t-value");
  assert.equal(secret.maskedValue, "[MASKED]");
  assert.equal(`${secret}`, "[MASKED]");
  assert.deepEqual(secret.toJSON(), {
    key: "API_KEY",
    value: "[MASKED]",
    masked: true,
    public: false,
    file: true,
    raw: false,
  });
  assert.equal(JSON.stringify(secret).includes("s3cr3t"), false);
  assert.equal(Deno.inspect(secret), "Variable(API_KEY=[MASKED])");
  assert.equal(inspect(secret), "Variable(API_KEY=[MASKED])");
  // Node's util.inspect calls this hook (Deno's node:util uses Deno's own, checked above).
  const nodeInspect = Symbol.for("nodejs.util.inspect.custom");
  const viaNode = (v: Variable) => (v as unknown as Record<symbol, () => string>)[nodeInspect]();
  assert.equal(viaNode(secret), "Variable(API_KEY=[MASKED])");
  assert.equal(viaNode(new Variable(variable("BOARD", "rpi4"))), "Variable(BOARD=rpi4)");
});

Deno.test("C12.3 a plain Variable prints its value, with the secrets its mask hides", () => {
  const plain = new Variable({ ...variable("BOARD", "rpi4"), raw: true });
  assert.equal(plain.maskedValue, "rpi4");
  assert.equal(Deno.inspect(plain), "Variable(BOARD=rpi4)");
  assert.equal(inspect(plain), "Variable(BOARD=rpi4)");
  assert.deepEqual(plain.toJSON(), {
    key: "BOARD",
    value: "rpi4",
    masked: false,
    public: true,
    file: false,
    raw: true,
  });
  const url = new Variable(variable("URL", "https://user:tok3n@example.com"), {
    mask: (text) => text.replaceAll("tok3n", "[MASKED]"),
  });
  assert.equal(url.value, "https://user:tok3n@example.com");
  assert.equal(url.maskedValue, "https://user:[MASKED]@example.com");
  assert.equal(`${url}`, "https://user:[MASKED]@example.com");
  assert.equal(Deno.inspect(url), "Variable(URL=https://user:[MASKED]@example.com)");
});

Deno.test("C2.3 C12.1 the factory's Job: variables (the runner's win), inputs, dependencies, signal", async () => {
  await using h = await harness();
  const dependency = h.mock.job().name("build").state("success").enqueue();
  const mj = h.mock.job()
    .variable("CI_PROJECT_DIR", "/builds/group/project")
    .variable("GREETING", "hello")
    .input("replicas", 3)
    .input("replicas", 5)
    .input("region", "eu")
    .dependency(dependency)
    .timeout(30)
    .script(["a"])
    .enqueue();
  const runner = await h.builder.build();
  let seen: Job | undefined;
  const reasons: unknown[] = [];
  await runner.requestJob(async (job) => {
    seen = job;
    // The job's signal: the job timeout reaches the factory through it.
    await new Promise<void>((_, reject) => {
      const stop = () => {
        reasons.push(job.signal.reason);
        reject(job.signal.reason);
      };
      if (job.signal.aborted) stop();
      else job.signal.addEventListener("abort", stop, { once: true });
    });
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  const job = seen!;
  assert.equal(mj.failureReason, "job_execution_timeout");
  assert.equal((reasons[0] as Error).message, "execution took longer than 30 seconds");
  assert.equal(job.signal.aborted, true);
  const keys = job.variables.map((v) => v.key);
  assert.ok(keys.includes("GREETING") && keys.includes("CI_JOB_ID"), keys.join(","));
  assert.equal(keys.filter((k) => k === "CI_PROJECT_DIR").length, 1);
  assert.equal(job.variable("CI_PROJECT_DIR")?.value, `${h.dir}/${mj.id}`);
  assert.equal(job.variables.find((v) => v.key === "GREETING")?.value, "hello");
  // Non-masked variables that hold the job token print it masked.
  const withToken = job.variables.filter((v) => v.value.includes(mj.token));
  assert.ok(withToken.length > 0, "CI_JOB_TOKEN / CI_REPOSITORY_URL hold the token");
  for (const v of withToken) assert.equal(v.maskedValue.includes(mj.token), false, v.key);
  assert.deepEqual(job.inputs.map((i) => i.key), ["replicas", "replicas", "region"]);
  assert.equal(job.input("replicas")?.value.content, 3);
  assert.equal(job.input("region")?.value.content, "eu");
  assert.equal(job.input("zone"), undefined);
  const deps = job.dependencies();
  assert.deepEqual(deps.map((d) => d.id), [dependency.id]);
  deps.pop();
  assert.equal(job.dependencies().length, 1, "a copy");
});

Deno.test("C11.1 job.sources() with GIT_STRATEGY none makes the directory and checks nothing out", async () => {
  await using h = await harness();
  const mj = h.mock.job().variable("GIT_STRATEGY", "none").script(["a"]).enqueue();
  const runner = await h.builder.build();
  let result: { strategy: string; dir: string } | undefined;
  await runner.requestJob(async (job) => {
    result = await job.sources(`${job.buildDir}/src`);
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  assert.equal(mj.state, "success");
  assert.equal(result?.strategy, "none");
  assert.equal(result?.dir, `${h.dir}/${mj.id}/src`);
});

/**
 * Runs the enqueued job to get its parsed payload, then makes a `Job` of it by hand, with a log on
 * a fake clock (masking `secrets`) and the given runner variables.
 */
async function handMadeJob(
  h: Awaited<ReturnType<typeof harness>>,
  options: { secrets?: string[]; runnerVariables?: JobVariable[] } = {},
) {
  const runner = await h.builder.build();
  let payload: Job["payload"] | undefined;
  await runner.requestJob((job) => {
    payload = job.payload;
    return { step: async () => {} };
  });
  await until(h.clock, () => runner.running === 0);
  const clock = new FakeClock();
  const log = new JobLog({
    client: new Client(h.mock.url, { fetch: h.mock.fetch, clock }),
    jobId: payload!.id,
    token: payload!.token,
    clock,
    masking: { secrets: options.secrets ?? [] },
  });
  const job = new Job({
    payload: payload!,
    buildDir: "/nowhere",
    log,
    dependencies: [],
    signal: new AbortController().signal,
    runnerVariables: options.runnerVariables,
  });
  return { payload: payload!, job };
}

Deno.test("Job without runner variables has exactly the payload's, masked through its log", async () => {
  await using h = await harness();
  h.mock.job().variable("GREETING", "hello").script(["a"]).enqueue();
  const { payload, job } = await handMadeJob(h, { secrets: ["hello"] });
  assert.deepEqual(
    job.variables.map((v) => v.key),
    payload.variables.map((v) => v.key),
  );
  assert.equal(job.variable("GREETING")?.maskedValue, "[MASKED]");
  assert.equal(job.variable("CI_BUILDS_DIR"), undefined, "only the runner adds CI_BUILDS_DIR");
});

Deno.test("C2.4 Job's variables are those of the payload and the runner when the job was made, the runner's winning, however late they are first read", async () => {
  await using h = await harness();
  h.mock.job().variable("GREETING", "hello").variable("CI_PROJECT_DIR", "/theirs").script(["a"])
    .enqueue();
  const runnerVariables: JobVariable[] = [
    { key: "CI_PROJECT_DIR", value: "/ours", public: true, masked: false, file: false, raw: false },
  ];
  const { payload, job } = await handMadeJob(h, { runnerVariables });
  const keys = payload.variables.map((v) => v.key);
  // The lists change after the job was made (an application's code holding them): the job keeps
  // what it was made with.
  payload.variables.push({
    key: "LATE",
    value: "x",
    public: true,
    masked: false,
    file: false,
    raw: false,
  });
  runnerVariables.push({ ...runnerVariables[0], key: "LATE_TOO" });
  assert.equal(job.variable("LATE"), undefined);
  assert.equal(job.variable("LATE_TOO"), undefined);
  assert.equal(job.variable("CI_PROJECT_DIR")?.value, "/ours");
  assert.equal(job.variable("GREETING")?.value, "hello");
  assert.deepEqual(job.variables.map((v) => v.key), keys);
  // Read again: the same objects.
  assert.equal(job.variable("GREETING"), job.variables.find((v) => v.key === "GREETING"));
});
