// The mock's artifact upload (CONFORMANCE.md M13): a 307 to GitLab's own origin or to another
// one, selectable by option; multipart bodies read as a stream, with maxArtifactSize enforced
// while reading.
import { concat } from "./_data.ts";
import { assert } from "./_deps.ts";
import { ApiError, RequestError } from "../mod.ts";
import { Client } from "../src/client.ts";
import { GitLabMock, type MockJob, type MockOptions } from "../src/mock/mod.ts";
import { readMultipart } from "../src/mock/_multipart.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Enqueues a job and takes it with a raw call; returns the job and its token. */
async function runningJob(
  mock: GitLabMock,
  base: string = mock.url,
  fetchFn: typeof fetch = mock.fetch,
): Promise<{ job: MockJob; token: string }> {
  const job = mock.job().enqueue();
  const res = await fetchFn(`${base}/api/v4/jobs/request`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: mock.runnerToken }),
  });
  assert.equal(res.status, 201);
  const payload = await res.json();
  assert.equal(payload.id, job.id);
  return { job, token: payload.token };
}

/** A stream of `bytes` cut at the given offsets. */
function cut(bytes: Uint8Array, offsets: number[]): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const to of [...offsets, bytes.length]) {
    chunks.push(bytes.slice(from, to));
    from = to;
  }
  return ReadableStream.from(chunks);
}

/**
 * A pull-driven body of `total` bytes in `chunk`-sized pieces that counts what was pulled:
 * nothing is produced before the reader asks for it.
 */
function countingStream(head: Uint8Array, total: number, chunk: number) {
  const state = { pulled: 0, cancelled: false };
  let sentHead = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (!sentHead) {
        sentHead = true;
        c.enqueue(head.slice());
        return;
      }
      if (state.pulled >= total) {
        c.close();
        return;
      }
      const n = Math.min(chunk, total - state.pulled);
      state.pulled += n;
      c.enqueue(new Uint8Array(n).fill(0x5a));
    },
    cancel() {
      state.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

function post(
  mock: GitLabMock,
  id: number,
  token: string,
  body: BodyInit,
  contentType: string,
  query = "",
): Promise<Response> {
  return mock.fetch(`${mock.url}/api/v4/jobs/${id}/artifacts${query}`, {
    method: "POST",
    headers: { "job-token": token, "content-type": contentType },
    body,
    duplex: "half",
  } as RequestInit);
}

// ------------------------------------------------------------------ the 307 option

Deno.test("M13 uploadRedirect none (default): an upload is served without a redirect", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const client = new Client(mock.url, { fetch: mock.fetch });
  await client.uploadArtifact(job.id, token, { filename: "a.zip", open: () => new Blob(["a"]) });
  assert.deepEqual(mock.requests.filter((r) => r.route === "upload").map((r) => r.status), [201]);
  assert.equal(job.artifacts.length, 1);
});

Deno.test("M13 uploadRedirect same-origin in-process: Client.uploadArtifact follows the 307 with a fresh body", async () => {
  const mock = new GitLabMock({ uploadRedirect: "same-origin" });
  const { job, token } = await runningJob(mock);
  const client = new Client(mock.url, { fetch: mock.fetch });
  let opens = 0;
  await client.uploadArtifact(job.id, token, {
    filename: "bin.zip",
    artifactType: "archive",
    artifactFormat: "zip",
    open: () => {
      opens++;
      return ReadableStream.from([enc.encode("PK"), enc.encode("-bytes")]);
    },
  });
  assert.equal(opens, 2);
  const uploads = mock.requests.filter((r) => r.route === "upload");
  assert.deepEqual(uploads.map((r) => r.status), [307, 201]);
  assert.ok(uploads.every((r) => new URL(r.url).origin === new URL(mock.url).origin));
  assert.equal(new URL(uploads[1].url).searchParams.get("mock_redirected"), "1");
  assert.equal(new URL(uploads[1].url).searchParams.get("artifact_type"), "archive");
  assert.equal(job.artifacts.length, 1);
  assert.equal(job.artifacts[0].filename, "bin.zip");
  assert.equal(dec.decode(job.artifacts[0].data), "PK-bytes");
  // Every first attempt is redirected again.
  await client.uploadArtifact(job.id, token, {
    filename: "junit.xml.gz",
    artifactType: "junit",
    artifactFormat: "gzip",
    open: () => new Blob(["j"]),
  });
  assert.deepEqual(
    mock.requests.filter((r) => r.route === "upload").map((r) => r.status),
    [307, 201, 307, 201],
  );
  assert.equal(job.artifacts.length, 2);
});

