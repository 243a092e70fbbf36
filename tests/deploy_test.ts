// C13.4: deploy/ — the Containerfile and the Kubernetes manifests, validated against the
// Kubernetes schemas (kubernetes-models) and checked for what the runner depends on: SIGTERM,
// the grace period, the probe paths, the token as a file, the args it really accepts.
import { assert } from "./_deps.ts";
import { parseAllDocuments } from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { Secret, Service } from "kubernetes-models/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { parseConfig } from "../examples/shell_runner.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DIR = `${ROOT}deploy/kubernetes`;

// deno-lint-ignore no-explicit-any
type Manifest = Record<string, any>;

// deno-lint-ignore no-explicit-any
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "apps/v1 Deployment": Deployment,
  "v1 Service": Service,
  "v1 Secret": Secret,
  "policy/v1 PodDisruptionBudget": PodDisruptionBudget,
  "monitoring.coreos.com/v1 ServiceMonitor": ServiceMonitor,
};

/** Every document of every manifest, parsed as kubectl does (YAML 1.1: `0440` is octal). */
async function manifests(): Promise<{ file: string; doc: Manifest }[]> {
  const out: { file: string; doc: Manifest }[] = [];
  for await (const entry of Deno.readDir(DIR)) {
    if (!entry.name.endsWith(".yaml") || entry.name === "kustomization.yaml") continue;
    const text = await Deno.readTextFile(`${DIR}/${entry.name}`);
    for (const d of parseAllDocuments(text, { version: "1.1" })) {
      assert.deepEqual(d.errors, [], `${entry.name}: ${d.errors.join("; ")}`);
      out.push({ file: entry.name, doc: d.toJS() });
    }
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

function validate(doc: Manifest): void {
  const Model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  if (!Model) throw new Error(`No schema for ${doc.apiVersion} ${doc.kind}`);
  new Model(doc).validate();
}

function only(docs: { doc: Manifest }[], kind: string): Manifest {
  const found = docs.filter((d) => d.doc.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0].doc;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Expands `$(VAR)` in an argument the way the kubelet does, from the container's env. */
function expand(arg: string, env: Record<string, string>): string {
  return arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name) => env[name] ?? all);
}

Deno.test("C13.4 every manifest validates against the Kubernetes schemas", async () => {
  const docs = await manifests();
  assert.deepEqual(
    docs.map((d) => `${d.file}: ${d.doc.kind}`),
    [
      "deployment.yaml: Deployment",
      "poddisruptionbudget.yaml: PodDisruptionBudget",
      "secret.yaml: Secret",
      "service.yaml: Service",
      "servicemonitor.yaml: ServiceMonitor",
    ],
  );
  for (const { file, doc } of docs) {
    try {
      validate(doc);
    } catch (error) {
      throw new Error(`${file} does not validate: ${(error as Error).message}`, { cause: error });
    }
  }
  // kubectl apply -k applies all but the Secret (created from a file, never committed).
  const kustomization = parseAllDocuments(
    await Deno.readTextFile(`${DIR}/kustomization.yaml`),
  )[0].toJS();
  assert.deepEqual(
    [...kustomization.resources].sort(),
    docs.map((d) => d.file).filter((f) => f !== "secret.yaml"),
  );
});

Deno.test("C13.4 the validator is real: broken manifests are refused", async () => {
  const deployment = only(await manifests(), "Deployment");
  const broken: [string, (d: Manifest) => void][] = [
    ["replicas as a string", (d) => (d.spec.replicas = "three")],
    [
      "a probe without a port",
      (d) => delete d.spec.template.spec.containers[0].readinessProbe.httpGet.port,
    ],
    ["a container without a name", (d) => delete d.spec.template.spec.containers[0].name],
    ["a grace period as text", (d) => (d.spec.template.spec.terminationGracePeriodSeconds = "1h")],
    ["no selector", (d) => delete d.spec.selector],
  ];
  for (const [what, breakIt] of broken) {
    const copy = structuredClone(deployment);
    breakIt(copy);
    assert.throws(() => validate(copy), Error, what);
  }
  assert.throws(() => validate({ apiVersion: "v1", kind: "Nope" }), /No schema/);
});

Deno.test("C13.4 the Deployment gives the runner what it depends on", async () => {
  const docs = await manifests();
  const deployment = only(docs, "Deployment");
  const pod = deployment.spec.template;
  const spec = pod.spec;
  assert.ok(deployment.spec.replicas >= 2, "several replicas share the queue");
  assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
  assert.ok(matches(deployment.spec.selector.matchLabels, pod.metadata.labels));

  // The drain: SIGTERM (no preStop hook or stop signal that would do something else), and a
  // grace period longer than the longest job (GitLab's default job timeout, 1 h) plus time
  // for the final log and state update.
  assert.equal(spec.containers.length, 1);
  const c = spec.containers[0];
  assert.equal(c.lifecycle?.preStop, undefined);
  assert.ok((c.lifecycle?.stopSignal ?? "SIGTERM") === "SIGTERM");
  assert.ok(
    spec.terminationGracePeriodSeconds >= 3600 + 60,
    `${spec.terminationGracePeriodSeconds}`,
  );

  // Probes on /health/* at the port the runner listens on.
  const port = c.ports.find((p: Manifest) => p.name === "metrics");
  assert.ok(port, "a port named metrics");
  for (const probe of [c.livenessProbe, c.startupProbe]) {
    assert.equal(probe.httpGet.path, "/health/live");
    assert.equal(probe.httpGet.port, "metrics");
  }
  assert.equal(c.readinessProbe.httpGet.path, "/health/ready");
  assert.equal(c.readinessProbe.httpGet.port, "metrics");

  // The args are ones the example runner accepts: parsed by its own parseConfig.
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) env[e.name] = e.value ?? `<${e.valueFrom?.fieldRef?.fieldPath}>`;
  const args: string[] = c.args.map((a: string) => expand(a, env));
  assert.ok(!args.includes("--token"), "the token never in the command line");
  const tokenPath = args[args.indexOf("--token-file") + 1];
  const dir = await Deno.makeTempDir({ prefix: "glr-deploy-" });
  try {
    await Deno.writeTextFile(`${dir}/token`, "glrt-0123456789abcdefghij");
    const local = args.map((a) => (a === tokenPath ? `${dir}/token` : a));
    const config = parseConfig(local, {});
    assert.ok(config);
    assert.equal(config.tokenSource, "file");
    assert.equal(config.token, "glrt-0123456789abcdefghij");
    assert.equal(config.listen?.port, port.containerPort);
    assert.equal(config.name, "<metadata.name>");
    // Build and state directories are volumes (state: the system id of this pod).
    const mountAt = (path: string) =>
      c.volumeMounts.find((m: Manifest) =>
        path === m.mountPath || path.startsWith(`${m.mountPath}/`)
      );
    assert.ok(mountAt(config.buildDir), "the build dir is a volume");
    assert.ok(mountAt(config.stateDir), "the state dir is a volume");

    // The token: a file from the Secret, mounted read-only; never an environment variable.
    const mount = mountAt(tokenPath);
    assert.ok(mount?.readOnly, "the token volume is read-only");
    const volume = spec.volumes.find((v: Manifest) => v.name === mount.name);
    const secret = only(docs, "Secret");
    assert.equal(volume.secret.secretName, secret.metadata.name);
    const item = volume.secret.items.find((i: Manifest) =>
      `${mount.mountPath}/${i.path}` === tokenPath
    );
    assert.ok(item && (secret.stringData ?? secret.data)[item.key] !== undefined);
    assert.equal(volume.secret.defaultMode, 0o440);
    for (const e of c.env ?? []) {
      assert.ok(!/TOKEN/.test(e.name) && e.valueFrom?.secretKeyRef === undefined, e.name);
    }
    assert.equal(c.envFrom, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  // Scraping: pod annotations and a ServiceMonitor through the Service's named port.
  assert.equal(pod.metadata.annotations["prometheus.io/scrape"], "true");
  assert.equal(Number(pod.metadata.annotations["prometheus.io/port"]), port.containerPort);
  assert.equal(pod.metadata.annotations["prometheus.io/path"], "/metrics");
  const service = only(docs, "Service");
  assert.ok(matches(service.spec.selector, pod.metadata.labels));
  const servicePort = service.spec.ports.find((p: Manifest) => p.targetPort === "metrics");
  assert.ok(servicePort);
  const monitor = only(docs, "ServiceMonitor");
  assert.ok(matches(monitor.spec.selector.matchLabels, service.metadata.labels));
  assert.deepEqual(monitor.spec.endpoints.map((e: Manifest) => [e.port, e.path]), [
    [servicePort.name, "/metrics"],
  ]);
  const pdb = only(docs, "PodDisruptionBudget");
  assert.ok(matches(pdb.spec.selector.matchLabels, pod.metadata.labels));
  assert.equal(pdb.spec.maxUnavailable, 1);
});

Deno.test("C13.4 the Containerfile: Deno from npm, cached-only at run time, SIGTERM, args the runner accepts", async () => {
  const text = await Deno.readTextFile(`${ROOT}deploy/Containerfile`);
  const lines = text.replace(/\\\n/g, " ").split("\n").filter((l) => l && !l.startsWith("#"));
  const instruction = (name: string) =>
    lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
  assert.ok(instruction("RUN").some((r) => r.includes("npm ci --prefix tools")), "Deno from npm");
  assert.ok(instruction("RUN").some((r) => r.includes("deno install --frozen")), "the lockfile");
  assert.deepEqual(instruction("STOPSIGNAL"), ["SIGTERM"]);
  assert.deepEqual(instruction("USER"), ["1000:1000"]);
  const entrypoint: string[] = JSON.parse(instruction("ENTRYPOINT")[0]);
  const cmd: string[] = JSON.parse(instruction("CMD")[0]);
  assert.deepEqual(entrypoint.slice(0, 2), ["/usr/bin/tini", "--"], "an init forwards SIGTERM");
  const deno = entrypoint.slice(2);
  assert.equal(deno[0], "/usr/local/bin/deno");
  assert.ok(deno.includes("--cached-only"), "no registry at run time");
  assert.equal(deno.at(-1), "examples/shell_runner.ts");
  assert.equal(instruction("EXPOSE")[0], "9252");

  // The CMD's arguments are ones the runner accepts (with a GitLab URL, as the Deployment
  // gives), and the Deployment's token path is the image's default.
  const tokenPath = cmd[cmd.indexOf("--token-file") + 1];
  const dir = await Deno.makeTempDir({ prefix: "glr-image-" });
  try {
    await Deno.writeTextFile(`${dir}/token`, "glrt-0123456789abcdefghij");
    const config = parseConfig(
      [
        "--url",
        "https://gitlab.example.com",
        ...cmd.map((a) => (a === tokenPath ? `${dir}/token` : a)),
      ],
      {},
    );
    assert.equal(config?.listen?.port, 9252);
    assert.equal(config?.tokenSource, "file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const deployment = only(await manifests(), "Deployment");
  const args: string[] = deployment.spec.template.spec.containers[0].args;
  assert.equal(args[args.indexOf("--token-file") + 1], tokenPath);

  // The entrypoint's Deno command starts from the cache alone (`deno install --frozen` filled
  // it, as the image's build stage does): nothing is fetched at run time.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...deno.slice(1), "--help"],
    cwd: ROOT,
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(new TextDecoder().decode(out.stdout), /--listen-address/);
});
