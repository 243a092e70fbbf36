/**
 * Extracting dependency artifacts (C10.1, issue 12): a zip with one 1 GiB entry (zeros) and a
 * zip with 40 000 small entries, each downloaded as a dependency's artifact and extracted with
 * `Artifact.extractTo` in a process of its own (`tests/_artifact_memory_child.ts`: peak RSS
 * growth over the process's RSS before, after a warm-up), and extracted with `unzip -q` in the
 * same run, alternately. Time figures are the best of the rounds on each side (file creation is
 * kernel time, which other load on the machine varies a lot); our time includes the download
 * from the in-process mock.
 *
 * Needs `unzip`: installed with `apt-get install -y unzip` when missing (as root), else the time
 * figures are skipped. Run: `deno run -A bench/extract.ts [--rounds=N]` (default 2), or through
 * `deno task bench --only=extract`.
 *
 * @module
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emit, type Figure, MiB } from "./_lib.ts";
import { manyEntries, writeHostileZip } from "../tests/_zip.ts";

const CHILD = new URL("../tests/_artifact_memory_child.ts", import.meta.url).pathname;

async function hasUnzip(): Promise<boolean> {
  try {
    return (await new Deno.Command("unzip", { args: ["-v"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

/** `unzip`, installed if missing and possible; false when there is none. */
async function ensureUnzip(): Promise<boolean> {
  if (await hasUnzip()) return true;
  console.error("unzip not found: trying apt-get install -y unzip");
  try {
    await new Deno.Command("apt-get", { args: ["install", "-y", "unzip"], stdout: "null" })
      .output();
  } catch {
    // no apt-get
  }
  return await hasUnzip();
}

/** One extraction by the library in a child process: peak RSS growth (bytes) and time (ms). */
async function ours(zip: string, dir: string): Promise<{ growth: number; ms: number }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", CHILD, "extract", zip, dir],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(new TextDecoder().decode(stderr));
  const line = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
  return JSON.parse(line);
}

/** One `unzip -q` of `zip` into `dir`: wall time in ms. */
async function unzip(zip: string, dir: string): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  const start = performance.now();
  const { code } = await new Deno.Command("unzip", { args: ["-q", zip, "-d", dir] }).output();
  const ms = performance.now() - start;
  if (code !== 0) throw new Error(`unzip exited with ${code}`);
  return ms;
}

interface Case {
  id: string;
  name: string;
  write: (path: string) => Promise<number>;
}

const CASES: Case[] = [
  {
    id: "6a",
    name: "one 1 GiB entry",
    write: (p) => writeHostileZip(p, [{ name: "big.bin", zeros: 1024 * MiB }]),
  },
  {
    id: "6b",
    name: "40 000 small entries",
    write: (p) => writeHostileZip(p, manyEntries(40_000)),
  },
];

async function driver(): Promise<void> {
  const rounds = Number(Deno.args.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 2);
  const withUnzip = await ensureUnzip();
  if (!withUnzip) {
    console.error("unzip is missing and could not be installed: time figures skipped");
  }
  const dir = await mkdtemp(join(tmpdir(), "extract-bench-"));
  const figures: Figure[] = [];
  const data: Record<string, unknown> = {};
  try {
    for (const c of CASES) {
      const zip = join(dir, `${c.id}.zip`);
      const zipBytes = await c.write(zip);
      const growths: number[] = [];
      const mine: number[] = [];
      const theirs: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const out = join(dir, "out");
        if (withUnzip) {
          theirs.push(await unzip(zip, out));
          await rm(out, { recursive: true, force: true });
        }
        const run = await ours(zip, out);
        growths.push(run.growth);
        mine.push(run.ms);
        await rm(out, { recursive: true, force: true });
      }
      data[c.id] = { zipBytes, growths, ours: mine, unzip: theirs };
      figures.push({
        id: `${c.id}.1`,
        name: `peak RSS growth extracting a dependency with ${c.name}`,
        value: Math.max(...growths) / MiB,
        unit: "MiB",
        baseline: { label: "C10.1 bound" },
        target: { op: "<", value: 64 },
        detail: `the highest of ${rounds} runs: ${
          growths.map((g) => (g / MiB).toFixed(1)).join(", ")
        } MiB; archive ${(zipBytes / MiB).toFixed(1)} MiB`,
      });
      if (withUnzip) {
        figures.push({
          id: `${c.id}.2`,
          name: `time extracting a dependency with ${c.name}`,
          value: Math.min(...mine) / 1000,
          unit: "s",
          digits: 2,
          baseline: { label: "unzip -q, same archive", value: Math.min(...theirs) / 1000 },
          target: { op: "<=", factor: 1.5 },
          detail: `best of ${rounds}, alternating: ours ${
            mine.map((m) => (m / 1000).toFixed(2)).join(", ")
          } s (download included); unzip -q ${
            theirs.map((m) => (m / 1000).toFixed(2)).join(", ")
          } s`,
        });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  emit({ figures, data });
}

if (import.meta.main) await driver();
