/**
 * The mock's HTTP listener on Node (`node:http`; also runs on Deno). Twin of `_server.deno.ts`.
 * Converts `IncomingMessage`/`ServerResponse` to `Request`/`Response`, with streamed request
 * bodies, and really destroys the socket for a dropped connection.
 *
 * @module
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import type { Listener, RawHandler } from "./_listen.ts";

function waitWritable(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

async function respond(
  req: IncomingMessage,
  res: ServerResponse,
  handler: RawHandler,
  fallbackHost: string,
): Promise<void> {
  const controller = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  }
  const method = req.method ?? "GET";
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? fallbackHost}`);
  const hasBody = method !== "GET" && method !== "HEAD";
  const init: RequestInit & { duplex: "half" } = {
    method,
    headers,
    body: hasBody ? Readable.toWeb(req) as unknown as ReadableStream<Uint8Array> : undefined,
    signal: controller.signal,
    duplex: "half",
  };
  let response: Response | null;
  try {
    response = await handler(new Request(url, init));
  } catch {
    response = new Response("Internal Server Error", { status: 500 });
  }
  if (response === null) {
    res.destroy();
    return;
  }
  response.headers.forEach((value, key) => {
    if (key !== "set-cookie") res.setHeader(key, value);
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader("set-cookie", cookies);
  res.writeHead(response.status, response.statusText || undefined);
  if (response.body && method !== "HEAD") {
    try {
      for await (const chunk of response.body) {
        if (res.destroyed) break;
        if (!res.write(chunk)) await waitWritable(res);
      }
    } catch {
      res.destroy();
      return;
    }
  }
  res.end();
}

/** Serves `handler` on `hostname:port` until `close()`. */
export async function serve(
  handler: RawHandler,
  options: { port: number; hostname: string },
): Promise<Listener> {
  let inflight = 0;
  let drained: (() => void)[] = [];
  const fallbackHost = `${options.hostname}:${options.port}`;
  const server = createServer((req, res) => {
    inflight++;
    respond(req, res, handler, fallbackHost).finally(() => {
      inflight--;
      if (inflight === 0) {
        for (const resolve of drained) resolve();
        drained = [];
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inflight > 0) await new Promise<void>((resolve) => drained.push(resolve));
      server.closeAllConnections();
      await closed;
    },
  };
}
