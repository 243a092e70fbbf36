/**
 * The `when:` rule shared by script steps and artifact entries (GitLab's `on_success`,
 * `on_failure`, `always`; GR `common/build.go` and the shells' `writeUploadArtifacts`).
 *
 * @module
 */

import type { StepWhen, UploadWhen } from "./api/payload.ts";

/**
 * Whether a step or artifact entry with this `when` runs, given whether the job has failed so
 * far: `always` runs, `on_failure` only after a failure, `on_success` (and anything else the
 * parser let through) only while nothing failed.
 */
export function whenMatches(when: StepWhen | UploadWhen, failed: boolean): boolean {
  if (when === "always") return true;
  if (when === "on_failure") return failed;
  return !failed;
}
