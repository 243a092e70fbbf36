/**
 * The metrics listener on Node (`node:http`; also runs on Deno). Twin of `_listen.deno.ts`.
 * Only bodiless requests matter here (GET and HEAD), so the request body is not read.
 *
 * @module
 */

import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Listening, ListenOptions, MetricsHandler } from "./_listen_types.ts";

async function respond(response: Response, res: ServerResponse, head: boolean): Promise<void> {
  response.headers.forEach((value, key) => res.setHeader(key, value));
  res.statusCode = response.status;
  const body = head ? "" : await response.text();
  res.end(body);
}

/** Serves `handler` on `hostname:port` until `close()`. Rejects when the address is taken. */
export function listen(handler: MetricsHandler, options: ListenOptions): Promise<Listening> {
  const server = createServer((req, res) => {
    const method = req.method ?? "GET";
    req.resume();
    let request: Request;
    try {
      request = new Request(new URL(req.url ?? "/", "http://localhost"), { method });
    } catch {
      // A target or a method `Request` refuses (CONNECT, TRACE): nothing here answers it.
      request = new Request("http://localhost/", { method: "OPTIONS" });
    }
    handler(request)
      .catch(() => new Response("Internal Server Error\n", { status: 500 }))
      .then((response) => respond(response, res, method === "HEAD"))
      .catch(() => res.destroy());
  });
  return new Promise<Listening>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
