// A consumer project: `npm pack` of the built package, installed in a fresh project on this
// Node, type-checked with tsc (strict, NodeNext, skipLibCheck off, so the shipped .d.ts files
// are checked too) and running the README's Node snippet from there.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { assertSnippetOutput, PACKAGE_DIR, readmeNodeSnippet, REPO_DIR } from "./_helpers.mjs";

const exec = promisify(execFile);
const NPM = "npm";

/** A typed use of the public API: compiles only if the shipped types resolve and agree. */
const TYPED_TS = `import {
  ApiError,
  type Job,
  type JobHandler,
  type Phase,
  type Runner,
  RunnerBuilder,
  ScriptFailure,
} from "@x/gitlab-runner";
import { Client, type JobRequestResult, mapFailureReason } from "@x/gitlab-runner/client";
import { GitLabMock, type MockJob, type MockServer } from "@x/gitlab-runner/mock";

class Board implements JobHandler {
  constructor(readonly job: Job) {}
  async step(script: readonly string[], phase: Phase, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    this.job.trace(\`\${phase}: \${script.length} lines for \${this.job.variable("BOARD")?.value}\\n\`);
    if (script.includes("fail")) throw new ScriptFailure(2);
  }
  cleanup(): void {}
}

export async function main(): Promise<string> {
  const mock = new GitLabMock({ longPollMs: 0 });
  const server: MockServer = await mock.listen({ port: 0 });
  const job: MockJob = mock.job().variable("BOARD", "rpi4").script(["flash"]).enqueue();
  const runner: Runner = await new RunnerBuilder(server.url, mock.runnerToken, "/tmp/builds")
    .features(["refspecs"])
    .build();
  const took: boolean = await runner.requestJob((j) => new Board(j));
  await runner.drain();
  await mock.close();
  return \`\${took} \${job.state} \${job.logText.length}\`;
}

export function statusOf(error: unknown): number | undefined {
  return error instanceof ApiError ? error.status : undefined;
}

export async function jobIdOf(client: Client, token: string): Promise<number | undefined> {
  const answer: JobRequestResult = await client.requestJob(token);
  return answer.type === "job" && answer.job.ok ? answer.job.payload.id : undefined;
}

export const reason: string = mapFailureReason("runner_configuration_error", []);
`;

/** Deliberate type errors: tsc must report each of them (so the types are not \`any\`). */
const BAD_TS = `import { RunnerBuilder } from "@x/gitlab-runner";
import { GitLabMock } from "@x/gitlab-runner/mock";

export const count: number = new RunnerBuilder("https://gitlab.example.com", "glrt-x", "/b");
export const job = new GitLabMock().job().script("not a list").enqueue();
import { Client as NotInTheMainEntry } from "@x/gitlab-runner";
export const client = NotInTheMainEntry;
`;

function tsconfig(files, lib) {
  return JSON.stringify(
    {
      compilerOptions: {
        target: "ES2022",
        ...(lib ? { lib } : {}),
        module: "NodeNext",
        moduleResolution: "NodeNext",
        types: ["node"],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        allowJs: true,
        checkJs: true,
      },
      files,
    },
    null,
    2,
  );
}

