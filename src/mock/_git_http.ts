/**
 * Real git repositories served over git's smart HTTP protocol by the mock (CONFORMANCE C11.4):
 * each request runs `git http-backend` as a CGI, with GitLab's job-token authentication (HTTP
 * Basic, user `gitlab-ci-token`, the token of a running job). Git LFS objects are served with
 * a minimal batch API (download only). Uses `node:child_process` (Deno and Node).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import process from "node:process";

/**
 * Options of {@linkcode MockGit.serve}.
 *
 * @example A repository whose first two requests fail, and whose fetches are slow
 * ```ts
 * import { strictEqual } from "node:assert";
 * import type { MockGitRepositoryOptions } from "@x/gitlab-runner/mock";
 * const options: MockGitRepositoryOptions = { failRequests: 2, delayMs: 500 };
 * strictEqual(options.failRequests, 2);
 * ```
 */
export interface MockGitRepositoryOptions {
  /**
   * Delays each `git-upload-pack` request (the fetch itself) by this many milliseconds, on the
   * mock's clock; the wait ends when the client goes away. Default: 0.
   */
  delayMs?: number;
  /** The first this many git requests for the repository get HTTP 500. Default: 0. */
  failRequests?: number;
}

/**
 * A repository the mock serves.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * const mock = new GitLabMock();
 * const repo = mock.git.serve("group/project", "/srv/project.git");
 * strictEqual(repo.projectPath, "group/project");
 * strictEqual(repo.requests, 0);
 * ```
 */
export interface MockGitRepository {
  /** The project path (`group/project`): served at `<mock url>/<projectPath>.git`. */
  readonly projectPath: string;
  /** The git directory (a bare repository, or the `.git` of a work tree). */
  readonly gitDir: string;
  /** Git requests answered so far (authenticated or not). */
  readonly requests: number;
  /** Requests refused for a missing (401) or wrong (403) token. */
  readonly refused: number;
}

interface Repo extends MockGitRepository {
  requests: number;
  refused: number;
  options: MockGitRepositoryOptions;
}

const LFS_OBJECT = /^gitlab-lfs\/objects\/([0-9a-f]{64})$/;

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/**
 * The git side of the mock, `mock.git`: register repositories with
 * {@linkcode MockGit.serve}; a job whose `projectPath` names one gets a `git_info.repo_url`
 * (with `gitlab-ci-token:<job token>@`, like GitLab) that real `git` can fetch from while the
 * job runs, over a listening mock (`mock.listen()`).
 *
 * @example Serve a repository for a job
 * ```ts ignore
 * import { GitLabMock } from "@x/gitlab-runner/mock";
 * const mock = new GitLabMock();
 * await using server = await mock.listen();
 * mock.git.serve("mock/project", "/tmp/repo/.git");
 * mock.job({ projectPath: "mock/project", sha: "<commit>", ref: "main" }).enqueue();
 * // a runner built with server.url checks it out with job.sources()
 * ```
 */
export class MockGit {
  #repos = new Map<string, Repo>();
  #basePath: string;
  #tokenValid: (token: string) => boolean;
  #sleep: (ms: number, signal: AbortSignal) => Promise<boolean>;

  /** Made by `GitLabMock`. */
  constructor(
    basePath: string,
    tokenValid: (token: string) => boolean,
    sleep: (ms: number, signal: AbortSignal) => Promise<boolean>,
  ) {
    this.#basePath = basePath;
    this.#tokenValid = tokenValid;
    this.#sleep = sleep;
  }

  /**
   * Serves the git directory `gitDir` as the project `projectPath` (`group/project`).
   *
   * @param projectPath The project path; the repository is at `<mock url>/<projectPath>.git`.
   * @param gitDir A bare repository or the `.git` directory of a work tree.
   * @param options Slow or failing requests, for hostile tests.
   * @returns The repository, with request counters.
   */
  serve(
    projectPath: string,
    gitDir: string,
    options: MockGitRepositoryOptions = {},
  ): MockGitRepository {
    const key = projectPath.replace(/^\/+|\/+$/g, "").replace(/\.git$/, "");
    const repo: Repo = { projectPath: key, gitDir, requests: 0, refused: 0, options };
    this.#repos.set(key, repo);
    return repo;
  }

