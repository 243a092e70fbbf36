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
  // C8.1: the token check and every call are bounded; the bounds are checked.
  const bounded = parseConfig(["--url", "https://x.org", "--token", "t"], {});
  assert.equal(bounded?.verifyTimeoutMs, 30_000);
  assert.equal(bounded?.requestTimeoutMs, 600_000);
  assert.throws(
    () => parseConfig(["--url", "https://x.org", "--token", "t", "--verify-timeout", "0"], {}),
    /--verify-timeout must be a positive number of seconds/,
  );
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
  assert.match(
    dec.decode(out.stderr),
    /Missing runner token: pass --token-file or set RUNNER_TOKEN/,
  );
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
  let stdout = "";
  try {
    const build = mock.job().variable("GIT_STRATEGY", "none").name("build")
      .script(["mkdir -p out", "echo built > out/app.txt"])
      .artifact({ name: "app", paths: ["out/"] })
      .enqueue();
    const failing = mock.job().variable("GIT_STRATEGY", "none").name("failing").script([
      "echo before",
      "exit 7",
      "echo after",
    ])
      .enqueue();
    const slow = mock.job().variable("GIT_STRATEGY", "none").name("slow").variable(
      "PID_DIR",
      pidDir,
    )
      .script([
        "sleep 1000 & echo $! > $PID_DIR/background.pid",
        "echo $$ > $PID_DIR/shell.pid",
        // Prints now and then, so GitLab's cancel is seen on the next PATCH (1 s interval).
        "bash -c 'echo $$ > $PID_DIR/child.pid; while true; do echo tick; sleep 0.3; done'",
      ])
      .enqueue();
    await mock.waitFor(() => build.state === "success", { timeoutMs: 20_000 });
    const test = mock.job().variable("GIT_STRATEGY", "none").name("test").dependency(build).script([
      "cat out/app.txt",
    ]).enqueue();
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
    [stdout] = await output;
    await server.close();
    await Deno.remove(buildDir, { recursive: true }).catch(() => {});
    await Deno.remove(pidDir, { recursive: true }).catch(() => {});
  }
  // After the clean-up, not inside it: a failure above must not be masked by this one.
  assert.match(stdout, /job \d+ failing failed \(script_failure, exit code 7\)/);
});

// ---------------------------------------------------------------------------------------------
// C9.3 the runner token never reaches a job
// ---------------------------------------------------------------------------------------------

/**
 * A job that looks for the runner token everywhere a process of the same user can: its own
 * environment (`env`), the runner's (`/proc/$PPID/environ`, `cmdline`), every ancestor's and
 * every process's `environ` and `cmdline`. It gets the token in two halves, `N1` and `N2`, so
 * its own environment never holds it whole, and never prints it: it prints where it found it.
 * It also prints proof that it could read what it searched (else finding nothing proves nothing).
 */
const HUNT = [
  'needle="$N1$N2"',
  'case "$(env)" in *"$needle"*) echo "FOUND in env";; esac',
  'ppid_env=$(tr "\\0" "\\n" < /proc/$PPID/environ)',
  'case "$ppid_env" in *"$needle"*) echo "FOUND in /proc/$PPID/environ";; esac',
  'case "$ppid_env" in *HOME=*) echo "runner environ readable";; esac',
  'case "$(tr "\\0" " " < /proc/$PPID/cmdline)" in *shell_runner.ts*) echo "runner cmdline readable";; esac',
  [
    "p=$$; ancestors=0",
    'while [ "$p" -gt 1 ]; do',
    "  for f in environ cmdline; do",
    '    case "$(tr "\\0" "\\n" < /proc/$p/$f)" in *"$needle"*) echo "FOUND in ancestor /proc/$p/$f";; esac',
    "  done",
    "  ancestors=$((ancestors + 1))",
    "  p=$(sed 's/.*) [A-Za-z] \\([0-9]*\\).*/\\1/' /proc/$p/stat)",
    "done",
    'echo "ancestors read: $ancestors"',
  ].join("\n"),
  [
    "walked=0",
    "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do",
    '  c=$(tr "\\0" "\\n" < "$f" 2>/dev/null) || continue',
    "  walked=$((walked + 1))",
    '  case "$c" in *"$needle"*) echo "FOUND in $f";; esac',
    "done",
    'echo "walked: $walked"',
  ].join("\n"),
];

