/**
 * The rest of GitLab's predefined CI/CD variables for the mock's job payload, so that a default
 * job is as large as a real one (PROTOCOL §4): a real job gets 60–100 `CI_*`/`GITLAB_*`
 * variables, 8–12 KB of JSON (the Rust crate's mock sends 76, 7.9 KB). `allPredefined`
 * (`_payload.ts`) appends these to its own core list, from whose values they are made: together about
 * 85 variables and a payload of about 10 KB. Keys and value shapes follow GitLab's documentation of predefined
 * variables ("Predefined CI/CD variables reference"), limited to those GitLab itself sends (the
 * runner adds `CI_BUILDS_DIR`, `CI_RUNNER_VERSION`, … on its side).
 *
 * Masked among them, like on a real GitLab: `CI_DEPENDENCY_PROXY_PASSWORD` (the job token) and
 * the deploy token's `CI_DEPLOY_PASSWORD` (its own value), on top of the core list's
 * `CI_JOB_TOKEN` and `CI_REGISTRY_PASSWORD`.
 *
 * @module
 */

import { hexFromSeed } from "./_util.ts";
import type { MockVariable } from "./types.ts";

/** GitLab's `GITLAB_FEATURES` on a Premium instance: a long, realistic value. */
const GITLAB_FEATURES = [
  "audit_events",
  "blocked_issues",
  "board_iteration_lists",
  "code_owners",
  "code_review_analytics",
  "contribution_analytics",
  "elastic_search",
  "full_codequality_report",
  "group_activity_analytics",
  "group_bulk_edit",
  "group_webhooks",
  "issuable_default_templates",
  "issue_weights",
  "iterations",
  "ldap_group_sync",
  "member_lock",
  "merge_request_approvers",
  "milestone_charts",
  "multiple_issue_assignees",
  "multiple_ldap_servers",
  "multiple_merge_request_assignees",
  "multiple_merge_request_reviewers",
  "project_merge_request_analytics",
  "protected_refs_for_users",
  "push_rules",
  "repository_mirrors",
  "resource_access_token",
  "seat_link",
  "usage_quotas",
  "visual_review_app",
  "wip_limits",
  "zoekt_code_search",
].join(",");

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
}

/**
 * The predefined variables the core list of `_payload.ts` does not have, made from the values
 * in that list (server, project, pipeline, job, token), in the spirit of GitLab's order.
 *
 * @param core The core list (`CI_SERVER_URL`, `CI_PROJECT_PATH`, `CI_JOB_TOKEN`, …).
 * @param now The time the payload is rendered at (ms since the epoch).
 * @param timeout The job timeout in seconds.
 * @param protectedRef Whether the ref is protected.
 */
