/**
 * A downloaded zip artifact: the zip reader (`reader.ts`) over the download's bytes, extracted by
 * `_extract.ts`.
 *
 * @module
 */

import type { Artifact, ArtifactLimits, ExtractOptions } from "./artifact.ts";
import type { ByteSource } from "./_byte_source.ts";
import { extract, extractLimits } from "./_extract.ts";
import {
  type ArtifactEntry,
  DEFAULT_MAX_ENTRIES,
  type ExtractBuffers,
  ZipArtifact,
} from "./reader.ts";
import { EACH_ENTRY, WRITE_ENTRY } from "./_random_access.ts";

/** A zip {@link Artifact} over a download's {@link ByteSource}; closing it frees the bytes. */
export class ZipDownload implements Artifact {
  readonly format = "zip" as const;
  #zip: ZipArtifact;
  #source: ByteSource;
  #onClose: () => void;
  #limits: ArtifactLimits;

  constructor(source: ByteSource, onClose: () => void, limits: ArtifactLimits) {
    this.#source = source;
    this.#limits = limits;
    this.#zip = new ZipArtifact(source.blob(), {
      maxEntries: limits.maxEntries ?? DEFAULT_MAX_ENTRIES,
    });
    this.#onClose = onClose;
  }

  entries(): Promise<ArtifactEntry[]> {
    return this.#zip.entries();
  }

  read(path: string): Promise<ReadableStream<Uint8Array>> {
    return this.#zip.read(path);
  }

  [WRITE_ENTRY](
    path: string,
    write: (chunk: Uint8Array) => Promise<void> | void,
    buffers?: ExtractBuffers,
  ): Promise<void> {
    return this.#zip[WRITE_ENTRY](path, write, buffers);
  }

  [EACH_ENTRY](): Promise<Iterable<ArtifactEntry>> {
    return this.#zip[EACH_ENTRY]();
  }

  extractTo(dir: string, options: ExtractOptions = {}): Promise<string[]> {
    return extract(this, dir, extractLimits(this.#limits, options));
  }

  async close(): Promise<void> {
    this.#onClose();
    await this.#zip.close().catch(() => {});
    await this.#source.dispose();
  }
}