Deno.test("M13 uploadRedirect other-origin in-process: Client.uploadArtifact refuses, the objects origin sees nothing", async () => {
  const mock = new GitLabMock({ uploadRedirect: "other-origin" });
  const { job, token } = await runningJob(mock);
  const client = new Client(mock.url, { fetch: mock.fetch });
  let opens = 0;
  await assert.rejects(
    client.uploadArtifact(job.id, token, {
      filename: "a.zip",
      open: () => {
        opens++;
        return new Blob(["secret build output"]);
      },
    }),
    (e: unknown) =>
      e instanceof RequestError && /another origin/.test(e.message) &&
      e.message.includes(mock.objectsUrl) && !e.message.includes(token),
  );
  assert.equal(opens, 1);
  const uploads = mock.requests.filter((r) => r.route === "upload");
  assert.deepEqual(uploads.map((r) => r.status), [307]);
  assert.equal(
    new URL(uploads[0].url).origin,
    new URL(mock.url).origin,
    "the only request went to GitLab",
  );
  assert.equal(mock.requests.filter((r) => new URL(r.url).origin === mock.objectsUrl).length, 0);
  assert.equal(job.artifacts.length, 0);
  assert.equal(mock.errors.length, 0);
});

Deno.test("M13 uploadRedirect other-origin: a careless client that follows gets 201 and leaks JOB-TOKEN", async () => {
  // The trap is real: plain fetch (redirect "follow") keeps custom headers across origins.
  const mock = new GitLabMock({ uploadRedirect: "other-origin" });
  const { job, token } = await runningJob(mock);
  const form = new FormData();
  form.append("file", new Blob(["bytes"]), "a.zip");
  const res = await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/artifacts`, {
    method: "POST",
    headers: { "job-token": token },
    body: form,
  });
  assert.equal(res.status, 201);
  assert.equal(await res.text(), "201");
  assert.equal(new URL(res.url).origin, mock.objectsUrl);
  const seen = mock.requests.filter((r) => new URL(r.url).origin === mock.objectsUrl);
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers.get("job-token"), token);
  assert.equal(new URL(seen[0].url).pathname, `/api/v4/jobs/${job.id}/artifacts`);
  assert.equal(job.artifacts.length, 0, "GitLab never got the artifact");
});

for (const server of ["deno", "node"] as const) {
  Deno.test(`M13 uploadRedirect over a real listener (${server}): same-origin followed, other-origin refused`, async () => {
    for (const uploadRedirect of ["same-origin", "other-origin"] as const) {
      const mock = new GitLabMock({ uploadRedirect });
      await using listener = await mock.listen({ server });
      const { job, token } = await runningJob(mock, listener.url, fetch);
      const client = new Client(listener.url);
      let opens = 0;
      // Large enough that the body is still being sent when the 307 is answered.
      const open = () => {
        opens++;
        return ReadableStream.from([new Uint8Array(2 << 20).fill(7), enc.encode("end")]);
      };
      const upload = client.uploadArtifact(job.id, token, { filename: "big.zip", open });
      const objects = () =>
        mock.requests.filter((r) => new URL(r.url).origin === listener.objectsUrl);
      if (uploadRedirect === "same-origin") {
        await upload;
        assert.equal(opens, 2);
        assert.equal(job.artifacts.length, 1);
        assert.equal(job.artifacts[0].data.length, (2 << 20) + 3);
        assert.deepEqual(
          mock.requests.filter((r) => r.route === "upload").map((r) => r.status),
          [307, 201],
        );
      } else {
        await assert.rejects(
          upload,
          (e: unknown) => e instanceof RequestError && e.message.includes(listener.objectsUrl),
        );
        assert.equal(opens, 1);
        assert.equal(job.artifacts.length, 0);
        assert.equal(objects().length, 0, "no request at all reached the other origin");
        // The other origin is live and would have taken it, token and all.
        const res = await fetch(`${listener.objectsUrl}/api/v4/jobs/${job.id}/artifacts`, {
          method: "POST",
          headers: { "job-token": token, "content-type": "multipart/form-data; boundary=x" },
          body: "--x--",
        });
        assert.equal(res.status, 201);
        await res.body?.cancel();
        assert.equal(objects().length, 1);
        assert.equal(objects()[0].headers.get("job-token"), token);
        assert.equal(job.artifacts.length, 0);
      }
      assert.equal(mock.errors.length, 0);
    }
  });
}

// ------------------------------------------------------------------ streamed uploads

const BOUNDARY = "----m13-boundary";

/** A multipart body with a preamble, a text field, the file, a field after it and an epilogue. */
function awkwardBody(file: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat([
    "preamble, ignored\r\n",
    `--${BOUNDARY}\r\n`,
    'Content-Disposition: form-data; name="artifact_type"\r\n\r\n',
    "junit",
    `\r\n--${BOUNDARY}  \r\n`, // transport padding
    'Content-Disposition: form-data; name="file"; filename="re\\"port.xml.gz"\r\n',
    "Content-Type: application/gzip\r\n\r\n",
    file,
    `\r\n--${BOUNDARY}\r\n`,
    'content-disposition: form-data; name="artifact_format"\r\n\r\n',
    "gzip",
    `\r\n--${BOUNDARY}--\r\n`,
    "epilogue, ignored",
  ]);
}

/** File bytes that look like boundaries without being one. */
const TRICKY_FILE = concat([
  "\r\n",
  `--${BOUNDARY.slice(0, 8)}`,
  "\r\n\r\n",
  `\r\n--${BOUNDARY}X not a delimiter: a boundary followed by data\r\n`,
  new Uint8Array([0, 13, 10, 45, 45, 255]),
  `\r\n-${BOUNDARY}`,
  "\r",
]);

Deno.test("M13 a multipart body split at every byte parses the same", async () => {
  const body = awkwardBody(TRICKY_FILE);
  const expected = [
    ["part", "artifact_type", undefined],
    ["text", "junit"],
    ["part", "file", 're"port.xml.gz'],
    ["text", dec.decode(TRICKY_FILE)],
    ["part", "artifact_format", undefined],
    ["text", "gzip"],
  ];
  const parse = async (stream: ReadableStream<Uint8Array>) => {
    const out: unknown[][] = [];
    let data: Uint8Array[] = [];
    for await (const event of readMultipart(stream, BOUNDARY)) {
      if (event.type === "part") out.push(["part", event.part.name, event.part.filename]);
      else if (event.type === "data") data.push(event.bytes.slice());
      else {
        out.push(["text", dec.decode(concat(data))]);
        data = [];
      }
    }
    return out;
  };
  assert.deepEqual(await parse(cut(body, [])), expected);
  for (let i = 1; i < body.length; i++) {
    assert.deepEqual(await parse(cut(body, [i])), expected, `split at ${i}`);
  }
  // One byte at a time, and every second and third byte.
  for (const step of [1, 2, 3]) {
    const offsets = [];
    for (let i = step; i < body.length; i += step) offsets.push(i);
    assert.deepEqual(await parse(cut(body, offsets)), expected, `every ${step} bytes`);
  }
});

Deno.test("M13 the mock stores the same artifact whatever the chunking of the upload", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const body = awkwardBody(TRICKY_FILE);
  const type = `multipart/form-data; boundary="${BOUNDARY}"`;
  const first = await post(mock, job.id, token, cut(body, []), type);
  assert.equal(first.status, 201);
  assert.equal(job.artifacts.length, 1);
  const [artifact] = job.artifacts;
  assert.deepEqual(artifact.data, TRICKY_FILE);
  assert.equal(artifact.filename, 're"port.xml.gz');
  assert.equal(artifact.contentType, "application/gzip");
  assert.deepEqual([artifact.type, artifact.format, artifact.paramsFrom], [
    "junit",
    "gzip",
    { type: "field", format: "field" },
  ]);
  // A re-upload of the identical file is 201 and stored once; different bytes would be 400,
  // a missed field would store a second (archive) artifact.
  for (let i = 1; i < body.length; i++) {
    const res = await post(mock, job.id, token, cut(body, [i, Math.min(i + 7, body.length)]), type);
    assert.equal(res.status, 201, `split at ${i}: ${await res.clone().text()}`);
    await res.body?.cancel();
  }
  assert.equal(job.artifacts.length, 1);
  assert.equal(mock.errors.length, 0);
});

Deno.test("M13 an upload over maxArtifactSize is 413 before the whole body is read", async () => {
  const limit = 256 * 1024;
  const total = 64 * 1024 * 1024;
  const mock = new GitLabMock({ maxArtifactSize: limit });
  const { job, token } = await runningJob(mock);
  const head = enc.encode(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.zip"\r\n\r\n`,
  );
  const { stream, state } = countingStream(head, total, 16 * 1024);
  const res = await post(mock, job.id, token, stream, `multipart/form-data; boundary=${BOUNDARY}`);
  assert.equal(res.status, 413);
  assert.deepEqual(await res.json(), { message: "file size has reached maximum size limit" });
  assert.ok(state.pulled <= limit + 64 * 1024, `pulled ${state.pulled} bytes`);
  assert.ok(state.cancelled, "the rest of the body was cancelled");
  assert.equal(job.artifacts.length, 0);

  // Exactly the limit is fine.
  const exact = countingStream(head, limit, 16 * 1024);
  const tail = enc.encode(`\r\n--${BOUNDARY}--\r\n`);
  const withTail = exact.stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({ flush: (c) => c.enqueue(tail) }),
  );
  const ok = await post(mock, job.id, token, withTail, `multipart/form-data; boundary=${BOUNDARY}`);
  assert.equal(ok.status, 201);
  assert.equal(job.artifacts[0].data.length, limit);
  assert.equal(mock.errors.length, 0);
});

