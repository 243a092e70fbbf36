// Example-runner processes for the fleet tests (C13.2, C13.3): spawned with `deno run`, their
// stdout read line by line while they run.

const ROOT = new URL("..", import.meta.url).pathname;

/** A running example runner. */
export interface RunnerProcess {
  readonly pid: number;
  /** Lines of stdout so far. */
  readonly lines: string[];
  /** All of stderr, once the process exited. */
  readonly stderr: Promise<string>;
  /** The exit code. */
  readonly exited: Promise<number>;
  /** Resolves to the first stdout line matching `re` (also one already seen); rejects after `ms`. */
  line(re: RegExp, ms?: number): Promise<string>;
  /** Sends a signal (ignored when the process is gone). */
  kill(signal?: Deno.Signal): void;
}

/** Options of {@linkcode startRunner}. */
export interface StartOptions {
  url: string;
  tokenFile: string;
  buildDir: string;
  stateDir?: string;
  concurrency?: number;
  listenAddress?: string;
  extra?: string[];
}

/** Starts `examples/shell_runner.ts` with `options`. */
export function startRunner(options: StartOptions): RunnerProcess {
  const args = [
    "run",
    "-A",
    "examples/shell_runner.ts",
    "--url",
    options.url,
    "--token-file",
    options.tokenFile,
    "--build-dir",
    options.buildDir,
    "--concurrency",
    String(options.concurrency ?? 4),
  ];
  if (options.stateDir) args.push("--state-dir", options.stateDir);
  if (options.listenAddress) args.push("--listen-address", options.listenAddress);
  args.push(...(options.extra ?? []));
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters = new Set<{ re: RegExp; resolve: (line: string) => void }>();
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf("\n")) !== -1) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        lines.push(line);
        for (const w of waiters) {
          if (w.re.test(line)) {
            waiters.delete(w);
            w.resolve(line);
          }
        }
      }
    }
    if (rest) lines.push(rest);
  })();
  const stderr = new Response(child.stderr).text();
  const exited = Promise.all([child.status, reading]).then(([s]) => s.code);
  let gone = false;
  exited.then(() => (gone = true));
  return {
    pid: child.pid,
    lines,
    stderr,
    exited,
    line(re, ms = 30_000) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const w = { re, resolve };
        waiters.add(w);
        const timer = setTimeout(async () => {
          waiters.delete(w);
          reject(
            new Error(
              `No line matching ${re} within ${ms} ms; stdout:\n${lines.join("\n")}\nstderr:\n${
                gone ? await stderr : "(still running)"
              }`,
            ),
          );
        }, ms);
        exited.then(() => {
          if (!waiters.has(w)) return;
          // The process ended without the line: fail now rather than at the timeout.
          waiters.delete(w);
          clearTimeout(timer);
          stderr.then((e) =>
            reject(
              new Error(
                `Exited without a line matching ${re}; stdout:\n${lines.join("\n")}\nstderr:\n${e}`,
              ),
            )
          );
        });
        w.resolve = (line) => {
          clearTimeout(timer);
          resolve(line);
        };
      });
    },
    kill(signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
  };
}

/** The URL the runner printed for its metrics listener. */
export async function listenerUrl(p: RunnerProcess): Promise<string> {
  const line = await p.line(/^Serving \/metrics/);
  const m = /on (http:\/\/\S+) /.exec(line);
  if (!m) throw new Error(`No URL in: ${line}`);
  return m[1];
}
