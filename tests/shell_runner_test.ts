// The example shell runner (examples/shell_runner.ts, the package's "./example") end to end.
import { assert } from "./_deps.ts";
import { GitLabMock } from "../src/mock/mod.ts";
import { parseConfig, UsageError } from "../examples/shell_runner.ts";

const root = new URL("../", import.meta.url);
const dec = new TextDecoder();

/** Whether `pid` runs (a zombie counts as gone). Deno reads /proc only with -A: ask `ps`. */
function alive(pid: number): boolean {
  const out = new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)] }).outputSync();
  const stat = dec.decode(out.stdout).trim();
  return out.code === 0 && stat !== "" && !stat.startsWith("Z");
}

Deno.test("C7 example: bad command lines give a clear message and a non-zero exit", async () => {
  assert.throws(() => parseConfig([], {}), UsageError);
  assert.throws(
    () => parseConfig(["--url", "ftp://x"], { RUNNER_TOKEN: "t" }),
    /Invalid GitLab URL/,
  );
  assert.throws(
    () => parseConfig(["--url", "https://x.org", "--token", "t", "--concurrency", "0"], {}),
    /--concurrency must be a whole number/,
  );
  assert.throws(() => parseConfig(["--bogus"], {}), UsageError);
  const fromEnv = parseConfig([], { CI_SERVER_URL: "https://x.org", RUNNER_TOKEN: "glrt-x" });
  assert.equal(fromEnv?.url, "https://x.org");
  assert.equal(fromEnv?.token, "glrt-x");
  assert.equal(parseConfig(["--help"], {}), undefined);
  // C12.4: the system id is kept in the build dir unless --state-dir says otherwise.
  const base = ["--url", "https://x.org", "--token", "t", "--build-dir", "/b"];
  assert.equal(parseConfig(base, {})?.stateDir, "/b");
  assert.equal(parseConfig(base, { RUNNER_STATE_DIR: "/s" })?.stateDir, "/s");
  assert.equal(
    parseConfig([...base, "--state-dir", "/t"], { RUNNER_STATE_DIR: "/s" })?.stateDir,
    "/t",
  );

  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/shell_runner.ts", "--url", "https://x.org"],
    cwd: root,
    env: { RUNNER_TOKEN: "", CI_SERVER_URL: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(dec.decode(out.stderr), /Missing runner token: pass --token or set RUNNER_TOKEN/);
});

Deno.test("C7 example: an invalid token is refused at start-up with exit code 1", async () => {
  const mock = new GitLabMock();
  const server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "examples/shell_runner.ts", "--url", server.url, "--token", "glrt-bad"],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    assert.match(dec.decode(out.stderr), /GitLab rejected the runner token \(HTTP 403\)/);
  } finally {
    await server.close();
  }
});

Deno.test("C7 example end to end: artifacts, a dependency, an exit code, a cancelled process tree", async () => {
  const mock = new GitLabMock({ traceUpdateInterval: 1 });
  const server = await mock.listen({ hostname: "127.0.0.1", port: 0, server: "node" });
  const buildDir = await Deno.makeTempDir({ prefix: "glr-example-" });
  const pidDir = await Deno.makeTempDir({ prefix: "glr-pids-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "examples/shell_runner.ts",
      "--url",
      server.url,
      "--token",
      mock.runnerToken,
      "--build-dir",
      buildDir,
      "--concurrency",
      "3",
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([child.stdout, child.stderr].map((s) => new Response(s).text()));
  try {
    const build = mock.job().name("build")
      .script(["mkdir -p out", "echo built > out/app.txt"])
      .artifact({ name: "app", paths: ["out/"] })
      .enqueue();
    const failing = mock.job().name("failing").script(["echo before", "exit 7", "echo after"])
      .enqueue();
    const slow = mock.job().name("slow").variable("PID_DIR", pidDir)
      .script([
        "sleep 1000 & echo $! > $PID_DIR/background.pid",
        "echo $$ > $PID_DIR/shell.pid",
        // Prints now and then, so GitLab's cancel is seen on the next PATCH (1 s interval).
        "bash -c 'echo $$ > $PID_DIR/child.pid; while true; do echo tick; sleep 0.3; done'",
      ])
      .enqueue();
    await mock.waitFor(() => build.state === "success", { timeoutMs: 20_000 });
    const test = mock.job().name("test").dependency(build).script(["cat out/app.txt"]).enqueue();
    await mock.waitFor(() => test.state === "success", { timeoutMs: 20_000 });
    assert.match(test.logText, /\nbuilt\n/);
    await mock.waitFor(() => failing.state === "failed", { timeoutMs: 20_000 });
    assert.equal(failing.exitCode, 7);
    assert.equal(failing.failureReason, "script_failure");
    assert.equal(failing.logText.includes("after\n"), false);

    const readPid = async (name: string) => {
      for (let i = 0; i < 200; i++) {
        try {
          const pid = Number((await Deno.readTextFile(`${pidDir}/${name}.pid`)).trim());
          if (pid > 0) return pid;
        } catch { /* not yet */ }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`${name}.pid never appeared`);
    };
    const pids = [await readPid("background"), await readPid("shell"), await readPid("child")];
    assert.deepEqual(pids.map(alive), [true, true, true], `processes ${pids} should run`);
    mock.cancel(slow.id, { graceful: false });
    await mock.waitFor(() => slow.state === "canceled", { timeoutMs: 5_000 });
    for (let i = 0; i < 200 && pids.some(alive); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(pids.filter(alive), [], "processes of the cancelled job are still running");
    assert.equal(build.artifacts[0]?.filename, "app.zip");
    // C12.4: the example keeps its system id in the build dir (no --state-dir given).
    assert.match(
      await Deno.readTextFile(`${buildDir}/.runner_system_id`),
      /^[sr]_[0-9a-zA-Z]{12}$/,
    );
  } finally {
    child.kill("SIGTERM"); // stop taking jobs…
    await new Promise((r) => setTimeout(r, 200));
    try {
      child.kill("SIGTERM"); // …and cancel what still runs
    } catch { /* already gone */ }
    await child.status;
    const [stdout] = await output;
    await server.close();
    await Deno.remove(buildDir, { recursive: true }).catch(() => {});
    await Deno.remove(pidDir, { recursive: true }).catch(() => {});
    assert.match(stdout, /job \d+ failing failed \(script_failure, exit code 7\)/);
  }
});
