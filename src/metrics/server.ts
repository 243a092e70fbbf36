/**
 * The runner's small HTTP listener: `/metrics` (Prometheus text format), `/health/live` and
 * `/health/ready` (CONFORMANCE C13.1). A web-standard `Request → Response` handler at the core,
 * served by `Deno.serve` on Deno and `node:http` on Node (twins `_listen.*.ts`).
 *
 * @module
 */

import type { RunnerMetrics } from "./registry.ts";
import type { Listening, ListenOptions, MetricsHandler } from "./_listen_types.ts";

/** Options of {@linkcode metricsHandler}. */
export interface MetricsHandlerOptions {
  /** The metrics served at `/metrics`. */
  metrics: RunnerMetrics;
  /**
   * Whether the runner is ready (`/health/ready` answers 200, else 503): usually
   * `() => runner.ready`, true once the token was verified and the poll loop runs, false
   * while it stops. Default: always ready.
   */
  ready?: () => boolean;
  /** Whether the process is alive (`/health/live`). Default: always, while it serves. */
  live?: () => boolean;
}

/** Options of {@linkcode serveMetrics}. */
export interface ServeMetricsOptions extends MetricsHandlerOptions {
  /** The interface to listen on (default `127.0.0.1`; `0.0.0.0` in a container). */
  hostname?: string;
  /** The port (default 9252, the official runner's; 0 picks a free one). */
  port?: number;
}

/** A listening metrics server. */
export interface MetricsServer extends AsyncDisposable {
  /** The interface it listens on. */
  readonly hostname: string;
  /** The bound port. */
  readonly port: number;
  /** `http://host:port`. */
  readonly url: string;
  /** Stops listening; resolves once open connections are closed. */
  close(): Promise<void>;
}

/** The listen address could not be used (taken, not permitted, not an address of this host). */
export class ListenError extends Error {
  /** The address, `host:port`. */
  readonly address: string;

  /**
   * Creates the error.
   *
   * @param address The address, `host:port`.
   * @param cause Why it failed.
   */
  constructor(address: string, cause: unknown) {
    const code = (cause as { code?: string })?.code;
    const inUse = code === "EADDRINUSE" || (cause instanceof Error && cause.name === "AddrInUse");
    super(
      `Cannot listen on ${address} for metrics: ${
        inUse ? "the address is already in use" : cause instanceof Error ? cause.message : cause
      }`,
      { cause },
    );
    this.name = "ListenError";
    this.address = address;
  }
}

/**
 * Reads a listen address `host:port` (`:9252` is every interface, `[::1]:9252` IPv6).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import { parseListenAddress } from "@x/gitlab-runner";
 * deepStrictEqual(parseListenAddress("127.0.0.1:9252"), { hostname: "127.0.0.1", port: 9252 });
 * ```
 *
 * @param value The address.
 * @returns Its host name and port.
 * @throws {TypeError} The value is not `host:port` with a port from 0 to 65535.
 */
export function parseListenAddress(value: string): { hostname: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new TypeError(`Invalid listen address ${JSON.stringify(value)}: expected host:port`);
  }
  return { hostname: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function text(body: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

/**
 * The listener's `Request → Response` handler: `GET /metrics`, `GET /health/live`,
 * `GET /health/ready` (HEAD too); 404 for other paths, 405 for other methods.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { metricsHandler, RunnerMetrics } from "@x/gitlab-runner";
 * const handler = metricsHandler({ metrics: new RunnerMetrics(), ready: () => false });
 * const res = await handler(new Request("http://localhost/health/ready"));
 * strictEqual(res.status, 503);
 * ```
 *
 * @param options The metrics and the health checks.
 * @returns The handler.
 */
export function metricsHandler(
  options: MetricsHandlerOptions,
): (request: Request) => Promise<Response> {
  const { metrics } = options;
  const ready = options.ready ?? (() => true);
  const live = options.live ?? (() => true);
  return async (request) => {
    const { pathname } = new URL(request.url);
    const known = pathname === "/metrics" || pathname === "/health/live" ||
      pathname === "/health/ready";
    if (!known) return text("Not Found\n", 404);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text("Method Not Allowed\n", 405, { allow: "GET, HEAD" });
    }
    if (pathname === "/metrics") {
      return text(await metrics.metrics(), 200, { "content-type": metrics.contentType });
    }
    const ok = pathname === "/health/live" ? live() : ready();
    return ok ? text("ok\n", 200) : text("unavailable\n", 503);
  };
}

function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * Serves {@linkcode metricsHandler} on `hostname:port` (Deno: `Deno.serve`; Node: `node:http`).
 * Keep it open while the runner drains (scrapes and probes then see it stopping) and close it
 * after `run()` resolved.
 *
 * @example Scrape a runner's metrics over HTTP
 * ```ts
 * import { ok } from "node:assert";
 * import { RunnerMetrics, serveMetrics } from "@x/gitlab-runner";
 * await using server = await serveMetrics({ metrics: new RunnerMetrics(), port: 0 });
 * const res = await fetch(`${server.url}/metrics`);
 * ok((await res.text()).includes("gitlab_runner_version_info"));
 * ```
 *
 * @param options Where to listen, the metrics and the health checks.
 * @returns The listening server.
 * @throws {ListenError} The address is taken or cannot be used.
 */
export async function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 9252;
  const deno = (globalThis as { Deno?: { serve?: unknown } }).Deno;
  const { listen }: { listen: (h: MetricsHandler, o: ListenOptions) => Promise<Listening> } =
    typeof deno?.serve === "function"
      ? await import("./_listen.deno.ts")
      : await import("./_listen.node.ts");
  let listening: Listening;
  try {
    listening = await listen(metricsHandler(options), { hostname, port });
  } catch (cause) {
    throw new ListenError(formatAddress(hostname, port), cause);
  }
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= listening.close());
  return {
    hostname,
    port: listening.port,
    url: `http://${formatAddress(hostname === "0.0.0.0" ? "127.0.0.1" : hostname, listening.port)}`,
    close,
    [Symbol.asyncDispose]: close,
  };
}
