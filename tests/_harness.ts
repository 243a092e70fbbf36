// A runner wired to the in-process mock on a fake clock, for the runner-core tests.
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { FakeClock } from "../src/clock.ts";
import { RunnerBuilder } from "../src/builder.ts";
import { GitLabMock, type MockOptions } from "../src/mock/mod.ts";

export interface Harness {
  clock: FakeClock;
  mock: GitLabMock;
  dir: string;
  builder: RunnerBuilder;
  /** JSON bodies of the requests the runner sent, by path. */
  sent: { method: string; path: string; body: unknown; headers: Headers }[];
  [Symbol.asyncDispose](): Promise<void>;
}

export async function harness(options: Partial<MockOptions> = {}): Promise<Harness> {
  const clock = new FakeClock();
  const mock = new GitLabMock({ clock, ...options });
  const dir = await Deno.makeTempDir({ prefix: "glr-test-" });
  const sent: Harness["sent"] = [];
  const spy: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const entry = {
      method: request.method,
      path: url.pathname,
      body: undefined as unknown,
      headers: request.headers,
    };
    sent.push(entry); // recorded at once, before any await
    if ((request.headers.get("content-type") ?? "").includes("json")) {
      entry.body = await request.clone().json();
    }
    return mock.fetch(request);
  };
  const builder = new RunnerBuilder(mock.url, mock.runnerToken, dir)
    .fetch(spy)
    .clock(clock)
    .random(() => 0.5)
    .systemId("s_0123456789ab");
  return {
    clock,
    mock,
    dir,
    builder,
    sent,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Advances fake time until `done()` or `limitMs` of fake time passed; fails on the latter. */
export async function until(clock: FakeClock, done: () => boolean, limitMs = 3600_000) {
  if (!(await clock.runUntil(done, limitMs))) throw new Error("Condition not reached in time");
}

/**
 * Waits in real time (fake time stands still) until `done()`, at most `realMs`; fails after.
 * For "at once" claims: what must happen without any fake time passing.
 */
export async function atOnce(done: () => boolean, realMs = 5000) {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > realMs) throw new Error("Condition not reached without time passing");
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Captures the library's diagnostics (LogTape category `gitlab-runner`, every level) until
 * disposed; `await using diagnostics = await captureDiagnostics()`.
 */
export async function captureDiagnostics(): Promise<{ records: LogRecord[] } & AsyncDisposable> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { capture: (record) => void records.push(record) },
    loggers: [
      { category: ["gitlab-runner"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
    reset: true,
  });
  return { records, [Symbol.asyncDispose]: () => reset() };
}
