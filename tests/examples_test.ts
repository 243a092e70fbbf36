import { assert } from "./_deps.ts";
import { GitLabMock } from "../src/mock/mod.ts";

const root = new URL("../", import.meta.url);

function snippet(text: string): string {
  const start = text.indexOf("// README snippet start\n");
  const end = text.indexOf("// README snippet end");
  return text.slice(start + "// README snippet start\n".length, end).trim();
}

Deno.test("the README's minimal runner is examples/minimal_runner.ts, word for word", async () => {
  const example = await Deno.readTextFile(new URL("examples/minimal_runner.ts", root));
  const readme = await Deno.readTextFile(new URL("README.md", root));
  assert.ok(readme.includes(snippet(example)), "README and examples/minimal_runner.ts differ");
});

Deno.test("the minimal runner runs jobs against GitLab and stops gracefully on SIGTERM", async () => {
  const mock = new GitLabMock();
  const server = await mock.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const job = mock.job().script(["make deps", "make test"]).enqueue();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "examples/minimal_runner.ts"],
      cwd: root,
      env: { GITLAB_URL: server.url, RUNNER_TOKEN: mock.runnerToken, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await mock.waitFor(() => job.state === "success", { timeoutMs: 20_000 });
    child.kill("SIGTERM");
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(
      job.logText,
      /Running script for phase script\nStep: make deps\nStep: make test\n/,
    );
  } finally {
    await server.close();
  }
});
