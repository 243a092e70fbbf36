/**
 * The one-command demo (`deno task demo`): starts the GitLab mock on a local port with a small
 * pipeline, runs the example shell runner (`examples/shell_runner.ts`) against it as a separate
 * process, and prints each job's log and final state. No GitLab needed.
 *
 * The pipeline: a job that checks out a small git repository the demo creates and serves
 * (its script runs a file of the checkout; skipped, with a note, where `git` is missing), a
 * build that produces artifacts, a test that consumes them as a dependency, a lint job that
 * fails with exit code 3, a job that prints a masked secret, and a long job that is cancelled
 * while it runs. The jobs that need no sources say so with `GIT_STRATEGY: none`, as in a real
 * `.gitlab-ci.yml`. Exits 0 when every job ended as expected.
 *
 * @module
 */

import { join } from "node:path";
import { GitLabMock, type MockJob } from "../src/mock/mod.ts";

const plain = Deno.env.get("NO_COLOR") !== undefined || !Deno.stdout.isTerminal();
const bold = (s: string) => plain ? s : `\x1b[1m${s}\x1b[0m`;
// deno-lint-ignore no-control-regex
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

function say(text: string): void {
  console.log(bold(`demo │ ${text}`));
}

const mock = new GitLabMock({
  longPollMs: 10_000, // the runner long-polls: new jobs start at once
  traceUpdateInterval: 3, // as when someone watches the job log in GitLab's UI
});
// node:http (works on Deno too): Deno.serve warns once about request.signal in long polls.
const server = await mock.listen({ hostname: "127.0.0.1", port: 0, server: "node" });
const buildDir = await Deno.makeTempDir({ prefix: "gitlab-runner-demo-" });
const repoDir = await Deno.makeTempDir({ prefix: "gitlab-runner-demo-repo-" });

