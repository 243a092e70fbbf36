/**
 * One job's log on its way to GitLab: masked, limited, held until GitLab has it, sent in
 * patches of at most 1 MiB once per update interval, resynchronised on 416, retried with its
 * bytes kept, kept alive with checksum and size, and finished with the final state (PROTOCOL
 * §3.5, §3.6; CONFORMANCE C4, C5.1). Memory holds only a bounded window of it: what GitLab has
 * not acknowledged plus at most one block; the acknowledged blocks go to a temporary spool file
 * (C10.4), one block at a time while the next patch is sent.
 *
 * @module
 */

import type { Clock } from "../clock.ts";
import type { Client, JobCallResult, JobState, RunnerMetadata } from "../api/client.ts";
import { backoffMs, retry } from "../api/retry.ts";
import { Crc32, updateCrc } from "./crc32.ts";
import { Masker, type MaskerOptions, writeTransient } from "./masker.ts";
import { defaultSpoolDir, Spool } from "./_spool.ts";
import { startTimer } from "../_timer.ts";
import {
  Again,
  DEFAULT_FINAL_UPDATE_DEADLINE_MS,
  DEFAULT_FLUSH_DEADLINE_MS,
  DEFAULT_OUTPUT_LIMIT,
  MAX_UPDATE_INTERVAL_MS,
} from "./_defaults.ts";

export { DEFAULT_FINAL_UPDATE_DEADLINE_MS, DEFAULT_FLUSH_DEADLINE_MS, DEFAULT_OUTPUT_LIMIT };
/** Largest PATCH body (PROTOCOL §10). */
export const PATCH_LIMIT = 1024 * 1024;
const INITIAL_INTERVAL_MS = 3_000;
const KEEP_ALIVE_MS = 30_000;
/** The shortest round of flushing once the flush deadline has passed. */
const FLUSH_ROUND_MIN_MS = 30_000;
/** The reason the pump's sleep is cut short with (made once: wake-ups are frequent). */
const WAKE = new Error("Woken");
/** Storage block size: one patch at most. */
const BLOCK = PATCH_LIMIT;
/** The first block's size, doubled as the log grows (a short job's whole log is ~200 bytes). */
const FIRST_BLOCK = 512;

const encoder = new TextEncoder();

/**
 * Blocks moved to a spool, kept (cleared) for the next new block of any job's log: chatty jobs
 * pass a few blocks around instead of allocating one per MiB of output and leaving the old ones
 * to the collector (bench 3d, 3g). At most {@linkcode SPARE_BLOCKS} for the whole process.
 */
const spareBlocks: Uint8Array[] = [];
const SPARE_BLOCKS = 2;

/**
 * Internal: the stream {@linkcode JobLog.writable} makes. It copies each chunk at once and keeps
 * nothing of it, so a writer may reuse a chunk's buffer as soon as its write resolved; and
 * {@linkcode JobLogWritable.writeChunk} writes the same way without the stream's per-chunk queue
 * and promises. This is the script runner's (`src/script/_run.ts`) way into a job log: it reads
 * each pipe into one reused buffer and hands every chunk to `writeChunk`.
 *
 * @example
 * ```ts ignore
 * const stream = log.writable;
 * if (stream instanceof JobLogWritable) await stream.writeChunk(chunk);
 * ```
 */
export class JobLogWritable extends WritableStream<Uint8Array> {
  readonly #writeChunk: (chunk: Uint8Array) => Promise<void> | undefined;

  /** `writeChunk` stores a chunk and returns a promise only when the writer must wait. */
  constructor(writeChunk: (chunk: Uint8Array) => Promise<void> | undefined) {
    super({ write: (chunk) => writeChunk(chunk) });
    this.#writeChunk = writeChunk;
  }

  /**
   * Writes `chunk` as a write to this stream does (masked, limited, copied before it returns),
   * bypassing the stream's queue: call it only while holding the stream's writer, so nothing
   * else is queued. Returns a promise, to be awaited before the next chunk, only when more than
   * the high-water mark is waiting to be sent (backpressure, C4.10); else `undefined`.
   *
   * @param chunk The next bytes; free again when this returns (or its promise resolves).
   * @returns `undefined`, or a promise resolved once the log has room again.
   */
  writeChunk(chunk: Uint8Array): Promise<void> | undefined {
    return this.#writeChunk(chunk);
  }
}

