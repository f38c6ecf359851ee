import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    pool: "forks",
    // The CLI runs in-process (test/util.ts pimc): its output must not depend on the terminal.
    env: { NO_COLOR: "1" },
  },
});
