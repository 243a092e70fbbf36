// A 256 MiB artifact from a generated stream goes up whole and streamed (C6.6, C10.1). RSS is
// process-wide, so the upload runs in a process of its own (tests/_upload_memory_child.ts) that
// reports its peak RSS growth; the same run with the file held in memory is the control.
import { assert } from "./_deps.ts";

const MIB = 1024 * 1024;
const SIZE = 256 * MIB;

interface Report {
  growth: number;
  exact: boolean;
  ok: boolean;
  lines: string[];
  bytes: number;
  received: number;
  chunks: number;
  largest: number;
  tail: string;
  format: string | null;
}

async function inChild(...args: string[]): Promise<Report> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./_upload_memory_child.ts", import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "");
}

Deno.test("C6.6 C10.1 a 256 MiB raw artifact from a generated stream is uploaded whole, streamed, in bounded memory", async () => {
  const r = await inChild();
  assert.equal(r.ok, true, r.lines.join("\n"));
  assert.equal(r.format, "raw");
  assert.equal(r.bytes, SIZE);
  // The body is the file plus the multipart framing; it came in many pieces, none large.
  assert.ok(r.received > SIZE && r.received < SIZE + 1024, `${r.received} bytes received`);
  assert.ok(r.chunks > 64, `${r.chunks} chunks`);
  assert.ok(r.largest <= 4 * MIB, `a ${r.largest} byte chunk`);
  assert.match(r.tail, /--\r\n$/);
  // Measured: 33–40 MiB of growth streamed, 263 MiB with the file held (the control below).
  assert.ok(r.growth < SIZE / 2, `peak RSS grew by ${(r.growth / MIB).toFixed(1)} MiB`);
});

Deno.test("C10.1 test control: the upload's memory figure sees a file held in memory", async () => {
  const r = await inChild("--buffered");
  assert.equal(r.ok, true, r.lines.join("\n"));
  assert.equal(r.bytes, SIZE);
  if (!r.exact) return; // without VmHWM a sampled peak can miss it: nothing to prove
  assert.ok(r.growth >= SIZE * 0.9, `peak RSS grew by ${(r.growth / MIB).toFixed(1)} MiB`);
});
