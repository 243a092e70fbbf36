/**
 * The job log's defaults, apart from the log itself so that the builder (and an idle runner)
 * does not load the log's code: `job_log.ts` re-exports them.
 *
 * @module
 */

/** Default output limit: 4 MiB, like the official runner. */
export const DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024;
/** Default deadline of the final update (C8.4): GitLab's sweeper fails a job after 1 h. */
export const DEFAULT_FINAL_UPDATE_DEADLINE_MS = 60 * 60_000;
/** Default time the final flush may keep failing before the state is sent without it (C8.5). */
export const DEFAULT_FLUSH_DEADLINE_MS = 5 * 60_000;
