/**
 * The xPU target: a GPU or NPU (model.ts) running the whole model, timed op by op from its device
 * model; values from the fp32 reference interpreter. The base of the heterogeneous xPU + PIM systems
 * (AttAcc, NeuPIMs, PAPI, Duplex) and their GPU-only baseline.
 */
import { z } from "zod";
import { Interpreter } from "../../src/exec/interpreter.js";
import { UserError } from "../../src/errors.js";
import { validateSystem } from "../../src/frontend/system.js";
import { opCost, operandTyper } from "../../src/ir/cost.js";
import type { CostModel } from "../../src/pipeline/cost-model.js";
import type { LayoutOptions } from "../../passes/layout.js";
import type { SystemModel, Target } from "../index.js";
import { xpuSeconds, zXpu, type Xpu } from "./model.js";

export const zXpuSystem = z.strictObject({ xpu: zXpu });
export type XpuSystem = z.infer<typeof zXpuSystem>;

/** An A100-SXM4-80GB class GPU at its datasheet peaks (FP16 tensor cores), no caps. */
export const DEFAULT_SYSTEM: XpuSystem = zXpuSystem.parse({
  xpu: { kind: "gpu", flops: 312e12, bandwidth: 2.039e12, units: 108, overhead: 4e-6 },
});

const ROW_WEIGHTS: LayoutOptions = {
  weightLayout: (op, i) =>
    (op.opcode === "linear" || op.opcode === "embedding") && i === 1 ? "row" : undefined,
};

export const systemOf = (s: SystemModel): XpuSystem => (s.config as XpuSystem | undefined) ?? DEFAULT_SYSTEM;

export function xpuCostModel(x: Xpu): CostModel {
  return {
    devices: [{ name: "xpu", kind: "xpu" }],
    home: "xpu",
    opTime: (v, device, env) => (device === "xpu" ? xpuSeconds(x, v, env) : undefined),
    transferTime: () => 0,
  };
}

const xpu: Target = {
  name: "xpu",
  summary:
    "a GPU or NPU (roofline with utilization caps, occupancy in waves, or systolic arrays); fp32 reference execution",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "dce", "partition"],
  system(decl, opts) {
    const sys = decl ? validateSystem(decl, zXpuSystem) : DEFAULT_SYSTEM;
    return {
      name: decl?.name ?? "xpu_default",
      costModel: xpuCostModel(sys.xpu),
      ...(opts ? { options: opts } : {}),
      passOptions: { layout: ROW_WEIGHTS },
      config: sys,
    };
  },
  prepare(model) {
    return new Interpreter(model.module, model.weights);
  },
  timeCall(module, system, func, env) {
    const f = module.funcs.find((x) => x.name === func);
    if (!f) throw new UserError(`module has no ${func} function`);
    const typeOf = operandTyper(module, f);
    const x = systemOf(system).xpu;
    const ops = f.body
      .filter((op) => op.opcode !== "transfer")
      .map((op) => {
        const ins = op.operands.map(typeOf);
        const cost = opCost(op, ins, env);
        const seconds = xpuSeconds(x, { op, ins, outs: op.results.map((r) => r.type), cost }, env);
        return { op, device: "xpu", seconds, flops: cost.flops, bytes: cost.bytes };
      });
    const seconds = ops.reduce((s, o) => s + o.seconds, 0);
    return { seconds, busy: { xpu: seconds }, ops };
  },
};

export default xpu;
