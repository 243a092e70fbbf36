// outputln: one line per call into the current job's log, whatever it is given (C4.9, C3.4).
import { assert } from "./_deps.ts";
import { harness, until } from "./_harness.ts";
import { outputln } from "../mod.ts";
import { type LogSink, withJobLog } from "../src/output.ts";

/** A sink that keeps what is written, as text. */
function capture(): LogSink & { text: () => string } {
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  return {
    write: (data) => chunks.push(typeof data === "string" ? data : decoder.decode(data)),
    writable: new WritableStream(),
    text: () => chunks.join(""),
  };
}

/** Values JSON and `String` both fail on, each with the line outputln writes for it. */
function unprintable(): [string, unknown, string][] {
  const cyclic = Object.create(null);
  cyclic.self = cyclic;
  const bigNoProto = Object.assign(Object.create(null), { n: 1n });
  const throwingJson = Object.assign(Object.create(null), {
    toJSON() {
      throw new Error("no JSON");
    },
  });
  const throwingToString = {
    toJSON: () => {
      throw new Error("no JSON");
    },
    toString: () => {
      throw new Error("no string");
    },
  };
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const badStack = new Error("bad stack");
  Object.defineProperty(badStack, "stack", { value: Object.create(null) });
  const throwingStack = new Error("stack throws");
  Object.defineProperty(throwingStack, "stack", {
    get() {
      throw new Error("no stack");
    },
  });
  return [
    ["a cyclic object with no prototype", cyclic, "[object Object]"],
    ["an object with no prototype holding a BigInt", bigNoProto, "[object Object]"],
    ["an object with no prototype whose toJSON throws", throwingJson, "[object Object]"],
    ["an object whose toJSON and toString throw", throwingToString, "[object Object]"],
    ["a revoked proxy", revoked, "[unprintable value]"],
    ["an error whose stack is an object with no prototype", badStack, "Error: bad stack"],
    ["an error whose stack getter throws", throwingStack, "Error: stack throws"],
  ];
}

Deno.test("C4.9 outputln never throws for what it prints: values JSON and String cannot render", () => {
  for (const [what, value, expected] of unprintable()) {
    const sink = capture();
    withJobLog(sink, () => outputln("before", value, "after"));
    assert.equal(sink.text(), `before ${expected} after\n`, what);
  }
});

Deno.test("C4.9 outputln keeps its formats: strings as is, errors as their stack, objects as JSON", () => {
  const sink = capture();
  const error = new Error("boom");
  withJobLog(sink, () => {
    outputln("text", 3, true, null, undefined, 2n, Symbol("s"));
    outputln({ a: [1, "x"] }, Object.assign(Object.create(null), { b: 2 }));
    outputln(error);
  });
  assert.equal(
    sink.text(),
    `text 3 true null undefined 2 Symbol(s)\n{"a":[1,"x"]} {"b":2}\n${error.stack}\n`,
  );
});

Deno.test("C3.4 a step that prints a cyclic object with no prototype succeeds, the line in its log", async () => {
  await using h = await harness();
  const job = h.mock.job().script(["print"]).enqueue();
  const cyclic = Object.create(null);
  cyclic.self = cyclic;
  const runner = await h.builder.build();
  await runner.requestJob(() => ({ step: async () => outputln("state:", cyclic) }));
  await until(h.clock, () => job.finishedAt !== undefined && runner.running === 0);
  assert.equal(job.state, "success");
  assert.ok(job.logText.includes("\nstate: [object Object]\n"), job.logText);
});
