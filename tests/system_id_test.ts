// C12.4: the system id kept in a state file, like the official runner's .runner_system_id.
import { assert } from "./_deps.ts";
import { RunnerBuilder } from "../mod.ts";
import { persistedSystemId } from "../src/system_id.ts";

const ID_REGEXP = /^r_[0-9a-zA-Z]{12}$/;

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "glr-sysid-" });
  try {
    await fn(dir);
  } finally {
    await Deno.chmod(dir, 0o700).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

function builder(dir: string, state: string): RunnerBuilder {
  // No machine id: without the state file every start would get a new random id.
  return new RunnerBuilder("https://gitlab.example.com", "glrt-x", `${dir}/builds`)
    .machineIdPath(`${dir}/no-machine-id`)
    .systemIdState(state);
}

Deno.test("C12.4 the generated system id is kept in the state file: a restarted runner is the same runner manager", async () => {
  await withDir(async (dir) => {
    const state = `${dir}/state/sub/.runner_system_id`;
    const first = await builder(dir, state).build();
    assert.match(first.systemId, ID_REGEXP);
    assert.equal(await Deno.readTextFile(state), first.systemId);
    assert.equal((await Deno.stat(state)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/state/sub`)).mode! & 0o777, 0o700);
    const again = await builder(dir, state).build();
    assert.equal(again.systemId, first.systemId);
    // Without the option, each start is a new runner manager.
    const plain = await new RunnerBuilder("https://gitlab.example.com", "glrt-x", dir)
      .machineIdPath(`${dir}/no-machine-id`).build();
    assert.notEqual(plain.systemId, first.systemId);
    // An explicit id wins and leaves the file alone.
    const explicit = await builder(dir, state).systemId("s_explicit0000").build();
    assert.equal(explicit.systemId, "s_explicit0000");
    assert.equal(await Deno.readTextFile(state), first.systemId);
  });
});

Deno.test("C12.4 a valid id with white space around it is read; the machine-id rule makes new ids", async () => {
  await withDir(async (dir) => {
    const state = `${dir}/.runner_system_id`;
    await Deno.writeTextFile(state, "  s_0123456789ab\n");
    assert.equal((await builder(dir, state).build()).systemId, "s_0123456789ab");
    await Deno.remove(state);
    await Deno.writeTextFile(`${dir}/machine-id`, "abc\n");
    const id = await persistedSystemId(state, async () => "s_fromMachine1");
    assert.equal(id, "s_fromMachine1");
    assert.equal(await Deno.readTextFile(state), "s_fromMachine1");
  });
});

Deno.test("C12.4 hostile: a corrupt state file is replaced by a new valid id", async () => {
  await withDir(async (dir) => {
    const state = `${dir}/.runner_system_id`;
    for (
      const junk of [
        "",
        "garbage",
        "s_short",
        "x_0123456789ab",
        "s_0123456789ab extra",
        "\0\xff".repeat(5000),
      ]
    ) {
      await Deno.writeTextFile(state, junk);
      const id = (await builder(dir, state).build()).systemId;
      assert.match(id, ID_REGEXP, JSON.stringify(junk.slice(0, 20)));
      assert.equal(await Deno.readTextFile(state), id);
    }
    // No temporary files are left behind.
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, [".runner_system_id"]);
  });
});

Deno.test("C12.4 hostile: a state path under a file is an error; one that cannot be created (a dangling link dir) a warning", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "x");
    const err = await persistedSystemId(
      `${dir}/file/sub/.runner_system_id`,
      async () => "r_0123456789ab",
    ).then((id) => id, (e) => e as Error);
    // lstat fails with ENOTDIR there: like the official runner (a stat error other than "does
    // not exist"), that is an error; one level up the directory cannot be made: a warning.
    assert.ok(err instanceof Error);
    assert.match(err.message, /Cannot read the system id state file/);
    // The state directory is a dangling link: it cannot be made, not even by root.
    await Deno.symlink(`${dir}/nowhere`, `${dir}/d`);
    const id = await persistedSystemId(`${dir}/d/.runner_system_id`, async () => "r_0123456789ab");
    assert.equal(id, "r_0123456789ab");
    await assert.rejects(Deno.lstat(`${dir}/nowhere`));
  });
});

Deno.test("C12.4 hostile: an unwritable state directory is a warning, never a failure", async () => {
  if (Deno.uid() === 0) return; // root writes everywhere
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/ro`);
    await Deno.chmod(`${dir}/ro`, 0o500);
    const state = `${dir}/ro/.runner_system_id`;
    const first = await builder(dir, state).build();
    assert.match(first.systemId, ID_REGEXP);
    await assert.rejects(Deno.stat(state));
    const names = [];
    for await (const e of Deno.readDir(`${dir}/ro`)) names.push(e.name);
    assert.deepEqual(names, []);
  });
});

Deno.test("C12.4 hostile: a state file that exists but cannot be read fails build() with the cause", async () => {
  if (Deno.uid() === 0) return; // root reads everything
  await withDir(async (dir) => {
    const state = `${dir}/.runner_system_id`;
    await Deno.writeTextFile(state, "s_0123456789ab");
    await Deno.chmod(state, 0o000);
    const err = await builder(dir, state).build().then(() => undefined, (e) => e as Error);
    assert.ok(err instanceof Error);
    assert.match(err.message, /Cannot read the system id state file/);
    assert.ok(err.cause instanceof Error);
  });
});

Deno.test("C12.4 hostile: a symbolic link is read through but never written through", async () => {
  await withDir(async (dir) => {
    const state = `${dir}/.runner_system_id`;
    // A link to a valid id: used.
    await Deno.writeTextFile(`${dir}/real`, "r_ABCDEFabcdef");
    await Deno.symlink(`${dir}/real`, state);
    assert.equal((await builder(dir, state).build()).systemId, "r_ABCDEFabcdef");
    // A link to something else: not overwritten, the link stays.
    await Deno.remove(state);
    await Deno.writeTextFile(`${dir}/precious`, "do not overwrite");
    await Deno.symlink(`${dir}/precious`, state);
    const id = (await builder(dir, state).build()).systemId;
    assert.match(id, ID_REGEXP);
    assert.equal(await Deno.readTextFile(`${dir}/precious`), "do not overwrite");
    assert.ok((await Deno.lstat(state)).isSymlink);
    // A dangling link: its target is not created.
    await Deno.remove(state);
    await Deno.symlink(`${dir}/elsewhere`, state);
    assert.match((await builder(dir, state).build()).systemId, ID_REGEXP);
    await assert.rejects(Deno.lstat(`${dir}/elsewhere`));
    // A link to a device: never read endlessly, never written.
    await Deno.remove(state);
    await Deno.symlink("/dev/zero", state);
    assert.match((await builder(dir, state).build()).systemId, ID_REGEXP);
  });
});

Deno.test("C12.4 hostile: a directory or a FIFO at the state path is left alone", async () => {
  await withDir(async (dir) => {
    const state = `${dir}/.runner_system_id`;
    await Deno.mkdir(state);
    assert.match((await builder(dir, state).build()).systemId, ID_REGEXP);
    assert.ok((await Deno.stat(state)).isDirectory);
    await Deno.remove(state);
    const mkfifo = await new Deno.Command("mkfifo", { args: [state] }).output().catch(() =>
      undefined
    );
    if (mkfifo?.success) {
      assert.match((await builder(dir, state).build()).systemId, ID_REGEXP); // does not block
      assert.ok((await Deno.lstat(state)).isFifo);
    }
  });
});

Deno.test("C12.4 systemIdState rejects an empty path", () => {
  assert.throws(
    () => new RunnerBuilder("https://gitlab.example.com", "glrt-x", "/tmp/b").systemIdState(""),
    TypeError,
  );
});