Deno.test("M13 Client.uploadArtifact over maxArtifactSize: ApiError 413, the file stream barely read", async () => {
  const check = async (
    mock: GitLabMock,
    base: string,
    fetchFn: typeof fetch | undefined,
    bound: number,
  ) => {
    const { job, token } = await runningJob(mock, base, fetchFn ?? fetch);
    const total = 128 * 1024 * 1024;
    const { stream, state } = countingStream(new Uint8Array(0), total, 64 * 1024);
    const client = new Client(base, fetchFn ? { fetch: fetchFn } : {});
    await assert.rejects(
      client.uploadArtifact(job.id, token, { filename: "big.zip", open: () => stream }),
      (e: unknown) => e instanceof ApiError && e.status === 413,
    );
    assert.ok(state.pulled < bound, `pulled ${state.pulled} of ${total} bytes`);
    assert.equal(job.artifacts.length, 0);
    assert.equal(mock.errors.length, 0);
  };
  const options: MockOptions = { maxArtifactSize: 1024 * 1024 };
  const inProcess = new GitLabMock(options);
  await check(inProcess, inProcess.url, inProcess.fetch, 2 * 1024 * 1024);
  // Over a socket some of the body is in flight before the 413 arrives.
  const mock = new GitLabMock(options);
  await using listener = await mock.listen();
  await check(mock, listener.url, undefined, 32 * 1024 * 1024);
});