/**
 * Internal: whether `stream` is a job log's {@linkcode JobLog.writable} (a
 * {@linkcode JobLogWritable}), which is done with each chunk once its write has resolved, so the
 * writer may reuse the chunk's buffer then. Any other stream may keep its chunks.
 *
 * @param stream A stream.
 * @returns True for a job log's stream.
 */
export function copiesChunks(stream: WritableStream<Uint8Array>): boolean {
  return stream instanceof JobLogWritable;
}

/** Options of {@linkcode JobLog}. */
export interface JobLogOptions {
  /** The API client. */
  client: Client;
  /** The job id. */
  jobId: number;
  /** The job token. */
  token: string;
  /** Where waits happen. */
  clock: Clock;
  /** What to mask. */
  masking?: MaskerOptions;
  /** Bytes kept at most (after masking); the rest is dropped with GitLab's notice. */
  outputLimit?: number;
  /** The update interval at start in milliseconds (default 3 s). */
  updateIntervalMs?: number;
  /** Keep-alive after this long without a successful contact (default 30 s). */
  keepAliveMs?: number;
  /** The runner's `info`, sent with each PUT. */
  info?: RunnerMetadata;
  /** Random source for retry jitter. */
  random?: () => number;
  /** Called once when GitLab says the job must stop (cancel, failure elsewhere, 403). */
  onAbort?: (result: JobCallResult) => void;
  /** Called once when GitLab asks for a graceful cancel (`Job-Status: canceling`). */
  onCancelRequested?: () => void;
  /** Called for diagnostics (never with tokens or log contents). */
  onDiagnostic?: (message: string, properties?: Record<string, unknown>) => void;
  /**
   * How long the final update is retried (transient failures, 202s) before it is given up, in
   * milliseconds (default 1 h, see {@linkcode DEFAULT_FINAL_UPDATE_DEADLINE_MS}).
   */
  finalUpdateDeadlineMs?: number;
  /**
   * How long sending the rest of the log may keep failing at the end before the final state is
   * sent with the size GitLab acknowledged, in milliseconds (default 5 min).
   */
  flushDeadlineMs?: number;
  /**
   * Where the spool file of acknowledged log bytes goes (default: the OS temp directory). It
   * should be outside the job's build directory; the file is made with mode 0600 and removed
   * when the log is finished or stopped. When it cannot be written, the bytes stay in memory
   * (with a diagnostic).
   */
  spoolDir?: string;
}

/** The final state to report. */
export interface FinalState {
  /** `success` or `failed`. */
  state: Exclude<JobState, "running">;
  /** Failure reason (mapped). */
  failureReason?: string;
  /** Script exit code. */
  exitCode?: number;
}

/** How the final update ended. */
export interface FinalResult {
  /** `done`: GitLab took the final state; `aborted`: the job had been stopped by GitLab; `failed`: it could not be delivered. */
  outcome: "done" | "aborted" | "failed";
  /** The last `Job-Status` GitLab reported. */
  jobStatus?: string;
  /** Log bytes GitLab never acknowledged (the final state was sent without them). */
  undelivered?: number;
}

/**
 * A job's log: `write()` bytes in; a pump sends them to GitLab.
 */
export class JobLog {
  #o: JobLogOptions;
  #masker: Masker;
  #crc = new Crc32();
  /**
   * The stored log in blocks of {@linkcode BLOCK} bytes (the first one starts small and grows),
   * so storing never copies what is there and a patch is a view into one block. The first
   * `#spooled` blocks are in the spool file instead (their entries are empty): only blocks
   * GitLab acknowledged whole are moved there, by the pump, after a patch was accepted.
   */
  #blocks: (Uint8Array | undefined)[] = [new Uint8Array(FIRST_BLOCK)];
  /** `#blockCrcs[i]`: the CRC-32 of the first `i` blocks (checkpoints for `#checksumOf`). */
  #blockCrcs: number[] = [0];
  #spool: Spool | undefined;
  /** Blocks moved to the spool (always the first ones). */
  #spooled = 0;
  /**
   * A block this log moved to the spool, kept for its next new block: a chatty job cycles through
   * its few blocks instead of leaving one per MiB of output to the collector (bench 3g).
   */
  #spare: Uint8Array | undefined;
  /** The spool's directory, once looked up. */
  #spoolDir: string | undefined;
  /** Set once the spool could not be written: everything stays in memory from then on. */
  #spoolFailed = false;
  /** Set once finish()/stop() removed the spool. */
  #spoolRemoved = false;
  /**
   * The spool write started after the last accepted patch: it overlaps the next patch (at most
   * one runs; the next accepted patch waits for it), so a chatty job's output is not held up by
   * the disk. It never rejects.
   */
  #spooling: Promise<void> | undefined;
  /** The log offset below which {@linkcode JobLog.#spooling} moves blocks. */
  #spoolingUpTo = 0;
  #size = 0;
  #sent = 0;
  #limit: number;
  #limited = false;
  #intervalMs: number;
  #keepAliveMs: number;
  #lastContact: number;
  #stopping = false;
  #aborted: JobCallResult | undefined;
  #cancelRequested = false;
  /** A wake-up came that the pump has not seen yet (C8.10). */
  #woken = false;
  /** Ends the pump's nap, while it naps. */
  #wakeNap: (() => void) | undefined;
  /** Aborted once by finish()/stop(): ends waits that a backpressure wake-up must not cut. */
  #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #drainWaiters: (() => void)[] = [];
  #highWater: number;
  #patches = 0;
  /** Set when the final state goes without the log's end: the bytes never acknowledged. */
  #undelivered: number | undefined;

