import { assert } from "./_deps.ts";
import { TextLineStream } from "../src/log/text_line_stream.ts";

async function lines(chunks: string[], allowCR?: boolean): Promise<string[]> {
  const stream = ReadableStream.from(chunks).pipeThrough(
    allowCR === undefined ? new TextLineStream() : new TextLineStream({ allowCR }),
  );
  return await Array.fromAsync(stream);
}

Deno.test("TextLineStream splits on \\n and \\r\\n, strips the \\r, keeps empty lines", async () => {
  assert.deepEqual(await lines(["a\nb\r\nc\n\n\r\nd"]), ["a", "b", "c", "", "", "d"]);
  assert.deepEqual(await lines(["\n"]), [""]);
  assert.deepEqual(await lines(["\n\n"]), ["", ""]);
  assert.deepEqual(await lines(["a\n"]), ["a"]);
  assert.deepEqual(await lines([""]), []);
  assert.deepEqual(await lines([]), []);
});

Deno.test("TextLineStream emits the last line without a newline at flush", async () => {
  assert.deepEqual(await lines(["one\ntwo"]), ["one", "two"]);
  assert.deepEqual(await lines(["one", "", "two"]), ["onetwo"]);
});

Deno.test("TextLineStream handles lines and \\r\\n split across chunks", async () => {
  assert.deepEqual(await lines(["ab", "c\r", "\nde", "f\n", "g"]), ["abc", "def", "g"]);
  assert.deepEqual(await lines(["a\r", "", "\n"]), ["a"]);
  const text = "first line\r\nsecond\n\nfourth\r\n";
  for (let cut = 0; cut <= text.length; cut++) {
    assert.deepEqual(await lines([text.slice(0, cut), text.slice(cut)]), [
      "first line",
      "second",
      "",
      "fourth",
    ], `cut ${cut}`);
  }
});

Deno.test("TextLineStream keeps a lone \\r in the line without allowCR", async () => {
  assert.deepEqual(await lines(["a\rb\nc\r"]), ["a\rb", "c\r"]);
  assert.deepEqual(await lines(["a\rb\nc\r"], false), ["a\rb", "c\r"]);
});

Deno.test("TextLineStream with allowCR also splits on a lone \\r", async () => {
  assert.deepEqual(await lines(["a\rb\r\nc\rd\ne"], true), ["a", "b", "c", "d", "e"]);
  assert.deepEqual(await lines(["10%\r50%\r", "100%\n"], true), ["10%", "50%", "100%"]);
  assert.deepEqual(
    await lines(["a\r", "\nb"], true),
    ["a", "b"],
    "\\r then \\n in the next chunk is one break",
  );
  assert.deepEqual(await lines(["a\r", "b"], true), ["a", "b"]);
  assert.deepEqual(await lines(["a\r\r\n\rb"], true), ["a", "", "", "b"]);
  assert.deepEqual(await lines(["a\r"], true), ["a"], "a trailing \\r at the end is stripped");
  assert.deepEqual(await lines(["\r"], true), [""]);
  const text = "x\ry\r\nz\r\rw";
  for (let cut = 0; cut <= text.length; cut++) {
    assert.deepEqual(await lines([text.slice(0, cut), text.slice(cut)], true), [
      "x",
      "y",
      "z",
      "",
      "w",
    ], `cut ${cut}`);
  }
});

Deno.test("TextLineStream stays linear on large chunks with many lines", async () => {
  const big = "line of text\n".repeat(200_000) + "\r".repeat(1);
  const t0 = performance.now();
  const result = await lines([big], false);
  assert.equal(result.length, 200_001);
  const withCR = await lines(["x\n".repeat(200_000)], true);
  assert.equal(withCR.length, 200_000);
  assert.ok(performance.now() - t0 < 2000, "no quadratic rescans");
});

Deno.test("TextLineStream() without allowCR keeps a \\r inside a later line of the same chunk", async () => {
  const lines = ReadableStream.from(["a\nb\rc\nd\r\re\n", "f\rg"]).pipeThrough(
    new TextLineStream(),
  );
  assert.deepEqual(await Array.fromAsync(lines), ["a", "b\rc", "d\r\re", "f\rg"]);
});