Deno.test("M13 malformed multipart bodies are 400, nothing stored", async () => {
  const mock = new GitLabMock();
  const { job, token } = await runningJob(mock);
  const good = `multipart/form-data; boundary=${BOUNDARY}`;
  const filePart =
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\nabc`;
  const cases: [string, string, BodyInit | undefined][] = [
    ["no boundary parameter", "multipart/form-data", `${filePart}\r\n--${BOUNDARY}--`],
    ["empty boundary", 'multipart/form-data; boundary=""', `${filePart}\r\n--${BOUNDARY}--`],
    ["no body", good, undefined],
    ["empty body", good, ""],
    ["another boundary", "multipart/form-data; boundary=other", `${filePart}\r\n--${BOUNDARY}--`],
    ["no closing delimiter", good, filePart],
    ["ends after a delimiter", good, `${filePart}\r\n--${BOUNDARY}`],
    ["ends in part headers", good, `--${BOUNDARY}\r\nContent-Disposition: form-data`],
    ["garbage after a delimiter", good, `--${BOUNDARY}  x\r\n\r\n`],
    [
      "a header line without colon",
      good,
      `--${BOUNDARY}\r\nnot a header\r\n\r\nx\r\n--${BOUNDARY}--`,
    ],
    [
      "part headers over 16 KiB",
      good,
      `--${BOUNDARY}\r\nX-Big: ${"a".repeat(17 * 1024)}\r\n\r\nx\r\n--${BOUNDARY}--`,
    ],
  ];
  for (const [what, type, body] of cases) {
    const res = await mock.fetch(`${mock.url}/api/v4/jobs/${job.id}/artifacts`, {
      method: "POST",
      headers: { "job-token": token, "content-type": type },
      body,
    });
    assert.equal(res.status, 400, what);
    const answer = await res.json();
    assert.ok(
      answer.message === "400 Bad Request - invalid multipart body" ||
        answer.error === "file is missing",
      `${what}: ${JSON.stringify(answer)}`,
    );
  }
  // Workhorse's rules on well-formed bodies still hold, streamed.
  const rules: [string, string][] = [
    [
      "two files",
      `${filePart}\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\nb\r\n--${BOUNDARY}--`,
    ],
    [
      "a file in another field",
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="metadata"; filename="m.gz"\r\n\r\nm\r\n--${BOUNDARY}--`,
    ],
    [
      "no file",
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\ntext\r\n--${BOUNDARY}--`,
    ],
  ];
  for (const [what, body] of rules) {
    const res = await post(mock, job.id, token, body, good);
    assert.equal(res.status, 400, what);
    await res.body?.cancel();
  }
  assert.equal(job.artifacts.length, 0);
  // A filename* (RFC 5987) wins over filename.
  const res = await post(
    mock,
    job.id,
    token,
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x"; filename*=UTF-8''r%C3%A9sum%C3%A9.zip\r\n\r\nz\r\n--${BOUNDARY}--\r\n`,
    good,
  );
  assert.equal(res.status, 201);
  assert.equal(job.artifacts[0].filename, "résumé.zip");
  assert.equal(mock.errors.length, 0);
});