/** Runs git in the demo repository; undefined when git is not installed. */
async function git(...args: string[]): Promise<string | undefined> {
  let out;
  try {
    out = await new Deno.Command("git", {
      args: ["-c", "user.name=Demo", "-c", "user.email=demo@example.com", ...args],
      cwd: repoDir,
      env: { GIT_CONFIG_NOSYSTEM: "1", HOME: repoDir },
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  if (!out.success) throw new Error(`git ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** A small repository: a script and a README, two commits on main. */
async function makeRepository(): Promise<string | undefined> {
  if ((await git("init", "-q", "-b", "main")) === undefined) return undefined;
  await Deno.writeTextFile(join(repoDir, "README.md"), "# hello\n\nThe demo's project.\n");
  await git("add", ".");
  await git("commit", "-q", "-m", "Add README");
  await Deno.writeTextFile(
    join(repoDir, "hello.sh"),
    '#!/bin/sh\necho "hello from $(head -n 1 README.md), commit $(git rev-parse --short HEAD)"\n',
    { mode: 0o755 },
  );
  await git("add", ".");
  await git("commit", "-q", "-m", "Add hello.sh");
  return await git("rev-parse", "HEAD");
}

const sha = await makeRepository();
let checkout: MockJob | undefined;
if (sha) {
  mock.git.serve("demo/hello", join(repoDir, ".git"));
  checkout = mock.job({ projectPath: "demo/hello", sha, ref: "main" }).name("checkout")
    .stage("build")
    .script(["ls", "./hello.sh"])
    .enqueue();
} else {
  say("git is not installed: skipping the job that checks out a repository");
}

const build = mock.job().variable("GIT_STRATEGY", "none").name("build").stage("build")
  .script([
    "mkdir -p out",
    'echo "hello from the build" > out/app.txt',
    "date -u +%FT%TZ > out/built-at.txt",
    "ls -l out",
  ])
  .artifact({ name: "app", paths: ["out/"], when: "on_success", expireIn: "1 week" })
  .enqueue();
const lint = mock.job().variable("GIT_STRATEGY", "none").name("lint").stage("build")
  .script(["echo 'checking style…'", "echo 'src/main.c:12: line too long' >&2", "exit 3"])
  .afterScript(["echo 'after_script runs after a failure too'"])
  .enqueue();
const secret = mock.job().variable("GIT_STRATEGY", "none").name("deploy-check").stage("build")
  .variable("DEPLOY_TOKEN", "s3cr3t-d3ploy-t0ken", { masked: true })
  .script([
    'echo "deploying with token $DEPLOY_TOKEN"',
    'echo "the token again, split: ${DEPLOY_TOKEN:0:6}${DEPLOY_TOKEN:6}"',
    "echo 'a personal access token glpat-abcdefghijklmnopqrst is masked too'",
  ])
  .enqueue();
const slow = mock.job().variable("GIT_STRATEGY", "none").name("long-test").stage("build")
  .script([
    "echo 'starting a long test'",
    'for i in $(seq 1 600); do echo "test case $i passed"; sleep 1; done',
    "echo 'never printed'",
  ])
  .afterScript(["echo 'after_script: cleaning up after the cancel'"])
  .enqueue();

say(`GitLab mock listening on ${server.url}`);
say(`starting the example runner: examples/shell_runner.ts --concurrency 4`);
const runner = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    new URL("./shell_runner.ts", import.meta.url).pathname,
    "--url",
    server.url,
    "--token",
    mock.runnerToken,
    "--concurrency",
    "4",
    "--build-dir",
    buildDir,
    "--name",
    "demo-runner",
  ],
  stdout: "piped",
  stderr: "piped",
  env: { NO_COLOR: "1" },
}).spawn();
const relay = Promise.all(
  [runner.stdout, runner.stderr].map(async (stream) => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) console.log(`runner │ ${line}`);
    }
    if (rest) console.log(`runner │ ${rest}`);
  }),
);

const ended = (j: MockJob) => ["success", "failed", "canceled"].includes(j.state);
let test: MockJob | undefined;
let ok = false;
try {
  // The test stage starts when the build succeeded, with the build's artifacts as dependency.
  await mock.waitFor(() => ended(build), { timeoutMs: 60_000 });
  if (build.state === "success") {
    test = mock.job().variable("GIT_STRATEGY", "none").name("test").stage("test").dependency(build)
      .script(["cat out/app.txt", "test -f out/built-at.txt && echo 'artifact downloaded'"])
      .enqueue();
  }
  await mock.waitFor(() => slow.logText.includes("starting a long test"), { timeoutMs: 60_000 });
  say(`canceling job ${slow.id} (long-test) while it runs`);
  mock.cancel(slow.id);
  await mock.waitFor(
    () => [checkout, build, lint, secret, slow, test].every((j) => !j || ended(j)),
    {
      timeoutMs: 120_000,
    },
  );
  ok = true;
} catch (error) {
  say(`the pipeline did not finish: ${error instanceof Error ? error.message : error}`);
} finally {
  runner.kill("SIGTERM");
  await runner.status;
  await relay;
  await server.close();
  await Deno.remove(buildDir, { recursive: true }).catch(() => {});
  await Deno.remove(repoDir, { recursive: true }).catch(() => {});
}

const jobs = [...(checkout ? [checkout] : []), build, lint, secret, slow, ...(test ? [test] : [])];
for (const job of jobs) {
  const details = [job.failureReason, job.exitCode ? `exit code ${job.exitCode}` : undefined]
    .filter(Boolean).join(", ");
  console.log("");
  console.log(bold(`━━ job ${job.id} ${job.name}: ${job.state}${details ? ` (${details})` : ""}`));
  const log = plain ? stripAnsi(job.logText) : job.logText;
  for (const line of log.trimEnd().split("\n")) console.log(`   ${line}`);
  for (const a of job.artifacts) {
    console.log(`   ↑ artifact ${a.filename} (${a.type}, ${a.format}, ${a.data.byteLength} bytes)`);
  }
}

const expected: [MockJob | undefined, string][] = [
  ...(sha ? [[checkout, "success"] as [MockJob | undefined, string]] : []),
  [build, "success"],
  [test, "success"],
  [lint, "failed"],
  [secret, "success"],
  [slow, "canceled"],
];
const wrong = expected.filter(([j, state]) => !j || j.state !== state);
const leaked = secret.logText.includes("s3cr3t-d3ploy-t0ken") ||
  secret.logText.includes("abcdefghijklmnopqrst");
console.log("");
const fetched = !checkout || (checkout.logText.includes("Fetching changes") &&
  checkout.logText.includes("hello from # hello"));
if (!ok || wrong.length > 0 || leaked || lint.exitCode !== 3 || !fetched) {
  say("the pipeline did not end as expected");
  Deno.exit(1);
}
say(`pipeline done: ${jobs.map((j) => `${j.name} ${j.state}`).join(", ")}`);
