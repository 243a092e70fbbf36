/**
 * The mock as a command: `deno run -A src/mock/mod.ts --jobs jobs.json --port 0`.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import { GitLabMock } from "./mock.ts";
import type { CancelResponse, MockJobSpec } from "./types.ts";

const USAGE = `Usage: deno run -A src/mock/mod.ts [options]

A fake GitLab for runners written in any language: serves the runner API
(/api/v4/jobs/request, PUT/PATCH /jobs/:id, artifacts) with the jobs of a JSON
file, prints its URL and runner token, and runs until SIGINT/SIGTERM.

Options:
  -j, --jobs FILE              JSON array of job specs (MockJobSpec) to enqueue
  -p, --port N                 port to listen on (default 0: any free port)
      --hostname H             interface to listen on (default 127.0.0.1)
      --runner-token T         runner token to accept (default glrt-mock-runner-token)
      --long-poll-ms N         hold /jobs/request this long when nothing changed (default 0)
      --cancel-response R      bare-forbidden | forbidden | job-status (default bare-forbidden)
      --final-update-accepts N 202s before a final update with checksum is accepted (default 0)
      --download-redirect      answer direct_download=true with a 302 to a second origin
      --exit-when-done         exit once every job is finished (exit code 1 if one did not succeed)
  -v, --verbose                log every request to stderr
  -h, --help                   show this help

Output (stdout): GITLAB_URL=<url> and RUNNER_TOKEN=<token>, then, on exit, one JSON line
{"jobs":[{"id","name","state","failureReason","exitCode","logBytes","artifacts"}]}.`;

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new TypeError(`--${name} must be a non-negative integer`);
  }
  return n;
}

/** Runs the command with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        jobs: { type: "string", short: "j" },
        port: { type: "string", short: "p" },
        hostname: { type: "string" },
        "runner-token": { type: "string" },
        "long-poll-ms": { type: "string" },
        "cancel-response": { type: "string" },
        "final-update-accepts": { type: "string" },
        "download-redirect": { type: "boolean" },
        "exit-when-done": { type: "boolean" },
        verbose: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let mock: GitLabMock;
  let specs: MockJobSpec[] = [];
  let port: number;
  try {
    const cancelResponse = values["cancel-response"];
    if (
      cancelResponse !== undefined &&
      !["bare-forbidden", "forbidden", "job-status"].includes(cancelResponse)
    ) {
      throw new TypeError("--cancel-response must be bare-forbidden, forbidden or job-status");
    }
    port = integer("port", values.port) ?? 0;
    mock = new GitLabMock({
      runnerToken: values["runner-token"],
      longPollMs: integer("long-poll-ms", values["long-poll-ms"]),
      cancelResponse: cancelResponse as CancelResponse | undefined,
      finalUpdateAccepts: integer("final-update-accepts", values["final-update-accepts"]),
      downloadRedirect: values["download-redirect"],
    });
    if (values.jobs !== undefined) {
      const parsed: unknown = JSON.parse(await readFile(values.jobs, "utf8"));
      if (!Array.isArray(parsed)) {
        throw new TypeError(`${values.jobs} must hold a JSON array of jobs`);
      }
      specs = parsed as MockJobSpec[];
      for (const spec of specs) mock.addJob(spec);
    }
  } catch (error) {
    console.error(`gitlab-mock: ${(error as Error).message}`);
    return 2;
  }
  if (values.verbose) {
    mock.onRequest((r) => console.error(`${r.method} ${r.path} -> ${r.status || "dropped"}`));
  }
  const server = await mock.listen({ port, hostname: values.hostname ?? "127.0.0.1" });
  console.log(`GITLAB_URL=${server.url}`);
  console.log(`RUNNER_TOKEN=${mock.runnerToken}`);

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let allDone = false;
  try {
    if (values["exit-when-done"]) {
      await mock.waitFor(
        (m) => m.jobs.every((j) => ["success", "failed", "canceled"].includes(j.state)),
        { timeoutMs: Infinity, signal: stop.signal },
      ).then(() => (allDone = true), () => {});
    } else {
      await new Promise<void>((resolve) => stop.signal.addEventListener("abort", () => resolve()));
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await server.close();
  }
  const summary = mock.jobs.map((j) => ({
    id: j.id,
    name: j.name,
    state: j.state,
    failureReason: j.failureReason ?? null,
    exitCode: j.exitCode ?? null,
    logBytes: j.logSize,
    artifacts: j.artifacts.map((a) => ({ type: a.type, format: a.format, bytes: a.data.length })),
  }));
  console.log(JSON.stringify({ jobs: summary }));
  if (allDone) return mock.jobs.every((j) => j.state === "success") ? 0 : 1;
  return 0;
}
