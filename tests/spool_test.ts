// The job log's spool file (src/log/_spool.ts, C10.4, C10.5) on its own: where it is, who may
// read it, positioned writes and reads, short files, removal.
import { assert } from "./_deps.ts";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultSpoolDir, Spool } from "../src/log/_spool.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function inTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "spool-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

Deno.test("C10.5 the spool's default directory is the OS temp directory", () => {
  assert.equal(defaultSpoolDir(), tmpdir());
});

Deno.test("C10.5 a spool file is new, named after the job, in the directory given, mode 0600", async () => {
  await inTempDir(async (dir) => {
    const a = await Spool.create(dir, 42);
    const b = await Spool.create(dir, 42);
    try {
      assert.notEqual(a.path, b.path);
      for (const spool of [a, b]) {
        assert.equal(join(dir, spool.path.slice(dir.length + 1)), spool.path);
        assert.match(spool.path.slice(dir.length + 1), /^gitlab-runner-job-42-[0-9a-z]{2,}\.log$/);
        const info = await stat(spool.path);
        assert.equal(info.size, 0);
        if (Deno.build.os !== "windows") assert.equal(info.mode & 0o777, 0o600);
      }
      assert.deepEqual(
        (await readdir(dir)).sort(),
        [a.path, b.path].map((p) => p.slice(dir.length + 1)).sort(),
      );
    } finally {
      await a.remove();
      await b.remove();
    }
  });
});

Deno.test("C10.4 spool writes land at their positions and read back exactly, async and sync", async () => {
  await inTempDir(async (dir) => {
    const spool = await Spool.create(dir, 1);
    try {
      await spool.write(0, enc.encode("hello "));
      await spool.write(6, enc.encode("world"));
      await spool.write(2, enc.encode("LL"));
      await spool.write(11, new Uint8Array(0));
      assert.equal((await stat(spool.path)).size, 11);
      const all = new Uint8Array(11);
      await spool.read(0, all);
      assert.equal(dec.decode(all), "heLLo world");
      const part = new Uint8Array(5);
      await spool.read(6, part);
      assert.equal(dec.decode(part), "world");
      const sync = new Uint8Array(4);
      spool.readSync(3, sync);
      assert.equal(dec.decode(sync), "Lo w");
      const none = new Uint8Array(0);
      await spool.read(11, none);
      spool.readSync(11, none);
      // A large block goes in whole.
      const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251);
      await spool.write(11, big);
      const back = new Uint8Array(big.byteLength);
      await spool.read(11, back);
      assert.deepEqual(back, big);
      const backSync = new Uint8Array(big.byteLength);
      spool.readSync(11, backSync);
      assert.deepEqual(backSync, big);
    } finally {
      await spool.remove();
    }
  });
});

Deno.test("C10.4 reading past the end of the spool is an error naming where it ended", async () => {
  await inTempDir(async (dir) => {
    const spool = await Spool.create(dir, 1);
    try {
      await spool.write(0, enc.encode("0123456789"));
      await assert.rejects(spool.read(4, new Uint8Array(10)), {
        message: "The spool file ended at 10",
      });
      await assert.rejects(spool.read(12, new Uint8Array(1)), {
        message: "The spool file ended at 12",
      });
      assert.throws(() => spool.readSync(8, new Uint8Array(4)), {
        message: "The spool file ended at 10",
      });
      assert.throws(() => spool.readSync(10, new Uint8Array(1)), {
        message: "The spool file ended at 10",
      });
    } finally {
      await spool.remove();
    }
  });
});

Deno.test("C10.5 remove() closes and deletes the file once; later calls do nothing", async () => {
  await inTempDir(async (dir) => {
    const spool = await Spool.create(dir, 7);
    await spool.write(0, enc.encode("x"));
    await spool.remove();
    assert.deepEqual(await readdir(dir), []);
    await spool.remove();
    // The handle is closed: the spool cannot be written any more.
    await assert.rejects(spool.write(0, enc.encode("y")));
    assert.deepEqual(await readdir(dir), []);
  });
});

Deno.test("C10.5 a spool in a directory that does not exist fails to be created", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(Spool.create(join(dir, "missing"), 1), { code: "ENOENT" });
  });
});

Deno.test({
  name: "C10.5 without env permission the spool's default directory is /tmp",
  permissions: { env: false, read: true, write: true },
  fn: () => {
    assert.equal(defaultSpoolDir(), "/tmp");
  },
});

Deno.test("C10.4 readSync closes the file it opened, also when the file is too short", async () => {
  await inTempDir(async (dir) => {
    const spool = await Spool.create(dir, 1);
    try {
      await spool.write(0, enc.encode("0123456789"));
      // The lowest free descriptor is handed out next: a leaked one moves it up.
      const nextFd = () => {
        const fd = openSync(spool.path, "r");
        closeSync(fd);
        return fd;
      };
      const before = nextFd();
      for (let i = 0; i < 20; i++) {
        spool.readSync(0, new Uint8Array(5));
        assert.throws(() => spool.readSync(5, new Uint8Array(10)));
      }
      assert.equal(nextFd(), before);
    } finally {
      await spool.remove();
    }
  });
});

Deno.test("C10.5 remove() of a spool file someone else deleted already does not fail", async () => {
  await inTempDir(async (dir) => {
    const spool = await Spool.create(dir, 8);
    await rm(spool.path);
    await spool.remove();
    assert.deepEqual(await readdir(dir), []);
  });
});
