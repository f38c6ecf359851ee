/**
 * The `pimc` bin in a child process, as a user runs it: the exit code it sets and its behaviour on a
 * closed pipe. The only spawns of the suite (each costs a node start-up); all other CLI tests call
 * `main` in-process through `pimc` (test/util.ts).
 */
import { spawnSync } from "node:child_process";
import { describe, expect, test } from "vitest";
import { PIMC_BIN, pimcE2E } from "./util.js";

describe("the pimc bin", () => {
  test("a bad input: exit code 2, one line, no stack trace", () => {
    const r = pimcE2E("compile", "examples/no-such.pim");
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^pimc: error: .*no-such.pim/);
  });

  test("a failed verification exits 1 after its report", () => {
    const r = pimcE2E("verify", "test/fixtures/llama-tiny", "--tolerance", "1e-9");
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain("FAILED (tolerance 1e-9)");
    expect(r.stderr).toBe("");
  });

  test("a reader that stops early (| head) is not an error", () => {
    // The dump (about 170 kB) overflows the pipe's buffer, so pimc writes after head has gone.
    const cmd = PIMC_BIN.map((a) => `'${a}'`).join(" ");
    const r = spawnSync(
      "sh",
      ["-c", `{ ${cmd} dump examples/llama2-7b.pim; echo "pimc exited $?" >&2; } | head -n 1`],
      { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } },
    );
    expect(r.stdout.split("\n")).toHaveLength(2);
    expect(r.stderr).toBe("pimc exited 0\n");
  });
});