  /** Creates the log; call {@linkcode JobLog.start} to begin sending. */
  constructor(options: JobLogOptions) {
    this.#o = options;
    this.#masker = new Masker(options.masking);
    this.#limit = options.outputLimit ?? DEFAULT_OUTPUT_LIMIT;
    this.#intervalMs = options.updateIntervalMs ?? INITIAL_INTERVAL_MS;
    this.#keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
    this.#lastContact = options.clock.now();
    // Unsent bytes held for stream writers: one and a half patches (C10.4: a bounded window in
    // memory; in bench 3g, 16 chatty jobs held 355 MB with 8 MiB, 267 MB with 2 MiB; once PATCH
    // bodies were no longer copied by fetch, 224–228 MB with 2 MiB and 186–188 MB with 1.5 MiB, at
    // the same speed within the noise, also for one job, 3b).
    this.#highWater = Math.max(PATCH_LIMIT, Math.min(this.#limit, 1.5 * PATCH_LIMIT));
  }

  /** Bytes stored so far (after masking and the limit). */
  get size(): number {
    return this.#size;
  }

  /** Bytes GitLab has acknowledged. */
  get sentOffset(): number {
    return this.#sent;
  }

  /** Accepted PATCH requests so far. */
  get patches(): number {
    return this.#patches;
  }

  /** The current update interval in milliseconds. */
  get updateIntervalMs(): number {
    return this.#intervalMs;
  }

  /** `crc32:%08x` of the stored bytes. */
  get checksum(): string {
    return `crc32:${this.#crc.hex()}`;
  }

  /** Whether GitLab stopped the job. */
  get aborted(): boolean {
    return this.#aborted !== undefined;
  }