/** Runs the example with `args` and `env` against a mock whose token is `token`; runs HUNT. */
async function huntFor(
  token: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ log: string; stderr: string }> {
  const mock = new GitLabMock({ runnerToken: token });
  const server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  const buildDir = await Deno.makeTempDir({ prefix: "glr-token-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "examples/shell_runner.ts",
      "--url",
      server.url,
      "--build-dir",
      buildDir,
      ...args,
    ],
    cwd: root,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([child.stdout, child.stderr].map((s) => new Response(s).text()));
  const half = Math.floor(token.length / 2);
  try {
    const job = mock.job().variable("GIT_STRATEGY", "none").name("hunt")
      .variable("N1", token.slice(0, half))
      .variable("N2", token.slice(half))
      .script(HUNT)
      .enqueue();
    await mock.waitFor(() => job.state !== "pending" && job.state !== "running", {
      timeoutMs: 20_000,
    });
    assert.equal(job.state, "success", job.logText);
    return { log: job.logText, stderr: "" };
  } finally {
    child.kill("SIGTERM");
    await child.status;
    const [, stderr] = await output;
    await server.close();
    await Deno.remove(buildDir, { recursive: true }).catch(() => {});
    lastStderr = stderr;
  }
}
let lastStderr = "";

function assertNotFound(log: string): void {
  assert.equal(/^FOUND/m.test(log), false, log);
  assert.match(log, /^runner environ readable$/m);
  assert.match(log, /^runner cmdline readable$/m);
  const ancestors = Number(/^ancestors read: (\d+)/m.exec(log)?.[1]);
  assert.ok(ancestors >= 2, `only ${ancestors} ancestors read`);
  const walked = Number(/^walked: (\d+)/m.exec(log)?.[1]);
  assert.ok(walked >= 10, `only ${walked} /proc files read`);
}

Deno.test("C9.3 example: a token from RUNNER_TOKEN is not readable by a job (env, /proc/*/environ, cmdline)", async () => {
  const token = `glrt-env-${crypto.randomUUID()}`;
  const { log } = await huntFor(token, [], { RUNNER_TOKEN: token });
  assertNotFound(log);
  assert.equal(lastStderr.includes("warning: --token"), false);
});

Deno.test("C9.3 example: --token-file keeps the token out of argv and the environment", async () => {
  const token = `glrt-file-${crypto.randomUUID()}`;
  const dir = await Deno.makeTempDir({ prefix: "glr-token-file-" });
  try {
    await Deno.writeTextFile(`${dir}/token`, `  ${token}\n`, { mode: 0o600 });
    const { log } = await huntFor(token, ["--token-file", `${dir}/token`], {});
    assertNotFound(log);
    // RUNNER_TOKEN_FILE works the same way.
    const again = await huntFor(token, [], { RUNNER_TOKEN_FILE: `${dir}/token` });
    assertNotFound(again.log);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C9.3 example: --token still works, with a warning that argv is visible to jobs", async () => {
  const token = `glrt-argv-${crypto.randomUUID()}`;
  const { log } = await huntFor(token, ["--token", token], {});
  // The command line is readable by jobs: that is what the warning says.
  assert.match(log, /^FOUND in \/proc\/\d+\/cmdline/m);
  assert.match(lastStderr, /warning: --token puts the runner token in the command line/);
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/shell_runner.ts", "--help"],
    cwd: root,
    stdout: "piped",
  }).output();
  const text = dec.decode(help.stdout);
  assert.match(text, /--token-file PATH/);
  assert.match(
    text,
    /NOT RECOMMENDED, the command line is\s+visible to every process, jobs included \(ps\)/,
  );
  assert.match(text, /\/proc\/<pid>\/environ/);
});

Deno.test("C9.3 example: token options are checked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "glr-token-file-" });
  try {
    await Deno.writeTextFile(`${dir}/token`, " glrt-from-file \n");
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    const url = ["--url", "https://x.org"];
    const fromFile = parseConfig([...url, "--token-file", `${dir}/token`], {
      RUNNER_TOKEN: "glrt-env",
    });
    assert.equal(fromFile?.token, "glrt-from-file");
    assert.equal(fromFile?.tokenSource, "file");
    assert.equal(parseConfig(url, { RUNNER_TOKEN: "glrt-env" })?.tokenSource, "environment");
    assert.equal(parseConfig([...url, "--token", "t"], {})?.tokenSource, "argument");
    assert.throws(
      () => parseConfig([...url, "--token", "t", "--token-file", `${dir}/token`], {}),
      /either --token-file or --token/,
    );
    assert.throws(() => parseConfig([...url, "--token-file", `${dir}/empty`], {}), /is empty/);
    assert.throws(
      () => parseConfig([...url, "--token-file", `${dir}/missing`], {}),
      /Cannot read the token file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("C8.1 example: --verify against a server that accepts and never answers exits 1 within its deadline", async () => {
  // A socket server that takes connections and never says a word.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch {
      // closed
    }
  })();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/token`, "glrt-never-answered\n");
    const started = Date.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "examples/shell_runner.ts",
        "--url",
        `http://127.0.0.1:${listener.addr.port}`,
        "--token-file",
        `${dir}/token`,
        "--build-dir",
        `${dir}/builds`,
        "--verify",
        "--verify-timeout",
        "2",
      ],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const elapsed = Date.now() - started;
    const stderr = dec.decode(out.stderr);
    assert.equal(out.code, 1, stderr);
    assert.match(stderr, /did not answer within 2 s \(--verify-timeout\)/);
    assert.ok(held.length >= 1, "the runner connected");
    // Deno's start-up plus the 2 s deadline, not a hang.
    assert.ok(elapsed < 30_000, `${elapsed} ms`);
  } finally {
    listener.close();
    for (const c of held) c.close();
    await accepting;
    await Deno.remove(dir, { recursive: true });
  }
});
