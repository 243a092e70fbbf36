/**
 * The job log's defaults, apart from the log itself so that the builder (and an idle runner)
 * does not load the log's code: `job_log.ts` re-exports them. Also what the final update's
 * rounds share with the runner's own final update for a job whose code cannot be loaded
 * (`_run_loader.ts`).
 *
 * @module
 */

/** Default output limit: 4 MiB, like the official runner. */
export const DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024;
/** Default deadline of the final update (C8.4): GitLab's sweeper fails a job after 1 h. */
export const DEFAULT_FINAL_UPDATE_DEADLINE_MS = 60 * 60_000;
/** Default time the final flush may keep failing before the state is sent without it (C8.5). */
export const DEFAULT_FLUSH_DEADLINE_MS = 5 * 60_000;

/** The longest wait between final-update rounds GitLab can ask for (update interval, 15 min). */
export const MAX_UPDATE_INTERVAL_MS = 15 * 60_000;

/** A final-update round that is to be repeated: after `waitMs`, or after the backoff. */
export class Again {
  /** @param waitMs The wait GitLab asked for, if any. */
  constructor(readonly waitMs?: number) {}
}
