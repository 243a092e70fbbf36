/**
 * Throughput of the job-log masker: 64 MiB of realistic log text, 50 masked values, the default
 * token prefixes and URL parameter masking, written in 64 KiB (and 4 KiB) chunks. A plain copy of
 * the same chunks is measured in the same run as the baseline.
 *
 * Run: `deno run bench/masker_bench.ts`
 *
 * @module
 */
import { Masker } from "../src/log/masker.ts";

const TOTAL = 64 * 1024 * 1024;
const encoder = new TextEncoder();

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rnd = mulberry32(42);
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)];
const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const token = (n: number) => Array.from({ length: n }, () => ALNUM[int(ALNUM.length)]).join("");

/** 50 masked values shaped like real ones: passwords, API keys, tokens, 8 to 64 characters. */
const secrets = Array.from({ length: 50 }, () => token(8 + int(57)));

const words = [
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

function line(n: number): string {
  switch (int(12)) {
    case 0:
      return `\x1b[0K\x1b[36;1m$ npm ci --prefer-offline --no-audit\x1b[0;m`;
    case 1:
      return `added ${int(2000)} packages, and audited ${int(2000)} packages in ${int(60)}s`;
    case 2:
      return `src/${pick(words)}/${pick(words)}_${int(99)}.ts:${int(900)}:${
        int(80)
      } - warning TS6133: '${pick(words)}' is declared but its value is never read.`;
    case 3:
      return `Downloading https://registry.npmjs.org/${pick(words)}/-/${pick(words)}-${int(9)}.${
        int(20)
      }.${int(9)}.tgz?cache=${int(9)}&sig=${token(12)} (${int(900)} kB)`;
    case 4:
      return `ok ${n} - ${pick(words)} ${pick(words)} ${pick(words)} (${int(300)}ms)`;
    case 5:
      return `2024-06-01T12:${int(60)}:${int(60)}.${int(999)}Z INFO  [worker-${int(8)}] processed ${
        int(500)
      } items in 0.${int(999)}s`;
    case 6:
      return `   Compiling ${pick(words)}-${pick(words)} v0.${int(30)}.${
        int(9)
      } (/builds/group/project/crates/${pick(words)})`;
    case 7:
      return `Step ${int(20)}/${20} : RUN apt-get update && apt-get install -y ${pick(words)} ${
        pick(words)
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
      return `${pick(words)} ${pick(words)} ${pick(words)}: ${pick(words)} ${int(100000)} ${
        pick(words)
      } ${pick(words)} ${pick(words)}`;
  }
}

/** 4 MiB of log, with a masked value every ~2000 lines and a token or private_token now and then. */
function block(): string {
  const lines: string[] = [];
  let size = 0;
  for (let n = 0; size < 4 * 1024 * 1024; n++) {
    let text = line(n);
    const r = rnd();
    if (r < 0.0005) text += ` password=${pick(secrets)}`;
    else if (r < 0.0007) text += ` token glpat-${token(20)}`;
    else if (r < 0.0008) text += ` GET /api/v4/projects?private_token=${token(20)}&page=2`;
    lines.push(text);
    size += text.length + 1;
  }
  return lines.join("\n") + "\n";
}

const data = new Uint8Array(TOTAL);
for (let o = 0; o < TOTAL;) {
  const bytes = encoder.encode(block());
  const n = Math.min(bytes.length, TOTAL - o);
  data.set(bytes.subarray(0, n), o);
  o += n;
}

function chunksOf(size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += size) chunks.push(data.subarray(o, o + size));
  return chunks;
}

function measure(
  label: string,
  chunks: Uint8Array[],
  fn: (chunk: Uint8Array) => Uint8Array,
  end?: () => Uint8Array,
) {
  let best = Infinity;
  let outBytes = 0;
  for (let run = 0; run < 4; run++) {
    const t0 = performance.now();
    let n = 0;
    for (const chunk of chunks) n += fn(chunk).length;
    if (end) n += end().length;
    const ms = performance.now() - t0;
    if (run > 0) best = Math.min(best, ms); // run 0 warms the JIT up
    outBytes = n;
  }
  const mbps = TOTAL / 1e6 / (best / 1000);
  console.log(
    `${label.padEnd(46)} ${mbps.toFixed(0).padStart(6)} MB/s  (${
      best.toFixed(0)
    } ms, ${outBytes} bytes out)`,
  );
  return mbps;
}

console.log(
  `masker bench: ${
    TOTAL / 1024 / 1024
  } MiB of log text, ${secrets.length} secrets, default prefixes, URL params`,
);
for (const size of [64 * 1024, 4 * 1024]) {
  const chunks = chunksOf(size);
  const kib = `${size / 1024} KiB chunks`;
  const base = measure(`baseline: plain copy, ${kib}`, chunks, (c) => c.slice());
  const masker = new Masker({ secrets });
  const got = measure(
    `Masker.write, 50 secrets, ${kib}`,
    chunks,
    (c) => masker.write(c),
    () => masker.flush(),
  );
  const none = new Masker();
  measure(`Masker.write, no secrets, ${kib}`, chunks, (c) => none.write(c), () => none.flush());
  console.log(`  masker at ${(got / base * 100).toFixed(1)}% of the plain copy`);
}
