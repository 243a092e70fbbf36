import { assert } from "./_deps.ts";
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeDir, removeDir } from "../src/_dirs.ts";
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
