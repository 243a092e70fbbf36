/**
 * The minimal runner from the README: echoes each job's script into its log.
 *
 * ```sh
 * GITLAB_URL=https://gitlab.example.com RUNNER_TOKEN=glrt-… deno run -A examples/minimal_runner.ts
 * ```
 *
 * Stops gracefully on SIGINT or SIGTERM (running jobs finish first).
 *
 * @module
 */
// README snippet start
import { type JobHandler, outputln, type Phase, RunnerBuilder } from "@x/gitlab-runner";

class Run implements JobHandler {
  async step(script: readonly string[], phase: Phase, signal: AbortSignal): Promise<void> {
    outputln(`Running script for phase ${phase}`);
    for (const line of script) {
      signal.throwIfAborted();
      outputln(`Step: ${line}`);
    }
  }
}

const url = Deno.env.get("GITLAB_URL") ?? "https://gitlab.example.com";
const token = Deno.env.get("RUNNER_TOKEN") ?? "glrt-your-runner-token";
const runner = await new RunnerBuilder(url, token, await Deno.makeTempDir()).build();
const stop = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => stop.abort());
}
await runner.run(() => new Run(), 16, { signal: stop.signal }); // resolves after stop + drain
// README snippet end
