// Builds zips with zip.js directly, for tests that need entries our writer never makes.
import { TextReader, ZipWriter } from "@zip.js/zip.js";

/** One entry of {@linkcode buildZip}. */
export interface RawEntry {
  name: string;
  text?: string;
  directory?: boolean;
  unixMode?: number;
}

/** Builds a zip with zip.js directly (directories, symlinks, hostile names). */
export async function buildZip(entries: RawEntry[]): Promise<Uint8Array> {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const bytes = new Response(readable as ReadableStream<Uint8Array<ArrayBuffer>>).arrayBuffer();
  const zip = new ZipWriter(writable, { useWebWorkers: false });
  for (const e of entries) {
    await zip.add(e.name, e.directory ? undefined : new TextReader(e.text ?? ""), {
      directory: e.directory,
      ...(e.unixMode !== undefined ? { unixMode: e.unixMode } : {}),
    });
  }
  await zip.close();
  return new Uint8Array(await bytes);
}
