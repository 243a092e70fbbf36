// A glob matcher with the semantics of Go's github.com/bmatcuk/doublestar/v4 `Match`, which
// the official runner uses for artifact `paths` and `exclude` (commands/helpers/file_archiver.go).
//
// Syntax (separator "/"):
//   *        any run of characters except "/"
//   /**/     zero or more directories; a leading "**/" and a trailing "/**" likewise
//            ("a/**" also matches "a"); "**" not forming a whole segment acts like "*"
//   ?        one character except "/"
//   [abc] [a-z] [!a] [^a]   a character class (may match "/"); must be non-empty
//   {a,b}    alternatives, may nest and contain "/"
//   \c       the character c
// Every other character, including ( ) | + @ ! and a lone "]" or ",", matches itself. Matching
// is case-sensitive and dotfiles are not special.
//
// picomatch was tried first but differs from doublestar where it matters: "[!a]" is not a
// negated class, "(x|y)" is a regex group (so "build (x64)/**" misses "build (x64)/a"),
// "{1..3}" is a range even when the dots are escaped, and "{a}" is not an alternative.

const MAX_EXPANSIONS = 4096;

/**
 * Compiles a doublestar pattern to an anchored RegExp, or returns `undefined` when the pattern
 * is malformed for doublestar (unclosed `[` or `{`, empty class, stray `}`, trailing `\`).
 */
export function compileDoublestar(pattern: string): RegExp | undefined {
  if (!isValidPattern(pattern)) return undefined;
  const alternatives = expandBraces(pattern);
  if (alternatives === undefined) return undefined;
  const sources = [...new Set(alternatives.map(compileBraceFree))];
  return new RegExp(`^(?:${sources.join("|")})$`, "u");
}

/** doublestar's `ValidatePattern`. */
export function isValidPattern(s: string): boolean {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\") {
      i++;
      if (i >= s.length) return false;
    } else if (c === "[") {
      i++;
      if (i < s.length && (s[i] === "^" || s[i] === "!")) i++;
      if (i >= s.length || s[i] === "]") return false;
      let closed = false;
      for (; i < s.length; i++) {
        if (s[i] === "\\") i++;
        else if (s[i] === "]") {
          closed = true;
          break;
        }
      }
      if (!closed) return false;
    } else if (c === "{") {
      depth++;
    } else if (c === "}") {
      if (depth === 0) return false;
      depth--;
    }
  }
  return depth === 0;
}

/** Skips a character class starting at `s[i] === "["`; returns the index of its `]`. */
function skipClass(s: string, i: number): number {
  i++;
  if (s[i] === "^" || s[i] === "!") i++;
  // A valid class is non-empty, so its first character is never the closing "]".
  for (; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === "]") return i;
  }
  return s.length;
}

/** Expands `{a,b}` alternatives into brace-free patterns (escapes and classes kept as is). */
function expandBraces(pattern: string): string[] | undefined {
  const out: string[] = [];
  const todo = [pattern];
  while (todo.length > 0) {
    const p = todo.pop()!;
    let open = -1;
    for (let i = 0; i < p.length; i++) {
      if (p[i] === "\\") i++;
      else if (p[i] === "[") i = skipClass(p, i);
      else if (p[i] === "{") {
        open = i;
        break;
      }
    }
    if (open < 0) {
      out.push(p);
      if (out.length > MAX_EXPANSIONS) return undefined;
      continue;
    }
    let depth = 0;
    let start = open + 1;
    const alts: string[] = [];
    let close = -1;
    for (let i = open; i < p.length; i++) {
      const c = p[i];
      if (c === "\\") i++;
      else if (c === "[") i = skipClass(p, i);
      else if (c === "{") depth++;
      else if (c === "}") {
        depth--;
        if (depth === 0) {
          alts.push(p.slice(start, i));
          close = i;
          break;
        }
      } else if (c === "," && depth === 1) {
        alts.push(p.slice(start, i));
        start = i + 1;
      }
    }
    if (close < 0) return undefined;
    const prefix = p.slice(0, open);
    const suffix = p.slice(close + 1);
    for (let k = alts.length - 1; k >= 0; k--) todo.push(prefix + alts[k] + suffix);
    if (todo.length > MAX_EXPANSIONS) return undefined;
  }
  return out;
}

const ANY = "[\\s\\S]";
const NOT_SEPARATOR = "[^/]";

function literal(codePoint: number): string {
  return `\\u{${codePoint.toString(16)}}`;
}

/** Compiles a valid pattern without braces to a RegExp source (no anchors). */
function compileBraceFree(p: string): string {
  let re = "";
  let segmentStart = true;
  let i = 0;
  while (i < p.length) {
    const c = p[i];
    if (c === "*") {
      if (p[i + 1] === "*") {
        i += 2;
        if (segmentStart) {
          if (i >= p.length) {
            re += `${ANY}*`; // "**" as the last segment matches everything below
            continue;
          }
          if (p[i] === "/") {
            i++;
            re += `(?:${ANY}*/)?`; // "**/": zero or more directories
            continue;
          }
        }
      } else {
        i++;
      }
      re += `${NOT_SEPARATOR}*`;
      segmentStart = false;
      continue;
    }
    if (c === "?") {
      i++;
      re += NOT_SEPARATOR;
      segmentStart = false;
      continue;
    }
    if (c === "[") {
      const [source, next] = compileClass(p, i);
      re += source;
      i = next;
      segmentStart = false;
      continue;
    }
    if (c === "/") {
      const rest = p.slice(i);
      if (rest === "/**") {
        // "a/**" matches "a" itself and everything below it
        re += `(?:/${ANY}*)?`;
        break;
      }
      if (rest === "/**/") {
        // like "a/**" but what follows "a" must end with "/" (cleaned paths never do)
        re += `(?:/(?:${ANY}*/)?)?`;
        break;
      }
      i++;
      re += "/";
      segmentStart = true;
      continue;
    }
    if (c === "\\") i++; // escaped: the next character is literal
    const cp = p.codePointAt(i)!;
    i += cp > 0xffff ? 2 : 1;
    re += literal(cp);
    segmentStart = cp === 0x2f;
  }
  return re;
}

/** Compiles the class at `p[start] === "["`; returns the RegExp source and the next index. */
function compileClass(p: string, start: number): [string, number] {
  let i = start + 1;
  const negate = p[i] === "!" || p[i] === "^";
  if (negate) i++;
  const ranges: Array<[number, number]> = [];
  let last: number | undefined;
  const next = (): number => {
    const cp = p.codePointAt(i)!;
    i += cp > 0xffff ? 2 : 1;
    return cp;
  };
  while (i < p.length && p[i] !== "]") {
    let cp = next();
    if (last !== undefined && cp === 0x2d && i < p.length && p[i] !== "]") {
      if (p[i] === "\\") i++;
      const hi = next();
      if (last <= hi) ranges.push([last, hi]);
      last = undefined;
      continue;
    }
    if (cp === 0x5c) cp = next();
    ranges.push([cp, cp]);
    last = cp;
  }
  i++; // the closing "]"
  if (ranges.length === 0) return [negate ? ANY : "(?!)", i];
  const body = ranges.map(([lo, hi]) => lo === hi ? literal(lo) : `${literal(lo)}-${literal(hi)}`)
    .join("");
  return [`[${negate ? "^" : ""}${body}]`, i];
}
