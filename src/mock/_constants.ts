/**
 * Constants of real GitLab that the mock reproduces (PROTOCOL.md §3.8, §8, §9, §10).
 *
 * @module
 */

/**
 * `Ci::Build.failure_reasons.keys` of current GitLab, in enum order: the job payload's
 * `features.failure_reasons` and the values a `PUT state=failed` may carry (anything else is
 * stored as `unknown_failure`). GL `app/models/concerns/enums/ci/commit_status.rb`.
 */
export const FAILURE_REASONS: readonly string[] = Object.freeze([
  "unknown_failure",
  "script_failure",
  "api_failure",
  "stuck_or_timeout_failure",
  "runner_system_failure",
  "missing_dependency_failure",
  "runner_unsupported",
  "stale_schedule",
  "job_execution_timeout",
  "archived_failure",
  "unmet_prerequisites",
  "scheduler_failure",
  "data_integrity_failure",
  "forward_deployment_failure",
  "user_blocked",
  "project_deleted",
  "ci_quota_exceeded",
  "pipeline_loop_detected",
  "no_matching_runner",
  "trace_size_exceeded",
  "builds_disabled",
  "environment_creation_failure",
  "deployment_rejected",
  "failed_outdated_deployment_job",
  "job_execution_server_timeout",
  "stuck_pending_with_matching_runners",
  "stuck_pending_no_matching_runners",
  "no_updates_running",
  "no_updates_canceling",
  "server_timeout_running",
  "server_timeout_canceling",
  "runner_configuration_error",
  "runner_external_dependency_failure",
  "runner_interrupted",
  "protected_environment_failure",
  "insufficient_bridge_permissions",
  "downstream_bridge_project_not_found",
  "invalid_bridge_trigger",
  "upstream_bridge_project_not_found",
  "insufficient_upstream_permissions",
  "bridge_pipeline_is_child_pipeline",
  "downstream_pipeline_creation_failed",
  "secrets_provider_not_found",
  "reached_max_descendant_pipelines_depth",
  "ip_restriction_failure",
  "reached_max_pipeline_hierarchy_size",
  "reached_downstream_pipeline_trigger_rate_limit",
  "duo_workflow_not_allowed",
  "job_router_failure",
  "job_token_expired",
  "id_token_burned_project_path",
  "downstream_project_trigger_resolved_to_empty",
]);

/** Artifact type → the format GitLab pairs with it (GL `enums/ci/job_artifact.rb`). */
export const ARTIFACT_TYPE_FORMATS: Readonly<Record<string, string>> = Object.freeze({
  archive: "zip",
  metadata: "gzip",
  trace: "raw",
  junit: "gzip",
  metrics: "gzip",
  dotenv: "gzip",
  cobertura: "gzip",
  jacoco: "gzip",
  cyclonedx: "gzip",
  annotations: "gzip",
  repository_xray: "gzip",
  metrics_referee: "gzip",
  network_referee: "gzip",
  cluster_applications: "gzip",
  lsif: "zip",
  sast: "raw",
  secret_detection: "raw",
  dependency_scanning: "raw",
  container_scanning: "raw",
  cluster_image_scanning: "raw",
  dast: "raw",
  license_scanning: "raw",
  license_management: "raw",
  accessibility: "raw",
  codequality: "raw",
  performance: "raw",
  browser_performance: "raw",
  load_performance: "raw",
  terraform: "raw",
  requirements: "raw",
  requirements_v2: "raw",
  coverage_fuzzing: "raw",
  api_fuzzing: "raw",
});

/** `Ci::JobArtifact.file_formats.keys`. */
export const ARTIFACT_FORMATS: readonly string[] = Object.freeze(["raw", "zip", "gzip"]);

/** Default `name` of report entries in the job payload (`Ci::JobArtifact::DEFAULT_FILE_NAMES`). */
export const REPORT_DEFAULT_NAMES: Readonly<Record<string, string>> = Object.freeze({
  junit: "junit.xml.gz",
  metrics: "metrics.txt.gz",
  dotenv: ".env.gz",
  cobertura: "cobertura-coverage.xml.gz",
  jacoco: "jacoco.xml.gz",
  cyclonedx: "gl-sbom.cdx.json.gz",
  annotations: "gl-annotations.json.gz",
  repository_xray: "gl-repository-xray.json.gz",
  lsif: "lsif.json",
  sast: "gl-sast-report.json",
  secret_detection: "gl-secret-detection-report.json",
  dependency_scanning: "gl-dependency-scanning-report.json",
  container_scanning: "gl-container-scanning-report.json",
  cluster_image_scanning: "gl-cluster-image-scanning-report.json",
  dast: "gl-dast-report.json",
  license_scanning: "gl-license-scanning-report.json",
  accessibility: "gl-accessibility.json",
  codequality: "gl-code-quality-report.json",
  performance: "performance.json",
  browser_performance: "browser-performance.json",
  load_performance: "load-performance.json",
  terraform: "tfplan.json",
  requirements: "requirements.json",
  requirements_v2: "requirements_v2.json",
  coverage_fuzzing: "gl-coverage-fuzzing.json",
  api_fuzzing: "gl-api-fuzzing-report.json",
});

/**
 * Runner features GitLab checks before handing out a job (PROTOCOL §9): a job that needs one the
 * requesting runner did not announce as `true` is failed with `runner_unsupported`.
 */
export const GATED_FEATURES: readonly string[] = Object.freeze([
  "refspecs",
  "upload_multiple_artifacts",
  "artifacts_exclude",
  "multi_build_steps",
  "return_exit_code",
  "fallback_cache_keys",
  "vault_secrets",
]);

/** Workhorse reads at most this many bytes of a `/jobs/request` body (`maxRegisterBodySize`). */
export const MAX_REGISTER_BODY_SIZE = 32 * 1024;

/** `Ci::Trace::UPDATE_FREQUENCY_DEFAULT` (seconds). */
export const TRACE_UPDATE_INTERVAL = 60;

/** Update interval while someone watches the log in the UI (seconds). */
export const TRACE_UPDATE_INTERVAL_WATCHED = 3;

/** Default plan limit `ci_jobs_trace_size_limit`: 100 MB. */
export const TRACE_SIZE_LIMIT = 100 * 1024 * 1024;
/** A running job without contact this long is failed by GitLab's sweeper (1 h, PROTOCOL §3.5.2). */
export const STUCK_AFTER_MS = 60 * 60_000;

/** Default `max_artifacts_size`: 100 MB. */
export const MAX_ARTIFACT_SIZE = 100 * 1024 * 1024;

/** HTTP reason phrases for the statuses the mock produces. */
export const STATUS_TEXT: Readonly<Record<number, string>> = Object.freeze({
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  302: "Found",
  307: "Temporary Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  412: "Precondition Failed",
  413: "Payload Too Large",
  416: "Range Not Satisfiable",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
});
