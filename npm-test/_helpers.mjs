// Shared helpers of the Node test suite. The suite runs from `npm/node-test/` (copied there by
// `deno task test:npm`), so `@x/gitlab-runner` resolves to the built package by its own name.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { RunnerBuilder } from "@x/gitlab-runner";
import { GitLabMock } from "@x/gitlab-runner/mock";

/** The built package's folder (`npm/`). */
export const PACKAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
/** The repository root (the package folder's parent). */
export const REPO_DIR = join(PACKAGE_DIR, "..");

/**
 * A GitLab mock served over HTTP by `mock.listen()` (node:http on Node), a temporary build
 * directory and a runner builder aimed at the server with short intervals. Call `close()` in a
 * `finally` (Node 20 has no `await using`).
 */
export async function served(mockOptions = {}) {
  const mock = new GitLabMock(mockOptions);
  const server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await mkdtemp(join(tmpdir(), "glr-node-test-"));
  const builder = new RunnerBuilder(server.url, mock.runnerToken, dir)
    .systemId("s_0123456789ab")
    .checkInterval(20)
    .updateInterval(20)
    .keepAliveInterval(50)
    .abortGrace(2_000);
  const close = async () => {
    await mock.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { mock, server, dir, builder, close };
}

/** The first ```js block of the README's "Use from Node" section. */
export async function readmeNodeSnippet() {
  const readme = await readFile(join(PACKAGE_DIR, "README.md"), "utf8");
  const section = readme.split(/^## Use from Node$/m)[1]?.split(/^## /m)[0];
  if (section === undefined) throw new Error("README.md has no 'Use from Node' section");
  const match = /```js\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error("The 'Use from Node' section has no js code block");
  return match[1];
}

/** Checks what the README's snippet prints: the job state, then the job log GitLab stored. */
export function assertSnippetOutput(stdout) {
  const lines = stdout.split("\n");
  assert.equal(lines[0], "success");
  assert.equal(lines[1], "Running with @x/gitlab-runner 0.1.0");
  assert.match(lines[2], /^ {2}on runner s_[0-9a-f]{12}$/);
  assert.equal(lines[3], '\x1b[32;1mExecuting "step_script" stage of the job script\x1b[0;m');
  assert.equal(lines[4], "script: make test");
  assert.equal(lines[5], "\x1b[32;1mJob succeeded\x1b[0;m");
}

/** Resolves after `ms` milliseconds. */
export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
