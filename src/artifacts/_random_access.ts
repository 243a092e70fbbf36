/**
 * Positional reads into a caller's buffer, for the zip reader: a `Blob` that also has
 * `[READ_AT]` (the downloaded artifact file) is read without a new buffer per read.
 *
 * @module
 */

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
  /** Calls `write` with each chunk of the entry; a chunk is valid until `write` resolves. */
  [WRITE_ENTRY](path: string, write: (chunk: Uint8Array) => Promise<void>): Promise<void>;
}

/** Whether `value` has a `[WRITE_ENTRY]` method. */
export function hasWriteEntry(value: unknown): value is WriteEntry {
  return typeof (value as Partial<WriteEntry>)[WRITE_ENTRY] === "function";
}
