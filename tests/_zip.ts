// Builds zips for tests that need entries our writer never makes: with zip.js directly
// (directories, symlinks, hostile names), or byte by byte (hostile archives: lying sizes, data
// descriptors, Zip64 records, huge entry counts, huge entries of zeros written to a file).
import { concat } from "./_data.ts";
import { constants, crc32 as zlibCrc32, deflateRawSync } from "node:zlib";
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

// ------------------------------------------------------------------ hostile zips, by hand

/** One entry of {@linkcode hostileZip} and {@linkcode writeHostileZip}. */
export interface HostileEntry {
  name: string;
  /** The content (default empty). */
  data?: Uint8Array | string;
  /** Instead of `data`: this many zero bytes, generated and deflated chunk by chunk. */
  zeros?: number;
  /** 8 (deflate, the default) or 0 (stored); any other number is written as is. */
  method?: number;
  directory?: boolean;
  /** Unix `st_mode` (e.g. `0o100644`, `0o120777` for a link). */
  unixMode?: number;
  /** Sizes and CRC are zero in the local header and follow the data (general flag bit 3). */
  dataDescriptor?: boolean;
  /** Zip64 extra fields (sizes and offset 0xFFFFFFFF in the headers). */
  zip64?: boolean;
  /** General purpose flags ORed in (e.g. 1: encrypted). */
  flags?: number;
  /** Values the central directory states instead of the true ones. */
  central?: { size?: number; compressedSize?: number; crc?: number; offset?: number };
  /** Raw bytes written in place of the entry's (compressed) data. */
  rawData?: Uint8Array;
}

/** Options of {@linkcode hostileZip} and {@linkcode writeHostileZip}. */
export interface HostileZipOptions {
  /** The entry count the end records state instead of the true one. */
  entryCount?: number;
  /** Always write the Zip64 end records (they are written anyway when a value needs them). */
  zip64End?: boolean;
}

const encoder = new TextEncoder();
const ZERO_CHUNK = 1024 * 1024;
const ZEROS = new Uint8Array(ZERO_CHUNK);
let zerosDeflated: Uint8Array | undefined;
/** A final, empty fixed-Huffman block: ends a deflate stream made of sync-flushed pieces. */
const FINAL_BLOCK = new Uint8Array([0x03, 0x00]);

/** The CRC-32 of `length` zero bytes. */
function zerosCrc(length: number): number {
  let crc = 0;
  for (let done = 0; done < length; done += ZERO_CHUNK) {
    crc = zlibCrc32(ZEROS.subarray(0, Math.min(ZERO_CHUNK, length - done)), crc);
  }
  return crc >>> 0;
}

/** The deflate data of `length` zeros, as pieces: independent sync-flushed blocks, then an end. */
function* zerosDeflate(length: number): Generator<Uint8Array> {
  zerosDeflated ??= new Uint8Array(
    deflateRawSync(ZEROS, { finishFlush: constants.Z_SYNC_FLUSH }),
  );
  let done = 0;
  for (; done + ZERO_CHUNK <= length; done += ZERO_CHUNK) yield zerosDeflated;
  if (done < length) {
    yield new Uint8Array(
      deflateRawSync(ZEROS.subarray(0, length - done), { finishFlush: constants.Z_SYNC_FLUSH }),
    );
  }
  yield FINAL_BLOCK;
}

class Out {
  offset = 0;
  #file: Deno.FsFile | undefined;
  #chunks: Uint8Array[] = [];
  #pending: Uint8Array[] = [];
  #pendingSize = 0;

