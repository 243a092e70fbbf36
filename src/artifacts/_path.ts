// Private path helpers shared by the artifact modules. Paths use "/" only.
import { ArtifactError } from "./errors.ts";

/**
 * Lexically cleans a slash-separated path like Go's `path.Clean`: collapses repeated slashes,
 * drops `.` segments and trailing slashes, resolves `..` against earlier segments. An empty
 * path becomes `.`; a rooted path stays rooted (`/..` is `/`).
 */
export function cleanPath(path: string): string {
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(segment);
  }
  const joined = out.join("/");
  if (rooted) return "/" + joined;
  return joined === "" ? "." : joined;
}

/** True when a cleaned path leaves its base (`..` or `../…`). */
export function escapesBase(cleaned: string): boolean {
  return cleaned === ".." || cleaned.startsWith("../");
}

/**
 * Orders strings by Unicode code point, which is the byte order of their UTF-8 encoding (Go's
 * `sort.Strings`), unlike `<` on JavaScript strings (UTF-16 code units).
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    // A surrogate (code point >= U+10000) sorts after every BMP character.
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Normalises the relative path of a file put into an archive (`./a//b` → `a/b`) and rejects
 * paths that are empty, absolute or leave the archive root.
 */
export function archivePath(path: string): string {
  if (typeof path !== "string" || path.includes("\0")) {
    throw new ArtifactError("Invalid archive entry path", { path: String(path) });
  }
  const cleaned = cleanPath(path);
  if (cleaned === "." || cleaned.startsWith("/") || escapesBase(cleaned)) {
    throw new ArtifactError(`Archive entry path must be relative and inside the project: ${path}`, {
      path,
    });
  }
  return cleaned;
}
