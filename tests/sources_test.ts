// Job.sources(): the official runner's get_sources with real git against the mock's smart HTTP
// git server (CONFORMANCE C11).
import { assert } from "./_deps.ts";
import { isAbsolute, join, relative } from "node:path";
import {
  GitLabMock,
  type MockJob,
  type MockJobBuilder,
  type MockJobSpec,
} from "../src/mock/mod.ts";
import { RunnerBuilder } from "../src/builder.ts";
import type { Job } from "../src/job.ts";
import type { JobHandler } from "../src/handler.ts";
import { runScript } from "../src/script/run_script.ts";
import type { SourcesOptions, SourcesResult } from "../src/sources/sources.ts";
import { sourcesScript } from "../src/sources/_script.ts";

const dec = new TextDecoder();

/** Runs git (or `cmd`) in `cwd`; returns stdout; throws on failure. */
async function sh(cwd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("git", {
    args: ["-c", "user.name=Test", "-c", "user.email=test@example.com", ...args],
    cwd,
    env: { GIT_CONFIG_NOSYSTEM: "1", HOME: cwd, GIT_TERMINAL_PROMPT: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`git ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout).trim();
}

async function haveLfs(): Promise<boolean> {
  try {
    const out = await new Deno.Command("git", {
      args: ["lfs", "version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.code === 0;
  } catch {
    return false;
  }
}

async function write(path: string, text: string): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
}

/** A repository with history on main, a tag, a branch, a merge-request ref. */
async function makeRepo(dir: string, name = "project"): Promise<{
  dir: string;
  gitDir: string;
  main: string;
  first: string;
  tag: string;
  feature: string;
  mr: string;
  commits: number;
}> {
  await Deno.mkdir(dir, { recursive: true });
  await sh(dir, "init", "-q", "-b", "main");
  await write(join(dir, "README.md"), `# ${name}\n`);
  await write(join(dir, "build.sh"), "echo built from $(cat README.md)\n");
  await sh(dir, "add", ".");
  await sh(dir, "commit", "-q", "-m", "first");
  const first = await sh(dir, "rev-parse", "HEAD");
  for (let i = 2; i <= 4; i++) {
    await write(join(dir, "history.txt"), `commit ${i}\n`);
    await sh(dir, "add", ".");
    await sh(dir, "commit", "-q", "-m", `commit ${i}`);
  }
  await sh(dir, "tag", "v1.0");
  const tag = await sh(dir, "rev-parse", "HEAD");
  await sh(dir, "checkout", "-q", "-b", "feature");
  await write(join(dir, "feature.txt"), "feature\n");
  await sh(dir, "add", ".");
  await sh(dir, "commit", "-q", "-m", "feature");
  const feature = await sh(dir, "rev-parse", "HEAD");
  await sh(dir, "checkout", "-q", "-b", "mr-source");
  await write(join(dir, "mr.txt"), "merge request\n");
  await sh(dir, "add", ".");
  await sh(dir, "commit", "-q", "-m", "mr");
  const mr = await sh(dir, "rev-parse", "HEAD");
  await sh(dir, "update-ref", "refs/merge-requests/1/head", mr);
  await sh(dir, "checkout", "-q", "main");
  await sh(dir, "branch", "-D", "mr-source");
  await write(join(dir, "main.txt"), "main\n");
  await sh(dir, "add", ".");
  await sh(dir, "commit", "-q", "-m", "main 5");
  const main = await sh(dir, "rev-parse", "HEAD");
  return { dir, gitDir: join(dir, ".git"), main, first, tag, feature, mr, commits: 5 };
}

interface Ran {
  job: MockJob;
  result?: SourcesResult;
  error?: unknown;
  log: string;
}

/** The job spec of a pipeline on `main` of the served `mock/project`, with these variables. */
function onMain(repo: { main: string }, variables: Record<string, string> = {}): MockJobSpec {
  return {
    projectPath: "mock/project",
    sha: repo.main,
    ref: "main",
    variables: Object.entries(variables).map(([key, value]) => ({ key, value })),
  };
}

/** A listening mock, a runner against it, and a root dir. */
async function setup() {
  const root = await Deno.makeTempDir({ prefix: "sources-test-" });
  const mock = new GitLabMock();
  const server = await mock.listen();
  const builder = new RunnerBuilder(server.url, mock.runnerToken, join(root, "builds"))
    .features(["refspecs"]);
  const runner = await builder.build();
  /** Runs one job: `job.sources(dir, options)` in the factory, then its script in the checkout. */
  async function run(
    make: (m: GitLabMock) => MockJobBuilder,
    options: { dir?: string; sources?: SourcesOptions; during?: (job: Job) => void } = {},
  ): Promise<Ran> {
    const job = make(mock).enqueue();
    const ran: Ran = { job, log: "" };
    await runner.requestJob(async (j: Job): Promise<JobHandler> => {
      options.during?.(j);
      try {
        ran.result = await j.sources(options.dir, options.sources);
      } catch (error) {
        ran.error = error;
        throw error;
      }
      const cwd = ran.result.dir;
      return {
        step: async (script, _phase, signal) => {
          const code = await runScript(script, { cwd, variables: j.variables, signal });
          if (code !== 0) throw new Error(`exit ${code}`);
        },
      };
    });
    await runner.drain();
    ran.log = job.logText;
    return ran;
  }
  return {
    root,
    mock,
    server,
    run,
    async [Symbol.asyncDispose]() {
      await mock.close();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test("C11.1 clone: the job's commit is checked out, in the official runner's words", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const ran = await t.run((m) =>
    m.job(onMain(repo, { GIT_STRATEGY: "clone" })).script([
      "sh build.sh",
      "test -f main.txt",
      "git rev-parse HEAD",
    ])
  );
  assert.equal(ran.job.state, "success", ran.log);
  assert.equal(ran.result?.strategy, "clone");
  assert.match(ran.log, /Getting source from Git repository/);
  assert.match(ran.log, /Fetching changes with git depth set to 20\.\.\./);
  assert.match(ran.log, /Initialized empty Git repository in /);
  assert.match(ran.log, /Created fresh repository\./);
  assert.ok(
    ran.log.includes(`Checking out ${repo.main.slice(0, 8)} as detached HEAD (ref is main)...`),
  );
  assert.match(ran.log, /Skipping Git submodules setup/);
  assert.match(ran.log, /built from # project/);
  assert.ok(ran.log.includes(repo.main));
});

/** Every file under `dir` (recursively) whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  const enc = new TextEncoder().encode(needle);
  async function walk(d: string) {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.isFile) {
        const data = await Deno.readFile(p);
        const text = dec.decode(data);
        if (text.includes(needle) || data.length >= enc.length && text.includes(needle)) {
          found.push(p);
        }
      }
    }
  }
  await walk(dir);
  return found;
}

Deno.test("C11.1 clone is the default when the project does not allow fetch", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const dir = join(t.root, "checkout");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "stale.txt"), "from before\n");
  const ran = await t.run(
    (m) =>
      m.job({
        projectPath: "mock/project",
        sha: repo.main,
        ref: "main",
        payload: { allow_git_fetch: false },
      }).script(["test ! -e stale.txt"]),
    { dir },
  );
  assert.equal(ran.job.state, "success", ran.log);
  assert.equal(ran.result?.strategy, "clone");
  assert.equal(ran.result?.dir, dir);
});

Deno.test("C11.1 fetch reuses the previous checkout and cleans it", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const dir = join(t.root, "checkout");
  const first = await t.run(
    (m) =>
      m.job({ projectPath: "mock/project", sha: repo.feature, ref: "feature" })
        .script(["echo junk > untracked.txt", "test -f feature.txt"]),
    { dir },
  );
  assert.equal(first.job.state, "success", first.log);
  assert.equal(first.result?.strategy, "fetch"); // the mock allows fetch, like GitLab's default
  assert.match(first.log, /Created fresh repository\./);
  const marker = (await Deno.stat(join(dir, ".git", "objects"))).ino;

  const second = await t.run(
    (m) =>
      m.job({ projectPath: "mock/project", sha: repo.main, ref: "main" })
        .script(["test ! -e untracked.txt", "test ! -e feature.txt", "test -f main.txt"]),
    { dir },
  );
  assert.equal(second.job.state, "success", second.log);
  assert.match(second.log, /Reinitialized existing Git repository in /);
  assert.doesNotMatch(second.log, /Created fresh repository/);
  assert.equal((await Deno.stat(join(dir, ".git", "objects"))).ino, marker); // same repository
  assert.equal(await sh(dir, "rev-parse", "HEAD"), repo.main);

  // GIT_CLEAN_FLAGS=none keeps what the previous job left.
  await Deno.writeTextFile(join(dir, "kept.txt"), "kept\n");
  const third = await t.run(
    (m) => m.job(onMain(repo, { GIT_CLEAN_FLAGS: "none" })).script(["test -f kept.txt"]),
    { dir },
  );
  assert.equal(third.job.state, "success", third.log);
});

Deno.test("C11.1 none keeps the directory as it is, empty empties it; neither checks out", async () => {
  await using t = await setup();
  const dir = join(t.root, "work");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "kept.txt"), "kept\n");
  const none = await t.run(
    (m) =>
      m.job({ variables: [{ key: "GIT_STRATEGY", value: "none" }] }).script(["test -f kept.txt"]),
    { dir },
  );
  assert.equal(none.job.state, "success", none.log);
  assert.equal(none.result?.strategy, "none");
  assert.equal(none.result?.sha, undefined);
  assert.ok(none.log.includes("Skipping Git repository setup\x1b"));
  assert.match(none.log, /Skipping Git checkout/);
  assert.match(none.log, /Skipping Git submodules setup/);
  assert.doesNotMatch(none.log, /Fetching changes/);
  await assert.rejects(Deno.stat(join(dir, ".git")));

  const empty = await t.run(
    (m) =>
      m.job({ variables: [{ key: "GIT_STRATEGY", value: "empty" }] })
        .script(['test -z "$(ls -A)"']),
    { dir },
  );
  assert.equal(empty.job.state, "success", empty.log);
  assert.match(
    empty.log,
    /Skipping Git repository setup and creating an empty build directory/,
  );
  assert.deepEqual([...Deno.readDirSync(dir)], []);
});

Deno.test("C11.1 GIT_DEPTH gives a shallow fetch; depth 0 unshallows the previous checkout", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const dir = join(t.root, "checkout");
  const shallow = await t.run(
    (m) => m.job(onMain(repo, { GIT_DEPTH: "1" })),
    { dir },
  );
  assert.equal(shallow.job.state, "success", shallow.log);
  assert.match(shallow.log, /Fetching changes with git depth set to 1\.\.\./);
  assert.equal(await sh(dir, "rev-list", "--count", "HEAD"), "1");
  await Deno.stat(join(dir, ".git", "shallow"));

  const full = await t.run(
    (m) => m.job(onMain(repo, { GIT_DEPTH: "0" })),
    { dir },
  );
  assert.equal(full.job.state, "success", full.log);
  assert.ok(full.log.includes("Fetching changes...\x1b"));
  assert.equal(await sh(dir, "rev-list", "--count", "HEAD"), String(repo.commits));
  await assert.rejects(Deno.stat(join(dir, ".git", "shallow")));
  // Depth 0 fetched every branch and tag (GitLab's wildcard refspecs).
  assert.equal(await sh(dir, "rev-parse", "refs/remotes/origin/feature"), repo.feature);
  assert.equal(await sh(dir, "rev-parse", "refs/tags/v1.0"), repo.tag);
});

Deno.test("C11.1 tags and GIT_CHECKOUT=false", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const tag = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha: repo.tag, ref: "v1.0", refType: "tag" })
      .script(['test "$(git describe --tags)" = v1.0'])
  );
  assert.equal(tag.job.state, "success", tag.log);
  assert.ok(
    tag.log.includes(`Checking out ${repo.tag.slice(0, 8)} as detached HEAD (ref is v1.0)`),
  );

  const dir = join(t.root, "nocheckout");
  const none = await t.run(
    (m) =>
      m.job(onMain(repo, { GIT_CHECKOUT: "false" })).script([
        "test ! -e README.md",
        "git cat-file -e " + repo.main,
      ]),
    { dir },
  );
  assert.equal(none.job.state, "success", none.log);
  assert.match(none.log, /Skipping Git checkout/);
  assert.equal(none.result?.sha, undefined);
});

Deno.test("C11.1 merge-request pipelines: the refspecs fetch a commit on no branch", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const ran = await t.run((m) =>
    m.job({
      projectPath: "mock/project",
      sha: repo.mr,
      ref: "refs/merge-requests/1/head",
      pipelineId: 77,
    }).script(["test -f mr.txt", 'test "$(git rev-parse HEAD)" = ' + repo.mr])
  );
  assert.equal(ran.job.state, "success", ran.log);
  const refspecs = (ran.job.payload?.git_info as { refspecs: string[] }).refspecs;
  assert.deepEqual(refspecs, [`+${repo.mr}:refs/pipelines/77`]);
  assert.equal(await sh(ran.result!.dir, "rev-parse", "refs/pipelines/77").catch(() => ""), "");
});

Deno.test("C11.1 sha256 repositories (repo_object_format)", async () => {
  await using t = await setup();
  const dir = join(t.root, "src256");
  await Deno.mkdir(dir, { recursive: true });
  await sh(dir, "init", "-q", "-b", "main", "--object-format=sha256");
  await write(join(dir, "a.txt"), "sha256\n");
  await sh(dir, "add", ".");
  await sh(dir, "commit", "-q", "-m", "one");
  const sha = await sh(dir, "rev-parse", "HEAD");
  assert.equal(sha.length, 64);
  t.mock.git.serve("mock/project", join(dir, ".git"));
  const ran = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha, ref: "main" }).repoObjectFormat("sha256")
      .script(["test -f a.txt", 'test "$(git rev-parse --show-object-format)" = sha256'])
  );
  assert.equal(ran.job.state, "success", ran.log);
});

/** A project with submodule `lib` (relative URL), which has submodule `deep`. */
async function makeSubmodules(root: string) {
  const deep = join(root, "deep");
  await Deno.mkdir(deep, { recursive: true });
  await sh(deep, "init", "-q", "-b", "main");
  await write(join(deep, "deep.txt"), "deep\n");
  await sh(deep, "add", ".");
  await sh(deep, "commit", "-q", "-m", "deep");
  const lib = join(root, "lib");
  await Deno.mkdir(lib, { recursive: true });
  await sh(lib, "init", "-q", "-b", "main");
  await write(join(lib, "lib.txt"), "lib\n");
  await sh(lib, "add", ".");
  await sh(lib, "-c", "protocol.file.allow=always", "submodule", "add", "-q", deep, "deep");
  await sh(lib, "config", "-f", ".gitmodules", "submodule.deep.url", "../deep.git");
  await sh(lib, "add", ".");
  await sh(lib, "commit", "-q", "-m", "lib");
  const project = join(root, "project");
  await Deno.mkdir(project, { recursive: true });
  await sh(project, "init", "-q", "-b", "main");
  await write(join(project, "main.txt"), "main\n");
  await sh(project, "add", ".");
  await sh(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "lib");
  await sh(project, "config", "-f", ".gitmodules", "submodule.lib.url", "../lib.git");
  await sh(project, "add", ".");
  await sh(project, "commit", "-q", "-m", "project");
  return {
    project: join(project, ".git"),
    lib: join(lib, ".git"),
    deep: join(deep, ".git"),
    sha: await sh(project, "rev-parse", "HEAD"),
  };
}

Deno.test("C11.1 submodules: normal gets the first level, recursive all, with the job token", async () => {
  await using t = await setup();
  const s = await makeSubmodules(join(t.root, "src"));
  t.mock.git.serve("mock/project", s.project);
  const lib = t.mock.git.serve("mock/lib", s.lib);
  t.mock.git.serve("mock/deep", s.deep);
  const normal = await t.run((m) =>
    m.job({
      projectPath: "mock/project",
      sha: s.sha,
      ref: "main",
      variables: [{ key: "GIT_SUBMODULE_STRATEGY", value: "normal" }],
    }).script(["test -f lib/lib.txt", "test ! -e lib/deep/deep.txt"])
  );
  assert.equal(normal.job.state, "success", normal.log);
  assert.match(normal.log, /Updating\/initializing submodules with git depth set to 20\.\.\./);
  assert.match(normal.log, /Updated submodules/);
  assert.ok(lib.requests > 0);

  const recursive = await t.run((m) =>
    m.job({
      projectPath: "mock/project",
      sha: s.sha,
      ref: "main",
      variables: [
        { key: "GIT_SUBMODULE_STRATEGY", value: "recursive" },
        { key: "GIT_SUBMODULE_DEPTH", value: "1" },
      ],
    }).script(["test -f lib/lib.txt", "test -f lib/deep/deep.txt"])
  );
  assert.equal(recursive.job.state, "success", recursive.log);
  assert.match(
    recursive.log,
    /Updating\/initializing submodules recursively with git depth set to 1\.\.\./,
  );
  const token = recursive.job.token;
  assert.equal(recursive.log.includes(token), false);
});

Deno.test("C11.1 GIT_SUBMODULE_PATHS and GIT_SUBMODULE_FORCE_HTTPS", async () => {
  await using t = await setup();
  const s = await makeSubmodules(join(t.root, "src"));
  // The project's .gitmodules names lib by an SSH URL of the GitLab host.
  const work = join(t.root, "src", "project");
  const host = new URL(t.server.url).hostname;
  await sh(work, "config", "-f", ".gitmodules", "submodule.lib.url", `git@${host}:mock/lib.git`);
  await sh(work, "commit", "-q", "-am", "ssh url");
  const sha = await sh(work, "rev-parse", "HEAD");
  t.mock.git.serve("mock/project", s.project);
  t.mock.git.serve("mock/lib", s.lib);
  t.mock.git.serve("mock/deep", s.deep);
  const ran = await t.run(
    (m) =>
      m.job({
        projectPath: "mock/project",
        sha,
        ref: "main",
        variables: [
          { key: "GIT_SUBMODULE_STRATEGY", value: "normal" },
          { key: "GIT_SUBMODULE_FORCE_HTTPS", value: "true" },
          { key: "GIT_SUBMODULE_PATHS", value: "lib" },
          { key: "CI_SERVER_HOST", value: host },
        ],
      }).script(["test -f lib/lib.txt"]),
    { dir: join(t.root, "checkout") },
  );
  assert.equal(ran.job.state, "success", ran.log);
  // The rewrite lived outside the checkout only.
  const config = await Deno.readTextFile(join(ran.result!.dir, ".git", "config"));
  assert.equal(config.includes("insteadOf"), false);
});

Deno.test("C11.1 LFS files are pulled after the checkout", async (t) => {
  if (!(await haveLfs())) {
    console.warn("SKIPPED: git lfs is not installed (apt-get install git-lfs)");
    await t.step({ name: "git lfs is not installed", ignore: true, fn: () => {} });
    return;
  }
  await using h = await setup();
  const dir = join(h.root, "lfs");
  await Deno.mkdir(dir, { recursive: true });
  await sh(dir, "init", "-q", "-b", "main");
  await sh(dir, "lfs", "install", "--local");
  await sh(dir, "lfs", "track", "*.bin");
  await write(join(dir, "data.bin"), "large binary content\n");
  await sh(dir, "add", ".");
  await sh(dir, "commit", "-q", "-m", "lfs");
  const sha = await sh(dir, "rev-parse", "HEAD");
  h.mock.git.serve("mock/project", join(dir, ".git"));
  const ran = await h.run((m) =>
    m.job({ projectPath: "mock/project", sha, ref: "main" })
      .script(['test "$(cat data.bin)" = "large binary content"'])
  );
  assert.equal(ran.job.state, "success", ran.log);
  assert.equal(ran.log.includes(ran.job.token), false);
});

Deno.test("C11.1 hooks run around the sources; GET_SOURCES_ATTEMPTS retries a failed fetch", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  const served = t.mock.git.serve("mock/project", repo.gitDir, { failRequests: 1 });
  const ran = await t.run((m) =>
    m.job({
      projectPath: "mock/project",
      sha: repo.main,
      ref: "main",
      variables: [{ key: "GET_SOURCES_ATTEMPTS", value: "3" }],
      hooks: [
        { name: "pre_get_sources_script", script: ["echo before the sources in $PWD"] },
        { name: "post_get_sources_script", script: ["test -f main.txt && echo after"] },
      ],
    })
  );
  assert.equal(ran.job.state, "success", ran.log);
  assert.equal(ran.result?.attempts, 2);
  assert.match(ran.log, /WARNING: Retrying\.\.\./);
  assert.match(ran.log, /\$ echo before the sources/);
  assert.match(ran.log, /\nafter\n/);
  assert.ok(ran.log.indexOf("before the sources") < ran.log.indexOf("Fetching changes"));
  assert.equal(served.refused, 0 + served.refused); // counters are live

  // One attempt (the default): the failure fails the job, with git's words in the log.
  t.mock.git.serve("mock/project", repo.gitDir, { failRequests: 1 });
  const failed = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha: repo.main, ref: "main" })
  );
  assert.equal(failed.job.state, "failed");
  assert.equal(failed.job.failureReason, "script_failure");
  assert.match(failed.log, /500/);
  assert.doesNotMatch(failed.log, /Retrying/);
});

Deno.test("C11.1 a wrong job token fails the job clearly (403), none is refused with 401", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  const served = t.mock.git.serve("mock/project", repo.gitDir);
  const wrong = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha: repo.main, ref: "main" }).payload((p) => {
      const git = p.git_info as { repo_url: string };
      git.repo_url = git.repo_url.replace(/:[^:@/]+@/, ":not-the-token@");
      return p;
    })
  );
  assert.equal(wrong.job.state, "failed");
  assert.equal(wrong.job.failureReason, "script_failure");
  assert.match(wrong.log, /The requested URL returned error: 403/);
  assert.match(wrong.log, /Getting the sources failed with exit code 128|ERROR/);
  assert.ok(served.refused >= 1);

  const before = served.refused;
  const start = Date.now();
  const anonymous = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha: repo.main, ref: "main" }).payload((p) => {
      const git = p.git_info as { repo_url: string };
      git.repo_url = git.repo_url.replace(/\/\/[^@]+@/, "//");
      return p;
    })
  );
  assert.equal(anonymous.job.state, "failed");
  assert.ok(served.refused > before);
  assert.match(anonymous.log, /terminal prompts disabled|Authentication failed|could not read/);
  assert.ok(Date.now() - start < 30_000, "git did not wait for a password");
});

