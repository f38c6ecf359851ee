/**
 * Dynamic energy of ops on an xPU and on a Logic-PIM on its HBM's logic die (docs/energy.md), the way
 * AttAcc's GPU model counts it: the bytes an op streams through the HBM (rows read whole: 28.72 pJ per
 * byte to the xPU, 26.32 pJ on the logic die, which skips the interposer) and its multiply-adds
 * (0.32 pJ each). A GPU's static and idle power is not in it.
 */
import type { OpView } from "../../src/pipeline/cost-model.js";
import { HBM_LOGIC_DIE_PER_BYTE, HBM_STREAM_PER_BYTE, MAC_ENERGY } from "../../src/pipeline/energy.js";
import type { Energy } from "../index.js";

const on = (mem: string, alu: string, v: OpView, perByte: number, share = 1): Record<string, number> => ({
  [mem]: share * v.cost.bytes * perByte,
  [alu]: share * (v.cost.flops / 2) * MAC_ENERGY,
});

const total = (breakdown: Record<string, number>): Energy => ({
  joules: Object.values(breakdown).reduce((s, j) => s + j, 0),
  breakdown,
});

/**
 * An op's energy on the xPU, the Logic-PIM, or both at once (`co`: the share of the work each does,
 * `pimShare`, the Logic-PIM's).
 */
export function xpuOpEnergy(v: OpView, where: "xpu" | "pim" | "co", pimShare = 0): Energy {
  if (where === "xpu") return total(on("xpu_mem", "xpu_alu", v, HBM_STREAM_PER_BYTE));
  if (where === "pim") return total(on("pim_mem", "pim_alu", v, HBM_LOGIC_DIE_PER_BYTE));
  return total({
    ...on("xpu_mem", "xpu_alu", v, HBM_STREAM_PER_BYTE, 1 - pimShare),
    ...on("pim_mem", "pim_alu", v, HBM_LOGIC_DIE_PER_BYTE, pimShare),
  });
}