export function predefinedVariables(
  core: readonly MockVariable[],
  now: number,
  timeout: number,
  protectedRef: boolean,
): MockVariable[] {
  const get = (key: string) => core.find((x) => x.key === key)?.value ?? "";
  const serverUrl = get("CI_SERVER_URL");
  const host = get("CI_SERVER_HOST");
  const port = get("CI_SERVER_PORT");
  const projectPath = get("CI_PROJECT_PATH");
  const namespace = get("CI_PROJECT_NAMESPACE");
  const projectId = Number(get("CI_PROJECT_ID")) || 1;
  const pipelineId = Number(get("CI_PIPELINE_ID")) || 1;
  const jobName = get("CI_JOB_NAME");
  const token = get("CI_JOB_TOKEN");
  const projectName = projectPath.split("/").pop() ?? projectPath;
  const root = projectPath.split("/")[0];
  const registry = `registry.${host}`;
  const proxy = `${host}:${port}`;
  const created = new Date(now - 60_000).toISOString().replace(/\.\d{3}Z$/, "Z");
  const started = new Date(now).toISOString().replace(/\.\d{3}Z$/, "Z");
  const title = `Make the widget configurable (#${pipelineId % 997})`;
  const description =
    "Reads the widget's settings from widget.toml instead of the environment, and documents them.";
  const v = (key: string, value: string): MockVariable => ({ key, value, public: true });
  return [
    v("CI_SERVER_FQDN", port === "443" || port === "80" ? host : `${host}:${port}`),
    v("CI_SERVER_VERSION", "18.5.1-ee"),
    v("CI_SERVER_VERSION_MAJOR", "18"),
    v("CI_SERVER_VERSION_MINOR", "5"),
    v("CI_SERVER_VERSION_PATCH", "1"),
    v("CI_SERVER_REVISION", hexFromSeed(projectId + 7, 11)),
    v("CI_SERVER_SHELL_SSH_HOST", host),
    v("CI_SERVER_SHELL_SSH_PORT", "22"),
    v("CI_API_V4_URL", `${serverUrl}/api/v4`),
    v("CI_API_GRAPHQL_URL", `${serverUrl}/api/graphql`),
    v("CI_TEMPLATE_REGISTRY_HOST", "registry.gitlab.com"),
    v("CI_PAGES_DOMAIN", `pages.${host}`),
    v("CI_PAGES_HOSTNAME", `${root}.pages.${host}`),
    v("CI_PAGES_URL", `https://${root}.pages.${host}/${projectName}`),
    v("CI_PROJECT_TITLE", projectName),
    v("CI_PROJECT_DESCRIPTION", "The widget service and its command line tools."),
    v("CI_PROJECT_PATH_SLUG", slug(projectPath)),
    v("CI_PROJECT_NAMESPACE_ID", "17"),
    v("CI_PROJECT_NAMESPACE_SLUG", slug(namespace)),
    v("CI_PROJECT_ROOT_NAMESPACE", root),
    v("CI_PROJECT_VISIBILITY", "internal"),
    v("CI_PROJECT_REPOSITORY_LANGUAGES", "typescript,shell,dockerfile"),
    v("CI_PROJECT_CLASSIFICATION_LABEL", ""),
    v("CI_PROJECT_TOPICS", "ci,widgets"),
    v("CI_CONFIG_PATH", ".gitlab-ci.yml"),
    v("CI_PIPELINE_IID", String(pipelineId % 1000 + 1)),
    v("CI_PIPELINE_SOURCE", "push"),
    v("CI_PIPELINE_CREATED_AT", created),
    v("CI_COMMIT_TITLE", title),
    v("CI_COMMIT_MESSAGE", `${title}\n\n${description}\n`),
    v("CI_COMMIT_DESCRIPTION", `\n${description}\n`),
    v("CI_COMMIT_AUTHOR", "Mock User <mock-user@example.com>"),
    v("CI_COMMIT_TIMESTAMP", created.replace("Z", "+00:00")),
    v("CI_COMMIT_REF_PROTECTED", String(protectedRef)),
    v("CI_JOB_NAME_SLUG", slug(jobName)),
    v("CI_JOB_GROUP_NAME", jobName),
    v("CI_JOB_STARTED_AT", started),
    v("CI_JOB_TIMEOUT", String(timeout)),
    v("CI_NODE_TOTAL", "1"),
    v("CI_RUNNER_ID", "8"),
    v("CI_RUNNER_DESCRIPTION", "mock runner"),
    v("CI_RUNNER_TAGS", '["linux", "docker"]'),
    v("CI_REGISTRY", registry),
    v("CI_REGISTRY_IMAGE", `${registry}/${projectPath}`),
    v("CI_DEPENDENCY_PROXY_SERVER", proxy),
    v("CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX", `${proxy}/${root}/dependency_proxy/containers`),
    v(
      "CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX",
      `${proxy}/${namespace}/dependency_proxy/containers`,
    ),
    v("CI_DEPENDENCY_PROXY_USER", "gitlab-ci-token"),
    { key: "CI_DEPENDENCY_PROXY_PASSWORD", value: token, public: false, masked: true },
    v("CI_DEPLOY_USER", "gitlab+deploy-token-12"),
    {
      key: "CI_DEPLOY_PASSWORD",
      value: `gldt-${hexFromSeed(projectId * 31 + 5, 20)}`,
      public: false,
      masked: true,
    },
    v("GITLAB_USER_EMAIL", "mock-user@example.com"),
    v("GITLAB_USER_NAME", "Mock User"),
    v("GITLAB_FEATURES", GITLAB_FEATURES),
  ];
}
