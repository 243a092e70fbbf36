import { assert } from "./_deps.ts";
import { assertRunning, isGone, readPid, until } from "./_processes.ts";
import { FakeClock } from "../src/clock.ts";
import { Client } from "../src/api/client.ts";
import type { JobVariable } from "../src/api/payload.ts";
import { Variable } from "../src/job.ts";
import { JobLog } from "../src/log/job_log.ts";
import { withJobLog } from "../src/output.ts";
import type { Backend } from "../src/script/_backend.ts";
import { runWith } from "../src/script/_run.ts";
import { backend as denoBackend } from "../src/script/_spawn.deno.ts";
import { backend as nodeBackend } from "../src/script/_spawn.node.ts";
import { invalidKeys, prepareVariables } from "../src/script/_variables.ts";
import { osExpand as expand } from "../src/variables.ts";
import { runScript, type RunScriptOptions } from "../src/script/run_script.ts";

const GREEN = "\x1b[32;1m";
const RESET = "\x1b[0;m";

function variable(key: string, value: string, flags: Partial<JobVariable> = {}): JobVariable {
  return { key, value, masked: false, public: true, file: false, raw: false, ...flags };
}

/** An output stream that keeps the text (or only counts bytes), holding writes when asked to. */
function collector(options: { countOnly?: boolean } = {}) {
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  let writes = 0;
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const waiters: { what: string; resolve: () => void }[] = [];
  const stream = new WritableStream<Uint8Array>({
    async write(chunk) {
      writes++;
      if (gate) await gate;
      bytes += chunk.byteLength;
      if (options.countOnly) return;
      text += decoder.decode(chunk, { stream: true });
      for (const w of waiters.filter((w) => text.includes(w.what))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
  });
  return {
    stream,
    get text() {
      return text;
    },
    get bytes() {
      return bytes;
    },
    /** Writes begun (held ones too). */
    get writes() {
      return writes;
    },
    /** Resolves once the text contains `what`. */
    waitFor(what: string): Promise<void> {
      if (text.includes(what)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ what, resolve }));
    },
    hold() {
      gate = new Promise((resolve) => (open = resolve));
    },
    release() {
      gate = undefined;
      open?.();
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs `body`, then aborts the script and waits for it, so no process outlives a failed test. */
async function settle(
  controller: AbortController,
  done: Promise<unknown>,
  body: () => Promise<void>,
): Promise<void> {
  try {
    await body();
  } finally {
    controller.abort();
    await done.catch(() => {});
  }
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "run_script_test_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Variable expansion (pure)
// ---------------------------------------------------------------------------------------------

Deno.test("C7.2 expansion follows Go's os.Expand, as the official runner's", () => {
  const lookup = (name: string) => `<${name}>`;
  const cases: [string, string][] = [
    ["plain", "plain"],
    ["$A", "<A>"],
    ["${A}", "<A>"],
    ["x$A_B-y", "x<A_B>-y"],
    ["${A:-d}", "<A:-d>"],
    ["$1$*", "<1><*>"],
    ["${}", ""],
    ["${A", "A"],
    ["a$", "a$"],
    ["$ x", "$ x"],
    ["$(cmd)", "$(cmd)"],
    ["${*}", "<*>"],
  ];
  for (const [input, want] of cases) assert.equal(expand(input, lookup), want, input);
});

Deno.test("C7.2 variables: last one wins, single-pass expansion against raw values, file paths", () => {
  const prepared = prepareVariables([
    variable("A", "old"),
    variable("C", "$A"),
    variable("A", "1"),
    variable("B", "x-$A-${A}-$$-$NOPE-$1-$C"),
    variable("R", "$A ${A}", { raw: true }),
    variable("F", "content $A", { file: true }),
    variable("P", "$F"),
  ], "/tmp/vars");
  const byKey = Object.fromEntries(prepared.map((v) => [v.key, v]));
  assert.deepEqual(prepared.map((v) => v.key), ["C", "A", "B", "R", "F", "P"]);
  assert.equal(byKey.A.value, "1");
  assert.equal(byKey.C.value, "1");
  assert.equal(byKey.B.value, "x-1-1-$---$A"); // $C is C's raw value: expanded once only
  assert.equal(byKey.R.value, "$A ${A}");
  assert.deepEqual(byKey.F, { key: "F", value: "content 1", path: "/tmp/vars/F" });
  assert.equal(byKey.P.value, "/tmp/vars/F");
  // C9.5: keys that are not environment names take no part: not set, not a file, not expanded.
  const hostile = [
    variable("../x", "v", { file: true }),
    variable("X=Y", "v"),
    variable("OK", "${X=Y}"),
  ];
  assert.deepEqual(prepareVariables(hostile, "/tmp/vars"), [{ key: "OK", value: "" }]);
  assert.deepEqual(invalidKeys([...hostile, variable("X=Y", "again")]), ["../x", "X=Y"]);
});

Deno.test("C7.4 test helper: isGone refuses a pid it never saw running", async () => {
  // A gone-check that passes for a process that never ran (or when /proc cannot be read)
  // proves nothing.
  await assert.rejects(isGone(2 ** 22 + 12345), /never seen running/);
  await assertRunning(Deno.pid, "this test process");
  assert.equal(await isGone(Deno.pid), false);
});

Deno.test("C7.1 runScript picks the runtime's backend and runs a script", async () => {
  const out = collector();
  const code = await runScript(["echo picked"], { output: out.stream });
  assert.equal(code, 0);
  assert.ok(out.text.includes("picked\n"));
});

// ---------------------------------------------------------------------------------------------
// The contract, on both twins
// ---------------------------------------------------------------------------------------------

for (const backend of [denoBackend, nodeBackend] as Backend[]) {
  const tag = `(${backend.name})`;
  const run = (script: readonly string[], options?: RunScriptOptions) =>
    runWith(backend, script, options);

  Deno.test(`C7.1 one shell session: variables and cd carry over to later lines ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const out = collector();
      const code = await run(
        ["FOO=bar", `cd ${JSON.stringify(dir)}`, 'echo "$FOO in $PWD"'],
        { output: out.stream },
      );
      assert.equal(code, 0);
      assert.ok(out.text.includes(`bar in ${dir}\n`), out.text);
    });
  });

  Deno.test(`C7.1 stops at the first failing line and returns its exit code ${tag}`, async () => {
    const out = collector();
    assert.equal(await run(["echo one", "(exit 7)", "echo two"], { output: out.stream }), 7);
    assert.equal(
      out.text,
      `${GREEN}$ echo one${RESET}\none\n${GREEN}$ (exit 7)${RESET}\n`,
    );
    // pipefail: a failing command inside a pipeline fails the line
    const piped = collector();
    assert.equal(await run(["false | cat", "echo after"], { output: piped.stream }), 1);
    assert.ok(!piped.text.includes("after\n"));
    assert.equal(await run(["true", ""], { output: new WritableStream() }), 0);
  });

  Deno.test(`C7.1 echo: multi-line commands collapsed, empty lines, echo off ${tag}`, async () => {
    const out = collector();
    const code = await run(
      ["if true; then\n  echo inside\nfi", "", "echo 'quoted' \"$((1+1))\""],
      { output: out.stream },
    );
    assert.equal(code, 0);
    assert.equal(
      out.text,
      `${GREEN}$ if true; then # collapsed multi-line command${RESET}\ninside\n\n` +
        `${GREEN}$ echo 'quoted' "$((1+1))"${RESET}\nquoted 2\n`,
    );
    const quiet = collector();
    assert.equal(await run(["echo a", "echo b"], { output: quiet.stream, echo: false }), 0);
    assert.equal(quiet.text, "a\nb\n");
  });

  Deno.test(`C7.1 commands read an empty stdin, not the rest of the script ${tag}`, async () => {
    const out = collector();
    assert.equal(await run(["cat", "echo after"], { output: out.stream, echo: false }), 0);
    assert.equal(out.text, "after\n");
  });

  Deno.test(`C7.1 bash is chosen when present, sh otherwise ${tag}`, async () => {
    const out = collector();
    assert.equal(await run(['echo "shell=${0##*/}"'], { output: out.stream, echo: false }), 0);
    assert.equal(out.text, "shell=bash\n");
    await withTempDir(async (dir) => {
      // A PATH with sh but no bash
      await Deno.symlink("/bin/sh", `${dir}/sh`);
      const fallback = collector();
      const code = await run(['echo "shell=${0##*/} bash=${BASH_VERSION:-none}"'], {
        output: fallback.stream,
        echo: false,
        inheritEnv: false,
        env: { PATH: dir },
      });
      assert.equal(code, 0);
      assert.equal(fallback.text, "shell=sh bash=none\n");
    });
  });

  Deno.test(`C7.2 job variables become the environment; raw ones stay unexpanded ${tag}`, async () => {
    const out = collector();
    const variables = [
      variable("A", "1"),
      variable("B", "x-$A-${A}-$$-$NOPE-"),
      variable("R", "$A ${A} $(echo no)", { raw: true }),
      variable("S", "$(echo no) `echo no`"),
      new Variable(variable("MASKED_ONE", "m-value", { masked: true, public: false })),
    ];
    const code = await run(
      ['printf "%s|" "$A" "$B" "$R" "$S" "$MASKED_ONE"'],
      { output: out.stream, echo: false, variables },
    );
    assert.equal(code, 0);
    assert.equal(out.text, "1|x-1-1-$--|$A ${A} $(echo no)|$(echo no) `echo no`|m-value|");
  });

  Deno.test(`C7.2 file variables: written to files, the variable holds the path ${tag}`, async () => {
    const out = collector();
    const variables = [
      variable("A", "1"),
      variable("CONF", "line $A\nsecond", { file: true }),
      variable("RAWF", "keep $A", { file: true, raw: true }),
      variable("WHERE", "$CONF"),
    ];
    const code = await run(
      ['cat "$CONF"; echo; cat "$RAWF"; echo', 'echo "path=$CONF"', 'test "$WHERE" = "$CONF"'],
      { output: out.stream, echo: false, variables },
    );
    assert.equal(code, 0);
    const path = /path=(.*)\n/.exec(out.text)![1];
    assert.ok(path.endsWith("/CONF"), path);
    assert.equal(out.text, `line 1\nsecond\nkeep $A\npath=${path}\n`);
    assert.equal(await exists(path), false, "the default directory is removed afterwards");

    await withTempDir(async (dir) => {
      const kept = `${dir}/job.tmp`;
      assert.equal(
        await run(['test "$CONF" = "$DIR/CONF"'], {
          output: new WritableStream(),
          variables,
          fileVariablesDir: kept,
          env: { DIR: kept },
        }),
        0,
      );
      assert.equal(await Deno.readTextFile(`${kept}/CONF`), "line 1\nsecond");
      assert.equal((await Deno.stat(`${kept}/CONF`)).mode! & 0o777, 0o600);
    });
  });

  Deno.test(`C7.2 environment: inherited by choice, env wins over variables ${tag}`, async () => {
    Deno.env.set("RUN_SCRIPT_TEST_INHERITED", "yes");
    try {
      const script = ['echo "inh=${RUN_SCRIPT_TEST_INHERITED:-unset} v=$V"'];
      const variables = [variable("V", "from-variable")];
      const texts: string[] = [];
      for (const inheritEnv of [true, false, ["RUN_SCRIPT_TEST_INHERITED"], undefined]) {
        const out = collector();
        await run(script, { output: out.stream, echo: false, variables, inheritEnv });
        texts.push(out.text);
      }
      assert.deepEqual(texts, [
        "inh=yes v=from-variable\n",
        "inh=unset v=from-variable\n",
        "inh=yes v=from-variable\n",
        "inh=unset v=from-variable\n", // not in the default allowlist (C9.3)
      ]);
      const out = collector();
      await run(script, {
        output: out.stream,
        echo: false,
        variables,
        env: { V: "from-env" },
        inheritEnv: true,
      });
      assert.equal(out.text, "inh=yes v=from-env\n");
    } finally {
      Deno.env.delete("RUN_SCRIPT_TEST_INHERITED");
    }
  });

  Deno.test(`C7.3 stdout and stderr reach the output in order, while the script runs ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const out = collector();
      const controller = new AbortController();
      let settled = false;
      const done = run(
        [
          "echo a; echo b >&2; echo c; echo d >&2",
          `while [ ! -e "${dir}/go" ]; do sleep 0.01; done`,
          "echo last",
        ],
        { output: out.stream, echo: false, signal: controller.signal },
      ).finally(() => (settled = true));
      await settle(controller, done, async () => {
        await out.waitFor("d\n");
        assert.equal(out.text, "a\nb\nc\nd\n");
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(settled, false, "the script is still running");
        await Deno.writeTextFile(`${dir}/go`, "");
        assert.equal(await done, 0);
        assert.equal(out.text, "a\nb\nc\nd\nlast\n");
      });
    });
  });

  Deno.test(`C7.3 inside a job the output goes to its log, masked ${tag}`, async () => {
    const log = new JobLog({
      client: new Client("http://127.0.0.1:9"),
      jobId: 1,
      token: "job-token",
      clock: new FakeClock(),
      masking: { secrets: ["s3cr3t-value"] },
    });
    const variables = [variable("TOKEN", "s3cr3t-value", { masked: true, public: false })];
    const code = await withJobLog(
      log,
      () => run(['echo "token=$TOKEN glpat-abcdef"'], { variables }),
    );
    assert.equal(code, 0);
    await log.stop();
    const text = new TextDecoder().decode(log.bytes());
    assert.equal(
      text,
      `${GREEN}$ echo "token=$TOKEN glpat-[MASKED]"${RESET}\ntoken=[MASKED] glpat-[MASKED]\n`,
    );
    // Outside a job and without output, the output goes nowhere (and nothing breaks).
    assert.equal(await run(["echo nowhere"]), 0);
  });

  Deno.test(`C7.3 an output stream may keep its chunks: later reads never overwrite them ${tag}`, async () => {
    const kept: Uint8Array[] = [];
    const output = new WritableStream<Uint8Array>({ write: (chunk) => void kept.push(chunk) });
    assert.equal(await run(["seq 1 200000"], { output, echo: false }), 0);
    assert.ok(kept.length > 1, `${kept.length} chunks`);
    let expected = "";
    for (let i = 1; i <= 200000; i++) expected += `${i}\n`;
    const total = kept.reduce((n, c) => n + c.byteLength, 0);
    const all = new Uint8Array(total);
    let at = 0;
    for (const chunk of kept) {
      all.set(chunk, at);
      at += chunk.byteLength;
    }
    assert.equal(new TextDecoder().decode(all), expected);
  });

  Deno.test(`C7.3 a long output reaches the job log whole and masked, read after read ${tag}`, async () => {
    const log = new JobLog({
      client: new Client("http://127.0.0.1:9"),
      jobId: 1,
      token: "job-token",
      clock: new FakeClock(),
      masking: { secrets: ["s3cr3t-value"] },
    });
    const variables = [variable("TOKEN", "s3cr3t-value", { masked: true, public: false })];
    const script = ['for i in $(seq 1 30000); do echo "line $i token=$TOKEN glpat-abc$i"; done'];
    const code = await withJobLog(log, () => run(script, { variables, echo: false }));
    assert.equal(code, 0);
    await log.stop();
    let expected = "";
    for (let i = 1; i <= 30000; i++) expected += `line ${i} token=[MASKED] glpat-[MASKED]\n`;
    assert.ok(expected.length > 4 * 65536);
    assert.equal(new TextDecoder().decode(log.bytes()), expected);
  });

  Deno.test(`C7.3 a slow output slows the script down: memory stays bounded ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const out = collector({ countOnly: true });
      out.hold();
      const block = 1024 * 1024;
      const blocks = 50;
      const controller = new AbortController();
      const done = run(
        [`i=0; while [ $i -lt ${blocks} ]; do head -c ${block} /dev/zero; i=$((i+1)); echo $i > "${dir}/progress"; done`],
        { output: out.stream, echo: false, signal: controller.signal, killGraceMs: 200 },
      );
      await settle(controller, done, async () => {
        // The output takes nothing: the script must come to a halt in its first block (without
        // backpressure it would run to the end, the output piling up in memory).
        await until(() => out.writes > 0);
        const progress = async () =>
          await exists(`${dir}/progress`) ? await readPid(`${dir}/progress`) : 0;
        let written = -1;
        for (let still = 0; still < 4 && written < blocks;) {
          await new Promise((r) => setTimeout(r, 50));
          const now = await progress();
          still = now === written ? still + 1 : 0;
          written = now;
        }
        assert.ok(written <= 1, `${written} MiB written while the output held`);
        out.release();
        assert.equal(await done, 0);
        assert.equal(out.bytes, block * blocks);
      });
    });
  });

  Deno.test(`C7.3 an output that fails stops the script, and runScript rejects ${tag}`, async () => {
    const failing = new WritableStream<Uint8Array>({
      write() {
        throw new Error("Log is gone");
      },
    });
    const started = Date.now();
    await assert.rejects(
      run(["echo x", "sleep 1000"], { output: failing, killGraceMs: 5_000 }),
      /Log is gone/,
    );
    assert.ok(Date.now() - started < 3_000);
  });

  Deno.test(`C7.4 abort terminates the whole process tree ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const controller = new AbortController();
      const started = Date.now();
      const done = run(
        [
          `echo $$ > "${dir}/shell"`,
          `sleep 1000 & echo $! > "${dir}/bg"`,
          `sh -c 'sleep 1000 & echo $! > "$1/gc"; echo $$ > "$1/fg"; wait' sh "${dir}"`,
        ],
        { output: new WritableStream(), signal: controller.signal, killGraceMs: 5_000 },
      );
      await settle(controller, done, async () => {
        await until(() => exists(`${dir}/fg`));
        const pids = await Promise.all(
          ["shell", "bg", "fg", "gc"].map((f) => readPid(`${dir}/${f}`)),
        );
        for (const pid of pids) await assertRunning(pid);
        controller.abort();
        assert.equal(await done, 143); // the shell died of SIGTERM
        assert.deepEqual(await Promise.all(pids.map(isGone)), [true, true, true, true]);
        assert.ok(Date.now() - started < 4_000, "SIGTERM was enough: no wait for the grace");
      });
    });
  });

  Deno.test(`C7.4 abort ends the run even when the output takes nothing more ${tag}`, async () => {
    const out = collector();
    out.hold(); // never released
    const controller = new AbortController();
    const done = run(["echo x", "sleep 1000"], {
      output: out.stream,
      signal: controller.signal,
      killGraceMs: 200,
    });
    await settle(controller, done, async () => {
      await until(() => out.writes > 0);
      const aborted = Date.now();
      controller.abort();
      assert.equal(await done, 143);
      assert.ok(Date.now() - aborted < 2_000);
    });
    out.release();
  });

  Deno.test(`C7.4 SIGTERM first, SIGKILL after the grace period ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const controller = new AbortController();
      const done = run(
        [
          `sh -c 'trap "echo got-term >> \\"$1/log\\"" TERM; echo $$ > "$1/pid"; while :; do sleep 0.02; done' sh "${dir}"`,
        ],
        { output: new WritableStream(), signal: controller.signal, killGraceMs: 400 },
      );
      await settle(controller, done, async () => {
        await until(() => exists(`${dir}/pid`));
        const pid = await readPid(`${dir}/pid`);
        await assertRunning(pid, "the TERM-trapping process");
        const aborted = Date.now();
        controller.abort();
        assert.equal(await done, 143);
        const elapsed = Date.now() - aborted;
        assert.ok(elapsed >= 390, `resolved after ${elapsed} ms, before the grace period ended`);
        assert.ok(elapsed < 3_000, `resolved after ${elapsed} ms`);
        assert.ok(await isGone(pid), "the TERM-trapping process was killed");
        assert.ok((await Deno.readTextFile(`${dir}/log`)).includes("got-term"), "TERM came first");
      });
    });
  });

  Deno.test(`C7.4 background processes left by the script are ended with it ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const started = Date.now();
      const done = run([
        `sleep 1000 & echo $! > "${dir}/bg"`,
        `while [ ! -e "${dir}/go" ]; do sleep 0.01; done`,
        "echo done",
      ], { output: new WritableStream() });
      await until(() => exists(`${dir}/bg`));
      const pid = await readPid(`${dir}/bg`);
      await assertRunning(pid, "the background process");
      await Deno.writeTextFile(`${dir}/go`, "");
      assert.equal(await done, 0);
      assert.ok(await isGone(pid));
      assert.ok(Date.now() - started < 3_000);
    });
  });

  Deno.test(`C7.4 a timeout signal ends the script; an aborted signal runs nothing ${tag}`, async () => {
    await withTempDir(async (dir) => {
      const started = Date.now();
      const code = await run(["sleep 1000"], {
        output: new WritableStream(),
        signal: AbortSignal.timeout(100),
      });
      assert.equal(code, 143);
      assert.ok(Date.now() - started < 3_000);
      const controller = new AbortController();
      controller.abort(new Error("Stopped early"));
      await assert.rejects(
        run([`touch "${dir}/ran"`], { signal: controller.signal }),
        /Stopped early/,
      );
      assert.equal(await exists(`${dir}/ran`), false);
    });
  });
}
