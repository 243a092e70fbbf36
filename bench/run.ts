/**
 * `deno task bench`: the benchmarks of what runner users feel, each figure against its baseline
 * and its target. Performance claims about this library come only from here.
 *
 * 1. throughput (`throughput.ts`): 1000 trivial jobs at 16 at once, over sockets and in-process;
 * 2. pick-up latency (`pickup_latency.ts`): long polling against plain polling;
 * 3. log pipeline (`log_pipeline.ts`, `masker_bench.ts`): a job writing 256 MiB of output;
 * 4. artifacts (`artifacts.ts`): a 512 MiB artifact zipped and uploaded;
 * 5. idle footprint (`idle.ts`): a polling runner, and 16 quiet jobs;
 * 6. extraction (`extract.ts`): dependencies with one 1 GiB entry and with 40 000 entries;
 * 7. side by side with the Rust crate (`peer.ts`): its runner and ours, on its mock and on ours
 *    (skipped where the crate's binaries are missing).
 *
 * Every measurement runs in a process of its own (RSS figures are not polluted by the others);
 * the GitLab mock and the upload sink run in processes of their own too. Prints a table and
 * writes `bench/results.json`.
 *
 * Options: `--only=1,3` (or `--only=throughput,log`) runs some groups; `--cpu-prof` writes a V8
 * CPU profile of every measuring process to `bench/profiles/` and prints where the time went.
 *
 * @module
 */
import { join } from "node:path";
import { benchFile, type BenchResult, type Figure, runChild } from "./_lib.ts";
import { summariseCpuProfile } from "./_profile.ts";

const GROUPS = [
  { n: 1, name: "throughput", script: "throughput.ts" },
  { n: 2, name: "latency", script: "pickup_latency.ts" },
  { n: 3, name: "log", script: "log_pipeline.ts" },
  { n: 4, name: "artifacts", script: "artifacts.ts" },
  { n: 5, name: "idle", script: "idle.ts" },
  // Extraction runs last: it creates and deletes 120 000 files, and on ext4 creating files
  // (each job's build directory) is slower for about a minute after a mass deletion, which
  // cut group 7's jobs/s by almost half when it ran right after.
  { n: 7, name: "peer", script: "peer.ts" },
  { n: 6, name: "extract", script: "extract.ts" },
];

const OPS = { "<": "<", "<=": "≤", ">": ">", ">=": "≥" } as const;

function format(value: number, digits?: number): string {
  const d = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
  return value.toFixed(d);
}

function targetValue(f: Figure): number | undefined {
  if (!f.target) return undefined;
  if (f.target.value !== undefined) return f.target.value;
  if (f.target.factor !== undefined && f.baseline?.value !== undefined) {
    return f.target.factor * f.baseline.value;
  }
  return undefined;
}

function holds(f: Figure): boolean | undefined {
  const t = targetValue(f);
  if (t === undefined || !f.target) return undefined;
  switch (f.target.op) {
    case "<":
      return f.value < t;
    case "<=":
      return f.value <= t;
    case ">":
      return f.value > t;
    case ">=":
      return f.value >= t;
  }
}

function targetText(f: Figure): string {
  if (!f.target) return "—";
  const op = OPS[f.target.op];
  if (f.target.value !== undefined) return `${op} ${format(f.target.value, f.digits)} ${f.unit}`;
  const t = targetValue(f);
  return `${op} ${f.target.factor}× baseline${
    t === undefined ? "" : ` (${format(t, f.digits)} ${f.unit})`
  }`;
}

function baselineText(f: Figure): string {
  if (!f.baseline) return "—";
  const b = f.baseline;
  return b.value === undefined ? b.label : `${format(b.value)} ${b.unit ?? f.unit} (${b.label})`;
}

async function command(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" })
      .output();
    return new TextDecoder().decode(stdout).trim();
  } catch {
    return "";
  }
}

