// C13.1: the exposition text of RunnerMetrics, byte for byte. The fixture was written by
// prom-client 15.1.3 (which RunnerMetrics used until its own `_exposition.ts` replaced it, for
// memory) for the same calls: the text a scraper gets did not change with the replacement.
import { assert } from "./_deps.ts";
import type { JobOutcome } from "../src/run.ts";
import { RunnerMetrics } from "../src/metrics/registry.ts";
import { VERSION } from "../src/builder.ts";

/**
 * Drives `Metrics` through every kind of series; returns the exposition with the fields that
 * depend on the runtime and on this library's version blanked.
 */
export async function scenario(Metrics: typeof RunnerMetrics): Promise<string> {
  const texts = [];
  for (
    const options of [{}, {
      name: "fleet",
      version: "1.2.3",
      revision: 'ab\\c"d\ne',
      branch: "main",
      builtAt: "2026-01-01",
    }]
  ) {
    const m = new Metrics(options);
    texts.push(await m.metrics()); // no runner yet: only the series that always exist
    let running = 0;
    const first = m.attach({
      token: "glrt-abcdefghijklmnopqrst",
      systemId: "s_0123456789ab",
      name: 'odd "name"\\ with\na newline',
      running: () => running,
    });
    const second = m.attach({ token: "short", systemId: "r_x", running: () => 3 });
    m.setConcurrent(16);
    for (let i = 0; i < 60; i++) {
      first.jobStarted();
      running++;
      first.response("request_job", "POST", i % 7 === 0 ? 502 : 201, i * 0.037);
      first.response("patch_trace", "PATCH", 202, 0.25 + i * 0.11);
      second.response("update_job", "PUT", i % 3 ? 200 : 404, 100 + i / 3);
      second.response("verify_runner", "POST", i % 2 ? 101 : 307, 0.1);
      const outcome = {
        id: i,
        state: i % 4 ? "success" : "failed",
        failureReason: i % 8 ? "script_failure" : undefined,
        durationMs: i * 1234.5 + (i % 5) * 3_600_000,
      } as JobOutcome;
      first.jobEnded(outcome);
      if (i % 5 === 0) {
        running--;
        for (const level of ["warning", "error", "info", "fatal", "debug"]) m.sink({ level });
      }
    }
    texts.push(await m.metrics());
  }
  return texts.join("----\n").replace(
    /go_version="[^"]*",built_at="([^"]*)",os="[^"]*",architecture="[^"]*"/g,
    'go_version="RUNTIME",built_at="$1",os="OS",architecture="ARCH"',
  ).replaceAll(`version="${VERSION}"`, 'version="VERSION"');
}

const FIXTURE = new URL("./fixtures/metrics_exposition.txt", import.meta.url);

Deno.test("C13.1 RunnerMetrics writes the exposition prom-client wrote for the same calls", async () => {
  assert.equal(await scenario(RunnerMetrics), await Deno.readTextFile(FIXTURE));
});

Deno.test("C13.1 RunnerMetrics has the Prometheus text format's content type", () => {
  assert.equal(new RunnerMetrics().contentType, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("C13.1 RunnerMetrics refuses a duration that is not a number, like prom-client", () => {
  const m = new RunnerMetrics();
  const r = m.attach({ token: "glrt-abcdefghijklmnopqrst", systemId: "s_0", running: () => 0 });
  assert.throws(
    () => r.jobEnded({ id: 1, state: "success", durationMs: NaN } as JobOutcome),
    TypeError,
  );
  assert.throws(() => r.response("request_job", "POST", 201, Infinity), TypeError);
});
