// The client reading answers from the network (Deno.serve on 127.0.0.1): byte-stream bodies,
// read into the client's own buffer, with the system clock's deadlines.
import { assert } from "./_deps.ts";
import { Client } from "../src/api/client.ts";
import { parseJobPayloadText } from "../src/api/payload.ts";

const enc = new TextEncoder();

/** A GitLab on 127.0.0.1 answering every request with `answer()`. */
async function serve(answer: () => Response): Promise<{ url: string } & AsyncDisposable> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.body?.cancel();
    return answer();
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** A payload of about `size` bytes: many variables, like a real job's. */
function payloadText(id: number, size: number): string {
  const variables = [];
  for (let i = 0, length = 0; length < size; i++) {
    const variable = { key: `VAR_${i}`, value: `value-${i}-${"x".repeat(i % 50)}`, public: true };
    variables.push(variable);
    length += JSON.stringify(variable).length + 1;
  }
  return JSON.stringify({ id, token: `glcbt-job-${id}`, variables, steps: [] });
}

/** A body sent in pieces, `gapMs` apart (chunked: no declared length). */
function pieces(text: string, size: number, gapMs = 0, then?: "stall" | "error") {
  const bytes = enc.encode(text);
  let at = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at >= bytes.length) {
        if (then === "stall") return new Promise(() => {});
        if (then === "error") return controller.error(new Error("cut"));
        return controller.close();
      }
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

Deno.test("C2.1 over sockets, job payloads of 8 KB and 300 KB, declared or chunked, arrive whole", async () => {
  for (const size of [8_000, 300_000]) {
    const text = payloadText(7, size);
    const expected = parseJobPayloadText(text);
    for (const chunked of [false, true]) {
      await using gitlab = await serve(() =>
        new Response(chunked ? pieces(text, 7_000) : text, {
          status: 201,
          headers: { "content-type": "application/json" },
        })
      );
      const client = new Client(gitlab.url, { maxAttempts: 1 });
      const result = await client.requestJob("glrt-plain");
      assert.equal(result.type, "job");
      assert.deepEqual(result.type === "job" && result.job, expected, `${size} ${chunked}`);
    }
  }
});

Deno.test("C10.3 over sockets, a chunked payload over maxPayloadBytes names its id and token and the limit", async () => {
  const text = payloadText(8, 200_000);
  await using gitlab = await serve(() => new Response(pieces(text, 10_000), { status: 201 }));
  const client = new Client(gitlab.url, { maxAttempts: 1, maxPayloadBytes: 100_000 });
  const result = await client.requestJob("glrt-plain");
  assert.deepEqual(result, {
    type: "job",
    job: {
      ok: false,
      error: "the job payload exceeds the limit of 100000 bytes",
      id: 8,
      token: "glcbt-job-8",
    },
  });
});

Deno.test("C8.1 over sockets, a payload that stalls or is cut keeps what came: its id and token", async () => {
  const text = payloadText(9, 30_000).slice(0, 20_000);
  await using stalls = await serve(() =>
    new Response(pieces(text, 5_000, 5, "stall"), { status: 201 })
  );
  const idle = new Client(stalls.url, { maxAttempts: 1, idleTimeoutMs: 300 });
  const stalled = await idle.requestJob("glrt-plain");
  assert.equal(stalled.type, "job");
  assert.ok(stalled.type === "job" && !stalled.job.ok);
  assert.match(stalled.job.error, /could not be read: .*No data for 300 ms/);
  assert.equal(stalled.job.id, 9);
  assert.equal(stalled.job.token, "glcbt-job-9");
  await using cut = await serve(() =>
    new Response(pieces(text, 5_000, 5, "error"), { status: 201 })
  );
  const client = new Client(cut.url, { maxAttempts: 1 });
  const broken = await client.requestJob("glrt-plain");
  assert.ok(broken.type === "job" && !broken.job.ok);
  assert.match(broken.job.error, /the job payload could not be read/);
  assert.equal(broken.job.id, 9);
  assert.equal(broken.job.token, "glcbt-job-9");
});

Deno.test("C1.1 over sockets, verify reads GitLab's answer", async () => {
  await using gitlab = await serve(() =>
    new Response(JSON.stringify({ id: 12, token_expires_at: "2027-01-01T00:00:00Z" }), {
      status: 200,
    })
  );
  const client = new Client(gitlab.url, { maxAttempts: 1 });
  assert.deepEqual(await client.verify("glrt-plain"), {
    valid: true,
    id: 12,
    tokenExpiresAt: "2027-01-01T00:00:00Z",
  });
});
