/**
 * An upload sink for the artifact benchmark: a `node:http` server in a process of its own that
 * drains each request body, counts its bytes and answers `201` with
 * `{"bytes": n, "ms": time from the first to the last byte}`. The GitLab mock would keep a whole
 * upload in memory; this sink keeps nothing, for the runner's upload and the `curl` baseline alike.
 *
 * Prints `{"url": "http://127.0.0.1:<port>"}` once it listens; exits when stdin closes.
 *
 * @module
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

const server = createServer((request, response) => {
  let bytes = 0;
  let first = 0;
  request.on("data", (chunk: Uint8Array) => {
    if (bytes === 0) first = performance.now();
    bytes += chunk.length;
  });
  request.on("end", () => {
    const body = JSON.stringify({ bytes, ms: bytes ? performance.now() - first : 0 });
    response.writeHead(201, { "content-type": "application/json" });
    response.end(body);
  });
});
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}` }));
});
for await (const _ of Deno.stdin.readable) {
  // nothing is sent on stdin: its end means stop
}
server.close();
Deno.exit(0);
