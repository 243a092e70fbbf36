/**
 * Job inputs: `${{ job.inputs.NAME }}` interpolated into a job's configuration, as the official
 * runner does before running a job (CONFORMANCE C12.1).
 *
 * Source: gitlab-runner `common/spec/inputs.go` (`Inputs.Expand`, `ExpandInputs`),
 * `common/spec/spec.go` (the `inputs:"expand"` fields; `Step.Expand` only for `script` and
 * `after_script`), `common/build.go` (`expandInputs` runs first in `Build.Run`; an error fails
 * the job with `runner_configuration_error`), read at gitlabhq/gitlab-runner@d79f3e7 (19.4).
 * The official runner evaluates the expressions with the Moa language; this module implements
 * the part of it that job inputs use (see {@linkcode interpolateInputs}).
 *
 * @module
 */

import type { JobInput, JobInputContent, JobPayload } from "./api/payload.ts";
import { InputInterpolationError } from "./errors.ts";

/**
 * The longest text an interpolation may produce (16 MiB): a script line built from a large
 * input referenced many times fails the job instead of exhausting memory.
 */
export const MAX_INTERPOLATED_LENGTH = 16 * 1024 * 1024;

const OPEN = "${{";
const CLOSE = "}}";
const IDENT_REGEXP = /^[A-Za-z_][A-Za-z0-9_]*/;
const INDEX_REGEXP = /^-?\d+/;

/** The text form of input content: strings as they are, other values as JSON (`true`, `1.5`). */
export function inputText(content: JobInputContent): string {
  return typeof content === "string" ? content : JSON.stringify(content);
}

/** Reads one `${{ … }}` expression of the supported subset and evaluates it. */
class Expression {
  #src: string;
  #pos = 0;
  #inputs: ReadonlyMap<string, JobInput>;

  constructor(src: string, inputs: ReadonlyMap<string, JobInput>) {
    this.#src = src;
    this.#inputs = inputs;
  }

