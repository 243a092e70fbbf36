/**
 * `@x/gitlab-runner/client`: the low-level parts under the runner, for tools that talk to
 * GitLab's runner API themselves (a custom poll loop, a job inspector, a proxy, tests of another
 * runner) rather than through `RunnerBuilder`.
 *
 * - {@linkcode Client}: one method per `/api/v4` runner endpoint over an injectable `fetch`, with
 *   the official retry policy and typed errors (`ApiError`, `RequestError`, from the main entry);
 * - the job payload parser ({@linkcode parseJobPayload}, {@linkcode parseJobPayloadText},
 *   {@linkcode effectiveVariables});
 * - GitLab's rules as functions: the failure-reason mapping ({@linkcode mapFailureReason}) and
 *   artifact path matching ({@linkcode matchArtifactPaths}).
 *
 * A runner written with the main entry `@x/gitlab-runner` needs none of this. The types these
 * signatures share with it (`Clock`, `JobPayload`, `JobVariable`, the errors, …) are exported
 * there only, once.
 *
 * @example Ask the in-process mock for a job and parse it
 * ```ts
 * import { Client } from "@x/gitlab-runner/client";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * import { strictEqual } from "node:assert";
 *
 * const mock = new GitLabMock();
 * mock.job().script(["make test"]).enqueue();
 * const client = new Client(mock.url, { fetch: mock.fetch });
 * const answer = await client.requestJob(mock.runnerToken);
 * if (answer.type !== "job" || !answer.job.ok) throw new Error("no job");
 * strictEqual(answer.job.payload.steps?.[0].script[0], "make test");
 * ```
 *
 * @module
 */

export {
  Client,
  type ClientOptions,
  type DownloadOptions,
  type JobCallResult,
  type JobRequestOptions,
  type JobRequestResult,
  type JobState,
  type JobUpdate,
  type PatchOptions,
  type PatchResult,
  type UpdateResult,
  type UploadOptions,
} from "./api/client.ts";
export {
  effectiveVariables,
  parseJobPayload,
  parseJobPayloadText,
  type ParseResult,
} from "./api/payload.ts";
export {
  ALWAYS_SUPPORTED_FAILURE_REASONS,
  FAILURE_REASON_COMPATIBILITY_MAP,
  mapFailureReason,
} from "./api/failure_reasons.ts";
export {
  artifactPathMatches,
  matchArtifactPaths,
  type MatchArtifactPathsOptions,
} from "./artifacts/path_match.ts";
