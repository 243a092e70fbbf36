import { assert } from "./_deps.ts";
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dirCalls, makeDir, removeDir } from "../src/_dirs.ts";
import { REMOVE_DEADLINE_MS } from "../src/run.ts";
import { harness, until } from "./_harness.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "dirs-test-" });
}

Deno.test("C3.1 makeDir makes a job directory, its missing parents, and accepts an existing one", async () => {
  const root = await tempDir();
  try {
    await makeDir(join(root, "7"));
    assert.ok(Deno.statSync(join(root, "7")).isDirectory);
    await makeDir(join(root, "a", "b", "8"));
    assert.ok(Deno.statSync(join(root, "a", "b", "8")).isDirectory);
    await makeDir(join(root, "7")); // exists already: no error
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("C3.1 makeDir still fails where a file stands in the way", async () => {
  const root = await tempDir();
  try {
    writeFileSync(join(root, "file"), "x");
    await assert.rejects(makeDir(join(root, "file")));
    await assert.rejects(makeDir(join(root, "file", "9")));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("C3.1 removeDir removes an empty directory, a whole tree, a file and a dangling link", async () => {
  const root = await tempDir();
  try {
    mkdirSync(join(root, "empty"));
    await removeDir(join(root, "empty"));
    mkdirSync(join(root, "tree", "a", "b"), { recursive: true });
    writeFileSync(join(root, "tree", "a", "b", "f.txt"), "data");
    writeFileSync(join(root, "tree", "g.txt"), "data");
    await removeDir(join(root, "tree"));
    writeFileSync(join(root, "file"), "x");
    await removeDir(join(root, "file"));
    symlinkSync(join(root, "nowhere"), join(root, "link"));
    await removeDir(join(root, "link"));
    assert.deepEqual(readdirSync(root), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("C3.1 removeDir of a path that is not there, or whose parent is not, is no error", async () => {
  const root = await tempDir();
  try {
    await removeDir(join(root, "missing"));
    await removeDir(join(root, "missing", "deeper"));
    assert.ok(existsSync(root));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("C10.5 the <build dir>.tmp a handler made is removed when the job ends, a dangling link too", async () => {
  await using h = await harness();
  const a = h.mock.job().script(["a"]).enqueue();
  const b = h.mock.job().script(["b"]).enqueue();
  const runner = await h.builder.build();
  const stop = new AbortController();
  const done = runner.run(
    (job) => {
      if (job.id === a.id) {
        mkdirSync(`${job.buildDir}.tmp/vars`, { recursive: true });
        writeFileSync(`${job.buildDir}.tmp/vars/FILE_VAR`, "x");
      } else symlinkSync(join(h.dir, "nowhere"), `${job.buildDir}.tmp`);
      return { step: async () => {} };
    },
    1,
    { signal: stop.signal },
  );
  await until(
    h.clock,
    () => h.mock.jobs.every((j) => j.state === "success") && runner.running === 0,
  );
  stop.abort();
  await done;
  assert.equal(a.state, "success");
  assert.equal(b.state, "success");
  assert.deepEqual(readdirSync(h.dir), []);
});

/** Runs `fn` with the directory calls replaced, then puts them back. */
async function withDirCalls(calls: Partial<typeof dirCalls>, fn: () => Promise<void>) {
  const saved = { ...dirCalls };
  Object.assign(dirCalls, calls);
  try {
    await fn();
  } finally {
    Object.assign(dirCalls, saved);
  }
}

Deno.test("C8.3 a build directory mkdir that hangs does not hold the job: it times out and its final state is delivered", async () => {
  await using h = await harness();
  const mj = h.mock.job().script(["a"]).timeout(60).enqueue();
  let factoryRan = false;
  await withDirCalls({ make: () => new Promise<void>(() => {}) }, async () => {
    const runner = await h.builder.abortGrace(1000).build();
    await runner.requestJob(() => {
      factoryRan = true;
      return { step: async () => {} };
    });
    // The job timeout (60 s), then the abort grace (1 s): the job ends though mkdir never does.
    await until(h.clock, () => mj.state !== "running" && runner.running === 0);
    assert.equal(mj.state, "failed");
    assert.equal(mj.failureReason, "job_execution_timeout");
    assert.equal(factoryRan, false);
    assert.match(mj.logText, /execution took longer than 60 seconds/);
  });
});

Deno.test("C8.3 a build directory removal that hangs does not hold the job: its final state goes after the removal deadline", async () => {
  await using h = await harness();
  const mj = h.mock.job().script(["a"]).enqueue();
  const removals: string[] = [];
  await withDirCalls({
    remove: (path) => {
      removals.push(path);
      return new Promise<void>(() => {});
    },
  }, async () => {
    const runner = await h.builder.build();
    const started = h.clock.now();
    await runner.requestJob(() => ({ step: async () => {} }));
    await until(h.clock, () => mj.state === "success" && runner.running === 0);
    assert.ok(h.clock.now() - started >= REMOVE_DEADLINE_MS, `${h.clock.now() - started} ms`);
    assert.ok(
      h.clock.now() - started < REMOVE_DEADLINE_MS + 60_000,
      `${h.clock.now() - started} ms`,
    );
    assert.deepEqual(removals, [`${h.dir}/${mj.id}`]);
  });
  // The real directory is still there (the hung call never removed it): tidy up.
  await Deno.remove(`${h.dir}/${mj.id}`, { recursive: true }).catch(() => {});
});