async function machine(): Promise<Record<string, unknown>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  return {
    nproc: Number(await command("nproc", [])) || navigator.hardwareConcurrency,
    cpu: cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown",
    memoryGiB: Number(((Number(meminfo.match(/^MemTotal:\s+(\d+)/m)?.[1] ?? 0)) / 1024 / 1024)
      .toFixed(1)),
    os: `${Deno.build.os} ${Deno.build.arch} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    commit: await command("git", ["-C", benchFile("."), "rev-parse", "--short", "HEAD"]),
  };
}

/** Busy jiffies of the whole machine, and CPU jiffies of this process and its waited-for children. */
function cpuTicks(): { busy: number; ours: number } {
  try {
    const all = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    const busy = all.reduce((a, b) => a + b, 0) - all[3] - (all[4] ?? 0); // less idle, iowait
    const stat = Deno.readTextFileSync("/proc/self/stat");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    return { busy, ours: f[11] + f[12] + f[13] + f[14] }; // utime stime cutime cstime
  } catch {
    return { busy: NaN, ours: NaN };
  }
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r, i) => {
    const line = r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd();
    return i === 0 ? `${line}\n${widths.map((w) => "-".repeat(w)).join("  ")}` : line;
  }).join("\n");
}

async function printProfiles(dir: string): Promise<void> {
  const files: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(join(d, e.name));
      else if (e.name.endsWith(".cpuprofile")) files.push(join(d, e.name));
    }
  };
  await walk(dir).catch(() => {});
  for (const file of files.sort()) {
    console.log(`\n== CPU profile ${file}`);
    console.log(summariseCpuProfile(await Deno.readTextFile(file), 12).join("\n"));
  }
}

if (import.meta.main) {
  const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
  const profile = Deno.args.includes("--cpu-prof");
  const groups = GROUPS.filter((g) => !only || only.includes(String(g.n)) || only.includes(g.name));
  const profDir = benchFile("profiles");
  if (profile) {
    await Deno.remove(profDir, { recursive: true }).catch(() => {});
    Deno.env.set("BENCH_CPU_PROF", profDir);
  }
  const info = await machine();
  console.log(
    `@x/gitlab-runner benchmarks: ${info.nproc} cores (${info.cpu}), ${info.memoryGiB} GiB, ${info.os}, Deno ${info.deno}, commit ${info.commit}`,
  );
  const started = performance.now();
  const ticks0 = cpuTicks();
  const results: Record<string, BenchResult & { seconds: number }> = {};
  const figures: Figure[] = [];
  for (const g of groups) {
    const t0 = performance.now();
    console.log(`running ${g.n}. ${g.name} (bench/${g.script}) ...`);
    const result = await runChild(g.script);
    const seconds = (performance.now() - t0) / 1000;
    results[g.name] = { ...result, seconds };
    figures.push(...result.figures);
    if (typeof result.data?.skipped === "string") console.log(`  ${result.data.skipped}`);
    console.log(`  done in ${seconds.toFixed(0)} s`);
  }
  const rows = [["#", "figure", "result", "baseline", "target", "holds"]];
  for (const f of figures) {
    const h = holds(f);
    rows.push([
      f.id,
      f.name,
      `${format(f.value, f.digits)} ${f.unit}`,
      baselineText(f),
      targetText(f),
      h === undefined ? "info" : h ? "yes" : "NO",
    ]);
  }
  console.log(`\n${table(rows)}\n`);
  for (const f of figures) if (f.detail) console.log(`${f.id}: ${f.detail}`);
  const judged = figures.filter((f) => holds(f) !== undefined);
  const held = judged.filter((f) => holds(f));
  const missed = judged.filter((f) => !holds(f)).map((f) => f.id);
  const totalSeconds = (performance.now() - started) / 1000;
  const ticks1 = cpuTicks();
  // Jiffies are 1/100 s (USER_HZ): the CPU other processes used meanwhile, in cores.
  const foreign = (ticks1.busy - ticks0.busy - (ticks1.ours - ticks0.ours)) / 100 / totalSeconds;
  if (foreign > 0.1) {
    console.log(
      `\nWARNING: other processes used ${
        foreign.toFixed(2)
      } cores on average during the run: the figures are disturbed; run again on a quiet machine.`,
    );
  }
  console.log(
    `\n${held.length} of ${judged.length} targets hold${
      missed.length ? ` (missed: ${missed.join(", ")}; see bench/README.md)` : ""
    }; ${totalSeconds.toFixed(0)} s in all.`,
  );
  const out = {
    date: new Date().toISOString(),
    machine: info,
    seconds: totalSeconds,
    otherLoadCores: Number(foreign.toFixed(3)),
    figures: figures.map((f) => ({
      ...f,
      targetText: targetText(f),
      holds: holds(f) ?? null,
    })),
    groups: results,
  };
  const path = benchFile("results.json");
  await Deno.writeTextFile(path, JSON.stringify(out, null, 2) + "\n");
  console.log(`Wrote ${path}`);
  if (profile) await printProfiles(profDir);
}
