/**
 * The mock's HTTP listener on Deno (`Deno.serve`). Twin of `_server.node.ts`.
 *
 * @module
 */

import type { Listener, RawHandler } from "./_listen.ts";

/**
 * `Deno.serve` cannot drop a connection before the status line: a dropped request gets a 502
 * whose body fails, so the client's body read (or fetch) errors.
 */
function droppedResponse(): Response {
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.error(new Error("Connection dropped by the GitLab mock"));
    },
  });
  return new Response(body, { status: 502, headers: { connection: "close" } });
}

/** Serves `handler` on `hostname:port` until `close()`. */
export function serve(
  handler: RawHandler,
  options: { port: number; hostname: string },
): Promise<Listener> {
  const controller = new AbortController();
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname,
    signal: controller.signal,
    onListen() {},
    onError() {
      return new Response("Internal Server Error", { status: 500 });
    },
  }, async (request) => (await handler(request)) ?? droppedResponse());
  return Promise.resolve({
    port: server.addr.port,
    async close() {
      controller.abort();
      await server.finished;
    },
  });
}
