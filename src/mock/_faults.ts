/**
 * Fault injection (PROTOCOL.md §13 items 4 and 15, §7): a {@linkcode MockFault} turns the next
 * matching request(s) into a 5xx/409/429 answer, a dropped connection, a slow answer, a hung
 * request or a body that stalls. Faults are tried in the order they were added, before the
 * route's rules run (except `drop: "after"` and `stallBody`, which act on the rules' answer).
 *
 * To add a kind of fault: a field on {@linkcode MockFault} (types.ts), its check in
 * {@linkcode Faults.add}, and its effect in {@linkcode Faults.apply}.
 *
 * @module
 */

import type { Clock } from "../clock.ts";
import {
  anySignal,
  errorResponse,
  jsonResponse,
  nullBodyStatus,
  stalledResponse,
  statusText,
} from "./_util.ts";
import type { MockFault, MockRequest, MockRoute } from "./types.ts";

interface ActiveFault {
  fault: MockFault;
  remaining: number;
}

/** The injected faults of one mock. */
export class Faults {
  #clock: Clock;
  #random: () => number;
  #faults: ActiveFault[] = [];

  constructor(clock: Clock, random: () => number) {
    this.#clock = clock;
    this.#random = random;
  }

  /** Validates and adds a fault. */
  add(fault: MockFault): void {
    if (
      fault.status !== undefined &&
      (!Number.isInteger(fault.status) || fault.status < 200 || fault.status > 599)
    ) {
      throw new RangeError(`Fault status must be an integer in 200..599, got ${fault.status}`);
    }
    if (
      fault.status === undefined && !fault.drop && fault.delayMs === undefined && !fault.hang &&
      fault.stallBody === undefined
    ) {
      throw new TypeError("A fault needs a status, drop, delayMs, hang or stallBody");
    }
    const times = fault.times ?? 1;
    if (!(times > 0)) throw new RangeError(`Fault times must be positive, got ${times}`);
    this.#faults.push({ fault: { ...fault }, remaining: times });
  }

  /** Removes all faults. */
  clear(): void {
    this.#faults = [];
  }

  /** The first fault matching this request, used up once; undefined when none matches. */
  take(route: MockRoute, jobId: number | undefined): MockFault | undefined {
    for (let i = 0; i < this.#faults.length; i++) {
      const active = this.#faults[i];
      const f = active.fault;
      if (f.route !== "*" && f.route !== route) continue;
      if (f.jobId !== undefined && f.jobId !== jobId) continue;
      if (f.probability !== undefined && f.probability < 1 && !(this.#random() < f.probability)) {
        continue;
      }
      active.remaining--;
      if (active.remaining <= 0) this.#faults.splice(i, 1);
      return f;
    }
    return undefined;
  }

  /**
   * Serves a request through the next matching fault: `serve` runs the route's rules (not at
   * all when the fault answers or drops first). `null` means "drop the connection".
   *
   * @param closing Aborts when the listener closes (ends delays and hangs).
   */
  async apply(
    request: Request,
    record: MockRequest,
    closing: AbortSignal | undefined,
    serve: () => Promise<Response | null> | Response,
  ): Promise<Response | null> {
    const fault = this.take(record.route, record.jobId);
    if (fault) {
      record.faulted = true;
      if (fault.delayMs !== undefined && fault.delayMs > 0) {
        // request.signal is only touched when needed: Deno.serve warns about its legacy
        // "abort on success" behaviour as soon as it is read.
        const signal = anySignal([request.signal, closing]);
        if (!(await this.#delay(fault.delayMs, signal))) return null;
      }
      if (fault.hang) {
        await request.body?.cancel().catch(() => {});
        await new Promise<void>((resolve) => {
          const signal = anySignal([request.signal, closing]);
          if (signal.aborted) resolve();
          else signal.addEventListener("abort", () => resolve(), { once: true });
        });
        return null;
      }
      if (fault.drop === true || fault.drop === "before") {
        await request.body?.cancel().catch(() => {});
        return null;
      }
      if (fault.status !== undefined) {
        await request.body?.cancel().catch(() => {});
        return faultResponse(fault);
      }
    }
    const response = await serve();
    if (fault?.drop === "after") {
      await response?.body?.cancel().catch(() => {});
      return null;
    }
    if (fault?.stallBody !== undefined && fault.stallBody !== false && response) {
      return await stalledResponse(response, fault.stallBody);
    }
    return response;
  }

  /** Sleeps on the clock; false when aborted first. */
  async #delay(ms: number, signal: AbortSignal): Promise<boolean> {
    try {
      await this.#clock.sleep(ms, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** The answer of a status fault: its body and headers, or GitLab's usual error body. */
function faultResponse(fault: MockFault): Response {
  const status = fault.status!;
  const headers = new Headers(fault.headers);
  if (nullBodyStatus(status)) return new Response(null, { status, headers });
  if (fault.body === null) return new Response(null, { status, headers });
  if (typeof fault.body === "string") {
    if (!headers.has("content-type")) headers.set("content-type", "text/plain");
    return new Response(fault.body, { status, statusText: statusText(status), headers });
  }
  if (fault.body !== undefined) return jsonResponse(status, fault.body, headers);
  if (status === 429) {
    return jsonResponse(status, {
      message: { error: "This endpoint has been requested too many times. Try again later." },
    }, headers);
  }
  return errorResponse(status, undefined, headers);
}
