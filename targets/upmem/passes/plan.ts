/**
 * `upmem-plan`: the first stage of the UPMEM lowering as a pass. After `partition` it plans the
 * lowering of the placed module for the workload (planLowering: the Tile-Selector per DPU-resident
 * weight and phase, the LUT-GEMV and attention plans, the layouts fitted to MRAM, the kernels) and
 * records the plan on the ops it lowers, as target annotations the IR prints and parses:
 *
 *   %y = linear(%x, @w) {device = "pim", upmem.kernel = "gemm0",
 *        upmem.tiling = "MixedGEMM 1x64x32 t16 1x4x128 db", upmem.mram = "w:L0.qkv"}
 *
 * `emit` builds the program from the same plan (the pass keeps it for the module it returns), so
 * what the IR says is what the program runs.
 */
import type { DimEnv } from "../../../src/ir/dim.js";
import type { Attrs, Module, Op } from "../../../src/ir/module.js";
import type { Pass, PassContext } from "../../../src/pipeline/pass.js";
import { UserError } from "../../../src/errors.js";
import { mapFuncs } from "../../../src/pipeline/rewrite.js";
import { envLimits } from "../../../src/frontend/workload.js";
import { tilingName } from "../gemm.js";
import { lutTilingName } from "../lut.js";
import { planLowering, type LoweringPlan, type LowerOptions } from "../lower.js";
import { refName } from "../../../src/ir/module.js";
import type { UpmemSystem } from "../system.js";

/** What the pass needs besides the workload's envs: the system and the lowering's choices. */
export interface PlanOptions {
  readonly system: UpmemSystem;
  readonly lowering: Pick<LowerOptions, "pooling" | "gemm" | "runtimeTranspose" | "attentionReduce">;
}

export const PLAN = "upmem-plan";

/**
 * The options planLowering takes for a workload's envs, mix and limits (default: the envs' largest),
 * built the same way by the pass, emit and prepare: planFor's key depends on it.
 */
export const planInputs = (
  o: PlanOptions,
  envs: Readonly<Record<string, DimEnv>>,
  mix: Readonly<Record<string, number>> | undefined,
  limits?: LowerOptions["limits"],
): Omit<LowerOptions, "shapeOnly"> => ({
  system: o.system,
  limits: limits ?? envLimits(envs as Record<string, Record<string, number>>),
  envs: envs as Record<string, Record<string, number>>,
  ...(mix ? { mix } : {}),
  ...o.lowering,
});

/**
 * The plan's inputs a compile gives its UPMEM passes: the system and lowering choices, the envs the
 * program is emitted for (the compile's, unless it names others: emitEnvs), the mix, and the
 * program's sizes (the envs' largest, unless the compile names the ones it will emit for).
 */
export function passInputs(
  ctx: PassContext,
): { o: PlanOptions; inputs: Omit<LowerOptions, "shapeOnly"> } | undefined {
  const o = ctx.options[PLAN] as PlanOptions | undefined;
  const envs = (ctx.options.emitEnvs ?? ctx.options.envs) as Readonly<Record<string, DimEnv>> | undefined;
  if (!o || !envs) return undefined;
  const mix = ctx.options.mix as Readonly<Record<string, number>> | undefined;
  return { o, inputs: planInputs(o, envs, mix, ctx.options.limits as LowerOptions["limits"] | undefined) };
}

/** Plans kept for the modules the pass returned, with the inputs they were made for. */
const kept = new WeakMap<Module, { key: string; plan: LoweringPlan }>();
const keyOf = (o: Omit<LowerOptions, "shapeOnly">): string => JSON.stringify(o);

/** The plan of `m` for these inputs: the one the pass made for it, else a new one. */
export function planFor(m: Module, o: Omit<LowerOptions, "shapeOnly">): LoweringPlan {
  const k = kept.get(m);
  return k && k.key === keyOf(o) ? k.plan : planLowering(m, o);
}

/** The annotations of one op from the plan (none for ops the plan does not lower). */
function annotationsOf(plan: LoweringPlan, func: string, op: Op): Attrs | undefined {
  if (op.attrs.device !== "pim") return undefined;
  if (op.opcode === "attention") {
    const a = plan.attn.get(`${func}/${op.results[0]!.name}`);
    if (!a) return undefined;
    const t = a.tiling;
    return {
      "upmem.kernel": [a.scores, a.context, ...(a.reduce ? [a.reduce] : [])].join(" "),
      "upmem.tiling": `scores ${tilingName(t.scores)}; context ${tilingName(t.context)}${t.reduce ? `; partials on the ${t.reduce === "pim" ? "DPUs" : "host"}` : ""}`,
      "upmem.mram": `${a.kRegion} ${a.vRegion}`,
    };
  }
  const w = op.operands[1];
  if (w === undefined || !w.startsWith("@")) return undefined;
  const gemm = plan.plans.get(refName(w));
  const lut = plan.luts.get(refName(w));
  const ph = (gemm ?? lut)?.phases.get(func);
  if (!ph) return undefined;
  const layout = (gemm ?? lut)!.layouts[ph.layout]!;
  return {
    "upmem.kernel": ph.kernel,
    "upmem.tiling": gemm ? tilingName(ph.tiling as never) : lutTilingName(ph.tiling as never),
    "upmem.mram": layout.region,
  };
}

export const upmemPlan: Pass = {
  name: PLAN,
  // It runs at every level: the program is built from its plan (with no partition, nothing is on the DPUs).
  optLevel: 0,
  summary:
    "plan the UPMEM lowering for the workload: tiles, MRAM layouts and kernels of the ops on the DPUs, recorded on them",
  run(m, ctx) {
    const given = passInputs(ctx);
    if (!given) return m;
    const { inputs } = given;
    const plan = planLowering(m, inputs);
    const out = mapFuncs(m, (f) => ({
      ...f,
      body: f.body.map((op) => {
        const ann = annotationsOf(plan, f.name, op);
        // Legality: an op placed on the DPUs that the lowering does not lower is an error, not host work.
        if (!ann && op.attrs.device === "pim" && op.opcode !== "transfer")
          throw new UserError(
            `%${op.results[0]?.name ?? "?"} (${op.opcode}, ${f.name}) is placed on the DPUs, which run only GEMMs with a constant weight, W4A8 / W2A8 LUT layers and attention: place it on the host`,
          );
        return ann ? { ...op, attrs: { ...op.attrs, ...ann } } : op;
      }),
    }));
    kept.set(out, { key: keyOf(inputs), plan });
    return out;
  },
};