  /** Internal: the answer for a git request, or `undefined` for other paths. */
  handle(request: Request): Promise<Response> | undefined {
    if (this.#repos.size === 0) return undefined;
    const url = new URL(request.url);
    let path = url.pathname;
    if (this.#basePath && path.startsWith(this.#basePath + "/")) {
      path = path.slice(this.#basePath.length);
    }
    const at = path.indexOf(".git/");
    if (at < 0) return undefined;
    const repo = this.#repos.get(path.slice(1, at));
    if (!repo) return undefined;
    return this.#handle(request, url, repo, path.slice(at + 5));
  }

  async #handle(request: Request, url: URL, repo: Repo, rest: string): Promise<Response> {
    repo.requests++;
    const auth = this.#authenticate(request);
    if (auth !== "ok") {
      repo.refused++;
      await request.body?.cancel().catch(() => {});
      return auth === "missing"
        ? text(401, "HTTP Basic: Access denied\n", {
          "www-authenticate": 'Basic realm="GitLab"',
        })
        : text(403, "HTTP Basic: Access denied\n");
    }
    if ((repo.options.failRequests ?? 0) > 0) {
      repo.options.failRequests! -= 1;
      await request.body?.cancel().catch(() => {});
      return text(500, "Internal Server Error\n");
    }
    if (rest === "info/lfs/objects/batch" && request.method === "POST") {
      return await this.#lfsBatch(request, url, repo);
    }
    const lfs = LFS_OBJECT.exec(rest);
    if (lfs && request.method === "GET") return await this.#lfsObject(repo, lfs[1]);
    const service = url.searchParams.get("service");
    const readOnly = (rest === "info/refs" && service === "git-upload-pack") ||
      rest === "git-upload-pack";
    if (!readOnly) {
      await request.body?.cancel().catch(() => {});
      return text(403, "The mock serves fetches only\n");
    }
    if (rest === "git-upload-pack" && (repo.options.delayMs ?? 0) > 0) {
      if (!(await this.#sleep(repo.options.delayMs!, request.signal))) {
        return text(503, "Stopped\n");
      }
    }
    return await cgi(request, url, repo.gitDir, rest);
  }

  #authenticate(request: Request): "ok" | "missing" | "wrong" {
    const header = request.headers.get("authorization") ?? "";
    const m = /^Basic\s+(\S+)$/i.exec(header);
    if (!m) return "missing";
    let decoded: string;
    try {
      decoded = atob(m[1]);
    } catch {
      return "wrong";
    }
    const colon = decoded.indexOf(":");
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    if (colon < 0 || user !== "gitlab-ci-token" || !this.#tokenValid(password)) return "wrong";
    return "ok";
  }

  async #lfsBatch(request: Request, url: URL, repo: Repo): Promise<Response> {
    let body: { operation?: string; objects?: { oid?: string; size?: number }[] };
    try {
      body = await request.json() as typeof body;
    } catch {
      return text(422, "Unprocessable Entity\n");
    }
    const lfsJson = { "content-type": "application/vnd.git-lfs+json" };
    if (body.operation !== "download") {
      return new Response(JSON.stringify({ message: "The mock serves downloads only" }), {
        status: 403,
        headers: lfsJson,
      });
    }
    const base = url.href.slice(0, url.href.indexOf(".git/") + 5);
    const objects = [];
    for (const o of body.objects ?? []) {
      const oid = String(o.oid ?? "");
      const size = await stat(lfsPath(repo.gitDir, oid)).then((s) => s.size, () => -1);
      objects.push(
        /^[0-9a-f]{64}$/.test(oid) && size >= 0
          ? {
            oid,
            size,
            authenticated: true,
            actions: {
              download: {
                href: `${base}gitlab-lfs/objects/${oid}`,
                header: { Authorization: request.headers.get("authorization") ?? "" },
              },
            },
          }
          : { oid, size: o.size ?? 0, error: { code: 404, message: "Object does not exist" } },
      );
    }
    return new Response(JSON.stringify({ transfer: "basic", objects }), { headers: lfsJson });
  }

  async #lfsObject(repo: Repo, oid: string): Promise<Response> {
    let file;
    try {
      file = await open(lfsPath(repo.gitDir, oid));
    } catch {
      return text(404, "Not Found\n");
    }
    const data = await file.readFile().finally(() => file.close());
    return new Response(data, { headers: { "content-type": "application/octet-stream" } });
  }
}

function lfsPath(gitDir: string, oid: string): string {
  return join(gitDir, "lfs", "objects", oid.slice(0, 2), oid.slice(2, 4), oid);
}

/** Runs `git http-backend` for one request and streams its answer. */
async function cgi(request: Request, url: URL, gitDir: string, rest: string): Promise<Response> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    GIT_HTTP_EXPORT_ALL: "1",
    PATH_TRANSLATED: join(gitDir, rest),
    PATH_INFO: `/${rest}`,
    REQUEST_METHOD: request.method,
    QUERY_STRING: url.search.replace(/^\?/, ""),
    CONTENT_TYPE: request.headers.get("content-type") ?? "",
    REMOTE_USER: "gitlab-ci-token",
    REMOTE_ADDR: "127.0.0.1",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_COUNT: "2",
    GIT_CONFIG_KEY_0: "uploadpack.allowAnySHA1InWant",
    GIT_CONFIG_VALUE_0: "true",
    GIT_CONFIG_KEY_1: "safe.directory",
    GIT_CONFIG_VALUE_1: "*",
  };
  const encoding = request.headers.get("content-encoding");
  if (encoding) env.HTTP_CONTENT_ENCODING = encoding;
  const protocol = request.headers.get("git-protocol");
  if (protocol) env.HTTP_GIT_PROTOCOL = protocol;
  const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "ignore"] });
  child.on("error", () => {});
  child.stdin.on("error", () => {});
  (async () => {
    try {
      if (request.body) {
        for await (const chunk of request.body) {
          if (!child.stdin.write(chunk)) {
            await new Promise((resolve) => child.stdin.once("drain", resolve));
          }
        }
      }
    } catch {
      child.kill("SIGKILL");
    } finally {
      child.stdin.end();
    }
  })();

  const reader = child.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  let end = -1;
  let sep = 0;
  while (end < 0) {
    const next = await reader.next();
    if (next.done) break;
    head = Buffer.concat([head, next.value]);
    end = head.indexOf("\r\n\r\n");
    sep = 4;
    if (end < 0) {
      end = head.indexOf("\n\n");
      sep = 2;
    }
    if (end < 0 && head.length > 64 * 1024) break;
  }
  if (end < 0) {
    child.kill("SIGKILL");
    return text(500, "git http-backend gave no answer\n");
  }
  let status = 200;
  const headers = new Headers();
  for (const line of head.subarray(0, end).toString("latin1").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === "status") status = Number.parseInt(value, 10) || 500;
    else headers.append(name, value);
  }
  const first = head.subarray(end + sep);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.length > 0) controller.enqueue(new Uint8Array(first));
    },
    async pull(controller) {
      const next = await reader.next();
      if (next.done) controller.close();
      else controller.enqueue(new Uint8Array(next.value));
    },
    cancel() {
      child.kill("SIGKILL");
    },
  });
  return new Response(status === 204 || status === 304 ? null : body, { status, headers });
}
