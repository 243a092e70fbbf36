/**
 * The GitLab mock in a process of its own for the benchmarks, so that the runner's CPU and
 * memory are measured apart from the mock's. Started by `MockProcess.start()` (`_lib.ts`):
 * `deno run -A bench/_mock_process.ts '{"longPollMs":50000,"traceUpdateInterval":1}'`.
 *
 * Prints `{"url","token"}` once it listens, then answers JSON commands read from stdin, one per
 * line, each with an `id` that its reply carries:
 * - `enqueue {count, spec}`: adds `count` jobs made from a `MockJobSpec`;
 * - `held`: replies once a `/jobs/request` has been held by the long poll for 20 ms;
 * - `finished`: replies once every job is finished;
 * - `stats`: request counts per route and status, job states, log sizes, CPU time, RSS;
 * - `quit`: closes the listener and exits.
 *
 * @module
 */
import process from "node:process";
import { GitLabMock, type MockJobSpec, type MockOptions } from "../src/mock/mod.ts";
import { cpuMs, rss, sleep } from "./_lib.ts";

const options = JSON.parse(Deno.args[0] ?? "{}") as MockOptions;
const mock = new GitLabMock({ ...options, recordRequests: false });
const statuses = new Map<string, number>();
let requestsDone = 0;
mock.onRequest((r) => {
  const key = `${r.route} ${r.status}`;
  statuses.set(key, (statuses.get(key) ?? 0) + 1);
  if (r.route === "request") requestsDone++;
});
const server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
const encoder = new TextEncoder();
const out = (value: unknown) => Deno.stdout.writeSync(encoder.encode(JSON.stringify(value) + "\n"));
out({ url: server.url, token: mock.runnerToken });

const finished = () =>
  mock.jobs.every((j) => j.state === "success" || j.state === "failed" || j.state === "canceled");

async function held(): Promise<void> {
  while (true) {
    await mock.waitFor(() => mock.requestCount("request") - requestsDone === 1, {
      timeoutMs: Infinity,
    });
    const started = mock.requestCount("request");
    await sleep(20);
    if (mock.requestCount("request") === started && started - requestsDone === 1) return;
  }
}

async function handle(command: { id: number; op: string } & Record<string, unknown>) {
  switch (command.op) {
    case "enqueue": {
      const ids: number[] = [];
      for (let i = 0; i < (command.count as number); i++) {
        ids.push(mock.addJob(command.spec as MockJobSpec).id);
      }
      return { ids };
    }
    case "held":
      await held();
      return {};
    case "finished":
      await mock.waitFor(finished, { timeoutMs: Infinity });
      return {};
    case "stats": {
      const states: Record<string, number> = {};
      const logBytes: Record<string, number> = {};
      for (const j of mock.jobs) {
        states[j.state] = (states[j.state] ?? 0) + 1;
        logBytes[j.id] = j.logSize;
      }
      const counts: Record<string, number> = {};
      for (
        const route of ["request", "update", "trace", "upload", "download", "verify", "unknown"]
      ) {
        const n = mock.requestCount(route as Parameters<typeof mock.requestCount>[0]);
        if (n > 0) counts[route] = n;
      }
      return {
        counts,
        statuses: Object.fromEntries(statuses),
        states,
        logBytes,
        cpuMs: cpuMs(),
        rss: rss(),
        errors: mock.errors.length,
      };
    }
    case "quit":
      await server.close();
      out({ id: command.id });
      process.exit(0);
      break;
    default:
      throw new Error(`Unknown command ${command.op}`);
  }
}

const decoder = new TextDecoder();
let rest = "";
for await (const chunk of Deno.stdin.readable) {
  rest += decoder.decode(chunk, { stream: true });
  let nl;
  while ((nl = rest.indexOf("\n")) >= 0) {
    const command = JSON.parse(rest.slice(0, nl));
    rest = rest.slice(nl + 1);
    handle(command).then(
      (reply) => out({ id: command.id, ...reply }),
      (error) => out({ id: command.id, error: String(error) }),
    );
  }
}
await server.close();