/** Command lines of all processes (`ps` reads /proc/<pid>/cmdline; Deno would need -A). */
async function commandLines(): Promise<string[]> {
  const out = await new Deno.Command("ps", { args: ["-e", "-ww", "-o", "args="], stdout: "piped" })
    .output();
  return dec.decode(out.stdout).split("\n").filter((l) => l.trim() !== "" && !l.startsWith("ps "));
}

Deno.test("C11.2 the job token never lands in .git/config, argv or the log; C11.3 cancel stops git", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  const served = t.mock.git.serve("mock/project", repo.gitDir, { delayMs: 60_000 });
  const dir = join(t.root, "slow");
  let token = "";
  let argvWithToken: string[] = [];
  let gitRunning = false;
  const job = t.mock.job({ projectPath: "mock/project", sha: repo.main, ref: "main" });
  const watch = (async () => {
    await t.mock.waitFor((m) => m.jobs.some((j) => j.state === "running"), { timeoutMs: 30_000 });
    const running = t.mock.jobs.find((j) => j.state === "running")!;
    token = running.token;
    // Wait for the fetch to hang in the slow upload-pack, then look at every command line.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const lines = await commandLines();
      if (lines.some((l) => l.includes("remote-http") || l.includes("fetch origin"))) {
        gitRunning = served.requests >= 2;
        if (gitRunning) {
          argvWithToken = lines.filter((l) => l.includes(token));
          break;
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    t.mock.cancel(running.id);
  })();
  const start = Date.now();
  const ran = await t.run(() => job, { dir });
  await watch;
  assert.ok(gitRunning, "git was seen fetching");
  assert.deepEqual(argvWithToken, []);
  assert.equal(ran.job.state, "canceled", ran.log);
  assert.ok(Date.now() - start < 40_000);
  // No git left behind.
  const left = (await commandLines()).filter((l) => l.includes(dir) || l.includes("remote-http"));
  assert.deepEqual(left, []);
  assert.equal(ran.log.includes(token), false);
  assert.deepEqual(await filesContaining(join(dir, ".git"), token), []);
  const config = await Deno.readTextFile(join(dir, ".git", "config"));
  assert.match(config, /url = http:\/\/127\.0\.0\.1:\d+\/mock\/project\.git/);
});

Deno.test("C11.2 after a successful fetch nothing holds the token: not .git, not the temp dir", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const dir = join(t.root, "checkout");
  const ran = await t.run(
    (m) => m.job(onMain(repo, { GIT_FETCH_EXTRA_FLAGS: "--prune" })),
    { dir },
  );
  assert.equal(ran.job.state, "success", ran.log);
  const token = ran.job.token;
  assert.match(ran.log, /From http:\/\/127\.0\.0\.1:\d+\/mock\/project/); // not quiet: the URL shows
  assert.equal(ran.log.includes(token), false);
  assert.deepEqual(await filesContaining(dir, token), []);
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  for await (const e of Deno.readDir(tmp)) {
    if (!e.name.startsWith("gitlab-runner-git-")) continue;
    const leaked = await filesContaining(join(tmp, e.name), token).catch(() => []);
    assert.deepEqual(leaked, []);
  }
});