  /**
   * Bytes of the log held in memory (allocated blocks not moved to the spool): at most the
   * bytes GitLab has not acknowledged plus about two blocks (C10.4). Not counted: one emptied
   * block the log keeps for its next one while it runs.
   */
  get memoryBytes(): number {
    let n = 0;
    for (let i = this.#spooled; i < this.#blocks.length; i++) n += this.#blocks[i]!.byteLength;
    return n;
  }

  /** The spool file's path, once one was made (it is removed by finish/stop). */
  get spoolPath(): string | undefined {
    return this.#spool?.path;
  }

  /**
   * The stored log bytes (a copy). The part in the spool is read synchronously: this is for
   * tests and small logs, and works until the log is finished or stopped (the spool is removed
   * then; it throws if part of the log was there).
   */
  bytes(): Uint8Array {
    if (this.#spooled > 0 && this.#spoolRemoved) {
      throw new Error("The spooled job log was removed when the log was finished");
    }
    const out = new Uint8Array(this.#size);
    for (let b = 0; b * BLOCK < this.#size; b++) {
      const start = b * BLOCK;
      const end = Math.min(this.#size, start + BLOCK);
      const block = this.#blocks[b];
      if (block) out.set(block.subarray(0, end - start), start);
      else this.#spool!.readSync(start, out.subarray(start, end));
    }
    return out;
  }

  /** Masks `text` like the log's content (for diagnostics outside the log). */
  mask(text: string): string {
    return this.#masker.mask(text);
  }

  /**
   * Appends bytes (or text) to the log: masked, then cut at the output limit. The bytes are
   * copied before it returns: nothing of `data` is kept (see {@linkcode copiesChunks}).
   */
  write(data: Uint8Array | string): void {
    // Past the output limit nothing more is kept: skip the masking work too.
    if (this.#stopping || this.#limited) return;
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    if (bytes.byteLength === 0) return;
    // The masked bytes may be a view of `bytes` or of the masker's scratch buffer: stored (copied)
    // at once, before the next write.
    this.#store(writeTransient(this.#masker, bytes));
    if (this.#size - this.#sent > this.#highWater) this.#wakeUp();
  }

  /**
   * A stream for the log with backpressure: a write waits while more than the high-water mark
   * of bytes is waiting to be sent (the pump is woken to send them at once). Each read of
   * this property makes a new stream over the same log.
   */
  get writable(): WritableStream<Uint8Array> {
    return new JobLogWritable(this.#writeChunk);
  }

  /** A stream chunk: stored at once (copied), then a wait only while the log is too full. */
  #writeChunk = (chunk: Uint8Array): Promise<void> | undefined => {
    this.write(chunk);
    return this.#mustWait() ? this.#drained() : undefined;
  };

  #mustWait(): boolean {
    return this.#size - this.#sent > this.#highWater && !this.#stopping && !this.#aborted;
  }

  async #drained(): Promise<void> {
    while (this.#mustWait()) {
      await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    }
  }

  /** Starts the pump: one round of patches per update interval, and keep-alives. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Stops the pump, sends the rest of the log and then the final state, repeating on 202 and
   * retrying transient failures with backoff until GitLab took it or the final-update deadline
   * passed (C8.4). When the log cannot be flushed for the flush deadline, the state goes with the
   * size GitLab acknowledged (C8.5). A retry that finds GitLab already holding the state sent
   * (its answer to an earlier attempt was lost) counts as delivered (C8.8). Skips it all if
   * GitLab stopped the job.
   */
  async finish(final: FinalState): Promise<FinalResult> {
    try {
      return await this.#finish(final);
    } finally {
      await this.#removeSpool();
    }
  }

  async #finish(final: FinalState): Promise<FinalResult> {
    this.#stopping = true;
    this.#stop.abort(WAKE);
    this.#wakeUp();
    await this.#loop;
    this.#store(this.#masker.flush());
    this.#releaseWriters();
    const clock = this.#o.clock;
    const deadlineMs = this.#o.finalUpdateDeadlineMs ?? DEFAULT_FINAL_UPDATE_DEADLINE_MS;
    const deadline = clock.now() + deadlineMs;
    // Every call of the final update ends at its deadline, a hanging one included (C8.4) …
    const overall = new Deadline(clock, deadlineMs);
    // … and once the final flush kept failing for the flush deadline (C8.5) the state goes with
    // what GitLab acknowledged. The clock starts at the flush's first failure (a hanging PATCH
    // fails at its header deadline) and stops at any progress. Each later round tries the log
    // again first, so a GitLab that comes back still gets all of it.
    const flushDeadlineMs = this.#o.flushDeadlineMs ?? DEFAULT_FLUSH_DEADLINE_MS;
    let failingSince: number | undefined;
    const progress = () => {
      failingSince = undefined;
    };
    try {
      /** The job stopped, or GitLab already holds the state sent: the answer to return. */
      const ended = (): FinalResult | undefined => {
        const aborted = this.#aborted;
        if (!aborted) return undefined;
        // 403/200 + Job-Status equal to the state sent: GitLab has it (C5.1, C8.8).
        if (aborted.jobStatus === final.state) {
          return { outcome: "done", jobStatus: aborted.jobStatus, undelivered: this.#undelivered };
        }
        return { outcome: "aborted", jobStatus: aborted.jobStatus };
      };
      let failures = 0;
      let probe = false;
      let warned = false;
      /** One round: probe if needed, flush, send the state. Throws {@linkcode Again} to repeat. */
      const round = async (): Promise<FinalResult> => {
        const stopped = ended();
        if (stopped) return stopped;
        if (probe) {
          if (!(await this.#probe(overall.signal))) throw new Again();
          probe = false;
          // The probe's answer may be GitLab's cancel (403): no final state overwrites it (C5.2).
          const canceled = ended();
          if (canceled) return canceled;
        }
        this.#undelivered = undefined;
        if (this.#sent < this.#size) {
          // While failing, one round of flushing takes at most what is left of the flush
          // deadline (at least 30 s): a hanging PATCH cannot hold the state back.
          const bound = failingSince === undefined ? undefined : new Deadline(
            clock,
            Math.max(FLUSH_ROUND_MIN_MS, failingSince + flushDeadlineMs - clock.now()),
          );
          const signal = bound ? AbortSignal.any([overall.signal, bound.signal]) : overall.signal;
          let flushed: boolean;
          try {
            flushed = await this.#sendPending(true, signal, progress);
          } finally {
            bound?.stop();
          }
          const after = ended();
          if (after) return after;
          if (!flushed) {
            failingSince ??= clock.now();
            if (clock.now() - failingSince < flushDeadlineMs) throw new Again();
            // The log cannot be delivered now: the state matters more (C8.5).
            this.#undelivered = this.#size - this.#sent;
            if (!warned) {
              warned = true;
              this.#diag(
                "The job log could not be sent; sending the final state without its last {undelivered} bytes",
                { undelivered: this.#undelivered, acknowledged: this.#sent },
              );
            }
          }
        }
        const bytesize = this.#undelivered === undefined ? this.#size : this.#sent;
        let result;
        try {
          result = await this.#o.client.updateJob(this.#o.jobId, this.#o.token, {
            state: final.state,
            failureReason: final.failureReason,
            exitCode: final.exitCode,
            output: { checksum: await this.#checksumOf(bytesize), bytesize },
            info: this.#o.info,
          }, {
            signal: overall.signal,
            retry: { deadlineMs: Math.max(0, deadline - clock.now()) },
          });
        } catch (error) {
          if (!overall.signal.aborted) {
            this.#diag("Final update failed, will retry", { error: String(error) });
          }
          // GitLab may have lost log chunks meanwhile: check its size before trying again.
          probe = true;
          throw new Again();
        }
        this.#adoptInterval(result.updateInterval);
        if (result.outcome === "ok") {
          return { outcome: "done", jobStatus: result.jobStatus, undelivered: this.#undelivered };
        }
        if (result.outcome === "abort") {
          // 200/403 + Job-Status equal to the state sent: GitLab has it, also when the answer
          // to an earlier attempt was lost (C5.1, C8.8).
          if (result.jobStatus === final.state) {
            return { outcome: "done", jobStatus: result.jobStatus, undelivered: this.#undelivered };
          }
          return { outcome: "aborted", jobStatus: result.jobStatus };
        }
        if (result.outcome === "reset") {
          this.#sent = 0;
          progress();
          throw new Again(0);
        }
        // 202: GitLab is still persisting the log; repeat after its backoff.
        throw new Again((result.updateInterval ?? this.#intervalMs / 1000) * 1000);
      };
      try {
        // The request policy (C8.4): rounds until GitLab took the state or the deadline passed.
        return await retry(round, {
          clock,
          signal: overall.signal,
          attempts: Infinity,
          deadlineMs,
          maxBackoffMs: MAX_UPDATE_INTERVAL_MS,
          retryable: (error) => {
            if (!(error instanceof Again)) return false;
            // GitLab's own wait (202, 412), else the final-update backoff (1 s … 60 s).
            return error.waitMs ?? this.#finalBackoff(failures++);
          },
        });
      } catch (error) {
        if (!(error instanceof Again) && !overall.signal.aborted) throw error;
      }
    } finally {
      overall.stop();
    }
    this.#diag("The final state could not be delivered within {deadlineMs} ms", {
      deadlineMs: this.#o.finalUpdateDeadlineMs ?? DEFAULT_FINAL_UPDATE_DEADLINE_MS,
    });
    return { outcome: "failed" };
  }

  /** Stops the pump without a final update (after GitLab cancelled the job). */
  async stop(): Promise<void> {
    try {
      this.#stopping = true;
      this.#stop.abort(WAKE);
      this.#wakeUp();
      await this.#loop;
      this.#releaseWriters();
    } finally {
      await this.#removeSpool();
    }
  }

  async #removeSpool(): Promise<void> {
    // A write still under way would find its file gone (and report a failure that is none).
    await this.#spooling;
    this.#spoolRemoved = true;
    // The spare block goes to the next job's log.
    if (this.#spare !== undefined && spareBlocks.length < SPARE_BLOCKS) {
      spareBlocks.push(this.#spare);
    }
    this.#spare = undefined;
    await this.#spool?.remove().catch((error) =>
      this.#diag("Cannot remove the job log's spool file {path}", {
        path: this.#spool?.path,
        error: String(error),
      })
    );
  }

  /**
   * Starts moving the blocks GitLab acknowledged whole (below `#sent`) to the spool, once the
   * move started after the previous patch is done: at most one acknowledged block waits for the
   * disk while the next patch goes.
   */
  async #spoolInBackground(): Promise<void> {
    await this.#spooling;
    const upTo = this.#sent;
    if (this.#spoolFailed || this.#spoolRemoved || (this.#spooled + 1) * BLOCK > upTo) return;
    this.#spoolingUpTo = upTo;
    const spooling: Promise<void> = this.#spoolAcknowledged(upTo).finally(() => {
      if (this.#spooling === spooling) this.#spooling = undefined;
    });
    this.#spooling = spooling;
  }

  /**
   * Moves the blocks GitLab acknowledged whole below `upTo` from memory to the spool (started by
   * the pump after an accepted patch, so neither `write()` nor the next patch waits for the
   * disk). When the spool cannot be written, the blocks stay in memory and nothing is lost.
   */
  async #spoolAcknowledged(upTo: number): Promise<void> {
    while (!this.#spoolFailed && !this.#spoolRemoved && (this.#spooled + 1) * BLOCK <= upTo) {
      const b = this.#spooled;
      // The OS temp directory is looked up once (`tmpdir()` reads the environment each time).
      const dir = this.#spoolDir ??= this.#o.spoolDir ?? defaultSpoolDir();
      try {
        this.#spool ??= await Spool.create(dir, this.#o.jobId);
        await this.#spool.write(b * BLOCK, this.#blocks[b]!);
      } catch (error) {
        this.#spoolFailed = true;
        this.#diag("The job log cannot be spooled to {dir}; keeping it in memory", {
          dir,
          error: String(error),
        });
        return;
      }
      // Nothing reads a block GitLab acknowledged whole (a resync reads the spool): reuse it.
      const block = this.#blocks[b];
      if (block?.byteLength === BLOCK) {
        if (this.#spare === undefined) this.#spare = block;
        else if (spareBlocks.length < SPARE_BLOCKS) spareBlocks.push(block);
      }
      this.#blocks[b] = undefined;
      this.#spooled++;
    }
  }

