/**
 * The modules an entry's static imports reach, from `deno info --json` (dynamic imports and
 * type-only imports are not followed: they are not evaluated when the entry loads). Used by
 * `bench/idle.ts` (the `node:` modules an idle runner loads) and `tests/import_graph_test.ts`.
 *
 * @module
 */

interface Info {
  roots: string[];
  modules: {
    specifier: string;
    dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[];
  }[];
}

/**
 * The specifiers `entry` reaches through static imports, itself included.
 *
 * @param entry A path or URL `deno info` takes.
 * @param cwd Where `deno info` runs (for a relative `entry`).
 * @returns The specifiers, in no particular order.
 */
export async function staticImports(entry: string, cwd?: string | URL): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info ${entry} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as Info;
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length > 0) {
    const specifier = stack.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dep of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dep.code && !dep.isDynamic) stack.push(dep.code.specifier);
    }
  }
  return [...seen];
}
