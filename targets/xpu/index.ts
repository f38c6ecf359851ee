/**
 * The xPU target: a GPU or NPU (model.ts) running the whole model, timed op by op from its device
 * model; values from the fp32 reference interpreter. The base of the heterogeneous xPU + PIM systems
 * (AttAcc, NeuPIMs, PAPI, Duplex) and their GPU-only baseline.
 */
import { z } from "zod";
import { Interpreter } from "../../src/exec/interpreter.js";
import { UserError } from "../../src/errors.js";
import { validateSystem } from "../../src/frontend/system.js";
import { callViews, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import type { Energy, SystemModel, SystemOptions, Target } from "../index.js";
import { xpuOpEnergy } from "./energy.js";
import { sumEnergies } from "../../src/report/energy.js";
import { xpuSeconds, zXpu, type Xpu } from "./model.js";
import { moeCoSeconds, moeSeconds, splitSeconds } from "./duplex.js";
import { deviceFor } from "../../src/ir/placement.js";
import type { DimEnv } from "../../src/ir/dim.js";
import { singleMemory } from "../../src/pipeline/capacity.js";

export const zXpuSystem = z.strictObject({
  xpu: zXpu,
  /**
   * A Logic-PIM beside the xPU (Duplex: a processor on the HBM logic die with several times the
   * external bandwidth), timed by the same device model. Ops go to either device or, for
   * mixture-of-experts layers and attention, are co-processed by both (duplex.ts).
   */
  logic_pim: zXpu.optional(),
  /**
   * With a Logic-PIM: mixture-of-experts layers and attention may be split between both devices
   * (Duplex's expert and attention co-processing, "Duplex+PE"); false: each op runs on one of them
   * (the paper's plain "Duplex").
   */
  co_processing: z.boolean().default(true),
});
export type XpuSystem = z.infer<typeof zXpuSystem>;

/** An A100-SXM4-80GB class GPU at its datasheet peaks (FP16 tensor cores), no caps. */
export const DEFAULT_SYSTEM: XpuSystem = zXpuSystem.parse({
  // 80 GB of HBM2e (NVIDIA A100 Tensor Core GPU datasheet, SXM4 80GB).
  xpu: { kind: "gpu", flops: 312e12, bandwidth: 2.039e12, units: 108, overhead: 4e-6, memory: 80e9 },
});

export const systemOf = (s: SystemModel): XpuSystem => (s.config as XpuSystem | undefined) ?? DEFAULT_SYSTEM;

/** Device names: the xPU, the Logic-PIM, and both at once (co-processing). */
export const XPU = "xpu";
export const LOGIC_PIM = "pim";
export const CO = "co";

/** `cooperation: false`: with a Logic-PIM, every op runs there (the PIM-only reference). */
export function xpuCostModel(sys: XpuSystem, opts: SystemOptions = {}): CostModel {
  const x = sys.xpu;
  const p = sys.logic_pim;
  const pimOnly = p !== undefined && opts.cooperation === false;
  const on = (dev: Xpu, v: OpView, env: DimEnv): number =>
    v.op.opcode === "moe" ? moeSeconds(dev, v, env) : xpuSeconds(dev, v, env);
  return {
    devices: [
      { name: XPU, kind: "xpu", label: "xPU", roof: { flops: x.flops, bandwidth: x.bandwidth } },
      ...(p
        ? [
            {
              name: LOGIC_PIM,
              kind: "pim" as const,
              label: "Logic-PIM",
              roof: { flops: p.flops, bandwidth: p.bandwidth },
            },
            { name: CO, kind: "xpu" as const, label: "xPU + Logic-PIM" },
          ]
        : []),
    ],
    home: XPU,
    opTime(v, device, env) {
      if (device === XPU) return pimOnly ? undefined : on(x, v, env);
      if (!p) return undefined;
      if (device === LOGIC_PIM) return on(p, v, env);
      if (device !== CO || pimOnly || !sys.co_processing) return undefined;
      if (v.op.opcode === "moe") return moeCoSeconds(x, p, v, env);
      if (v.op.opcode === "attention") return splitSeconds(xpuSeconds(x, v, env), xpuSeconds(p, v, env));
      return undefined;
    },
    // The devices share the HBM: activations do not move.
    transferTime: () => 0,
  };
}

const xpu: Target = {
  name: "xpu",
  summary:
    "a GPU or NPU (roofline with utilization caps, occupancy in waves, or systolic arrays); fp32 reference execution",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "dce", "partition"],
  energy:
    "AttAcc's GPU model: HBM bytes, a GPU's caches and registers, multiply-adds (Duplex's Logic-PIM path)",
  system(decl, opts) {
    const sys = decl ? validateSystem(decl, zXpuSystem) : DEFAULT_SYSTEM;
    return {
      name: decl?.name ?? "xpu_default",
      costModel: xpuCostModel(sys, opts),
      ...(opts ? { options: opts } : {}),
      passOptions: { layout: ROW_MAJOR_WEIGHTS },
      config: sys,
    };
  },
  // One HBM: the Logic-PIM (Duplex) sits on its logic die and reads the same memory.
  memories: (system) => singleMemory("the xPU's HBM", systemOf(system).xpu.memory),
  prepare(model) {
    return new Interpreter(model.module, model.weights);
  },
  timeCall(module, system, func, env, opts) {
    if ((opts?.subBatches ?? 1) > 1)
      throw new UserError(
        "sub-batch interleaving needs a host beside PIM units that work at once (target hbm-pim)",
      );
    const cm = system.costModel;
    const sys = systemOf(system);
    const busy: Record<string, number> = Object.fromEntries(cm.devices.map((d) => [d.name, 0]));
    const energies: Energy[] = [];
    const ops = callViews(module, func, env).map((view) => {
      const device = deviceFor(view.op, env) ?? XPU;
      const own = cm.opTime(view, device, env);
      const seconds = own ?? cm.opTime(view, XPU, env)!;
      busy[device] = (busy[device] ?? 0) + seconds;
      // Where the work ran (the xPU when the placed device cannot run it); co-processed, each device
      // takes the share of the work that makes both finish together.
      const ran = own === undefined ? XPU : device;
      const pimShare =
        ran === CO && sys.logic_pim
          ? xpuSeconds(sys.xpu, view, env) /
            (xpuSeconds(sys.xpu, view, env) + xpuSeconds(sys.logic_pim, view, env))
          : 0;
      const energy = xpuOpEnergy(
        sys.xpu,
        view,
        env,
        ran === LOGIC_PIM ? "pim" : ran === CO ? "co" : "xpu",
        pimShare,
      );
      energies.push(energy);
      return {
        op: view.op,
        device,
        seconds,
        flops: view.cost.flops,
        bytes: view.cost.bytes,
        joules: energy.joules,
      };
    });
    // One op at a time (co-processed ops use both devices at once).
    return { seconds: ops.reduce((s, o) => s + o.seconds, 0), busy, ops, energy: sumEnergies(energies) };
  },
};

export default xpu;
