/**
 * Flags a target declares (Target.flags): accepted by the compiling commands, listed by --help only
 * for that target, checked against the chosen target, and reaching its lowering.
 */
import { describe, expect, test } from "vitest";
import { allTargets, checkTargetFlags, getTarget } from "../targets/index.js";
import { UserError } from "../src/errors.js";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchJson, llama7bLayers, pimc, tempDir } from "./util.js";
import { linearSplit } from "../targets/hbm-pim/cost.js";
import { DEFAULT_SYSTEM as HBM_DEFAULT } from "../targets/hbm-pim/standard.js";

const UPMEM = "examples/systems/upmem-2048.pim";
const HBM = "examples/systems/hbm-pim-64ch.pim";
const TINY = "test/fixtures/llama-tiny";

describe("target flags", () => {
  test("each target's flags have keys commander derives from them, unique per target", async () => {
    for (const t of (await allTargets()).values()) {
      const keys = (t.flags ?? []).map((f) => f.key);
      expect(new Set(keys).size).toBe(keys.length);
      for (const f of t.flags ?? []) {
        const name = f.flags.split(" ")[0]!.replace(/^--(no-)?/, "");
        expect(name.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())).toBe(f.key);
        expect(f.flags.includes("<")).toBe(f.choices !== undefined);
      }
    }
  });

  test("--help lists a target's flags with that target only", async () => {
    const withUpmem = await pimc("bench", "--help", "--system", UPMEM);
    expect(withUpmem.stdout).toMatch(/--no-pooling +upmem: send weights/);
    expect(withUpmem.stdout).toMatch(/--attention-reduce <site>/);
    expect(withUpmem.stdout).not.toMatch(/Targets' own flags/);
    const plain = await pimc("bench", "--help");
    expect(plain.stdout).not.toMatch(/--no-pooling|--attention-reduce/);
    expect(plain.stdout).toMatch(
      /Targets' own flags \(hbm-pim, upmem\) are listed with --target NAME or --system FILE/,
    );
    const hbm = await pimc("compile", "--help", "--system", HBM);
    expect(hbm.stdout).not.toMatch(/--no-pooling/);
    expect(hbm.stdout).toMatch(/--no-k-split +hbm-pim: linear layers keep K whole/);
    expect((await pimc("compile", "--help", "--target", "upmem")).stdout).toMatch(/--base-gemm/);
  });

  test("pimc list targets says what runs each target's programs, its capabilities and flags", async () => {
    const r = await pimc("--wide", "list", "targets");
    expect(r.code, r.stderr).toBe(0);
    const row = (t: string) => r.stdout.split("\n").find((l) => l.startsWith(`│ ${t} `))!;
    expect(row("upmem")).toMatch(
      /its emulator .*own tuner, ablation, capacity checks .*--no-pooling --base-gemm/,
    );
    expect(row("hbm-pim")).toMatch(/its device model .*kernels, capacity checks, energy .*--no-k-split/);
    expect(row("cpu")).toMatch(/the cost model/);
  });

  test("a flag of another target is one line naming it (exit 2)", async () => {
    const r = await pimc("compile", TINY, "--system", HBM, "--no-pooling");
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      "pimc: error: --no-pooling is not an option of target hbm-pim (only of upmem)",
    );
    const bad = await pimc("compile", TINY, "--target", "upmem", "--attention-reduce", "gpu");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/'--attention-reduce <site>' argument 'gpu' is invalid.*auto, pim, host/);
  });

  test("library values are checked as the command line's", async () => {
    const upmem = await getTarget("upmem");
    await expect(checkTargetFlags(upmem, { pooling: "no" })).rejects.toThrow(
      new UserError('--no-pooling: expected true or false, got "no"'),
    );
    await expect(checkTargetFlags(upmem, { attentionReduce: true })).rejects.toThrow(
      "--attention-reduce: expected auto, pim, host, got true",
    );
    await expect(checkTargetFlags(await getTarget("cpu"), { colour: true })).rejects.toThrow(
      '"colour" is not an option of target cpu',
    );
    await expect(
      checkTargetFlags(upmem, { pooling: false, attentionReduce: "host" }),
    ).resolves.toBeUndefined();
  });

  test("--attention-reduce reaches the lowering: compile says where the partials are added", async () => {
    const line = async (site: string) => {
      const r = await pimc(
        "compile",
        TINY,
        "--target",
        "upmem",
        "--attention",
        "pim",
        "--no-cooperation",
        "--batch",
        "4",
        "--context",
        "64",
        "--attention-reduce",
        site,
      );
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.split("\n").find((l) => l.startsWith("attention"));
    };
    expect(await line("pim")).toMatch(/decode ks \d+, partials added on the DPUs \(reduce kernel\)/);
    expect(await line("host")).toMatch(/decode ks \d+, partials added by the host/);
  });

  test("hbm-pim's --no-k-split keeps K whole, and Llama-2-7B's decode step takes longer", async () => {
    expect(linearSplit(HBM_DEFAULT, 1024, 4096)).toBe(4);
    expect(linearSplit({ ...HBM_DEFAULT, k_split: false }, 1024, 4096)).toBe(1);
    const model = llama7bLayers(2);
    const args = ["--phase", "decode", "--batch", "1"];
    const split = (await benchJson(model, HBM, ...args)).steps[0]!.seconds;
    const whole = (await benchJson(model, HBM, ...args, "--no-k-split")).steps[0]!.seconds;
    expect(whole).toBeGreaterThan(split);
    // A program file keeps the flag: sim gives bench's time; a bad value is one line naming the file.
    const file = join(tempDir(), "whole.pimprog");
    expect((await pimc("compile", model, "--system", HBM, ...args, "--no-k-split", "-o", file)).code).toBe(0);
    const sim = await pimc("sim", file, "--phase", "decode", "--batch", "1", "--json");
    expect(sim.code, sim.stderr).toBe(0);
    expect((JSON.parse(sim.stdout) as { phases: { seconds: number }[] }).phases[0]!.seconds).toBe(whole);
    writeFileSync(file, readFileSync(file, "utf8").replace('"kSplit": false', '"kSplit": "no"'));
    const bad = await pimc("sim", file);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe(
      `pimc: error: ${file}: options: --no-k-split: expected true or false, got "no"`,
    );
  });
});
