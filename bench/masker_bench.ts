/**
 * Throughput of the job-log masker: 64 MiB of realistic log text, 50 masked values, the default
 * token prefixes and URL parameter masking, written in 64 KiB (and 4 KiB) chunks. A plain copy of
 * the same chunks is measured in the same run as the baseline. Best of 3 runs after a warm-up.
 *
 * Then the worst case of a masked value that repeats itself: `aaa…ab` (4096 bytes) in 16 MiB of
 * `a`s, 64 KiB writes (compared again at every position, this took one comparison per byte of the
 * value per byte of log: 0.15 MiB/s).
 *
 * Run: `deno run bench/masker_bench.ts` (a table), or with `--json` for the figures of
 * `deno task bench` (64 KiB chunks only).
 *
 * @module
 */
import { Masker } from "../src/log/masker.ts";
import { emit, logText, makeSecrets, MiB } from "./_lib.ts";

const TOTAL = 64 * MiB;

/** 50 masked values shaped like real ones: passwords, API keys, tokens, 8 to 64 characters. */
const secrets = makeSecrets(50);

const data = logText(TOTAL, secrets);

function chunksOf(size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += size) chunks.push(data.subarray(o, o + size));
  return chunks;
}

function measure(
  label: string,
  chunks: Uint8Array[],
  fn: (chunk: Uint8Array) => Uint8Array,
  end: (() => Uint8Array) | undefined,
  print: boolean,
): number {
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
  if (print) {
    console.log(
      `${label.padEnd(46)} ${mbps.toFixed(0).padStart(6)} MB/s  (${
        best.toFixed(0)
      } ms, ${outBytes} bytes out)`,
    );
  }
  return mbps;
}

/** MB/s masking `WORST_TOTAL` bytes of `a`s with the masked value `aaa…ab` of `length` bytes. */
function worstCase(length: number): number {
  const log = new Uint8Array(WORST_TOTAL).fill(0x61);
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < log.length; o += 64 * 1024) chunks.push(log.subarray(o, o + 64 * 1024));
  const masker = new Masker({ secrets: ["a".repeat(length - 1) + "b"] });
  let best = Infinity;
  for (let run = 0; run < 4; run++) {
    const t0 = performance.now();
    for (const chunk of chunks) masker.write(chunk);
    masker.flush();
    const ms = performance.now() - t0;
    if (run > 0) best = Math.min(best, ms); // run 0 warms the JIT up
  }
  return WORST_TOTAL / 1e6 / (best / 1000);
}

const WORST_TOTAL = 16 * MiB;
const WORST_LENGTH = 4096;

if (import.meta.main) {
  const json = Deno.args.includes("--json");
  if (!json) {
    console.log(
      `masker bench: ${
        TOTAL / MiB
      } MiB of log text, ${secrets.length} secrets, default prefixes, URL params`,
    );
  }
  for (const size of json ? [64 * 1024] : [64 * 1024, 4 * 1024]) {
    const chunks = chunksOf(size);
    const kib = `${size / 1024} KiB chunks`;
    const base = measure(
      `baseline: plain copy, ${kib}`,
      chunks,
      (c) => c.slice(),
      undefined,
      !json,
    );
    const masker = new Masker({ secrets });
    const got = measure(
      `Masker.write, 50 secrets, ${kib}`,
      chunks,
      (c) => masker.write(c),
      () => masker.flush(),
      !json,
    );
    const none = new Masker();
    const plain = measure(
      `Masker.write, no secrets, ${kib}`,
      chunks,
      (c) => none.write(c),
      () => none.flush(),
      !json,
    );
    if (json) {
      const worst = worstCase(WORST_LENGTH);
      emit({
        figures: [{
          id: "3f",
          name: "masker throughput, 50 masked values, 64 KiB writes",
          value: got,
          unit: "MB/s",
          baseline: { label: "plain copy of the chunks", value: base, unit: "MB/s" },
          target: { op: ">=", value: 200 },
          detail: `64 MiB of log text, default token prefixes and URL parameters; ${
            plain.toFixed(0)
          } MB/s with no masked values`,
        }, {
          id: "3h",
          name: `masker worst case: a ${WORST_LENGTH}-byte value aaa…ab, a log of a's`,
          value: worst,
          unit: "MB/s",
          baseline: { label: "0.16 MB/s before the failure function (25ce3af)" },
          target: { op: ">=", value: 50 },
          detail: "16 MiB in 64 KiB writes; tests/masker_test.ts bounds the comparisons per byte",
        }],
        data: { masked: got, copy: base, noSecrets: plain, worstCase: worst },
      });
    } else {
      console.log(`  masker at ${(got / base * 100).toFixed(1)}% of the plain copy`);
    }
  }
  if (!json) {
    for (const length of [64, 1024, WORST_LENGTH]) {
      const label = `worst case: aaa…ab of ${length} bytes, a's`;
      console.log(`${label.padEnd(46)} ${worstCase(length).toFixed(0).padStart(6)} MB/s`);
    }
  }
}