  #fail(message: string): never {
    const src = this.#src.trim();
    const shown = src.length > 80 ? `${src.slice(0, 77)}...` : src;
    throw new InputInterpolationError(`${message} in \`${OPEN} ${shown} ${CLOSE}\``);
  }

  #skipSpace(): void {
    while (this.#pos < this.#src.length && /\s/.test(this.#src[this.#pos])) this.#pos++;
  }

  #eat(token: string): boolean {
    this.#skipSpace();
    if (this.#src.startsWith(token, this.#pos)) {
      this.#pos += token.length;
      return true;
    }
    return false;
  }

  #ident(what: string): string {
    this.#skipSpace();
    const m = IDENT_REGEXP.exec(this.#src.slice(this.#pos));
    if (!m) this.#fail(`expected ${what}`);
    this.#pos += m[0].length;
    return m[0];
  }

  /** A string literal in quotes (`"…"` or `'…'`, JSON escapes) or an integer. */
  #key(): string | number {
    this.#skipSpace();
    const quote = this.#src[this.#pos];
    if (quote === '"' || quote === "'") {
      let j = this.#pos + 1;
      let raw = "";
      while (j < this.#src.length && this.#src[j] !== quote) {
        if (this.#src[j] === "\\") {
          raw += this.#src.slice(j, j + 2);
          j += 2;
        } else {
          raw += this.#src[j] === '"' ? '\\"' : this.#src[j];
          j++;
        }
      }
      if (j >= this.#src.length) this.#fail("unterminated string");
      this.#pos = j + 1;
      try {
        return JSON.parse(`"${raw}"`) as string;
      } catch {
        this.#fail("invalid string");
      }
    }
    const m = INDEX_REGEXP.exec(this.#src.slice(this.#pos));
    if (!m) this.#fail("expected an index or a quoted key");
    this.#pos += m[0].length;
    return Number(m[0]);
  }

  /** `job.inputs.NAME` followed by `.field`, `[index]` or `["key"]` accessors. */
  #path(): JobInputContent {
    const root = this.#ident("`job.inputs.NAME`");
    if (root !== "job") this.#fail(`unknown name "${root}" (only job.inputs can be used)`);
    const section = this.#accessor();
    if (section !== "inputs") {
      this.#fail(`unknown name "job.${String(section)}" (only job.inputs can be used)`);
    }
    const name = this.#accessor();
    if (name === undefined) this.#fail("expected an input name after job.inputs");
    const input = typeof name === "string" ? this.#inputs.get(name) : undefined;
    if (input === undefined) {
      const keys = [...this.#inputs.keys()];
      const known = keys.slice(0, 10).map((k) => JSON.stringify(k.slice(0, 40))).join(", ") +
        (keys.length > 10 ? `, and ${keys.length - 10} more` : "");
      const shown = JSON.stringify(String(name).slice(0, 80));
      this.#fail(`unknown input ${shown} (the job has ${known})`);
    }
    let value: JobInputContent = input.value.content;
    let shown = `job.inputs.${String(name)}`;
    for (;;) {
      const key = this.#accessor();
      if (key === undefined) return value;
      if (Array.isArray(value)) {
        const i = typeof key === "number" ? key : NaN;
        if (!Number.isInteger(i) || i < 0 || i >= value.length) {
          this.#fail(`${shown} has no element ${JSON.stringify(key)} (length ${value.length})`);
        }
        value = value[i];
        shown += `[${i}]`;
      } else if (value !== null && typeof value === "object") {
        const k = String(key);
        if (!Object.prototype.hasOwnProperty.call(value, k)) {
          this.#fail(`${shown} has no field ${JSON.stringify(k)}`);
        }
        value = value[k];
        shown += `.${k}`;
      } else {
        this.#fail(
          `${shown} is a ${value === null ? "null" : typeof value}, not an array or struct`,
        );
      }
    }
  }

  /** `.ident` or `[key]`; `undefined` when neither follows. */
  #accessor(): string | number | undefined {
    if (this.#eat(".")) return this.#ident("a name after `.`");
    if (this.#eat("[")) {
      const key = this.#key();
      if (!this.#eat("]")) this.#fail("expected `]`");
      return key;
    }
    return undefined;
  }

  evaluate(): string {
    this.#skipSpace();
    if (this.#pos >= this.#src.length) this.#fail("empty expression");
    let value: JobInputContent;
    if (/^str\s*\(/.test(this.#src.slice(this.#pos))) {
      this.#eat("str");
      this.#eat("(");
      value = this.#path();
      if (!this.#eat(")")) this.#fail("expected `)`");
    } else {
      value = this.#path();
    }
    this.#skipSpace();
    if (this.#pos < this.#src.length) {
      this.#fail(
        `unsupported expression syntax at "${this.#src.slice(this.#pos, this.#pos + 20)}"`,
      );
    }
    return inputText(value);
  }
}

/** The end of the expression opened at `start` (index of its `}}`), skipping quoted strings. */
function closingBraces(text: string, start: number): number {
  let j = start;
  while (j < text.length) {
    const c = text[j];
    if (c === '"' || c === "'") {
      j++;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      if (j >= text.length) break;
      j++;
      continue;
    }
    if (text.startsWith(CLOSE, j)) return j;
    if (text.startsWith(OPEN, j)) {
      throw new InputInterpolationError(
        `nested \`${OPEN}\` at offset ${j} (expressions cannot contain expressions)`,
      );
    }
    j++;
  }
  throw new InputInterpolationError(`unterminated \`${OPEN}\` at offset ${start - OPEN.length}`);
}

/** Inputs by key; the first of a repeated key wins (the official runner's `Inputs.Attr`). */
function byKey(inputs: readonly JobInput[]): Map<string, JobInput> {
  const map = new Map<string, JobInput>();
  for (const input of inputs) if (!map.has(input.key)) map.set(input.key, input);
  return map;
}

/**
 * Replaces each `${{ expression }}` in `text` with the value of the job input it names, like
 * the official runner (gitlab-runner `common/spec/inputs.go` `Inputs.Expand`):
 *
 * - without inputs, `text` is returned unchanged, `${{ … }}` included (the official runner
 *   does not even parse it then, so jobs that never had inputs cannot break);
 * - with inputs, every `${{` must be closed by `}}` and cannot contain another `${{`; each
 *   expression is `job.inputs.NAME`, optionally followed by `.field`, `[index]` or `["key"]`
 *   to reach into `struct` and `array` inputs, optionally wrapped in `str(…)`. Anything else
 *   (unknown names, other contexts, operators, other functions) is an error: the official
 *   runner evaluates the full Moa language there, which this library does not implement, and
 *   failing clearly beats guessing;
 * - a string value is inserted as it is; numbers, booleans, arrays and structs as JSON
 *   (`1`, `1.5`, `true`, `["a","b"]`, `{"k":"v"}`);
 * - the result is at most {@linkcode MAX_INTERPOLATED_LENGTH} characters.
 *
 * Sensitive inputs are interpolated too; the runner masks their values in the job log. (The
 * official runner 19.4 refuses them in interpolations, "sensitive inputs are unsupported in
 * interpolations yet".)
 *
 * @param text A script line, path or name that may hold `${{ job.inputs.NAME }}`.
 * @param inputs The job's inputs (`job.inputs`).
 * @returns The interpolated text.
 * @throws {InputInterpolationError} A malformed or unknown expression, or an unknown input; as
 *   a `JobFailure` it fails the job with `runner_configuration_error`.
 *
 * @example Interpolate a job's inputs into a line of your own
 * ```ts
 * import { interpolateInputs, type JobInput } from "@x/gitlab-runner";
 * import { strictEqual } from "node:assert";
 * const inputs: JobInput[] = [
 *   { key: "target", value: { type: "string", content: "staging", sensitive: false } },
 *   { key: "replicas", value: { type: "number", content: 3, sensitive: false } },
 *   { key: "regions", value: { type: "array", content: ["eu", "us"], sensitive: false } },
 * ];
 * const line = "deploy ${{ job.inputs.target }} x${{ job.inputs.replicas }} ${{ job.inputs.regions[1] }}";
 * strictEqual(interpolateInputs(line, inputs), "deploy staging x3 us");
 * ```
 */
export function interpolateInputs(text: string, inputs: readonly JobInput[]): string {
  if (inputs.length === 0 || !text.includes(OPEN)) return text;
  const map = byKey(inputs);
  let out = "";
  let i = 0;
  for (;;) {
    const start = text.indexOf(OPEN, i);
    if (start < 0) break;
    const end = closingBraces(text, start + OPEN.length);
    out += text.slice(i, start);
    out += new Expression(text.slice(start + OPEN.length, end), map).evaluate();
    if (out.length > MAX_INTERPOLATED_LENGTH) {
      throw new InputInterpolationError(
        `the interpolated text is longer than ${MAX_INTERPOLATED_LENGTH} characters`,
      );
    }
    i = end + CLOSE.length;
  }
  out += text.slice(i);
  if (out.length > MAX_INTERPOLATED_LENGTH) {
    throw new InputInterpolationError(
      `the interpolated text is longer than ${MAX_INTERPOLATED_LENGTH} characters`,
    );
  }
  return out;
}

/** What {@linkcode applyJobInputs} made of a payload. */
export interface AppliedInputs {
  /** The payload with its inputs interpolated (the one given when there was nothing to do or an error). */
  payload: JobPayload;
  /** Values of sensitive inputs, to mask in the job log. */
  secrets: string[];
  /** Why the job must fail (`runner_configuration_error`), when interpolation failed. */
  error?: InputInterpolationError;
}

/** Texts to mask for the sensitive inputs: the whole value and every string or number in it. */
export function sensitiveInputValues(inputs: readonly JobInput[]): string[] {
  const out = new Set<string>();
  const walk = (v: JobInputContent, depth: number) => {
    if (depth > 64) return;
    if (typeof v === "string") out.add(v);
    else if (typeof v === "number") out.add(String(v));
    else if (Array.isArray(v)) { for (const item of v) walk(item, depth + 1); }
    else if (v !== null && typeof v === "object") {
      for (const item of Object.values(v)) walk(item, depth + 1);
    }
  };
  for (const input of inputs) {
    if (!input.value.sensitive) continue;
    out.add(inputText(input.value.content));
    walk(input.value.content, 0);
  }
  out.delete("");
  return [...out];
}

function expandExecutorOpts(
  opts: Record<string, unknown> | undefined,
  expand: (text: string, where: string) => string,
  where: string,
): Record<string, unknown> | undefined {
  if (opts === undefined) return undefined;
  const out: Record<string, unknown> = { ...opts };
  const fields: [string, string[]][] = [["docker", ["platform", "user"]], ["kubernetes", ["user"]]];
  for (const [section, keys] of fields) {
    const o = opts[section];
    if (o === null || typeof o !== "object" || Array.isArray(o)) continue;
    const copy: Record<string, unknown> = { ...o as Record<string, unknown> };
    for (const key of keys) {
      const v = copy[key];
      if (typeof v === "string") copy[key] = expand(v, `${where}.executor_opts.${section}.${key}`);
    }
    out[section] = copy;
  }
  return out;
}

/**
 * Interpolates the job's inputs everywhere the official runner does (the `inputs:"expand"`
 * fields of gitlab-runner `common/spec/spec.go`): the lines of the `script` and `after_script`
 * steps (not `release`), the image and services (`name`, `command`, `entrypoint`,
 * `pull_policy`, `executor_opts` docker `platform`/`user` and kubernetes `user`), artifacts
 * (`name`, `paths`, `exclude`, `expire_in`) and caches (`key`, `policy`, `paths`,
 * `fallback_keys`). Never throws: an error comes back in `error`, naming the field.
 *
 * @param payload The parsed payload.
 * @param enabled Whether to interpolate (the runner announces `job_inputs`); when `false` only
 *   the sensitive values are returned, to be masked.
 */
export function applyJobInputs(payload: JobPayload, enabled: boolean): AppliedInputs {
  const inputs = payload.inputs ?? [];
  const secrets = sensitiveInputValues(inputs);
  if (!enabled || inputs.length === 0) return { payload, secrets };
  const expand = (text: string, where: string): string => {
    try {
      return interpolateInputs(text, inputs);
    } catch (error) {
      if (error instanceof InputInterpolationError) {
        throw new InputInterpolationError(`${where}: ${error.detail}`, { cause: error });
      }
      throw error;
    }
  };
  const list = (texts: readonly string[], where: string) =>
    texts.map((t, i) => expand(t, `${where}[${i}]`));
  const optList = (texts: readonly string[] | undefined, where: string) =>
    texts === undefined ? undefined : list(texts, where);
  try {
    const next: JobPayload = { ...payload };
    if (payload.steps) {
      next.steps = payload.steps.map((step, i) =>
        step.name === "script" || step.name === "after_script"
          ? { ...step, script: list(step.script, `steps[${i}] (${step.name}) script`) }
          : step
      );
    }
    if (payload.image) {
      const img = payload.image;
      next.image = {
        ...img,
        name: expand(img.name, "image.name"),
        command: optList(img.command, "image.command"),
        entrypoint: optList(img.entrypoint, "image.entrypoint"),
        pullPolicy: optList(img.pullPolicy, "image.pull_policy"),
        executorOpts: expandExecutorOpts(img.executorOpts, expand, "image"),
      };
    }
    next.services = payload.services.map((s, i) => ({
      ...s,
      name: expand(s.name, `services[${i}].name`),
      command: optList(s.command, `services[${i}].command`),
      entrypoint: optList(s.entrypoint, `services[${i}].entrypoint`),
      pullPolicy: optList(s.pullPolicy, `services[${i}].pull_policy`),
      executorOpts: expandExecutorOpts(s.executorOpts, expand, `services[${i}]`),
    }));
    next.artifacts = payload.artifacts.map((a, i) => ({
      ...a,
      name: a.name === undefined ? undefined : expand(a.name, `artifacts[${i}].name`),
      paths: list(a.paths, `artifacts[${i}].paths`),
      exclude: list(a.exclude, `artifacts[${i}].exclude`),
      expireIn: a.expireIn === undefined
        ? undefined
        : expand(a.expireIn, `artifacts[${i}].expire_in`),
    }));
    next.cache = payload.cache.map((c, i) => ({
      ...c,
      key: expand(c.key, `cache[${i}].key`),
      policy: expand(c.policy, `cache[${i}].policy`),
      paths: list(c.paths, `cache[${i}].paths`),
      fallbackKeys: list(c.fallbackKeys, `cache[${i}].fallback_keys`),
    }));
    return { payload: next, secrets };
  } catch (error) {
    if (error instanceof InputInterpolationError) return { payload, secrets, error };
    throw error;
  }
}
