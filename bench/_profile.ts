/**
 * Summaries of V8 profiles, to find where a missed target goes:
 *
 * - `deno run -A bench/_profile.ts cpu FILE.cpuprofile [N]`: self time by file and by function,
 *   and inclusive time by function (the top N, default 25). `deno task bench --cpu-prof` writes
 *   such profiles for every measuring process and prints the top of each.
 * - `deno run -A bench/_profile.ts heap FILE.heapsnapshot [N]`: the N largest objects (default
 *   10) and the shortest chain of references that keeps each alive. Write a snapshot from inside
 *   a measurement with `(await import("node:v8")).writeHeapSnapshot(path)`.
 *
 * @module
 */

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\/.*?\/(src|bench|tests)\//, "$1/").replace(
    /^file:\/\/.*\/registry\.npmjs\.org\//,
    "npm:",
  );
}

/** Lines summarising a `.cpuprofile`: self time by file and function, inclusive by function. */
export function summariseCpuProfile(text: string, top = 25): string[] {
  const profile = JSON.parse(text) as {
    nodes: CpuNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const nodes = new Map<number, CpuNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    nodes.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt);
  }
  let total = 0;
  for (const v of self.values()) total += v;
  const key = (n: CpuNode) =>
    `${n.callFrame.functionName || "(anonymous)"} ${shortUrl(n.callFrame.url)}${
      n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""
    }`;
  const byFile = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (const [id, t] of self) {
    const n = nodes.get(id)!;
    add(byFile, shortUrl(n.callFrame.url) || n.callFrame.functionName, t);
    add(byFunction, key(n), t);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(nodes.get(cur)!);
      if (!seen.has(k)) add(inclusive, k, t);
      seen.add(k);
    }
  }
  const lines: string[] = [];
  const show = (title: string, m: Map<string, number>) => {
    lines.push(`${title} (of ${(total / 1000).toFixed(0)} ms sampled):`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      lines.push(
        `  ${(v / total * 100).toFixed(1).padStart(5)}% ${
          (v / 1000).toFixed(0).padStart(6)
        } ms  ${k}`,
      );
    }
  };
  show("self time by file", byFile);
  show("self time by function", byFunction);
  show("inclusive time by function", inclusive);
  return lines;
}

/** Lines naming the largest objects of a heap snapshot and what keeps each alive. */
export function summariseHeapSnapshot(text: string, top = 10): string[] {
  const s = JSON.parse(text) as {
    snapshot: {
      meta: {
        node_fields: string[];
        edge_fields: string[];
        node_types: [string[]];
        edge_types: [string[]];
      };
    };
    nodes: number[];
    edges: number[];
    strings: string[];
  };
  const meta = s.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const { nodes, edges, strings } = s;
  const count = nodes.length / nf;
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    firstEdge[i] = e;
    e += nodes[i * nf + 4] * ef;
    firstEdge[i + 1] = e;
  }
  const name = (i: number) =>
    `${nodeTypes[nodes[i * nf]]} ${strings[nodes[i * nf + 1]]}`.slice(0, 90);
  const size = (i: number) => nodes[i * nf + 3];
  const edgeName = (e: number) => {
    const type = edgeTypes[edges[e]];
    const n = edges[e + 1];
    return type === "element" || type === "hidden" ? `[${n}]` : String(strings[n]);
  };
  // Breadth-first from the root: the shortest strong path to each object.
  const prev = new Int32Array(count).fill(-1);
  const via = new Int32Array(count).fill(-1);
  const seen = new Uint8Array(count);
  seen[0] = 1;
  const queue = [0];
  for (let h = 0; h < queue.length; h++) {
    const i = queue[h];
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      if (edgeTypes[edges[e]] === "weak") continue;
      const to = edges[e + 2] / nf;
      if (seen[to]) continue;
      seen[to] = 1;
      prev[to] = i;
      via[to] = e;
      queue.push(to);
    }
  }
  let total = 0;
  for (let i = 0; i < count; i++) total += size(i);
  const order = [...Array(count).keys()].sort((a, b) => size(b) - size(a)).slice(0, top);
  const lines = [`${(total / 1e6).toFixed(1)} MB in ${count} objects; the largest:`];
  for (const i of order) {
    lines.push(`${(size(i) / 1e6).toFixed(2)} MB ${name(i)}${seen[i] ? "" : " (unreachable)"}`);
    for (let c = i, depth = 0; c > 0 && prev[c] >= 0 && depth < 20; c = prev[c], depth++) {
      lines.push(`    <- ${edgeName(via[c])} of ${name(prev[c])}`);
    }
  }
  return lines;
}

if (import.meta.main) {
  const [kind, file, n] = Deno.args;
  const text = await Deno.readTextFile(file);
  const top = n === undefined ? undefined : Number(n);
  const lines = kind === "heap" ? summariseHeapSnapshot(text, top) : summariseCpuProfile(text, top);
  console.log(lines.join("\n"));
}
