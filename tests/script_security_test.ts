// What a job's script must not get from the runner, and must not leave behind (CONFORMANCE C9.3,
// C9.5, C9.6), on both process backends. Real processes, hostile scripts.
import { assert } from "./_deps.ts";
import {
  assertRunning,
  groupAndSession,
  isGone,
  killAll,
  readPid,
  readStat,
} from "./_processes.ts";
import type { JobVariable } from "../src/api/payload.ts";
import type { Backend } from "../src/script/_backend.ts";
import { environHas, MARKER_VARIABLE, MarkerScan, newMarker } from "../src/script/_marker.ts";
import { runWith } from "../src/script/_run.ts";
import { backend as denoBackend } from "../src/script/_spawn.deno.ts";
import { backend as nodeBackend } from "../src/script/_spawn.node.ts";
import {
  DEFAULT_INHERITED_ENV,
  runScript,
  type RunScriptOptions,
} from "../src/script/run_script.ts";

function variable(key: string, value: string, flags: Partial<JobVariable> = {}): JobVariable {
  return { key, value, masked: false, public: true, file: false, raw: false, ...flags };
}

/** An output stream that keeps the text. */
function collector() {
  const decoder = new TextDecoder();
  let text = "";
  const stream = new WritableStream<Uint8Array>({
    write(chunk) {
      text += decoder.decode(chunk, { stream: true });
    },
  });
  return {
    stream,
    get text() {
      return text;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "script_security_test_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Sets `vars` in this process's environment for the time of `fn`. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  for (const [key, value] of Object.entries(vars)) Deno.env.set(key, value);
  try {
    return await fn();
  } finally {
    for (const key of Object.keys(vars)) Deno.env.delete(key);
  }
}

/** The environment a script sees, as `env -0` prints it (its own, exact). */
function parseEnv0(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of text.split("\0")) {
    if (entry === "") continue;
    const at = entry.indexOf("=");
    map.set(entry.slice(0, at), entry.slice(at + 1));
  }
  return map;
}

const SECRET = `glrt-runner-secret-${crypto.randomUUID()}`;

Deno.test("C9.3 DEFAULT_INHERITED_ENV is the documented allowlist", () => {
  assert.deepEqual(
    [...DEFAULT_INHERITED_ENV],
    ["PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR", "USER", "SHELL", "TERM"],
  );
  assert.ok(Object.isFrozen(DEFAULT_INHERITED_ENV));
});

Deno.test("C9.3 runScript (the public entry) gives a script no runner secret by default", async () => {
  await withEnv({ RUNNER_TOKEN: SECRET }, async () => {
    const out = collector();
    assert.equal(
      await runScript(['cat "/proc/$$/environ"; env'], { output: out.stream, echo: false }),
      0,
    );
    assert.ok(out.text.includes("PATH="), out.text);
    assert.equal(out.text.includes(SECRET), false, "the runner token reached the script");
    assert.equal(out.text.includes("RUNNER_TOKEN"), false);
  });
});

Deno.test("C9.6 the marker matches whole environment entries only", () => {
  const enc = new TextEncoder();
  const entry = "GITLAB_RUNNER_JOB_MARKER=abc";
  assert.equal(environHas(enc.encode(`A=1\0${entry}\0B=2\0`), entry), true);
  assert.equal(environHas(enc.encode(`${entry}`), entry), true); // no NUL at the end
  assert.equal(environHas(enc.encode(`A=1\0${entry}`), entry), true);
  assert.equal(environHas(enc.encode(`A=1\0${entry}d\0`), entry), false);
  assert.equal(environHas(enc.encode(`X${entry}\0`), entry), false);
  assert.equal(environHas(enc.encode(`FOO=${entry}\0`), entry), false);
  assert.equal(environHas(new Uint8Array(0), entry), false);
  assert.match(newMarker(), /^[0-9a-f]{32}$/);
  assert.notEqual(newMarker(), newMarker());
});

Deno.test("C9.6 MarkerScan reads many /proc entries at once and reports every marked one in pid order", async () => {
  const enc = new TextEncoder();
  const entry = `${MARKER_VARIABLE}=${newMarker()}`;
  const pids = Array.from({ length: 60 }, (_, i) => 100 + i);
  const marked = pids.filter((pid) => pid % 7 === 0 || pid % 11 === 3);
  let reading = 0;
  let most = 0;
  const fake = {
    ...denoBackend,
    listProcesses: () => Promise.resolve([1, ...pids]),
    readProcFile: async (path: string) => {
      const pid = Number(/^\/proc\/([0-9]+)\/environ$/.exec(path)![1]);
      most = Math.max(most, ++reading);
      // Answers come back out of order.
      await new Promise((r) => setTimeout(r, (pid * 37) % 5));
      reading--;
      if (pid === 1 || pid === 150) return enc.encode(`${entry}\0`);
      return enc.encode(marked.includes(pid) ? `A=1\0${entry}\0` : "A=1\0");
    },
    spawn: () => Promise.reject(new Error("no helper wanted")),
  } as Backend;
  const found = await new MarkerScan(fake, entry, "sh", undefined, 150).find();
  assert.deepEqual(found, marked.filter((pid) => pid !== 150));
  assert.ok(most > 1 && most <= 8, `${most} reads at once`);
});

Deno.test("C9.6 MarkerScan reads /proc in-process where it may, never reporting itself", async () => {
  const enc = new TextEncoder();
  const entry = `${MARKER_VARIABLE}=${newMarker()}`;
  const environs: Record<number, string | undefined> = {
    1: `${entry}\0`, // init: never reported
    10: `PATH=/bin\0${entry}\0`,
    11: "PATH=/bin\0",
    12: undefined, // another user's: unreadable
    13: `${entry}x\0`,
    99: `${entry}\0`, // this process
  };
  let spawned = 0;
  const fake = {
    ...denoBackend,
    listProcesses: () => Promise.resolve(Object.keys(environs).map(Number)),
    readProcFile: (path: string) => {
      const text = environs[Number(/^\/proc\/([0-9]+)\/environ$/.exec(path)![1])];
      return Promise.resolve(text === undefined ? undefined : enc.encode(text));
    },
    spawn: () => {
      spawned++;
      return Promise.reject(new Error("no helper wanted"));
    },
  } as Backend;
  const scan = new MarkerScan(fake, entry, "sh", undefined, 99);
  assert.deepEqual(await scan.find(), [10]);
  assert.equal(spawned, 0);
  // Where /proc cannot be read here, the helper (the script's shell with grep -z) does it.
  const noProc = { ...denoBackend, listProcesses: () => Promise.resolve(undefined) } as Backend;
  const viaHelper = new MarkerScan(noProc, entry, "sh", Deno.env.get("PATH"), 99);
  assert.deepEqual(await viaHelper.find(), []);
  const marked = new Deno.Command("sleep", {
    args: ["30"],
    env: { [MARKER_VARIABLE]: entry.slice(MARKER_VARIABLE.length + 1) },
  }).spawn();
  try {
    assert.deepEqual(await viaHelper.find(), [marked.pid]);
  } finally {
    marked.kill("SIGKILL");
    await marked.status;
  }
});

/**
 * A script that starts daemons which leave its process group: `setsid sleep` (its own session,
 * holding no pipe), a double fork through `setsid sh` (an orphan in another session, holding
 * the output pipe) and a job-control group in the same session (`set -m`). Each writes its
 * pid to `<dir>/<name>`; then the script waits for `<dir>/go`.
 */
function daemonScript(dir: string): string[] {
  return [
    `setsid sleep 1000 > /dev/null 2>&1 < /dev/null & echo $! > "${dir}/setsid"`,
    `setsid sh -c 'sleep 1000 & echo $! > "$1/double"' sh "${dir}" &`,
    `(set -m; sleep 1000 > /dev/null 2>&1 & echo $! > "${dir}/jobgroup")`,
    `echo $$ > "${dir}/shell"`,
    `while [ ! -e "${dir}/go" ]; do sleep 0.01; done`,
  ];
}
const DAEMONS = ["setsid", "double", "jobgroup"];

async function startedDaemons(dir: string): Promise<number[]> {
  const shell = await readPid(`${dir}/shell`);
  const shellGroup = await groupAndSession(shell);
  const pids = await Promise.all(DAEMONS.map((name) => readPid(`${dir}/${name}`)));
  for (const [i, pid] of pids.entries()) {
    await assertRunning(pid, `the ${DAEMONS[i]} daemon`);
    // Hostile for real: none of them is in the script's process group any more. `$!` is known
    // before the child has called setsid(2), so give it a moment (bounded) to leave.
    const until = Date.now() + 5_000;
    while ((await groupAndSession(pid)).pgrp === shellGroup.pgrp && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.notEqual((await groupAndSession(pid)).pgrp, shellGroup.pgrp, DAEMONS[i]);
  }
  return pids;
}

for (const backend of [denoBackend, nodeBackend] as Backend[]) {
  const tag = `(${backend.name})`;
  const run = (script: readonly string[], options?: RunScriptOptions) =>
    runWith(backend, script, options);

  Deno.test(`C9.3 runScript gives a script only allowlisted runner environment ${tag}`, async () => {
    const runnerEnv = {
      RUNNER_TOKEN: SECRET,
      CI_JOB_TOKEN: `${SECRET}-job`,
      AWS_SECRET_ACCESS_KEY: `${SECRET}-aws`,
      LC_ALL: "C",
      LC_TIME: "C",
      TZ: "UTC",
      TERM: "dumb",
      LCX_NOT_LOCALE: "nope", // `LC_*` is a prefix with the underscore, not `LC`
    };
    await withEnv(runnerEnv, async () => {
      const out = collector();
      const code = await run(["env -0"], {
        output: out.stream,
        echo: false,
        variables: [variable("JOB_VAR", "job-value")],
        env: { APP_ENV: "app-value" },
      });
      assert.equal(code, 0);
      const seen = parseEnv0(out.text);
      assert.equal(out.text.includes(SECRET), false, "a runner secret reached the script");
      for (
        const name of ["RUNNER_TOKEN", "CI_JOB_TOKEN", "AWS_SECRET_ACCESS_KEY", "LCX_NOT_LOCALE"]
      ) {
        assert.equal(seen.has(name), false, `${name} was inherited`);
      }
      assert.equal(seen.get("PATH"), Deno.env.get("PATH"));
      assert.equal(seen.get("HOME"), Deno.env.get("HOME"));
      assert.equal(seen.get("LC_ALL"), "C");
      assert.equal(seen.get("LC_TIME"), "C");
      assert.equal(seen.get("TZ"), "UTC");
      assert.equal(seen.get("TERM"), "dumb");
      assert.equal(seen.get("JOB_VAR"), "job-value");
      assert.equal(seen.get("APP_ENV"), "app-value");
      // Nothing but the allowlist, the job's variables, `env` and the shell's own.
      const allowed = (name: string) =>
        ["PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "SHELL", "TERM"].includes(name) ||
        name.startsWith("LC_") ||
        ["JOB_VAR", "APP_ENV", "GITLAB_RUNNER_JOB_MARKER"].includes(name) ||
        ["PWD", "SHLVL", "_", "OLDPWD"].includes(name);
      assert.deepEqual([...seen.keys()].filter((name) => !allowed(name)), []);

      // Everything, when asked for; an extended list; a replaced one.
      const all = collector();
      await run(["env -0"], { output: all.stream, echo: false, inheritEnv: true });
      assert.equal(parseEnv0(all.text).get("RUNNER_TOKEN"), SECRET);
      const extended = collector();
      await run(["env -0"], {
        output: extended.stream,
        echo: false,
        inheritEnv: [...DEFAULT_INHERITED_ENV, "AWS_*"],
      });
      const more = parseEnv0(extended.text);
      assert.equal(more.get("AWS_SECRET_ACCESS_KEY"), `${SECRET}-aws`);
      assert.equal(more.get("PATH"), Deno.env.get("PATH"));
      assert.equal(more.has("RUNNER_TOKEN"), false);
      const replaced = collector();
      await run(["env -0"], { output: replaced.stream, echo: false, inheritEnv: ["TZ"] });
      const only = parseEnv0(replaced.text);
      assert.equal(only.get("TZ"), "UTC");
      assert.equal(only.has("HOME"), false);
    });
  });

  Deno.test(`C9.5 variable keys that are not environment names never reach the environment ${tag}`, async () => {
    const out = collector();
    const path = Deno.env.get("PATH")!;
    const hostile = [
      variable("PATH=/tmp/evil:/usr/bin:/bin:", "hostile-value-1"),
      variable("X=Y", "hostile-value-2"),
      variable("1DIGIT", "hostile-value-3"),
      variable("WITH SPACE", "hostile-value-4"),
      variable("", "hostile-value-5"),
      variable("NEW\nLINE", "hostile-value-6"),
      variable("ÄNDERUNG", "hostile-value-7"),
      variable("BASH_FUNC_x%%", "() { echo hostile-value-8; }"),
    ];
    const code = await run(["env -0"], {
      output: out.stream,
      echo: false,
      variables: [...hostile, variable("GOOD_1", "fine"), variable("_under", "fine too")],
    });
    assert.equal(code, 0);
    const printed = out.text.slice(0, out.text.indexOf("\n") + 1);
    const seen = parseEnv0(out.text.slice(printed.length));
    assert.equal(seen.get("PATH"), path, "PATH was changed by a variable");
    assert.equal(seen.has("X"), false);
    assert.equal(seen.get("GOOD_1"), "fine");
    assert.equal(seen.get("_under"), "fine too");
    assert.equal(/hostile-value/.test(out.text), false, "a skipped value was printed or set");
    // One line in the job log says which keys were skipped, without their values.
    assert.ok(
      printed.startsWith("\x1b[0;33mWARNING: Skipped 8 job variables whose names"),
      printed,
    );
    for (const v of hostile) assert.ok(printed.includes(JSON.stringify(v.key)), v.key);
    assert.equal(printed.includes("GOOD_1"), false);
  });

  Deno.test(`C9.5 file variable keys never escape the file variables folder ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const fileDir = `${dir}/vars`;
      await Deno.mkdir(`${dir}/inside`);
      const out = collector();
      const code = await run(['cat "$GOOD"'], {
        output: out.stream,
        echo: false,
        fileVariablesDir: fileDir,
        variables: [
          variable("../escaped", "x", { file: true }),
          variable("..", "x", { file: true }),
          variable(`${dir}/absolute`, "x", { file: true }),
          variable("inside/../../up", "x", { file: true }),
          variable("GOOD", "good content", { file: true }),
        ],
      });
      assert.equal(code, 0);
      assert.ok(out.text.endsWith("good content"), out.text);
      assert.match(out.text, /Skipped 4 job variables/);
      for (const name of ["escaped", "absolute", "up"]) {
        assert.equal(await exists(`${dir}/${name}`), false, `${name} escaped`);
      }
      const written = [];
      for await (const entry of Deno.readDir(fileDir)) written.push(entry.name);
      assert.deepEqual(written, ["GOOD"]);
    });
  });

  // -------------------------------------------------------------------------------------------
  // C9.6 processes that left the script's process group
  // -------------------------------------------------------------------------------------------

  Deno.test(`C9.6 daemons that left the process group are ended when the script ends ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const started = Date.now();
      const done = run(daemonScript(dir), { output: new WritableStream(), killGraceMs: 2_000 });
      let pids: number[] = [];
      try {
        pids = await startedDaemons(dir);
        await Deno.writeTextFile(`${dir}/go`, "");
        assert.equal(await done, 0);
        assert.deepEqual(await Promise.all(pids.map(isGone)), [true, true, true], DAEMONS.join());
        assert.ok(Date.now() - started < 4_000, "SIGTERM was enough: no wait for the grace");
      } finally {
        killAll(pids);
        // The script waits for this file: a failed check above must not leave it waiting.
        await Deno.writeTextFile(`${dir}/go`, "").catch(() => {});
        await done.catch(() => {});
      }
    });
  });

  Deno.test(`C9.6 daemons that left the process group are ended on abort ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const controller = new AbortController();
      const done = run(daemonScript(dir), {
        output: new WritableStream(),
        signal: controller.signal,
        killGraceMs: 2_000,
      });
      let pids: number[] = [];
      try {
        pids = await startedDaemons(dir);
        controller.abort();
        assert.equal(await done, 143);
        assert.deepEqual(await Promise.all(pids.map(isGone)), [true, true, true], DAEMONS.join());
      } finally {
        controller.abort();
        killAll(pids);
        await done.catch(() => {});
      }
    });
  });

  Deno.test(`C9.6 a daemon that ignores SIGTERM gets SIGKILL after the grace ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const done = run([
        `setsid sh -c 'trap "" TERM; echo $$ > "$1/stubborn"; while :; do sleep 0.02; done' sh "${dir}" > /dev/null 2>&1 &`,
        `while [ ! -e "${dir}/stubborn" ]; do sleep 0.01; done`,
      ], { output: new WritableStream(), killGraceMs: 300 });
      let pid = 0;
      try {
        pid = await readPid(`${dir}/stubborn`);
        await assertRunning(pid, "the TERM-ignoring daemon");
        const before = Date.now();
        assert.equal(await done, 0);
        const elapsed = Date.now() - before;
        assert.ok(await isGone(pid), "the TERM-ignoring daemon survived");
        assert.ok(elapsed >= 250, `ended after ${elapsed} ms: before the grace period`);
        assert.ok(elapsed < 3_000, `ended after ${elapsed} ms`);
      } finally {
        killAll([pid]);
        await done.catch(() => {});
      }
    });
  });

  Deno.test(`C9.6 a script that starts no daemon is not slowed down ${tag}`, async () => {
    const started = Date.now();
    for (let i = 0; i < 5; i++) {
      assert.equal(await run(["true"], { output: new WritableStream() }), 0);
    }
    assert.ok(Date.now() - started < 2_000, `${Date.now() - started} ms for 5 scripts`);
    // The stat reader works here (else the tests above prove nothing).
    assert.ok(await readStat(Deno.pid));
  });
}

for (const [name, backend] of [["deno", denoBackend], ["node", nodeBackend]] as const) {
  Deno.test(`C9.5 an env option with a key that is not an environment name is refused, nothing runs (${name})`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      for (const key of ["PATH=/tmp/evil:/usr/bin", "A B", "", "1X", "BASH_FUNC_f%%"]) {
        await assert.rejects(
          runWith(backend, [`touch ${dir}/ran`], {
            env: { [key]: "x" },
            output: new WritableStream(),
          }),
          (e: unknown) =>
            e instanceof TypeError && /Not valid environment variable names/.test(e.message),
          key,
        );
      }
      await assert.rejects(Deno.stat(`${dir}/ran`));
      // A valid key works.
      assert.equal(
        await runWith(backend, ['test "$GOOD_KEY" = yes'], {
          env: { GOOD_KEY: "yes" },
          output: new WritableStream(),
        }),
        0,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
