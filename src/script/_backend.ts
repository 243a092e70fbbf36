/**
 * The small interface behind which the runtime twins `_spawn.deno.ts` (Deno.Command) and
 * `_spawn.node.ts` (node:child_process) start a shell in a process group of its own. Internal.
 *
 * @module
 */

/** What to start. */
export interface SpawnOptions {
  /** The program (looked up in `env.PATH`). */
  command: string;
  /** Its arguments. */
  args: readonly string[];
  /** The working directory; `undefined`: the current one. */
  cwd?: string;
  /** The complete environment of the child (nothing else is inherited). */
  env: Record<string, string>;
  /** Bytes written to the child's stdin, which is then closed. */
  stdin: Uint8Array;
}

/** A started child, the leader of a new process group (and session) whose id is its pid. */
export interface SpawnedProcess {
  /** The child's pid, which is also its process group id. */
  readonly pid: number;
  /** The child's stdout, read on demand (nothing is read ahead of the reader). */
  readonly stdout: ReadableStream<Uint8Array>;
  /** The child's stderr, read on demand. */
  readonly stderr: ReadableStream<Uint8Array>;
  /** Resolves once the child has exited: its exit code, or 128 + n when signal n killed it. */
  readonly exited: Promise<number>;
  /**
   * Sends `signal` (0 only tests for existence) to the child's whole process group, or only to
   * the child when `group` is false. Returns false when there was no such process (ESRCH), true
   * otherwise (also when the signal was refused, e.g. EPERM: the process exists). Never throws.
   */
  kill(signal: "SIGTERM" | "SIGKILL" | 0, group: boolean): boolean;
}

/** A runtime's way of running processes. */
export interface Backend {
  /** `"deno"` or `"node"`. */
  readonly name: "deno" | "node";
  /** This process's environment. */
  environment(): Record<string, string>;
  /**
   * Whether a live (not zombie) process is in process group `pgid`, read from `/proc`; `undefined`
   * when that cannot be told (no `/proc`, or not allowed to read it).
   */
  liveInGroup(pgid: number): Promise<boolean | undefined>;
  /**
   * Sends `signal` to the single process `pid`. Returns false when there was no such process
   * (ESRCH), true otherwise. Never throws.
   */
  signal(pid: number, signal: "SIGTERM" | "SIGKILL"): boolean;
  /**
   * The pids listed in `/proc`; `undefined` when `/proc` cannot be read here (not Linux, or
   * not allowed: Deno reads `/proc` only with `--allow-all`).
   */
  listProcesses(): Promise<number[] | undefined>;
  /** The bytes of a file under `/proc`; `undefined` when it cannot be read (gone, not allowed). */
  readProcFile(path: string): Promise<Uint8Array | undefined>;
  /**
   * Starts a child in a new process group. Rejects with a {@linkcode CommandNotFound} when the
   * program is not found, with the runtime's error otherwise.
   */
  spawn(options: SpawnOptions): Promise<SpawnedProcess>;
}

/** The program to start was not found (ENOENT). Internal: lets the caller fall back to `sh`. */
export class CommandNotFound extends Error {
  /** The program that was not found. */
  readonly command: string;

  /** Creates the error for `command`, wrapping the runtime's error. */
  constructor(command: string, cause: unknown) {
    super(`Command not found: ${command}`, { cause });
    this.name = "CommandNotFound";
    this.command = command;
  }
}

/**
 * From the text of `/proc/<pid>/stat` ("pid (comm) state ppid pgrp …", where comm may hold
 * spaces and parentheses): whether it is a live process (not a zombie) of group `pgid`.
 */
export function isLiveMember(stat: string, pgid: number): boolean {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X";
}

/** Whether a `/proc` entry names a process. */
export function isPidEntry(name: string): boolean {
  return /^[0-9]+$/.test(name);
}
