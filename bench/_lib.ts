/**
 * Shared helpers of the benchmarks (`deno task bench`): memory and CPU readings, the result
 * protocol between a measurement process and `bench/run.ts`, the GitLab mock and the upload sink
 * as child processes, and generated log text.
 *
 * @module
 */
import process from "node:process";
import { mulberry32 } from "../src/mock/_util.ts";

/** 2^20 bytes. */
export const MiB = 1024 * 1024;

/** A figure a measurement reports; `bench/run.ts` prints it and judges it against its target. */
export interface Figure {
  /** Short id, e.g. `1a`, in the order of the list. */
  id: string;
  /** What is measured, e.g. `jobs/s over sockets, 16 at once`. */
  name: string;
  /** The measured value. */
  value: number;
  /** Its unit, e.g. `jobs/s`, `ms`, `MB`. */
  unit: string;
  /** Decimals to print (default: 0 for values ≥ 100, 1 for ≥ 10, 2 below). */
  digits?: number;
  /** What the value is compared against (a measured figure, or a stated reference). */
  baseline?: { label: string; value?: number; unit?: string };
  /**
   * The target: `value op target`, where the target is `value`, or `factor` × the baseline's
   * value. No target: the figure is information only.
   */
  target?: { op: "<" | "<=" | ">" | ">="; value?: number; factor?: number };
  /** More detail printed under the table. */
  detail?: string;
}

/** What a measurement process prints on its last line, after {@linkcode RESULT_PREFIX}. */
export interface BenchResult {
  /** The figures measured. */
  figures: Figure[];
  /** Extra data kept in `bench/results.json` (not printed). */
  data?: Record<string, unknown>;
}

/** Prefix of the result line a measurement process prints. */
export const RESULT_PREFIX = "BENCH_RESULT ";

/** Prints the result line `bench/run.ts` reads. */
export function emit(result: BenchResult): void {
  console.log(RESULT_PREFIX + JSON.stringify(result));
}

/**
 * Runs a measurement in a process of its own (`deno run -A <flags> bench/<script> ...args`)
 * and returns its result. Its stderr and other output lines pass through. With the environment
 * variable `BENCH_CPU_PROF=<dir>`, measuring processes (`profile: true`) write a V8 CPU profile
 * to `<dir>/<label>/`.
 */
export async function runChild(
  script: string,
  args: string[] = [],
  options: { flags?: string[]; profile?: boolean; label?: string } = {},
): Promise<BenchResult> {
  const flags = [...(options.flags ?? [])];
  const profDir = Deno.env.get("BENCH_CPU_PROF");
  if (options.profile && profDir) {
    const label = options.label ?? [script.replace(/\.ts$/, ""), ...args].join("-");
    flags.push("--cpu-prof", `--cpu-prof-dir=${profDir}/${label.replace(/[^\w.-]+/g, "_")}`);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...flags, benchFile(script), ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let result: BenchResult | undefined;
  const decoder = new TextDecoder();
  let rest = "";
  const take = (line: string) => {
    if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length));
    else if (line.trim() !== "") console.error(`  [${script} ${args.join(" ")}] ${line}`);
  };
  for await (const chunk of child.stdout) {
    rest += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      take(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  }
  take(rest);
  const status = await child.status;
  if (!status.success || result === undefined) {
    throw new Error(`bench/${script} ${args.join(" ")} failed (exit code ${status.code})`);
  }
  return result;
}

/** Whether the module is run as a group driver (no arguments) rather than as one measurement. */
export function isDriver(): boolean {
  return Deno.args.length === 0;
}

/** The resident set size of this process, in bytes. */
export function rss(): number {
  return Deno.memoryUsage().rss;
}

/** This process's resident memory by kind of mapping (`/proc/self/smaps`), bytes. */
export interface RssParts {
  /** Pages of the `deno` executable (its code and read-only data). */
  binary: number;
  /** The C heap of the main thread (`[heap]`: malloc, ArrayBuffer contents, V8 zones). */
  cHeap: number;
  /** Anonymous mappings: the V8 heap, other threads' malloc arenas and stacks. */
  anon: number;
  /** Everything else (shared libraries, Deno's code cache). */
  other: number;
  /** Threads of the process. */
  threads: number;
}

