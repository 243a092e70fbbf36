/**
 * Extracting dependency artifacts (C10.1, issue 12): a zip with one 1 GiB entry (zeros) and a
 * zip with 40 000 small entries, each downloaded as a dependency's artifact and extracted with
 * `Artifact.extractTo` in a process of its own (`tests/_artifact_memory_child.ts`: peak RSS
 * growth over the process's RSS before, after a warm-up), and extracted with `unzip -q` in the
 * same run, alternately (which side goes first changes from round to round). Our time includes
 * the download from the in-process mock; unzip's is the whole process.
 *
 * The method keeps either side from paying for the other (file creation is kernel time, which
 * varies a lot with what the file system did just before):
 *
 * - every run extracts into a directory of its own, and the outputs are removed only after the
 *   last round of a case: on ext4 without a journal, creating a file skips every inode deleted
 *   in the last minute (`recently_deleted` in the inode allocator), so a run that followed the
 *   removal of the previous run's 40 000 files took 2 to 5 times as long, whichever side it was;
 * - `sync` before each run, so that no run pays for the writeback of the one before.
 *
 * Time figures are the best of the rounds on each side; the detail adds the medians, the median
 * of the per-round ratios (the two runs of a round are next to each other in time, so slow
 * changes in the machine's load cancel out) and the CPU time (user + system) of each side: of
 * our process over the measured span, of the `unzip` process. Other processes on the same file
 * system still disturb it (their deletions count too).
 *
 * Needs `unzip`: installed with `apt-get install -y unzip` when missing (as root), else the time
 * figures are skipped. Run: `deno run -A bench/extract.ts [--rounds=N] [--only=6a|6b]` (default
 * 3 rounds), or through `deno task bench --only=extract`.
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

/** One run: wall time and CPU time (user + system) in ms. */
interface Run {
  ms: number;
  cpuMs: number;
}

/** The CPU time (user + system) of this process's waited-for children so far, in ms. */
function childrenCpuMs(): number {
  try {
    const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(fields[13]) + Number(fields[14])) * 10; // cutime cstime, in 1/100 s
  } catch {
    return NaN;
  }
}

/** Writes back everything dirty, so that the next run does not pay for the previous one. */
async function sync(): Promise<void> {
  try {
    await new Deno.Command("sync").output();
  } catch {
    // no sync: the runs are less steady
  }
}

/** One extraction by the library in a child process: peak RSS growth (bytes), time, CPU. */
async function ours(zip: string, dir: string): Promise<Run & { growth: number }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", CHILD, "extract", zip, dir],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(new TextDecoder().decode(stderr));
  const line = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
  const run = JSON.parse(line);
  return { growth: run.growth, ms: run.ms, cpuMs: run.cpu.user + run.cpu.system };
}

/** One `unzip -q` of `zip` into `dir`: wall time and CPU time of the process, in ms. */
async function unzip(zip: string, dir: string): Promise<Run> {
  await Deno.mkdir(dir, { recursive: true });
  const cpu = childrenCpuMs();
  const start = performance.now();
  const { code } = await new Deno.Command("unzip", { args: ["-q", zip, "-d", dir] }).output();
  const ms = performance.now() - start;
  if (code !== 0) throw new Error(`unzip exited with ${code}`);
  return { ms, cpuMs: childrenCpuMs() - cpu };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function seconds(values: readonly number[]): string {
  return values.map((v) => (v / 1000).toFixed(2)).join(", ");
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
  const rounds = Number(Deno.args.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 3);
  const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
  const withUnzip = await ensureUnzip();
  if (!withUnzip) {
    console.error("unzip is missing and could not be installed: time figures skipped");
  }
  const dir = await mkdtemp(join(tmpdir(), "extract-bench-"));
  const figures: Figure[] = [];
  const data: Record<string, unknown> = {};
  try {
    for (const c of CASES.filter((c) => only === undefined || only.includes(c.id))) {
      const zip = join(dir, `${c.id}.zip`);
      const zipBytes = await c.write(zip);
      const growths: number[] = [];
      const mine: Run[] = [];
      const theirs: Run[] = [];
      // Every run extracts into a directory of its own, removed after the last round (see the
      // header: a removal just before a run slows its file creation down).
      const outputs = join(dir, `${c.id}-out`);
      for (let r = 0; r < rounds; r++) {
        const sides = withUnzip ? (r % 2 === 0 ? ["unzip", "ours"] : ["ours", "unzip"]) : ["ours"];
        for (const side of sides) {
          await sync();
          const out = join(outputs, `${side}-${r}`);
          if (side === "unzip") {
            theirs.push(await unzip(zip, out));
          } else {
            const run = await ours(zip, out);
            growths.push(run.growth);
            mine.push(run);
          }
        }
      }
      await rm(outputs, { recursive: true, force: true });
      await sync();
      data[c.id] = {
        zipBytes,
        growths,
        ours: mine.map((m) => m.ms),
        oursCpu: mine.map((m) => m.cpuMs),
        unzip: theirs.map((m) => m.ms),
        unzipCpu: theirs.map((m) => m.cpuMs),
      };
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
        const ms = mine.map((m) => m.ms);
        const unzipMs = theirs.map((m) => m.ms);
        const ratios = ms.map((m, i) => m / unzipMs[i]);
        figures.push({
          id: `${c.id}.2`,
          name: `time extracting a dependency with ${c.name}`,
          value: Math.min(...ms) / 1000,
          unit: "s",
          digits: 2,
          baseline: { label: "unzip -q, same archive", value: Math.min(...unzipMs) / 1000 },
          target: { op: "<=", factor: 1.5 },
          detail: `best of ${rounds}, alternating, fresh directories: ours ${
            seconds(ms)
          } s (download included), median ${(median(ms) / 1000).toFixed(2)} s; unzip -q ${
            seconds(unzipMs)
          } s, median ${(median(unzipMs) / 1000).toFixed(2)} s; ratio per round ${
            ratios.map((r) => r.toFixed(2)).join(", ")
          } (median ${median(ratios).toFixed(2)}); CPU ours ${
            seconds(mine.map((m) => m.cpuMs))
          } s, unzip ${seconds(theirs.map((m) => m.cpuMs))} s`,
        });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  emit({ figures, data });
}

if (import.meta.main) await driver();
