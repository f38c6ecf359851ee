/**
 * Dynamic energy of ops on an xPU and on Duplex's Logic-PIM (docs/energy.md), the way AttAcc's GPU
 * model counts it: the bytes an op streams through the HBM (rows read whole: 28.72 pJ per byte to
 * the xPU; 16.48 pJ to the Logic-PIM, whose reads leave each bank group for TSVs beside it), a GPU's
 * traffic through its L2 and L1 caches and its register accesses (onChipTraffic), the Logic-PIM's
 * bytes through its SRAM buffers, and the multiply-adds (0.32 pJ each). An NPU's on-chip buffers are
 * not priced. A GPU's static and idle power is not in it.
 */
import type { DimEnv } from "../../src/ir/dim.js";
import type { OpView } from "../../src/pipeline/cost-model.js";
import {
  GPU_ON_CHIP,
  HBM_LOGIC_PIM_PER_BYTE,
  HBM_STREAM_PER_BYTE,
  MAC_ENERGY,
  PIM_SRAM_PER_BYTE,
} from "../../src/pipeline/energy.js";
import type { Energy } from "../index.js";
import { moeParts } from "./duplex.js";
import { onChipTraffic, type Xpu } from "./model.js";

/**
 * Joules of a GPU's L2 and L1 traffic (`cache`) and of its register accesses (`regs`) for an op (an
 * MoE layer's: its router's and its experts' GEMMs').
 */
export function gpuOnChipEnergy(x: Xpu, v: OpView, env: DimEnv): { cache: number; regs: number } {
  const parts = v.op.opcode === "moe" ? moeParts(v, env) : [v];
  let cache = 0;
  let regs = 0;
  for (const part of parts) {
    const t = onChipTraffic(x, part, env);
    cache += t.l2 * GPU_ON_CHIP.l2PerByte + t.l1 * GPU_ON_CHIP.l1PerByte;
    regs += t.regs * GPU_ON_CHIP.regAccess;
  }
  return { cache, regs };
}

const onXpu = (x: Xpu, v: OpView, env: DimEnv, share: number): Record<string, number> => {
  const chip = x.kind === "gpu" ? gpuOnChipEnergy(x, v, env) : undefined;
  return {
    xpu_mem: share * v.cost.bytes * HBM_STREAM_PER_BYTE,
    ...(chip && { xpu_cache: share * chip.cache, xpu_regs: share * chip.regs }),
    xpu_alu: share * (v.cost.flops / 2) * MAC_ENERGY,
  };
};

const onLogicPim = (v: OpView, share: number): Record<string, number> => ({
  pim_mem: share * v.cost.bytes * HBM_LOGIC_PIM_PER_BYTE,
  pim_buffer: share * v.cost.bytes * PIM_SRAM_PER_BYTE,
  pim_alu: share * (v.cost.flops / 2) * MAC_ENERGY,
});

const total = (breakdown: Record<string, number>): Energy => ({
  joules: Object.values(breakdown).reduce((s, j) => s + j, 0),
  breakdown,
});

/**
 * An op's energy on the xPU `x`, the Logic-PIM, or both at once (`co`: the share of the work each
 * does, `pimShare`, the Logic-PIM's).
 */
export function xpuOpEnergy(
  x: Xpu,
  v: OpView,
  env: DimEnv,
  where: "xpu" | "pim" | "co",
  pimShare = 0,
): Energy {
  if (where === "xpu") return total(onXpu(x, v, env, 1));
  if (where === "pim") return total(onLogicPim(v, 1));
  return total({ ...onXpu(x, v, env, 1 - pimShare), ...onLogicPim(v, pimShare) });
}
