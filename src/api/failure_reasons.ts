/**
 * Failure reasons sent in the final `PUT /api/v4/jobs/:id`, and the mapping the official
 * runner applies before sending them (PROTOCOL §8).
 *
 * Source: gitlab-runner `common/failure_reason_mapper.go` and `common/network.go`
 * (`failureReasonsCompatibilityMap`, `alwaysSupportedFailureReasons`, `allFailureReasons`),
 * read at gitlabhq/gitlab-runner@6757709f40296acf95bb020f36277af5b72d2024.
 *
 * @module
 */

/**
 * The failure reasons every GitLab version accepts, whatever the job's
 * `features.failure_reasons` says (GR `alwaysSupportedFailureReasons`).
 *
 * @example Checking a reason
 * ```ts
 * import { strictEqual } from "node:assert";
 * strictEqual(ALWAYS_SUPPORTED_FAILURE_REASONS.includes("script_failure"), true);
 * ```
 */
export const ALWAYS_SUPPORTED_FAILURE_REASONS: readonly string[] = Object.freeze([
  "script_failure",
  "runner_system_failure",
  "job_execution_timeout",
]);

/**
 * Every failure reason the official runner itself can produce (GR `allFailureReasons`).
 * `job_canceled` is runner-internal: GitLab does not know it, so {@linkcode mapFailureReason}
 * turns it into `unknown_failure` (GitLab keeps a canceled job canceled whatever the runner
 * reports).
 *
 * @example Listing the reasons
 * ```ts
 * import { strictEqual } from "node:assert";
 * strictEqual(RUNNER_FAILURE_REASONS.length, 9);
 * ```
 */
export const RUNNER_FAILURE_REASONS: readonly [
  "script_failure",
  "runner_system_failure",
  "job_execution_timeout",
  "image_pull_failure",
  "unknown_failure",
  "runner_configuration_error",
  "runner_external_dependency_failure",
  "runner_interrupted",
  "job_canceled",
] = Object.freeze(
  [
    "script_failure",
    "runner_system_failure",
    "job_execution_timeout",
    "image_pull_failure",
    "unknown_failure",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
    "job_canceled",
  ] as const,
);

/** One of the failure reasons the runner itself produces ({@linkcode RUNNER_FAILURE_REASONS}). */
export type RunnerFailureReason = typeof RUNNER_FAILURE_REASONS[number];

/**
 * Newer, more precise reasons mapped to the older, wider reason GitLab knows, used when the
 * precise one is not in the job's `features.failure_reasons` (GR
 * `failureReasonsCompatibilityMap`). The mapped reason must itself pass the supported check.
 *
 * @example Looking up a fallback
 * ```ts
 * import { strictEqual } from "node:assert";
 * strictEqual(FAILURE_REASON_COMPATIBILITY_MAP.get("image_pull_failure"), "runner_system_failure");
 * ```
 */
export const FAILURE_REASON_COMPATIBILITY_MAP: ReadonlyMap<string, string> = new Map([
  ["image_pull_failure", "runner_system_failure"],
  ["runner_configuration_error", "script_failure"],
  ["runner_external_dependency_failure", "runner_system_failure"],
]);

/** How many compatibility hops are followed before giving up (GR `maxMappingDepth`). */
const MAX_MAPPING_DEPTH = 10;

/**
 * Maps the runner's failure reason to one the GitLab instance accepts, exactly as the official
 * runner's `failureReasonMapper.Map` does:
 *
 * 1. empty or missing → `script_failure`;
 * 2. in `supported` (the job's `features.failure_reasons`) or in
 *    {@linkcode ALWAYS_SUPPORTED_FAILURE_REASONS} → sent as is;
 * 3. else follow {@linkcode FAILURE_REASON_COMPATIBILITY_MAP} (at most 10 hops) until a
 *    supported reason is found;
 * 4. else `unknown_failure` (this is what `job_canceled` and `runner_interrupted` become on a
 *    GitLab that does not list them).
 *
 * @param reason The reason the runner wants to report; `undefined` or `""` means a script failure.
 * @param supported The job's `features.failure_reasons` (may be empty).
 * @returns The reason to put in `failure_reason`.
 *
 * @example Mapping against an older GitLab
 * ```ts
 * import { strictEqual } from "node:assert";
 * const supported = ["script_failure", "runner_system_failure", "unknown_failure"];
 * strictEqual(mapFailureReason("image_pull_failure", supported), "runner_system_failure");
 * strictEqual(mapFailureReason("job_canceled", supported), "unknown_failure");
 * strictEqual(mapFailureReason(undefined, supported), "script_failure");
 * ```
 */
export function mapFailureReason(reason: string | undefined, supported: readonly string[]): string {
  if (!reason) return "script_failure";
  if (typeof reason !== "string") return "unknown_failure";
  const list = Array.isArray(supported) ? supported : [];
  const isSupported = (r: string) =>
    list.includes(r) || ALWAYS_SUPPORTED_FAILURE_REASONS.includes(r);
  if (isSupported(reason)) return reason;
  let current = reason;
  for (let depth = 0; depth < MAX_MAPPING_DEPTH; depth++) {
    const mapped = FAILURE_REASON_COMPATIBILITY_MAP.get(current);
    if (mapped === undefined) return "unknown_failure";
    if (isSupported(mapped)) return mapped;
    current = mapped;
  }
  return "unknown_failure";
}
