/**
 * Builds the npm package in `npm/`: ESM and `.d.ts` from `tsc -p tsconfig.npm.json` (TypeScript
 * from the root package.json) in `npm/esm/`, a `package.json` made from deno.json, README.md and
 * LICENSE. Runtime-specific code is not swapped: the library picks its `*.deno.ts` or
 * `*.node.ts` twin at run time, so the JSR package and the npm package are the same code.
 *
 * Fails when deno.json's `imports` and the root package.json's dependencies disagree: every
 * `npm:` import must be in the root package.json with the same version range (tsc and Node
 * resolve them from there), and every runtime dependency there must be a deno.json import.
 *
 * Run: `deno task build:npm` (after `npm ci`). Publish: `cd npm && npm publish`.
 *
 * @module
 */

const OUT = "npm";
const ENGINES = { node: ">=20" };

interface DenoJson {
  name: string;
  version: string;
  license?: string;
  exports: string | Record<string, string>;
  imports?: Record<string, string>;
}

interface RootPackageJson {
  type?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

interface Conditional {
  types: string;
  default: string;
}

/** Reads a JSON file. */
async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(path)) as T;
}

/** `npm:name@range` import-map values, by package name (`@types/*` included). */
export function npmImports(imports: Record<string, string>): Map<string, string> {
  const found = new Map<string, string>();
  for (const [key, value] of Object.entries(imports)) {
    const match = /^npm:(@?[^@]+)@(.+)$/.exec(value);
    if (!match) throw new Error(`Import ${key} is not an npm: specifier with a version: ${value}`);
    if (match[1] !== key) {
      throw new Error(`Import ${key} maps to another package (${match[1]}): not supported by Node`);
    }
    found.set(match[1], match[2]);
  }
  return found;
}

/**
 * Checks deno.json imports against the root package.json and returns the runtime dependencies
 * of the npm package. Returns the list of problems instead when they disagree.
 */
export function mirrorDependencies(
  imports: Record<string, string>,
  root: RootPackageJson,
): { dependencies: Record<string, string>; problems: string[] } {
  const problems: string[] = [];
  const wanted = npmImports(imports);
  const rootAll = { ...root.devDependencies, ...root.dependencies };
  const dependencies: Record<string, string> = {};
  for (const [name, range] of wanted) {
    if (rootAll[name] === undefined) {
      problems.push(`${name}@${range} is in deno.json imports but not in package.json`);
    } else if (rootAll[name] !== range) {
      problems.push(`${name}: deno.json has ${range}, package.json has ${rootAll[name]}`);
    }
    // Test-only imports (root devDependencies: validators, parsers) are no runtime dependency.
    if (!name.startsWith("@types/") && root.devDependencies?.[name] === undefined) {
      dependencies[name] = range;
    }
  }
  for (const name of Object.keys(root.dependencies ?? {})) {
    if (!wanted.has(name)) {
      problems.push(`${name} is a package.json dependency but not a deno.json import`);
    }
  }
  if (root.type !== "module") {
    problems.push(`package.json must have "type": "module" (tsc emits CommonJS otherwise)`);
  }
  return { dependencies, problems };
}

/** `./src/mock/mod.ts` → `{types: "./esm/src/mock/mod.d.ts", default: "./esm/src/mock/mod.js"}`. */
export function exportEntry(target: string): Conditional {
  if (!/^\.\/.+\.ts$/.test(target) || target.endsWith(".d.ts")) {
    throw new Error(`Export target must be a relative .ts file: ${target}`);
  }
  const base = `./esm/${target.slice(2, -3)}`;
  return { types: `${base}.d.ts`, default: `${base}.js` };
}

async function run(command: string, args: string[]): Promise<void> {
  const { code } = await new Deno.Command(command, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${code}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const deno = await readJson<DenoJson>("deno.json");
  const root = await readJson<RootPackageJson>("package.json");
  const { dependencies, problems } = mirrorDependencies(deno.imports ?? {}, root);
  if (problems.length > 0) {
    throw new Error(`deno.json and package.json disagree:\n  ${problems.join("\n  ")}`);
  }
  const tsc = "node_modules/typescript/bin/tsc";
  if (!(await exists(tsc))) throw new Error(`${tsc} is missing: run \`npm ci\` first`);

  await Deno.remove(OUT, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await run("node", [tsc, "-p", "tsconfig.npm.json"]);

  const exportsMap: Record<string, Conditional> = {};
  const entries = typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports;
  for (const [key, target] of Object.entries(entries)) {
    // The example runner is a Deno command (`deno run -A jsr:@x/gitlab-runner/example`): the
    // npm package carries the library and the mock.
    if (key === "./example") continue;
    exportsMap[key] = exportEntry(target);
    for (const file of Object.values(exportsMap[key])) {
      if (!(await exists(`${OUT}/${file}`))) throw new Error(`tsc did not emit ${file}`);
    }
  }
  const pkg = {
    name: deno.name,
    version: deno.version,
    description: "Write custom GitLab runners in TypeScript, on Deno and Node.js",
    license: deno.license,
    type: "module",
    exports: exportsMap,
    types: exportsMap["."]?.types,
    files: ["esm/", "README.md", "LICENSE"],
    engines: ENGINES,
    dependencies,
  };
  await Deno.writeTextFile(`${OUT}/package.json`, JSON.stringify(pkg, null, 2) + "\n");
  await Deno.copyFile("README.md", `${OUT}/README.md`);
  await Deno.copyFile("LICENSE", `${OUT}/LICENSE`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`Built ${deno.name}@${deno.version} in ${OUT}/ (${seconds} s)`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`build_npm: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
