/**
 * The runner manager's system id, made like the official runner's
 * (`commands/internal/configfile/system_id_state.go`): `s_` + the first 12 hex characters of
 * HMAC-SHA256(key = /etc/machine-id, message = "gitlab-runner"), or `r_` + 12 random
 * alphanumerics where there is no machine id.
 *
 * @module
 */

import { readFile } from "node:fs/promises";

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
    content = await readFile(machineIdPath);
  } catch {
    return randomSystemId();
  }
  const text = new TextDecoder().decode(content).trim();
  if (!text) return randomSystemId();
  return await systemIdFromMachineId(new TextEncoder().encode(text).subarray(0, 32));
}
