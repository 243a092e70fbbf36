/**
 * The runner manager's system id, made like the official runner's
 * (`commands/internal/configfile/system_id_state.go`): `s_` + the first 12 hex characters of
 * HMAC-SHA256(key = /etc/machine-id, message = "gitlab-runner"), or `r_` + 12 random
 * alphanumerics where there is no machine id; optionally kept in a state file
 * ({@linkcode persistedSystemId}, CONFORMANCE C12.4).
 *
 * @module
 */

import type { Stats } from "node:fs";
import { dirname } from "node:path";
import { getLogger } from "./log/_logger.ts";
import { lazy } from "./_lazy.ts";

/**
 * `node:fs/promises`, loaded only when the system id is persisted (`systemIdState`): an idle
 * runner that never touches the file does not hold Node's file system layer.
 */
const fs = lazy(() => import("node:fs/promises"));

/** Deno, whose own file read needs no `node:fs`. */
const deno = (globalThis as { Deno?: { readFile?(path: string): Promise<Uint8Array> } }).Deno;

const ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** `s_` + 12 hex chars of HMAC-SHA256(key = machineId, "gitlab-runner"). */
export async function systemIdFromMachineId(machineId: Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    machineId as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", key, new TextEncoder().encode("gitlab-runner")),
  );
  const hex = [...mac.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `s_${hex}`;
}

/** `r_` + 12 random alphanumerics. */
export function randomSystemId(): string {
  let id = "r_";
  while (id.length < 14) {
    for (const b of crypto.getRandomValues(new Uint8Array(16))) {
      // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
      if (b < 248 && id.length < 14) id += ALPHANUMERIC[b % ALPHANUMERIC.length];
    }
  }
  return id;
}

/**
 * The system id of this machine: from the machine id file (first 32 bytes, like the Rust
 * crate; trailing white space ignored) or random when it cannot be read or is empty.
 */
export async function generateSystemId(machineIdPath = "/etc/machine-id"): Promise<string> {
  let content: Uint8Array;
  try {
    content = deno?.readFile
      ? await deno.readFile(machineIdPath)
      : await (await fs()).readFile(machineIdPath);
  } catch {
    return randomSystemId();
  }
  const text = new TextDecoder().decode(content).trim();
  if (!text) return randomSystemId();
  return await systemIdFromMachineId(new TextEncoder().encode(text).subarray(0, 32));
}

/** A system id as the official runner accepts it from its state file. */
const STATE_ID_REGEXP = /^[sr]_[0-9a-zA-Z]{12}$/;

/** More than any valid state file holds: a longer file is not read further. */
const STATE_READ_LIMIT = 256;

/** Why a state file was not used, for the warning. */
type StateProblem = "missing" | "invalid" | "not-a-file" | "symlink";

/**
 * The system id kept in a state file, like the official runner's `.runner_system_id`
 * (gitlab-runner `commands/internal/configfile/system_id_state.go`): a file holding a valid id
 * (`s_`/`r_` + 12 alphanumerics, white space around it ignored) gives that id; otherwise
 * `generate()` makes one and it is saved (directory `0700`, file `0600`) so the next start
 * finds it.
 *
 * Differences from the official runner, all on the side of caution: the file is replaced
 * atomically (written beside it, then renamed); a symbolic link is read through but never
 * written through, and neither is anything that is not a regular file (a FIFO, a device, a
 * directory): the id is then generated for this run only, with a warning; at most 256 bytes
 * are read. As in the official runner, a file that exists but cannot be read is an error (the
 * runner would otherwise silently become a new runner manager), and a file that cannot be
 * written is a warning.
 *
 * @param path The state file, e.g. `<state dir>/.runner_system_id`.
 * @param generate Makes an id when the file has none (the builder's machine-id rule).
 * @returns The system id.
 * @throws {Error} The file exists but cannot be read (the `cause` says why).
 */
export async function persistedSystemId(
  path: string,
  generate: () => Promise<string>,
): Promise<string> {
  const logger = getLogger(["gitlab-runner", "system-id"]);
  const { lstat, mkdir, rename, rm, stat, writeFile } = await fs();

  let problem: StateProblem = "missing";
  let info: Stats | undefined;
  try {
    info = await lstat(path);
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") {
      throw new Error(`Cannot read the system id state file ${path}`, { cause: error });
    }
  }
  if (info !== undefined) {
    let target = info;
    if (info.isSymbolicLink()) {
      problem = "symlink";
      try {
        target = await stat(path);
      } catch {
        target = info; // dangling: nothing to read, and the link is left alone
      }
    } else {
      problem = "invalid";
    }
    if (target.isFile()) {
      const id = await readStateId(path);
      if (id !== undefined) return id;
    } else if (problem !== "symlink") {
      problem = "not-a-file";
    }
  }

  const id = await generate();
  if (problem === "symlink" || problem === "not-a-file") {
    logger.warn(
      "The system id state file {path} is {what}; it is left alone and this runner uses " +
        "{systemId} until it stops. To keep that id, write it to a regular file there: " +
        "echo {systemId} > {path}",
      {
        path,
        systemId: id,
        what: problem === "symlink" ? "a symbolic link without a valid id" : "not a regular file",
      },
    );
    return id;
  }
  const temporary = `${path}.${randomSystemId().slice(2)}.tmp`;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(temporary, id, { mode: 0o600, flag: "wx" });
    await rename(temporary, path);
    if (problem === "invalid") {
      logger.warn("The system id state file {path} held no valid id; replaced by {systemId}", {
        path,
        systemId: id,
      });
    }
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => {});
    logger.warn(
      "Cannot save the system id {systemId} in {path} ({error}); this runner may register as " +
        "a new runner manager at its next start. To keep the id: echo {systemId} > {path}",
      { path, systemId: id, error: error instanceof Error ? error.message : String(error) },
    );
  }
  return id;
}

/** The valid id in the first bytes of a regular file, if any. Read errors are thrown. */
async function readStateId(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await (await fs()).open(path, "r");
    const buffer = new Uint8Array(STATE_READ_LIMIT);
    const { bytesRead } = await handle.read(buffer, 0, STATE_READ_LIMIT, 0);
    const text = new TextDecoder().decode(buffer.subarray(0, bytesRead)).trim();
    return STATE_ID_REGEXP.test(text) ? text : undefined;
  } catch (error) {
    throw new Error(`Cannot read the system id state file ${path}`, { cause: error });
  } finally {
    await handle?.close();
  }
}