Deno.test("C11.3 the job timeout aborts a slow fetch", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir, { delayMs: 60_000 });
  const start = Date.now();
  const ran = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha: repo.main, ref: "main" }).timeout(3)
  );
  assert.equal(ran.job.state, "failed", ran.log);
  assert.equal(ran.job.failureReason, "job_execution_timeout");
  assert.ok(Date.now() - start < 30_000);
  assert.ok(ran.error !== undefined);
});

Deno.test("C11 a relative build dir is made absolute: CI_PROJECT_DIR and file variables work after cd", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "sources-rel-" });
  try {
    const mock = new GitLabMock();
    const relativeDir = relative(Deno.cwd(), join(tmp, "builds"));
    assert.equal(isAbsolute(relativeDir), false);
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, relativeDir)
      .fetch(mock.fetch).build();
    const job = mock.job({
      variables: [
        { key: "GIT_STRATEGY", value: "none" },
        { key: "CONFIG", value: "from a file variable", file: true },
      ],
    }).script(["cd /", 'test "$(cat "$CONFIG")" = "from a file variable"', 'cd "$CI_PROJECT_DIR"'])
      .enqueue();
    let seen = "";
    await runner.requestJob((j: Job): JobHandler => {
      seen = j.buildDir;
      return {
        step: async (script, _phase, signal) => {
          const code = await runScript(script, {
            cwd: j.buildDir,
            variables: j.variables,
            fileVariablesDir: `${j.buildDir}.tmp`,
            signal,
          });
          if (code !== 0) throw new Error(`exit ${code}`);
        },
      };
    });
    await runner.drain();
    assert.equal(seen, join(tmp, "builds", String(job.id)));
    assert.equal(job.state, "success", job.logText);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("C11 the runner's variables (CI_PROJECT_DIR, CI_BUILDS_DIR) are set before expansion", async () => {
  const root = await Deno.makeTempDir({ prefix: "sources-vars-" });
  try {
    const mock = new GitLabMock();
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, root)
      .fetch(mock.fetch).build();
    const job = mock.job({
      variables: [
        { key: "OUT_DIR", value: "$CI_PROJECT_DIR/out" },
        { key: "CACHE_DIR", value: "${CI_BUILDS_DIR}/cache" },
      ],
    }).enqueue();
    let out: string | undefined;
    let cache: string | undefined;
    let server: string | undefined;
    await runner.requestJob((j: Job): JobHandler => {
      return {
        step: async () => {
          let text = "";
          const output = new WritableStream<Uint8Array>({
            write: (c) => void (text += dec.decode(c)),
          });
          await runScript(['echo "$OUT_DIR|$CACHE_DIR|$CI_SERVER"'], {
            variables: j.variables,
            output,
            echo: false,
          });
          [out, cache, server] = text.trim().split("|");
        },
      };
    });
    await runner.drain();
    assert.equal(job.state, "success", job.logText);
    assert.equal(out, join(root, String(job.id), "out"));
    assert.equal(cache, join(root, "cache"));
    assert.equal(server, "yes");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("C11.5 the example shell runner checks out each job's sources and announces refspecs", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const buildDir = join(t.root, "runner-builds");
  // A merge-request pipeline's job: GitLab gives it only to runners announcing refspecs.
  const job = t.mock.job({
    projectPath: "mock/project",
    sha: repo.mr,
    ref: "refs/merge-requests/1/head",
  }).script(["cat mr.txt", 'test "$PWD" = "$CI_PROJECT_DIR"']).enqueue();
  assert.deepEqual(job.requires, ["refspecs"]);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "examples/shell_runner.ts",
      "--url",
      t.server.url,
      "--build-dir",
      buildDir,
    ],
    cwd: new URL("../", import.meta.url),
    env: { RUNNER_TOKEN: t.mock.runnerToken, NO_COLOR: "1" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await t.mock.waitFor(() => job.state !== "pending" && job.state !== "running", {
      timeoutMs: 30_000,
    });
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
  assert.equal(job.state, "success", job.logText);
  assert.deepEqual(job.runnerFeatures?.refspecs, true);
  assert.match(job.logText, /Fetching changes with git depth set to 20\.\.\./);
  assert.ok(job.logText.includes(`Checking out ${repo.mr.slice(0, 8)} as detached HEAD`));
  assert.match(job.logText, /\nmerge request\n/);
  assert.equal(job.logText.includes(job.token), false);
});

Deno.test("C11.1 hostile settings: bad values warn or fail clearly, names never reach a shell", async () => {
  await using t = await setup();
  const repo = await makeRepo(join(t.root, "src"));
  t.mock.git.serve("mock/project", repo.gitDir);
  const pwned = join(t.root, "pwned");
  // An unknown strategy falls back to the default with the official warning.
  const bogus = await t.run((m) => m.job(onMain(repo, { GIT_STRATEGY: "teleport" })));
  assert.equal(bogus.job.state, "success", bogus.log);
  assert.match(
    bogus.log,
    /WARNING: GIT_STRATEGY: expected either 'clone', 'fetch', 'none' or 'empty' got "teleport", using default value 'fetch'/,
  );
  // An unknown submodule strategy is a configuration error, before git runs.
  const sub = await t.run((m) => m.job(onMain(repo, { GIT_SUBMODULE_STRATEGY: "all" })));
  assert.equal(sub.job.state, "failed");
  assert.equal(sub.job.failureReason, "runner_configuration_error");
  // A ref, refspec or sha made of shell syntax stays a string.
  const evil = `$(touch ${pwned})`;
  const ref = await t.run((m) =>
    m.job({ projectPath: "mock/project", sha: repo.main, ref: `main${evil}` }).payload((p) => {
      const git = p.git_info as { refspecs: string[] };
      git.refspecs = [`+refs/heads/main:refs/remotes/origin/main`, `;touch ${pwned};`];
      return p;
    })
  );
  assert.equal(ref.job.state, "failed"); // git refuses the refspec
  const sha = await t.run((m) => m.job({ projectPath: "mock/project", sha: evil, ref: "main" }));
  assert.equal(sha.job.state, "failed");
  assert.equal(sha.job.failureReason, "runner_configuration_error");
  assert.match(sha.log, /no valid commit to check out/);
  await assert.rejects(Deno.stat(pwned));
  // Out-of-range attempts are clamped like the official runner.
  const clamped = await t.run((m) => m.job(onMain(repo, { GET_SOURCES_ATTEMPTS: "99" })));
  assert.equal(clamped.job.state, "success", clamped.log);
  assert.match(
    clamped.log,
    /GET_SOURCES_ATTEMPTS: number of attempts out of the range \[1, 10\], clamping to: 10/,
  );
});

Deno.test("C11.4 the mock's git endpoints authenticate like GitLab: 401 without, 403 wrong or finished", async () => {
  const root = await Deno.makeTempDir({ prefix: "sources-auth-" });
  try {
    const repo = await makeRepo(join(root, "src"));
    const mock = new GitLabMock();
    const served = mock.git.serve("mock/project", repo.gitDir);
    const runner = await new RunnerBuilder(mock.url, mock.runnerToken, join(root, "builds"))
      .fetch(mock.fetch).build();
    const job = mock.job({ variables: [{ key: "GIT_STRATEGY", value: "none" }] }).enqueue();
    const refs = `${mock.url}/mock/project.git/info/refs?service=git-upload-pack`;
    const basic = (user: string, password: string) => ({
      authorization: `Basic ${btoa(`${user}:${password}`)}`,
    });
    const seen: Record<string, number | string> = {};
    await runner.requestJob((j: Job): JobHandler => ({
      step: async () => {
        const token = j.payload.token;
        const none = await mock.fetch(refs);
        seen.none = none.status;
        seen.challenge = none.headers.get("www-authenticate") ?? "";
        await none.body?.cancel();
        const wrong = await mock.fetch(refs, { headers: basic("gitlab-ci-token", "nope") });
        seen.wrong = wrong.status;
        await wrong.body?.cancel();
        const user = await mock.fetch(refs, { headers: basic("someone", token) });
        seen.user = user.status;
        await user.body?.cancel();
        const ok = await mock.fetch(refs, { headers: basic("gitlab-ci-token", token) });
        seen.ok = ok.status;
        seen.type = ok.headers.get("content-type") ?? "";
        seen.advertises = (await ok.text()).includes("refs/heads/main") ? 1 : 0;
        const push = await mock.fetch(
          `${mock.url}/mock/project.git/info/refs?service=git-receive-pack`,
          { headers: basic("gitlab-ci-token", token) },
        );
        seen.push = push.status;
        await push.body?.cancel();
        seen.token = token;
      },
    }));
    await runner.drain();
    assert.equal(job.state, "success", job.logText);
    assert.equal(seen.none, 401);
    assert.match(String(seen.challenge), /^Basic /);
    assert.equal(seen.wrong, 403);
    assert.equal(seen.user, 403);
    assert.equal(seen.ok, 200);
    assert.equal(seen.type, "application/x-git-upload-pack-advertisement");
    assert.equal(seen.advertises, 1);
    assert.equal(seen.push, 403);
    assert.equal(served.refused, 3);
    // The job is finished: its token no longer opens the repository.
    const after = await mock.fetch(refs, { headers: basic("gitlab-ci-token", String(seen.token)) });
    assert.equal(after.status, 403);
    await after.body?.cancel();
    // Other paths are not git's: the API still answers.
    const api = await mock.fetch(`${mock.url}/api/v4/runners/verify`, {
      method: "POST",
      body: "{}",
    });
    assert.equal(api.status, 400);
    await api.body?.cancel();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("C11.1 the get_sources script runs the official runner's commands, in its order", () => {
  const lines = sourcesScript({
    strategy: "fetch",
    dir: "/b/1",
    remoteUrl: "https://gitlab.example.com/g/p.git",
    ref: "main",
    sha: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d",
    refspecs: ["+1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d:refs/pipelines/7"],
    depth: 0,
    objectFormat: "sha256",
    checkout: true,
    cleanFlags: ["-ffdx"],
    fetchFlags: ["--prune", "--quiet"],
    submodules: "recursive",
    submoduleDepth: 3,
    submodulePaths: ["lib"],
    submoduleUpdateFlags: ["--jobs", "4"],
    lfsSkipSmudge: false,
    templateDir: "/tmp/t",
    preHook: ["echo pre"],
    postHook: ["echo post"],
    userAgent: "ua",
  });
  const commands = lines.filter((l) => !l.startsWith("printf ") && !/^(if|else|fi)\b/.test(l));
  const expected = [
    "echo pre",
    "export GIT_LFS_SKIP_SMUDGE=1",
    "rm -f -- /b/1/.git/index.lock",
    "rm -f -- /b/1/.git/shallow.lock",
    "rm -f -- /b/1/.git/HEAD.lock",
    "rm -f -- /b/1/.git/hooks/post-checkout",
    "rm -f -- /b/1/.git/config.lock",
    "git init /b/1 --template /tmp/t --object-format sha256",
    "cd /b/1",
    "git remote set-url origin https://gitlab.example.com/g/p.git",
    "git -c http.userAgent=ua fetch origin --no-recurse-submodules " +
    "+1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d:refs/pipelines/7 --prune --quiet --unshallow",
    "git -c http.userAgent=ua fetch origin --no-recurse-submodules " +
    "+1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d:refs/pipelines/7 --prune --quiet",
    "git -c submodule.recurse=false checkout -f -q 1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d",
    "git clean -ffdx",
    "git lfs pull",
    "git submodule init",
    "git submodule sync --recursive -- lib",
    "git submodule foreach --recursive git clean -ffdx",
    "git submodule foreach --recursive git reset --hard",
    "git submodule sync --recursive -- lib",
    "git submodule sync --recursive -- lib",
    "git submodule update --init --recursive --depth 3 --jobs 4 -- lib",
    "git submodule foreach --recursive git reset --hard",
    "git submodule foreach --recursive git clean -ffdx",
    "git submodule foreach --recursive git lfs pull",
    "cd /b/1",
    "echo post",
  ];
  assert.deepEqual(commands.filter((l) => !l.startsWith("find ")), expected);
  assert.ok(
    lines.some((l) => l.startsWith("if git submodule update --init --recursive --depth 3")),
  );
  assert.ok(lines.includes("if [ -f .git/shallow ]; then"));
});
