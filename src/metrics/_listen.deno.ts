/**
 * The metrics listener on Deno (`Deno.serve`). Twin of `_listen.node.ts`.
 *
 * @module
 */

import type { Listening, ListenOptions, MetricsHandler } from "./_listen_types.ts";

/** Serves `handler` on `hostname:port` until `close()`. Rejects when the address is taken. */
export async function listen(handler: MetricsHandler, options: ListenOptions): Promise<Listening> {
  const controller = new AbortController();
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname,
    signal: controller.signal,
    onListen() {},
    onError() {
      return new Response("Internal Server Error\n", { status: 500 });
    },
  }, handler);
  return {
    port: server.addr.port,
    async close() {
      controller.abort();
      await server.finished;
    },
  };
}