/** Splits this process's RSS by kind of mapping; undefined where `/proc` has no smaps. */
export function rssParts(): RssParts | undefined {
  let smaps: string;
  try {
    smaps = Deno.readTextFileSync("/proc/self/smaps");
  } catch {
    return undefined;
  }
  const parts: RssParts = { binary: 0, cHeap: 0, anon: 0, other: 0, threads: 0 };
  const exe = Deno.execPath();
  let kind: "binary" | "cHeap" | "anon" | "other" = "other";
  for (const line of smaps.split("\n")) {
    const head = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
    if (head) {
      const name = head[1];
      kind = name === exe ? "binary" : name === "[heap]" ? "cHeap" : name === "" ? "anon" : "other";
      continue;
    }
    const rss = line.match(/^Rss:\s+(\d+) kB/);
    if (rss) parts[kind] += Number(rss[1]) * 1024;
  }
  const threads = Deno.readTextFileSync("/proc/self/status").match(/^Threads:\s+(\d+)/m);
  parts.threads = Number(threads?.[1] ?? 0);
  return parts;
}

/** Runs the garbage collector when the process runs with `--v8-flags=--expose-gc`. */
export function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** `VmHWM` (the peak RSS the kernel saw) of a process, in bytes, or undefined. */
export function vmHwm(pid: number | "self" = "self"): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = status.match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Resets this process's `VmHWM` to its current RSS (Linux `clear_refs`), so that the next
 * reading is the peak of what follows. Returns false where that is not possible.
 */
export function resetPeak(): boolean {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

/** CPU time used by this process so far (user + system), in milliseconds. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Peak RSS of this process over a span: the kernel's high-water mark and 10 ms samples. */
export class PeakRss {
  #timer: ReturnType<typeof setInterval>;
  #sampled: number;
  #exact: boolean;
  /** RSS when the span began, in bytes. */
  readonly before: number;

  /** Starts the span (resets the kernel's high-water mark). */
  constructor() {
    gc();
    this.before = rss();
    this.#exact = resetPeak();
    this.#sampled = this.before;
    this.#timer = setInterval(() => {
      this.#sampled = Math.max(this.#sampled, rss());
    }, 10);
  }

  /** Ends the span; returns the peak RSS in bytes. */
  stop(): number {
    clearInterval(this.#timer);
    this.#sampled = Math.max(this.#sampled, rss());
    const hwm = this.#exact ? vmHwm() : undefined;
    return Math.max(this.#sampled, hwm ?? 0);
  }
}

/** Samples the `VmHWM` of another process until it exits; resolves to the largest seen. */
export function watchChildPeak(pid: number, done: Promise<unknown>): Promise<number> {
  let peak = 0;
  let finished = false;
  done.finally(() => (finished = true));
  return new Promise((resolve) => {
    const tick = () => {
      const v = vmHwm(pid);
      if (v !== undefined) peak = Math.max(peak, v);
      if (finished) resolve(peak);
      else setTimeout(tick, 5);
    };
    tick();
  });
}

/** The p-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Megabytes (10^6 bytes), for RSS figures. */
export function mb(bytes: number): number {
  return bytes / 1e6;
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A temporary directory for a runner's build directories, removed when the process exits
 * (every job's own directory is removed by the runner already).
 */
export async function tempBuildDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "bench-builds-" });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // already gone
    }
  });
  return dir;
}

/** A seeded pseudo-random generator in [0, 1): the mock's. */
export { mulberry32 };

/** The path of a file of `bench/`. */
export function benchFile(name: string): string {
  return new URL(name, import.meta.url).pathname;
}

