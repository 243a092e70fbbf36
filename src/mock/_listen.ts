/**
 * Serving the mock over HTTP: picks the listener twin (`_server.deno.ts` with `Deno.serve`, or
 * `_server.node.ts` with `node:http`) and works out the URLs. The object-storage origin of a
 * listener is the same port under another host name, so redirects to it cross origins.
 *
 * @module
 */

import type { ServeContext } from "./_router.ts";
import type { ListenOptions, MockServer } from "./types.ts";

/** The low-level handler the listener twins serve: `null` means "drop the connection". */
export type RawHandler = (request: Request) => Promise<Response | null>;

/** What a listener twin returns. */
export interface Listener {
  /** The bound port. */
  port: number;
  /** Stops the server (held requests must have been released). */
  close(): Promise<void>;
}

function formatHost(hostname: string): string {
  return hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
}

/**
 * Listens with `serve` behind it.
 *
 * @param serve Serves one request from this listener.
 * @param basePath The mock's relative URL root (part of the server's `url`).
 * @param onClosed Called once the server has closed.
 */
export async function listen(
  serve: (request: Request, ctx: ServeContext) => Promise<Response | null>,
  basePath: string,
  options: ListenOptions,
  onClosed: (server: MockServer) => void,
): Promise<MockServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const deno = (globalThis as { Deno?: { serve?: unknown } }).Deno;
  const useDeno = options.server ? options.server === "deno" : typeof deno?.serve === "function";
  const mod: {
    serve(handler: RawHandler, o: { port: number; hostname: string }): Promise<Listener>;
  } = useDeno ? await import("./_server.deno.ts") : await import("./_server.node.ts");
  const closing = new AbortController();
  const ctx: ServeContext = { objectsOrigin: "", signal: closing.signal };
  const listener = await mod.serve((req) => serve(req, ctx), {
    port: options.port ?? 0,
    hostname,
  });
  const urlHost = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  const objectsHostname = options.objectsHostname ??
    (urlHost === "127.0.0.1" ? "localhost" : "127.0.0.1");
  ctx.objectsOrigin = `http://${formatHost(objectsHostname)}:${listener.port}`;
  let closed: Promise<void> | undefined;
  const server: MockServer = {
    url: `http://${formatHost(urlHost)}:${listener.port}${basePath}`,
    port: listener.port,
    hostname,
    objectsUrl: ctx.objectsOrigin,
    close: () => {
      closed ??= (async () => {
        closing.abort();
        await listener.close();
        onClosed(server);
      })();
      return closed;
    },
    [Symbol.asyncDispose]: () => server.close(),
  };
  return server;
}
