/**
 * The code that runs a job (`run.ts` and what only a job needs: the job log, the artifacts, the
 * sources, the build directories) is loaded with the first job, so that an idle runner does not
 * hold it. A job that arrives while the load is in flight waits for the same load.
 *
 * A load that fails (a broken installation) still ends the job GitLab handed out: it is failed
 * with `runner_system_failure`, retried like the final update until its deadline (C8.4), and the
 * next job tries the load again.
 *
 * @module
 */

import { lazy } from "./_lazy.ts";
import { backoffMs, retry } from "./api/retry.ts";
import type { ParseResult } from "./api/payload.ts";
import {
  Again,
  DEFAULT_FINAL_UPDATE_DEADLINE_MS,
  MAX_UPDATE_INTERVAL_MS,
} from "./log/_defaults.ts";
import type { JobOutcome, RunContext } from "./run.ts";

/** What this module needs of `run.ts`. */
export interface RunModule {
  runJob(ctx: RunContext, parsed: ParseResult): Promise<JobOutcome>;
}

/**
 * `runJob` of the module `load` gives; when the load fails, the job is failed with
 * `runner_system_failure`. Never throws.
 */
export function loadingRunJob(
  load: () => Promise<RunModule>,
): (ctx: RunContext, parsed: ParseResult) => Promise<JobOutcome> {
  return async (ctx, parsed) => {
    let run: RunModule;
    try {
      run = await load();
    } catch (error) {
      // The clock is read only here: a job that runs reads it exactly as `run.ts` does.
      const started = ctx.clock.now();
      const ended = await failUnloaded(ctx, parsed, error);
      const name = parsed.ok ? parsed.payload.jobInfo.name : undefined;
      return { ...ended, name, durationMs: ctx.clock.now() - started };
    }
    return await run.runJob(ctx, parsed);
  };
}

/** Runs one job to its end, loading the job-running code first. Never throws. */
export const runJob: (ctx: RunContext, parsed: ParseResult) => Promise<JobOutcome> = loadingRunJob(
  lazy(() => import("./run.ts")),
);

/** Sends `failed` (`runner_system_failure`) for a job whose code could not be loaded. */
async function failUnloaded(
  ctx: RunContext,
  parsed: ParseResult,
  error: unknown,
): Promise<Omit<JobOutcome, "durationMs" | "name">> {
  const id = parsed.ok ? parsed.payload.id : parsed.id;
  const token = parsed.ok ? parsed.payload.token : parsed.token;
  // The error names a module, never a token: the import failed before anything of the job ran.
  ctx.logger.error("The code that runs jobs cannot be loaded; failing job {jobId}: {error}", {
    jobId: id,
    error: error instanceof Error ? error.message : String(error),
  });
  const failureReason = "runner_system_failure";
  if (id === undefined || token === undefined) return { id: id ?? 0, state: "lost" };
  const deadlineMs = ctx.finalUpdateDeadlineMs ?? DEFAULT_FINAL_UPDATE_DEADLINE_MS;
  const deadline = ctx.clock.now() + deadlineMs;
  // The deadline ends the retries and the attempt in flight (on the runner's clock).
  const overall = new AbortController();
  const done = new AbortController();
  ctx.clock.sleep(deadlineMs, done.signal).then(() => overall.abort(), () => {});
  let failures = 0;
  try {
    const result = await retry(async () => {
      const answer = await ctx.client.updateJob(id, token, {
        state: "failed",
        failureReason,
        info: ctx.info,
      }, {
        signal: overall.signal,
        retry: { deadlineMs: Math.max(0, deadline - ctx.clock.now()) },
      });
      if (answer.outcome === "accepted" || answer.outcome === "reset") {
        throw new Again(answer.updateInterval && answer.updateInterval * 1000);
      }
      return answer;
    }, {
      clock: ctx.clock,
      random: ctx.random,
      attempts: Infinity,
      stop: overall.signal,
      maxBackoffMs: MAX_UPDATE_INTERVAL_MS,
      retryable: (again) =>
        (again instanceof Again ? again.waitMs : undefined) ??
          backoffMs(failures++, { min: 1000, max: 60_000, random: ctx.random }),
    });
    // 200/403 with `Job-Status: failed`: GitLab has the state (C5.1); another status: it
    // stopped the job itself.
    const taken = result.outcome === "ok" || result.jobStatus === "failed";
    return { id, state: taken ? "failed" : "aborted", failureReason };
  } catch (last) {
    ctx.logger.error("The final state of job {jobId} could not be delivered: {error}", {
      jobId: id,
      error: last instanceof Error ? last.message : String(last),
    });
    return { id, state: "lost", failureReason };
  } finally {
    done.abort();
  }
}
