/**
 * What the zip reader and the extractor share without making it public: positional reads into
 * a caller's buffer (a `Blob` that also has `[READ_AT]`, the downloaded artifact file, is read
 * without a new buffer per read), writing an entry through one reused buffer, and listing the
 * entries one at a time.
 *
 * @module
 */

import type { ArtifactEntry, ExtractBuffers } from "./reader.ts";

/** Key of {@link ReadAt}'s method. */
export const READ_AT: unique symbol = Symbol("readAt");

/** A byte source that reads at a position into a given buffer. */
export interface ReadAt {
  /**
   * Reads up to `into.length` bytes at `position` (relative to the source's start) into
   * `into`; resolves to the count read (0 at the end).
   */
  [READ_AT](position: number, into: Uint8Array): Promise<number>;
}

/** Whether `value` has a `[READ_AT]` method. */
export function hasReadAt(value: unknown): value is ReadAt {
  return typeof (value as Partial<ReadAt>)[READ_AT] === "function";
}

/** Key of the zip reader's method that writes an entry through a callback, one buffer reused. */
export const WRITE_ENTRY: unique symbol = Symbol("writeEntry");

/** An artifact that can write an entry without a new buffer per chunk. */
export interface WriteEntry {
  /**
   * Calls `write` with each chunk of the entry, inflated into the extraction's `buffers` when
   * given; a chunk is valid until `write` returns (or resolves, when it returns a promise).
   */
  [WRITE_ENTRY](
    path: string,
    write: (chunk: Uint8Array) => Promise<void> | void,
    buffers?: ExtractBuffers,
  ): Promise<void>;
}

/** Whether `value` has a `[WRITE_ENTRY]` method. */
export function hasWriteEntry(value: unknown): value is WriteEntry {
  return typeof (value as Partial<WriteEntry>)[WRITE_ENTRY] === "function";
}

/** Key of the method that lists an artifact's entries one at a time. */
export const EACH_ENTRY: unique symbol = Symbol("eachEntry");

/** An artifact that lists its entries without an array of them all (40 000 entries, C10.1). */
export interface EachEntry {
  /** The entries in archive order, each made when the iteration reaches it. */
  [EACH_ENTRY](): Promise<Iterable<ArtifactEntry>>;
}

/** Whether `value` has an `[EACH_ENTRY]` method. */
export function hasEachEntry(value: unknown): value is EachEntry {
  return typeof (value as Partial<EachEntry>)[EACH_ENTRY] === "function";
}