  /**
   * Asks GitLab how much of the log it holds, by resending the last byte: GitLab answers 416
   * with its size unless it holds exactly one byte less (then it takes the byte). Returns
   * false when the probe itself failed.
   */
  async #probe(signal: AbortSignal): Promise<boolean> {
    if (this.#size === 0 || this.#sent < this.#size) return true;
    const offset = this.#size - 1;
    try {
      const result = await this.#o.client.patchTrace(this.#o.jobId, this.#o.token, {
        offset,
        data: await this.#read(offset, this.#size),
        signal,
      });
      this.#react(result);
      if (
        result.outcome === "range" && result.serverOffset !== undefined &&
        result.serverOffset < this.#size
      ) {
        this.#diag("GitLab lost part of the log; sending it again", {
          server: result.serverOffset,
          size: this.#size,
        });
        this.#sent = result.serverOffset;
      }
      return true;
    } catch (error) {
      this.#diag("Checking the log size with GitLab failed", { error: String(error) });
      return false;
    }
  }

  /**
   * `crc32:%08x` of the first `size` stored bytes: from the checkpoint at the start of its last
   * block, over at most one block (read from the spool only when GitLab's offset went below the
   * window in memory).
   */
  async #checksumOf(size: number): Promise<string> {
    if (size === this.#size) return this.checksum;
    const b = Math.floor(size / BLOCK);
    let crc = this.#blockCrcs[b];
    if (size > b * BLOCK) {
      try {
        crc = updateCrc(crc, await this.#read(b * BLOCK, size));
      } catch (error) {
        this.#diag("Reading the spooled job log failed; sending the whole log's checksum", {
          error: String(error),
        });
        return this.checksum;
      }
    }
    return `crc32:${crc.toString(16).padStart(8, "0")}`;
  }

  #finalBackoff(attempt: number): number {
    return backoffMs(attempt, { min: 1000, max: 60_000, random: this.#o.random });
  }

  #store(bytes: Uint8Array): void {
    if (bytes.byteLength === 0 || this.#limited) return;
    const room = this.#limit - this.#size;
    if (bytes.byteLength <= room) {
      this.#append(bytes);
      return;
    }
    this.#append(bytes.subarray(0, utf8Boundary(bytes, Math.max(0, room))));
    this.#limited = true;
    this.#append(encoder.encode(
      `\n\x1b[33;1mJob's log exceeded limit of ${this.#limit} bytes.\n` +
        `Job execution will continue but no more output will be collected.\x1b[0;m\n`,
    ));
  }

  #append(bytes: Uint8Array): void {
    let from = 0;
    while (from < bytes.byteLength) {
      const last = this.#blocks.length - 1;
      const used = this.#size - last * BLOCK;
      if (used === BLOCK) {
        // The last block is full (maybe already in the spool): start the next one.
        const spare = this.#spare ?? spareBlocks.pop();
        this.#spare = undefined;
        this.#blocks.push(spare?.fill(0) ?? new Uint8Array(BLOCK));
        continue;
      }
      let block = this.#blocks[last]!;
      if (used === block.byteLength) {
        // The first block grows by doubling up to a full block (small logs stay small).
        const grown = new Uint8Array(Math.min(BLOCK, block.byteLength * 2));
        grown.set(block);
        block = this.#blocks[last] = grown;
      }
      const n = Math.min(block.byteLength - used, bytes.byteLength - from);
      const piece = bytes.subarray(from, from + n);
      block.set(piece, used);
      this.#crc.update(piece);
      from += n;
      this.#size += n;
      if (used + n === BLOCK) this.#blockCrcs.push(this.#crc.value);
    }
  }

  /**
   * The stored bytes `[start, end)`: a view when they lie in one block held in memory, else a
   * copy, read from the spool where they are there.
   */
  async #read(start: number, end: number): Promise<Uint8Array> {
    // Below the blocks being moved (a resync, a probe, a checksum): wait until they are in the
    // spool, else a view of a block about to be reused for new output could be sent.
    if (this.#spooling !== undefined && start < this.#spoolingUpTo) await this.#spooling;
    const first = Math.floor(start / BLOCK);
    const block = this.#blocks[first];
    if (block && end <= (first + 1) * BLOCK) {
      return block.subarray(start - first * BLOCK, end - first * BLOCK);
    }
    const out = new Uint8Array(end - start);
    for (let at = start; at < end;) {
      const b = Math.floor(at / BLOCK);
      const stop = Math.min(end, (b + 1) * BLOCK);
      const held = this.#blocks[b];
      if (held) out.set(held.subarray(at - b * BLOCK, stop - b * BLOCK), at - start);
      else if (!this.#spool || this.#spoolRemoved) throw new Error("The job log's spool is gone");
      else await this.#spool.read(at, out.subarray(at - start, stop - start));
      at = stop;
    }
    return out;
  }

  #wakeUp(): void {
    this.#woken = true;
    const wake = this.#wakeNap;
    if (wake) {
      this.#wakeNap = undefined;
      wake();
    }
  }

  /**
   * Waits an interval, or less when woken. A wake-up that came while the pump was busy (a
   * patch, a keep-alive) is not lost: the pump goes on at once (C8.10). One that ends a nap is
   * seen once more by the next one, which then does not wait. The interval is a deadline of the
   * shared timer (`startTimer`), not a timer and an abort listener of its own.
   */
  async #nap(): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    let cancel!: () => Promise<void> | undefined;
    await new Promise<void>((resolve) => {
      this.#wakeNap = resolve;
      cancel = startTimer(this.#o.clock, this.#intervalMs, resolve);
    });
    this.#wakeNap = undefined;
    const released = cancel();
    if (released) await released;
  }

  #releaseWriters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  async #run(): Promise<void> {
    let hurry = false;
    let failed = false;
    while (!this.#stopping && !this.#aborted) {
      if (failed) {
        // GitLab did not take the log: wait a whole interval (only stopping cuts it short), so
        // a chatty job cannot turn a failing GitLab into a hot loop.
        await this.#o.clock.sleep(this.#intervalMs, this.#stop.signal).catch(() => {});
      } else if (!hurry) {
        await this.#nap();
      }
      if (this.#stopping || this.#aborted) break;
      const sent = await this.#sendPending(false);
      failed = !sent && !this.#aborted && this.#sent < this.#size;
      // Writers are waiting and GitLab takes the log: go on without waiting an interval.
      hurry = sent && this.#size - this.#sent > this.#highWater;
      if (this.#aborted) break;
      if (this.#o.clock.now() - this.#lastContact >= this.#keepAliveMs) await this.#keepAlive();
    }
    this.#releaseWriters();
  }

  async #keepAlive(): Promise<void> {
    try {
      const result = await this.#o.client.updateJob(this.#o.jobId, this.#o.token, {
        state: "running",
        output: { checksum: this.checksum, bytesize: this.#size },
        info: this.#o.info,
      });
      this.#react(result);
      if (!result.abort) this.#lastContact = this.#o.clock.now();
    } catch (error) {
      this.#diag("Keep-alive failed", { error: String(error) });
    }
  }

  /** Sends everything not yet acknowledged. Returns true when all of it was taken. */
  async #sendPending(
    final: boolean,
    signal?: AbortSignal,
    onProgress?: () => void,
  ): Promise<boolean> {
    let resyncs = 0;
    while (this.#sent < this.#size) {
      const offset = this.#sent;
      // At most one block: the patch is a view into it, never a copy (stored bytes never change).
      const end = Math.min(
        this.#size,
        offset + PATCH_LIMIT,
        (Math.floor(offset / BLOCK) + 1) * BLOCK,
      );
      let data;
      try {
        data = await this.#read(offset, end);
      } catch (error) {
        this.#diag("Reading the spooled job log failed, will retry", {
          error: String(error),
          offset,
        });
        return false;
      }
      let result;
      try {
        result = await this.#o.client.patchTrace(this.#o.jobId, this.#o.token, {
          offset,
          data,
          signal,
          // At the end the final update's own loop retries (with the flush deadline in view).
          retry: final ? { attempts: 1 } : undefined,
        });
      } catch (error) {
        this.#diag("Sending the job log failed, will retry", { error: String(error), offset });
        return false;
      }
      this.#react(result);
      if (result.abort) return false;
      if (result.outcome === "accepted") {
        onProgress?.();
        this.#patches++;
        this.#lastContact = this.#o.clock.now();
        const server = result.serverOffset ?? end;
        this.#sent = server >= offset && server <= this.#size ? Math.max(server, end) : end;
        if (this.#sent > this.#size) this.#sent = this.#size;
        if (this.#size - this.#sent <= this.#highWater / 2) this.#releaseWriters();
        await this.#spoolInBackground();
        // Less than a full patch left: the writers get the time of the spool write to add to it
        // (patches as full as before); a full patch goes while the block is being written.
        if (this.#size - this.#sent < PATCH_LIMIT) await this.#spooling;
        continue;
      }
      if (result.outcome === "range") {
        const server = result.serverOffset;
        if (server === undefined || server > this.#size || ++resyncs > 3) {
          this.#diag("GitLab's log offset cannot be matched, will retry", {
            server,
            size: this.#size,
          });
          return false;
        }
        this.#sent = server;
        if (final && resyncs > 1) {
          await this.#o.clock.sleep(this.#intervalMs, signal).catch(() => {});
        }
        continue;
      }
      // 404: the job is not found; retried next tick (the final flush gives up on it).
      return final;
    }
    return true;
  }

  #react(result: JobCallResult): void {
    this.#adoptInterval(result.updateInterval);
    if (result.cancelRequested && !this.#cancelRequested) {
      this.#cancelRequested = true;
      this.#o.onCancelRequested?.();
    }
    if (result.abort && !this.#aborted) {
      this.#aborted = result;
      this.#releaseWriters();
      this.#o.onAbort?.(result);
    }
  }

  #adoptInterval(seconds: number | undefined): void {
    if (seconds !== undefined && seconds > 0) this.#intervalMs = seconds * 1000;
  }

  #diag(message: string, properties?: Record<string, unknown>): void {
    this.#o.onDiagnostic?.(message, { jobId: this.#o.jobId, ...properties });
  }
}

/** An abort signal that fires `ms` after it is made, on the injected clock (until stopped). */
class Deadline {
  #ctl = new AbortController();
  #cancel: () => Promise<void> | undefined;

  constructor(clock: Clock, ms: number) {
    // A deadline of the shared timer on the system clock (any length: beyond `setTimeout`'s
    // range it is `clock.sleep`, in chunks), `clock.sleep` on any other clock.
    this.#cancel = startTimer(
      clock,
      ms,
      () => this.#ctl.abort(new DOMException(`Deadline of ${ms} ms passed`, "TimeoutError")),
    );
  }

  get signal(): AbortSignal {
    return this.#ctl.signal;
  }

  stop(): void {
    this.#cancel();
  }
}

/** The largest index ≤ `at` that does not split a UTF-8 character. */
function utf8Boundary(bytes: Uint8Array, at: number): number {
  if (at >= bytes.byteLength) return bytes.byteLength;
  let i = at;
  while (i > 0 && i > at - 4 && (bytes[i] & 0xc0) === 0x80) i--;
  return i;
}