  constructor(file?: Deno.FsFile) {
    this.#file = file;
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.offset += bytes.length;
    if (!this.#file) {
      this.#chunks.push(bytes.slice());
      return;
    }
    this.#pending.push(bytes.slice());
    this.#pendingSize += bytes.length;
    if (this.#pendingSize >= 4 * 1024 * 1024) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.#file || this.#pendingSize === 0) return;
    const all = concat(this.#pending);
    this.#pending = [];
    this.#pendingSize = 0;
    for (let done = 0; done < all.length;) done += await this.#file.write(all.subarray(done));
  }

  bytes(): Uint8Array {
    return concat(this.#chunks);
  }
}

class Fields {
  #bytes: number[] = [];
  u16(v: number): this {
    this.#bytes.push(v & 0xff, (v >>> 8) & 0xff);
    return this;
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16((v >>> 16) & 0xffff);
  }
  u64(v: number): this {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  raw(bytes: Uint8Array): this {
    for (const b of bytes) this.#bytes.push(b);
    return this;
  }
  get length(): number {
    return this.#bytes.length;
  }
  done(): Uint8Array {
    return new Uint8Array(this.#bytes);
  }
}

const MAX32 = 0xffffffff;
const DOS_TIME = 0x6000; // 12:00:00
const DOS_DATE = ((2024 - 1980) << 9) | (1 << 5) | 1; // 2024-01-01

async function writeAll(
  out: Out,
  entries: Iterable<HostileEntry>,
  options: HostileZipOptions,
): Promise<void> {
  const central: Uint8Array[] = [];
  let count = 0;
  for (const e of entries) {
    count++;
    const name = encoder.encode(e.directory && !e.name.endsWith("/") ? `${e.name}/` : e.name);
    const method = e.directory ? 0 : e.method ?? 8;
    // The data, and its true sizes and CRC; `pieces()` gives the stored bytes, any number of
    // times (zeros are generated again each time, so a huge entry never sits in memory).
    let pieces: () => Iterable<Uint8Array>;
    let size: number;
    let crc: number;
    if (e.rawData) {
      const raw = e.rawData;
      pieces = () => [raw];
    }
    if (e.zeros !== undefined) {
      const length = e.zeros;
      size = length;
      crc = zerosCrc(length);
      pieces ??= method === 8 ? () => zerosDeflate(length) : function* () {
        for (let done = 0; done < length; done += ZERO_CHUNK) {
          yield ZEROS.subarray(0, Math.min(ZERO_CHUNK, length - done));
        }
      };
    } else {
      const data = typeof e.data === "string" ? encoder.encode(e.data) : e.data ?? new Uint8Array();
      size = data.length;
      crc = zlibCrc32(data) >>> 0;
      const stored = method === 8 ? new Uint8Array(deflateRawSync(data)) : data;
      pieces ??= () => [stored];
    }
    let compressedSize = 0;
    for (const p of pieces()) compressedSize += p.length;
    const flags = 0x800 | (e.dataDescriptor ? 0x08 : 0) | (e.flags ?? 0);
    const version = e.zip64 ? 45 : 20;
    const offset = out.offset;
    const local = new Fields().u32(0x04034b50).u16(version).u16(flags).u16(method)
      .u16(DOS_TIME).u16(DOS_DATE);
    const known = !e.dataDescriptor;
    if (e.zip64) {
      local.u32(known ? crc : 0).u32(MAX32).u32(MAX32).u16(name.length).u16(20).raw(name)
        .u16(1).u16(16).u64(known ? size : 0).u64(known ? compressedSize : 0);
    } else {
      local.u32(known ? crc : 0).u32(known ? compressedSize : 0).u32(known ? size : 0)
        .u16(name.length).u16(0).raw(name);
    }
    await out.write(local.done());
    for (const p of pieces()) await out.write(p);
    if (e.dataDescriptor) {
      const dd = new Fields().u32(0x08074b50).u32(crc);
      if (e.zip64) dd.u64(compressedSize).u64(size);
      else dd.u32(compressedSize).u32(size);
      await out.write(dd.done());
    }
    const c = e.central ?? {};
    const cSize = c.size ?? size;
    const cCompressed = c.compressedSize ?? compressedSize;
    const cOffset = c.offset ?? offset;
    const mode = e.unixMode ?? (e.directory ? 0o40755 : 0o100644);
    const record = new Fields().u32(0x02014b50).u16((3 << 8) | version).u16(version).u16(flags)
      .u16(method).u16(DOS_TIME).u16(DOS_DATE).u32(c.crc ?? crc);
    if (e.zip64) {
      record.u32(MAX32).u32(MAX32).u16(name.length).u16(28).u16(0).u16(0).u16(0)
        .u32(((mode << 16) | (e.directory ? 0x10 : 0)) >>> 0).u32(MAX32).raw(name)
        .u16(1).u16(24).u64(cSize).u64(cCompressed).u64(cOffset);
    } else {
      record.u32(cCompressed).u32(cSize).u16(name.length).u16(0).u16(0).u16(0).u16(0)
        .u32(((mode << 16) | (e.directory ? 0x10 : 0)) >>> 0).u32(cOffset).raw(name);
    }
    central.push(record.done());
  }
  const cdOffset = out.offset;
  let cdSize = 0;
  for (const record of central) {
    await out.write(record);
    cdSize += record.length;
  }
  const stated = options.entryCount ?? count;
  const zip64 = options.zip64End || stated >= 0xffff || cdOffset >= MAX32 || cdSize >= MAX32;
  if (zip64) {
    const end64Offset = out.offset;
    await out.write(
      new Fields().u32(0x06064b50).u64(44).u16((3 << 8) | 45).u16(45).u32(0).u32(0)
        .u64(stated).u64(stated).u64(cdSize).u64(cdOffset).done(),
    );
    await out.write(new Fields().u32(0x07064b50).u32(0).u64(end64Offset).u32(1).done());
  }
  const small = (v: number, max: number) => (zip64 && v >= max ? max : v);
  await out.write(
    new Fields().u32(0x06054b50).u16(0).u16(0).u16(small(stated, 0xffff))
      .u16(small(stated, 0xffff)).u32(small(cdSize, MAX32)).u32(small(cdOffset, MAX32)).u16(0)
      .done(),
  );
  await out.flush();
}

/** Builds a zip byte by byte in memory (small archives; see {@linkcode HostileEntry}). */
export async function hostileZip(
  entries: Iterable<HostileEntry>,
  options: HostileZipOptions = {},
): Promise<Uint8Array> {
  const out = new Out();
  await writeAll(out, entries, options);
  return out.bytes();
}

/** Writes a zip byte by byte to `path` (any size); returns its size. */
export async function writeHostileZip(
  path: string,
  entries: Iterable<HostileEntry>,
  options: HostileZipOptions = {},
): Promise<number> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const out = new Out(file);
  await writeAll(out, entries, options);
  return out.offset;
}

/** `count` small deflated text entries spread over directories: `d<i % 100>/f<i>.txt`. */
export function* manyEntries(count: number): Generator<HostileEntry> {
  for (let i = 0; i < count; i++) {
    yield { name: `d${i % 100}/f${i}.txt`, data: `entry ${i}\n`.repeat(4) };
  }
}
