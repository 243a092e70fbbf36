/**
 * What the mock stores about one job (PROTOCOL.md §6 states, §3.6 the stored log, §3.9 the
 * archive) and the runner features a job needs before GitLab hands it out (§9, §13 item 5).
 *
 * @module
 */

import { GATED_FEATURES } from "./_constants.ts";
import { base64Decode, concatBytes, crc32 } from "./_util.ts";
import type { PayloadTransform } from "./job.ts";
import type { MockArtifact, MockJob, MockJobSpec, MockJobState, MockUpdate } from "./types.ts";

/** A resolved dependency. */
export interface ResolvedDependency {
  /** Dependency job id. */
  id: number;
  /** Whether the entry may carry `artifacts_file`. */
  artifacts: boolean;
}

/** Stored archive of a job. */
export interface Archive {
  filename: string;
  data: Uint8Array;
}

const decoder = new TextDecoder();

/** The mock's record of one job; implements the public, read-only {@linkcode MockJob} view. */
export class JobState implements MockJob {
  readonly id: number;
  readonly token: string;
  readonly name: string;
  state: MockJobState;
  failureReason?: string;
  exitCode?: number;
  patches = 0;
  traceRequests = 0;
  updates: MockUpdate[] = [];
  finalUpdates: MockUpdate[] = [];
  artifacts: MockArtifact[] = [];
  payload?: Record<string, unknown>;
  payloadText?: string;
  runnerFeatures?: Record<string, unknown>;
  readonly requires: readonly string[];
  debugTrace = false;
  readonly enqueuedAt: number;
  pickedAt?: number;
  finishedAt?: number;
  /** Time of the last job-token call the job accepted (the sweeper's `updated_at`). */
  contactAt?: number;
  readonly spec: Readonly<MockJobSpec>;

  /** Payload editor from the builder. */
  readonly transform?: PayloadTransform;
  /** Dependencies, resolved to ids. */
  readonly dependencies: readonly ResolvedDependency[];
  /** Two-phase commit: taken by a runner but still pending. */
  assigned = false;
  /** 202s given to final updates so far. */
  finalAccepts = 0;
  /** Time of the first final update carrying a checksum (backoff start). */
  firstFinalAt?: number;
  /** Update interval override while watched. */
  watchedInterval?: number;
  /** Archive set by the spec. */
  specArchive?: Archive;
  /** Archive removed (expired/erased). */
  archiveErased = false;

  #chunks: Uint8Array[] = [];
  #logSize = 0;
  #logCache?: Uint8Array;
  #crc = 0;

  constructor(options: {
    id: number;
    token: string;
    spec: MockJobSpec;
    now: number;
    dependencies: ResolvedDependency[];
    transform?: PayloadTransform;
  }) {
    const { id, token, spec } = options;
    this.id = id;
    this.token = token;
    this.spec = spec;
    this.name = spec.name ?? `job-${id}`;
    this.state = spec.state ?? "pending";
    this.enqueuedAt = options.now;
    this.dependencies = options.dependencies;
    this.transform = options.transform;
    this.requires = inferRequirements(spec);
    if (spec.artifactsFile !== undefined) {
      const data = typeof spec.artifactsFile === "string"
        ? base64Decode(spec.artifactsFile)
        : spec.artifactsFile;
      this.specArchive = { filename: spec.artifactsFilename ?? "artifacts.zip", data };
    }
    if (this.state !== "pending") this.finishedAt = options.now;
  }

  get log(): Uint8Array {
    if (!this.#logCache) {
      this.#logCache = concatBytes(this.#chunks, this.#logSize);
      this.#chunks = this.#logCache.length ? [this.#logCache] : [];
    }
    return this.#logCache;
  }

  get logText(): string {
    return decoder.decode(this.log);
  }

  get logSize(): number {
    return this.#logSize;
  }

  get logChecksum(): string {
    return `crc32:${this.#crc.toString(16).padStart(8, "0")}`;
  }

  /** Appends (already masked) bytes to the stored log. */
  appendLog(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#chunks.push(bytes);
    this.#logSize += bytes.length;
    this.#crc = crc32(bytes, this.#crc);
    this.#logCache = undefined;
  }

  /** Forgets the stored log (the server lost its trace chunks). */
  clearLog(): void {
    this.#chunks = [];
    this.#logSize = 0;
    this.#crc = 0;
    this.#logCache = undefined;
  }

  /** The archive a download would serve, if any. */
  get archive(): Archive | undefined {
    if (this.archiveErased) return undefined;
    const uploaded = this.artifacts.find((a) => a.type === "archive");
    if (uploaded) return { filename: uploaded.filename, data: uploaded.data };
    return this.specArchive;
  }

  /** Whether job-token calls are allowed (`EXECUTING_STATUSES`). */
  get executing(): boolean {
    return this.state === "running" || this.state === "canceling";
  }

  /** Whether the job reached a final state. */
  get finished(): boolean {
    return this.state === "success" || this.state === "failed" || this.state === "canceled";
  }
}

/** Features a spec requires: explicit ones plus those GitLab infers from the job definition. */
export function inferRequirements(spec: MockJobSpec): string[] {
  const req = new Set(spec.requires ?? []);
  for (const a of spec.artifacts ?? []) {
    if ((a.artifactType ?? "archive") !== "archive") req.add("upload_multiple_artifacts");
    if (a.exclude && a.exclude.length > 0) req.add("artifacts_exclude");
  }
  if ((spec.steps ?? []).some((s) => s.name === "release")) req.add("multi_build_steps");
  if ((spec.cache ?? []).some((c) => (c.fallbackKeys ?? []).length > 0)) {
    req.add("fallback_cache_keys");
  }
  if (spec.secrets && Object.keys(spec.secrets).length > 0) req.add("vault_secrets");
  if ((spec.ref ?? "").startsWith("refs/merge-requests/")) req.add("refspecs");
  return [...req];
}

/** The gated features of `requires` that `features` does not announce as `true`. */
export function missingFeatures(
  requires: readonly string[],
  features: Record<string, unknown>,
): string[] {
  return requires.filter((f) => GATED_FEATURES.includes(f) && features[f] !== true);
}
