// Test-only imports in one place.
export { default as assert } from "node:assert/strict";
export { mock } from "node:test";
export { FakeClock } from "../src/clock.ts";
