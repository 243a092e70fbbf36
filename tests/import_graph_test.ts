// What an idle runner loads (bench 5a, issue #16): importing the main entry evaluates only the
// modules its static imports reach. The code only a job needs (run.ts, the job log, scripts,
// sources, artifacts, zip.js) and Node's file system, compression, process and stream layers
// must be reached only through dynamic imports (src/_lazy.ts), loaded with the first job.
import { assert } from "./_deps.ts";
import { staticImports } from "../scripts/static_imports.ts";

/** The modules `entry`'s static imports reach (type-only imports are not evaluated). */
async function staticGraph(entry: string): Promise<Set<string>> {
  const root = new URL("..", import.meta.url).href;
  const reached = await staticImports(entry, new URL("..", import.meta.url));
  return new Set(reached.map((s) => s.startsWith(root) ? s.slice(root.length) : s));
}

/** Loaded with the first job only. */
const JOB_TIME = [
  "src/run.ts",
  "src/log/job_log.ts",
  "src/log/_spool.ts",
  "src/log/crc32.ts",
  "src/script/_run.ts",
  "src/sources/_get_sources.ts",
  "src/artifacts/upload.ts",
  "src/artifacts/archive.ts",
  "src/artifacts/reader.ts",
  "src/artifacts/_byte_source.ts",
  "src/artifacts/_extract.ts",
  "src/artifacts/_gzip.ts",
  "src/artifacts/_zip.ts",
  "src/_dirs.ts",
];

/** Node's layers that cost an idle runner megabytes (they share one; bench/README.md). */
const NODE_LAYERS = [
  "node:fs",
  "node:fs/promises",
  "node:zlib",
  "node:process",
  "node:child_process",
  "node:stream",
  "node:http",
  "node:net",
];

Deno.test("importing mod.ts loads no job-time code and no node:fs, zlib, process or stream", async () => {
  const graph = await staticGraph("mod.ts");
  assert.ok(graph.has("src/runner.ts") && graph.has("src/builder.ts"), [...graph].join("\n"));
  const loaded = [...JOB_TIME, ...NODE_LAYERS].filter((m) => graph.has(m));
  assert.deepEqual(loaded, []);
  assert.ok(![...graph].some((m) => m.includes("@zip.js")), "zip.js is loaded at start");
});
