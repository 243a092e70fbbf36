/**
 * A fake GitLab for testing runners: `@x/gitlab-runner/mock`.
 *
 * {@linkcode GitLabMock} behaves like real GitLab's runner API (`/api/v4`), not like a
 * convenient stub: tokens are checked everywhere (403, never 404), `/jobs/request` answers 204
 * with `X-GitLab-Last-Update` and holds long polls, jobs needing an unannounced feature fail
 * `runner_unsupported`, PATCHes at a wrong offset get 416 with `Range`, canceled jobs answer
 * 403, final updates can get 202 with a backoff, artifacts follow Workhorse's rules, and any
 * route can fail on demand (5xx, 409, 429, dropped connections, slow answers).
 *
 * Three ways to use it:
 * - in-process: pass {@linkcode GitLabMock.fetch} to a client (no socket, fully deterministic
 *   with a `FakeClock`);
 * - over HTTP: {@linkcode GitLabMock.listen} (`Deno.serve`, or `node:http` on Node);
 * - as a command for runners in other languages:
 *   `deno run -A src/mock/mod.ts --jobs jobs.json --port 0` prints `GITLAB_URL=…` and
 *   `RUNNER_TOKEN=…` and serves until SIGINT/SIGTERM (`--help` lists the options).
 *
 * @example Drive the mock with plain fetch calls
 * ```ts
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 *
 * const mock = new GitLabMock();
 * const job = mock.job().name("build").script(["make"]).enqueue();
 * const request = (path: string, init: RequestInit) => mock.fetch(`${mock.url}/api/v4${path}`, init);
 *
 * const res = await request("/jobs/request", {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ token: mock.runnerToken, info: { features: { cancel_gracefully: true } } }),
 * });
 * const payload = await res.json();
 *
 * mock.cancel(job.id); // graceful: the runner announced cancel_gracefully
 * const patch = await request(`/jobs/${job.id}/trace`, {
 *   method: "PATCH",
 *   headers: { "job-token": payload.token, "content-range": "0-2", "content-type": "text/plain" },
 *   body: "hi\n",
 * });
 * strictEqual(patch.status, 202);
 * strictEqual(patch.headers.get("job-status"), "canceling");
 * ```
 *
 * @module
 */

export type { Clock } from "../clock.ts";
export { GitLabMock } from "./mock.ts";
export { MockGit, type MockGitRepository, type MockGitRepositoryOptions } from "./_git_http.ts";
export { MockJobBuilder, type PayloadTransform } from "./job.ts";
export type {
  CancelOptions,
  CancelResponse,
  ListenOptions,
  MockArtifact,
  MockArtifactSpec,
  MockCacheSpec,
  MockDependencySpec,
  MockFault,
  MockJob,
  MockJobInput,
  MockJobSpec,
  MockJobState,
  MockOptions,
  MockRequest,
  MockRoute,
  MockServer,
  MockStep,
  MockUpdate,
  MockVariable,
  WaitForOptions,
} from "./types.ts";

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const { main } = await import("./_cli.ts");
  const { default: process } = await import("node:process");
  process.exit(await main(process.argv.slice(2)));
}
