// The README's "Use from Node" snippet, read from the README shipped in the package and run
// as a program with the built package (it imports `@x/gitlab-runner` by name).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { assertSnippetOutput, PACKAGE_DIR, readmeNodeSnippet } from "./_helpers.mjs";

const run = promisify(execFile);

test("the README's Node snippet runs against the mock served by node:http", async () => {
  const snippet = await readmeNodeSnippet();
  assert.match(snippet, /from "@x\/gitlab-runner"/);
  // Inside the package folder, so that the package's own name resolves to it.
  const file = join(PACKAGE_DIR, "node-test", "readme_snippet.gen.mjs");
  await writeFile(file, snippet);
  try {
    const { stdout, stderr } = await run(process.execPath, [file], { timeout: 20_000 });
    assertSnippetOutput(stdout);
    assert.equal(stderr, "");
  } finally {
    await rm(file, { force: true });
  }
});
