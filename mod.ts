/**
 * @x/gitlab-runner: write custom GitLab runners in TypeScript.
 *
 * @module
 */
export { type Clock, FakeClock, systemClock } from "./src/clock.ts";
export { ApiError, RequestError } from "./src/errors.ts";
