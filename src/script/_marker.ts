/**
 * Finding the processes a script started, also those that left its process group and session
 * (`setsid`, daemons that double-fork), by a marker in their environment (CONFORMANCE C9.6).
 * Internal.
 *
 * Every script gets `GITLAB_RUNNER_JOB_MARKER=<random>` in its environment; its children
 * inherit it, whatever process group or session they move to. On Linux `/proc/<pid>/environ`
 * shows the environment a process was started with, so scanning it finds them. What it cannot
 * find: a process started with an environment without the marker (`env -i …`, or `unset` before
 * `exec`), and processes of other users when the runner is not root (their `environ` cannot be
 * read; such processes could not be signalled anyway). No `/proc` (macOS): nothing is found.
 *
 * `/proc` is read in this process where it may be (Node; Deno with `--allow-all`), else by a
 * small helper run with the script's own shell (which the runner may start in any case):
 * `grep -z` over `/proc/[0-9]*\/environ`.
 *
 * @module
 */

import type { Backend } from "./_backend.ts";

/** The name of the marker variable. */
export const MARKER_VARIABLE = "GITLAB_RUNNER_JOB_MARKER";

/** A new random marker value: 128 bits in hex. */
export function newMarker(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Whether the NUL-separated environment block `environ` holds exactly the entry `entry` (text, or
 * its UTF-8 bytes).
 */
export function environHas(environ: Uint8Array, entry: string | Uint8Array): boolean {
  const want = typeof entry === "string" ? new TextEncoder().encode(entry) : entry;
  let start = 0;
  while (start <= environ.length) {
    let end = environ.indexOf(0, start);
    if (end === -1) end = environ.length;
    if (end - start === want.length) {
      let same = true;
      for (let i = 0; i < want.length && same; i++) same = environ[start + i] === want[i];
      if (same) return true;
    }
    start = end + 1;
  }
  return false;
}

/**
 * The helper: prints `<pid>/environ` for every process whose environment holds the entry `$1`;
 * exits with 3 when this `grep` has no `-z` (NUL-separated lines), so nothing can be told.
 */
const HELPER_SCRIPT = "printf 'x\\000' | grep -qzxF x 2>/dev/null || exit 3\n" +
  "cd /proc 2>/dev/null || exit 3\n" +
  'grep -lzxF -e "$1" -- [0-9]*/environ 2>/dev/null\n' +
  "exit 0\n";

/** How many `/proc/<pid>/environ` files the scan reads at once. */
const PARALLEL_READS = 8;

/** How the scan reads `/proc`, once known. */
type Method = "in-process" | "helper" | "none";

/** Finds the live processes whose environment holds one marker entry. */
export class MarkerScan {
  readonly #backend: Backend;
  readonly #entry: string;
  readonly #shell: string;
  readonly #path: string | undefined;
  readonly #ownPid: number;
  #method: Method | undefined;

  /**
   * @param backend The process backend.
   * @param entry The environment entry, `NAME=value`.
   * @param shell The shell that ran the script: runs the helper where `/proc` cannot be read here.
   * @param path The `PATH` the helper gets (the script's), so it finds `grep` like the script.
   * @param ownPid This process's pid, never reported.
   */
  constructor(
    backend: Backend,
    entry: string,
    shell: string,
    path: string | undefined,
    ownPid: number,
  ) {
    this.#backend = backend;
    this.#entry = entry;
    this.#shell = shell;
    this.#path = path;
    this.#ownPid = ownPid;
  }

  /**
   * The pids of the processes carrying the marker now; `undefined` when that cannot be told (no
   * `/proc`, no helper). Zombies carry nothing (their `environ` is empty): they are not found.
   */
  async find(): Promise<number[] | undefined> {
    if (this.#method === undefined || this.#method === "in-process") {
      const found = await this.#inProcess();
      if (found !== undefined) {
        this.#method = "in-process";
        return found;
      }
      if (this.#method === "in-process") return undefined;
    }
    if (this.#method === undefined || this.#method === "helper") {
      const found = await this.#helper();
      this.#method = found === undefined ? "none" : "helper";
      return found;
    }
    return undefined;
  }

  async #inProcess(): Promise<number[] | undefined> {
    const pids = (await this.#backend.listProcesses())?.filter((pid) => pid > 1);
    if (pids === undefined) return undefined;
    const entry = new TextEncoder().encode(this.#entry);
    const found: number[] = [];
    let readable = false;
    // A few reads at once: one after the other, each waited for its own turn of the event loop
    // (and, on Deno, of the blocking thread pool), 110 processes took 8 ms after every script.
    const environs: (Uint8Array | undefined)[] = new Array(pids.length);
    let next = 0;
    const reader = async () => {
      while (next < pids.length) {
        const i = next++;
        environs[i] = await this.#backend.readProcFile(`/proc/${pids[i]}/environ`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, pids.length) }, reader));
    for (let i = 0; i < pids.length; i++) {
      const environ = environs[i];
      if (environ === undefined) continue;
      readable = true;
      if (pids[i] !== this.#ownPid && environHas(environ, entry)) found.push(pids[i]);
    }
    // Not one environ readable (this process's is, where /proc may be read): not allowed.
    return readable ? found : undefined;
  }

  async #helper(): Promise<number[] | undefined> {
    let child;
    try {
      child = await this.#backend.spawn({
        command: this.#shell,
        args: ["-c", HELPER_SCRIPT, "sh", this.#entry],
        env: { PATH: this.#path ?? "/usr/bin:/bin" },
        stdin: new Uint8Array(0),
      });
    } catch {
      return undefined;
    }
    const [text, , code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).arrayBuffer(),
      child.exited,
    ]);
    if (code === 3 || code > 128) return undefined;
    const found: number[] = [];
    for (const line of text.split("\n")) {
      const match = /^([0-9]+)\/environ$/.exec(line);
      if (!match) continue;
      const pid = Number(match[1]);
      if (pid > 1 && pid !== this.#ownPid) found.push(pid);
    }
    return found;
  }
}