/** A child process with line-based stdin/stdout (JSON commands in, JSON lines out). */
export class LineChild {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  #encoder = new TextEncoder();
  /** Resolves with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;

  /** Starts `deno run -A <script> ...args` (stderr goes to ours). */
  constructor(script: string, args: string[] = [], denoFlags: string[] = []) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...denoFlags, script, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.status = this.#child.status;
    this.#read();
  }

  /** The child's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of this.#child.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        this.#lines.push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
      this.#wake();
    }
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** The next line of output (rejects when the child's output ended). */
  async line(): Promise<string> {
    while (this.#lines.length === 0) {
      if (this.#closed) throw new Error("The child process ended its output");
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return this.#lines.shift()!;
  }

  /** Writes one line to the child's stdin. */
  async send(line: string): Promise<void> {
    await this.#writer.write(this.#encoder.encode(line + "\n"));
  }

  /** Closes stdin and waits for the exit. */
  async close(): Promise<Deno.CommandStatus> {
    await this.#writer.close().catch(() => {});
    return await this.status;
  }

  /** Kills the child (SIGTERM). */
  kill(): void {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
}

/** Options of the mock process (see `bench/_mock_process.ts`). */
export interface MockProcessOptions {
  /** Long-poll hold of `/jobs/request` in ms (default 0). */
  longPollMs?: number;
  /** `X-GitLab-Trace-Update-Interval` of PATCH answers in seconds (mock default 60). */
  traceUpdateInterval?: number;
}

/** Counters the mock process reports. */
export interface MockStats {
  /** Requests per route. */
  counts: Record<string, number>;
  /** Answers per `route status`, e.g. `request 204`. */
  statuses: Record<string, number>;
  /** Job states and their numbers. */
  states: Record<string, number>;
  /** Stored log bytes per job id. */
  logBytes: Record<string, number>;
  /** The mock's CPU time so far, in ms. */
  cpuMs: number;
  /** The mock process's RSS, in bytes. */
  rss: number;
  /** Errors inside the mock. */
  errors: number;
}

/** The GitLab mock served over HTTP by a process of its own, driven by JSON lines. */
export class MockProcess {
  #child: LineChild;
  #next = 0;
  #pending = new Map<number, (reply: Record<string, unknown>) => void>();
  /** The mock's base URL. */
  url = "";
  /** The runner token it accepts. */
  token = "";

  private constructor(child: LineChild) {
    this.#child = child;
  }

  /** Starts the mock process and waits until it listens. */
  static async start(options: MockProcessOptions = {}): Promise<MockProcess> {
    const mock = new MockProcess(
      // The flag only silences Deno.serve's warning about request.signal, which the mock reads
      // to see a long-polling client go away (that still aborts it).
      new LineChild(benchFile("_mock_process.ts"), [JSON.stringify(options)], [
        "--unstable-no-legacy-abort",
      ]),
    );
    const ready = JSON.parse(await mock.#child.line());
    mock.url = ready.url;
    mock.token = ready.token;
    mock.#pump();
    return mock;
  }

  /** The mock process's id. */
  get pid(): number {
    return this.#child.pid;
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        const reply = JSON.parse(await this.#child.line());
        this.#pending.get(reply.id)?.(reply);
        this.#pending.delete(reply.id);
      }
    } catch {
      // the process ended
    }
  }

  /** Sends a command; resolves with the reply. */
  call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.#next;
    const reply = new Promise<Record<string, unknown>>((resolve) => {
      this.#pending.set(id, resolve);
    });
    return this.#child.send(JSON.stringify({ id, op, ...args })).then(() => reply);
  }

  /**
   * Enqueues `count` copies of a job spec (a `MockJobSpec`). The command is written before this
   * returns its promise, so a clock read just before the call is the enqueue time (plus a pipe).
   */
  enqueue(count: number, spec: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.call("enqueue", { count, spec });
  }

  /** Resolves once a `/jobs/request` has been held by the long poll for 20 ms. */
  async held(): Promise<void> {
    await this.call("held");
  }

  /** Resolves once every job has finished. */
  async allFinished(): Promise<void> {
    await this.call("finished");
  }

  /** The mock's counters. */
  async stats(): Promise<MockStats> {
    return (await this.call("stats")) as unknown as MockStats;
  }

  /** Stops the mock process. */
  async close(): Promise<void> {
    await this.call("quit").catch(() => {});
    await this.#child.close();
  }
}

/** The upload sink (`bench/_sink_process.ts`): drains and counts request bodies. */
export class SinkProcess {
  #child: LineChild;
  /** `http://127.0.0.1:<port>`. */
  url = "";

  private constructor(child: LineChild) {
    this.#child = child;
  }

  /** Starts the sink and waits until it listens. */
  static async start(): Promise<SinkProcess> {
    const sink = new SinkProcess(new LineChild(benchFile("_sink_process.ts")));
    sink.url = JSON.parse(await sink.#child.line()).url;
    return sink;
  }

  /** Stops the sink. */
  async close(): Promise<void> {
    await this.#child.close();
  }
}

const WORDS = [
  "compiling",
  "module",
  "resolve",
  "dependency",
  "warning",
  "deprecated",
  "package",
  "install",
  "fetch",
  "build",
  "target",
  "release",
  "linking",
  "object",
  "cache",
  "hit",
  "miss",
  "layer",
  "pull",
  "complete",
];
const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Values shaped like masked variables: passwords, API keys, tokens of 8 to 64 characters. */
export function makeSecrets(count: number, seed = 7): string[] {
  const rnd = mulberry32(seed);
  return Array.from(
    { length: count },
    () =>
      Array.from({ length: 8 + Math.floor(rnd() * 57) }, () => ALNUM[Math.floor(rnd() * 64)])
        .join(""),
  );
}

/**
 * `size` bytes of realistic CI log text (compiler warnings, npm and docker output, progress
 * bars, timestamps), with a masked value about every 2000 lines and a `glpat-` token or a
 * `private_token` URL parameter now and then.
 */
export function logText(size: number, secrets: readonly string[], seed = 42): Uint8Array {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const token = (n: number) => Array.from({ length: n }, () => ALNUM[int(ALNUM.length)]).join("");
  const line = (n: number): string => {
    switch (int(12)) {
      case 0:
        return `\x1b[0K\x1b[36;1m$ npm ci --prefer-offline --no-audit\x1b[0;m`;
      case 1:
        return `added ${int(2000)} packages, and audited ${int(2000)} packages in ${int(60)}s`;
      case 2:
        return `src/${pick(WORDS)}/${pick(WORDS)}_${int(99)}.ts:${int(900)}:${
          int(80)
        } - warning TS6133: '${pick(WORDS)}' is declared but its value is never read.`;
      case 3:
        return `Downloading https://registry.npmjs.org/${pick(WORDS)}/-/${pick(WORDS)}-${int(9)}.${
          int(20)
        }.${int(9)}.tgz?cache=${int(9)}&sig=${token(12)} (${int(900)} kB)`;
      case 4:
        return `ok ${n} - ${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} (${int(300)}ms)`;
      case 5:
        return `2024-06-01T12:${int(60)}:${int(60)}.${int(999)}Z INFO  [worker-${
          int(8)
        }] processed ${int(500)} items in 0.${int(999)}s`;
      case 6:
        return `   Compiling ${pick(WORDS)}-${pick(WORDS)} v0.${int(30)}.${
          int(9)
        } (/builds/group/project/crates/${pick(WORDS)})`;
      case 7:
        return `Step ${int(20)}/20 : RUN apt-get update && apt-get install -y ${pick(WORDS)} ${
          pick(WORDS)
        }`;
      case 8:
        return ` ---> Using cache\n ---> ${token(12).toLowerCase()}`;
      case 9:
        return `${int(100)}% [${"=".repeat(int(40))}>${" ".repeat(int(10))}] ${int(999)} MB/s eta ${
          int(60)
        }s`;
      case 10:
        return `Digest: sha256:${token(64).toLowerCase()}`;
      default:
        return `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)}: ${pick(WORDS)} ${int(100000)} ${
          pick(WORDS)
        } ${pick(WORDS)} ${pick(WORDS)}`;
    }
  };
  const encoder = new TextEncoder();
  const out = new Uint8Array(size);
  let o = 0;
  for (let n = 0; o < size;) {
    const lines: string[] = [];
    for (let i = 0; i < 4096; i++, n++) {
      let text = line(n);
      const r = rnd();
      if (r < 0.0005 && secrets.length > 0) text += ` password=${pick(secrets)}`;
      else if (r < 0.0007) text += ` token glpat-${token(20)}`;
      else if (r < 0.0008) text += ` GET /api/v4/projects?private_token=${token(20)}&page=2`;
      lines.push(text);
    }
    const bytes = encoder.encode(lines.join("\n") + "\n");
    const n2 = Math.min(bytes.length, size - o);
    out.set(bytes.subarray(0, n2), o);
    o += n2;
  }
  return out;
}