/** Runs a command; resolves to its output and exit code instead of rejecting on failure. */
async function sh(command, args, cwd) {
  try {
    const { stdout, stderr } = await exec(command, args, { cwd, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== "number") throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

async function versionOf(name) {
  const file = join(REPO_DIR, "node_modules", name, "package.json");
  return JSON.parse(await readFile(file, "utf8")).version;
}

let work;
let consumer;
let packed;
/** tsc runs by tsconfig file, started together once the consumer project is ready. */
const typecheck = {};

before(async () => {
  work = await mkdtemp(join(tmpdir(), "glr-consumer-"));
  const pack = await sh(NPM, ["pack", "--json", "--pack-destination", work], PACKAGE_DIR);
  assert.equal(pack.code, 0, pack.stderr);
  packed = JSON.parse(pack.stdout)[0];
  consumer = join(work, "consumer");
  await mkdir(consumer);
  await writeFile(
    join(consumer, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2),
  );
  // The same TypeScript and @types/node as the build, from npm's cache when it has them.
  const install = await sh(NPM, [
    "install",
    "--prefer-offline",
    "--no-audit",
    "--no-fund",
    "--ignore-scripts",
    join(work, packed.filename),
    `typescript@${await versionOf("typescript")}`,
    `@types/node@${await versionOf("@types/node")}`,
  ], consumer);
  assert.equal(install.code, 0, install.stderr);
  await writeFile(join(consumer, "example.mjs"), await readmeNodeSnippet());
  await writeFile(join(consumer, "typed.ts"), TYPED_TS);
  await writeFile(join(consumer, "bad.ts"), BAD_TS);
  await writeFile(join(consumer, "tsconfig.json"), tsconfig(["example.mjs", "typed.ts"]));
  await writeFile(join(consumer, "tsconfig.bad.json"), tsconfig(["bad.ts"]));
  await writeFile(
    join(consumer, "tsconfig.node-lib.json"),
    tsconfig(["example.mjs", "typed.ts"], ["ES2022"]),
  );
  const tsc = join(consumer, "node_modules/typescript/bin/tsc");
  for (const config of ["tsconfig.json", "tsconfig.bad.json", "tsconfig.node-lib.json"]) {
    typecheck[config] = sh(process.execPath, [tsc, "-p", config], consumer);
  }
});

after(async () => {
  await Promise.all(Object.values(typecheck));
  if (work) await rm(work, { recursive: true, force: true });
});

test("npm pack ships the ESM, the types, README and LICENSE, and nothing else", () => {
  const files = packed.files.map((f) => f.path).sort();
  for (const f of ["LICENSE", "README.md", "package.json", "esm/mod.js", "esm/mod.d.ts"]) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  for (
    const f of [
      "esm/src/client.js",
      "esm/src/client.d.ts",
      "esm/src/mock/mod.js",
      "esm/src/mock/mod.d.ts",
      "esm/src/mock/_server.node.js",
    ]
  ) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  const stray = files.filter((f) => !/^(esm\/.+|LICENSE|README\.md|package\.json)$/.test(f));
  assert.deepEqual(stray, []);
  assert.equal(packed.name, "@x/gitlab-runner");
});

test("the package exports the entries of deno.json (but the Deno-only ./example)", async () => {
  const deno = JSON.parse(await readFile(join(REPO_DIR, "deno.json"), "utf8"));
  const pkg = JSON.parse(await readFile(join(PACKAGE_DIR, "package.json"), "utf8"));
  const wanted = Object.keys(deno.exports).filter((key) => key !== "./example").sort();
  assert.deepEqual(Object.keys(pkg.exports).sort(), wanted);
  assert.deepEqual(wanted, [".", "./client", "./mock"]);
  for (const [key, target] of Object.entries(pkg.exports)) {
    const base = `./esm/${deno.exports[key].slice(2, -3)}`;
    assert.deepEqual(target, { types: `${base}.d.ts`, default: `${base}.js` }, key);
  }
});

test("a fresh project installs the tarball and type-checks the README snippet and a TS example", async () => {
  const installed = JSON.parse(
    await readFile(join(consumer, "node_modules/@x/gitlab-runner/package.json"), "utf8"),
  );
  assert.equal(installed.version, packed.version);
  const ok = await typecheck["tsconfig.json"];
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  const bad = await typecheck["tsconfig.bad.json"];
  assert.notEqual(bad.code, 0);
  assert.match(bad.stdout, /bad\.ts\(4,\d+\): error TS2322: Type 'RunnerBuilder'/);
  assert.match(bad.stdout, /bad\.ts\(5,\d+\): error TS2345: Argument of type 'string'/);
  // The low-level client is in the `./client` entry only.
  assert.match(bad.stdout, /bad\.ts\(6,\d+\): error TS2305: .* has no exported member 'Client'/);
});

test("the shipped types also check without the DOM lib (lib ES2022 + @types/node only)", async () => {
  const result = await typecheck["tsconfig.node-lib.json"];
  assert.equal(result.code, 0, result.stdout + result.stderr);
});

test("the README's Node snippet runs in the consumer project", async () => {
  const { stdout, stderr } = await exec(process.execPath, ["example.mjs"], {
    cwd: consumer,
    timeout: 20_000,
  });
  assertSnippetOutput(stdout);
  assert.equal(stderr, "");
});
