import { defineConfig } from "vitest/config";

export default defineConfig({
  // docs/api.md's example imports the package by name: here, its sources (test/api.test.ts).
  resolve: { alias: { pimc: new URL("./src/index.ts", import.meta.url).pathname } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    // Forks, one per core by default. Test files share a worker's modules (no re-import per file:
    // about a quarter of the small files' CPU); the tests restore their mocks and the emulators'
    // module-level memos are bounded. bench/slow-tests.mjs reports the slow tests of a JSON report.
    pool: "forks",
    maxWorkers: 2,
    isolate: false,
    // The CLI runs in-process (test/util.ts pimc): its output must not depend on the terminal.
    env: { NO_COLOR: "1" },
  },
});
