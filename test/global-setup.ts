/**
 * Before the suite: the pimc bin run once from its sources, so that the TypeScript it loads is
 * transpiled into test/ts-hooks.mjs's cache (node_modules/.cache/pimc-ts) by one process. The
 * tests that spawn pimc (test/bin.test.ts, the Slurm and Ctrl-C tests of test/sweep.test.ts, whose
 * worker threads and Slurm tasks start at the same time) then load it from the cache instead of
 * each transpiling it again on a clean clone.
 */
import { spawnSync } from "node:child_process";

export default function setup(): void {
  // test/util.ts's PIMC_BIN (not imported: it loads the CLI into this process too).
  spawnSync(process.execPath, ["--import", "./test/ts-register.mjs", "src/cli/bin.ts", "--version"], {
    stdio: "ignore",
  });
}
