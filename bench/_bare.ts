/**
 * The bare fetch loop's job, shared by 1f (`throughput.ts`) and 7g (`peer.ts`) so that both
 * floors do the same work: the three requests of a short job with plain `fetch` and, with a
 * build root, the job's build directory made and removed as the runner does (a `mkdir`, then a
 * recursive remove of it and of `<dir>.tmp`, with Deno's own calls).
 *
 * @module
 */
import { crc32 } from "../src/log/crc32.ts";

/** Where and how the bare loop asks for jobs. */
export interface BareLoopOptions {
  /** The API root, `<url>/api/v4`. */
  api: string;
  /** The runner token. */
  token: string;
  /** The system id sent with each job request. */
  systemId: string;
  /** The runner's `features`. */
  features: Record<string, boolean>;
  /** Where each job's build directory is made and removed (none: no directory). */
  buildRoot?: string;
  /** The fetch used (default: the runtime's). */
  fetch?: typeof fetch;
}

/**
 * One job of the bare loop: resolves to `undefined` when GitLab had no job (any answer but 201),
 * else to whether its PATCH and final PUT were answered 2xx.
 */
export function bareJob(options: BareLoopOptions): () => Promise<boolean | undefined> {
  const { api, token, systemId, buildRoot } = options;
  const doFetch = options.fetch ?? fetch;
  const json = { "content-type": "application/json" };
  const log = new TextEncoder().encode("one\ntwo\nthree\n");
  const checksum = `crc32:${crc32(log).toString(16).padStart(8, "0")}`;
  const info = { name: "bare", version: "0.1.0", executor: "custom", features: options.features };
  return async () => {
    const res = await doFetch(`${api}/jobs/request`, {
      method: "POST",
      headers: { ...json, "runner-token": token },
      body: JSON.stringify({ token, system_id: systemId, info }),
    });
    if (res.status !== 201) {
      await res.body?.cancel();
      return undefined;
    }
    const payload = await res.json();
    const jobToken = payload.token as string;
    if (buildRoot !== undefined) {
      const dir = `${buildRoot}/${payload.id}`;
      await Deno.mkdir(dir, { recursive: true });
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(`${dir}.tmp`, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    }
    const patch = await doFetch(`${api}/jobs/${payload.id}/trace?debug_trace=false`, {
      method: "PATCH",
      headers: {
        "job-token": jobToken,
        "content-type": "text/plain",
        "content-range": `0-${log.length - 1}`,
      },
      body: log,
    });
    await patch.body?.cancel();
    const put = await doFetch(`${api}/jobs/${payload.id}`, {
      method: "PUT",
      headers: { ...json, "job-token": jobToken },
      body: JSON.stringify({
        token: jobToken,
        state: "success",
        info,
        checksum,
        output: { checksum, bytesize: log.length },
      }),
    });
    await put.body?.cancel();
    return patch.ok && put.ok;
  };
}
