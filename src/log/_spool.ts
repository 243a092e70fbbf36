/**
 * Internal: the temporary file a job log moves its acknowledged bytes to (CONFORMANCE C10.4,
 * C10.5), so that memory holds only what GitLab has not taken yet. The file lives outside the
 * job's build directory (the OS temp directory unless told otherwise), is readable by its owner
 * only (mode 0600) and is removed when the job's log is finished or stopped.
 *
 * `node:fs` works alike on Deno and Node, so there is no runtime twin.
 *
 * @module
 */

import { open, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { closeSync, openSync, readSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The OS temp directory, or `/tmp` where it cannot be read (no env permission). */
export function defaultSpoolDir(): string {
  try {
    return tmpdir();
  } catch {
    return "/tmp";
  }
}

/** A spool file: written at positions, read back at positions, removed once. */
export class Spool {
  #file: FileHandle;
  #removed = false;
  /** Where the file is. */
  readonly path: string;

  private constructor(path: string, file: FileHandle) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Creates a new spool file in `dir` (exclusively, mode 0600), named after the job.
   *
   * @param dir The directory.
   * @param jobId The job id (part of the name, for people looking at the directory).
   * @returns The open spool.
   */
  static async create(dir: string, jobId: number): Promise<Spool> {
    const random = crypto.getRandomValues(new Uint32Array(2));
    const name = `gitlab-runner-job-${jobId}-${random[0].toString(36)}${
      random[1].toString(36)
    }.log`;
    const path = join(dir, name);
    const file = await open(path, "wx+", 0o600);
    return new Spool(path, file);
  }

  /** Writes all of `bytes` at `position`. */
  async write(position: number, bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.#file.write(
        bytes,
        done,
        bytes.byteLength - done,
        position + done,
      );
      if (bytesWritten <= 0) throw new Error("The spool file took no bytes");
      done += bytesWritten;
    }
  }

  /** Fills `into` with the bytes at `position` (all of them, else it throws). */
  async read(position: number, into: Uint8Array): Promise<void> {
    let done = 0;
    while (done < into.byteLength) {
      const { bytesRead } = await this.#file.read(
        into,
        done,
        into.byteLength - done,
        position + done,
      );
      if (bytesRead <= 0) throw new Error(`The spool file ended at ${position + done}`);
      done += bytesRead;
    }
  }

  /** Fills `into` with the bytes at `position`, synchronously (for tests). */
  readSync(position: number, into: Uint8Array): void {
    const fd = openSync(this.path, "r");
    try {
      let done = 0;
      while (done < into.byteLength) {
        const n = readSync(fd, into, done, into.byteLength - done, position + done);
        if (n <= 0) throw new Error(`The spool file ended at ${position + done}`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Closes and removes the file (once; later calls do nothing). */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    try {
      await this.#file.close();
    } finally {
      await rm(this.path, { force: true });
    }
  }
}
