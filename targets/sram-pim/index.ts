/**
 * The SRAM-PIM CPU target (SAIL, arXiv 2509.25853): a host CPU whose last-level cache has
 * compute-capable SRAM arrays beside its slices. Low-bit linear layers with INT8 activations
 * (`--weights int4|int2 --activations int8`) run there as batched LUT-GEMV: weights streamed from
 * DRAM at their packed width, tables of activation vectors built in the arrays, one weight-index
 * read serving the tables of a whole batch, type conversion in memory (model.ts). Everything else
 * (norms, attention, softmax, fp32 and INT8 linear layers, weight-only low-bit layers) runs on the
 * host by its roofline. Values: the reference interpreter with LUT-GEMV for the arrays' layers
 * (runner.ts), bit-identical to `--target cpu`.
 */
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import { validateSystem } from "../../src/frontend/system.js";
import { callViews } from "../../src/pipeline/cost-model.js";
import { UserError } from "../../src/errors.js";
import { deviceFor } from "../../src/ir/placement.js";
import type { SystemModel, Target } from "../index.js";
import { singleMemory } from "../../src/pipeline/capacity.js";
import { HOST, hostSeconds, PIM, sramPimCostModel } from "./model.js";
import { SramPimRunner } from "./runner.js";
import { DEFAULT_SYSTEM, zSramPimSystem, type SramPimSystem } from "./system.js";

export const systemOf = (s: SystemModel): SramPimSystem =>
  (s.config as SramPimSystem | undefined) ?? DEFAULT_SYSTEM;

const sramPim: Target = {
  name: "sram-pim",
  summary:
    "CPU with SRAM-PIM arrays in its cache (SAIL): batched LUT-GEMV for low-bit x INT8 layers, the rest on the host",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "quantize", "dce", "partition"],
  system(decl, opts) {
    const sys = decl ? validateSystem(decl, zSramPimSystem) : DEFAULT_SYSTEM;
    return {
      name: decl?.name ?? "sram_pim_default",
      costModel: sramPimCostModel(sys, opts),
      ...(opts ? { options: opts } : {}),
      // Linear weights row-major: a weight index is `width` consecutive inputs of an output.
      passOptions: { layout: ROW_MAJOR_WEIGHTS },
      config: sys,
    };
  },
  // The arrays stream weights from the host's DRAM: everything lives there.
  memories: (system) => singleMemory("host DRAM", systemOf(system).host.memory),
  prepare(model, system) {
    return new SramPimRunner(model.module, model.weights, systemOf(system));
  },
  timeCall(module, system, func, env, opts) {
    if ((opts?.subBatches ?? 1) > 1)
      throw new UserError(
        "sub-batch interleaving needs a host beside PIM units that work at once (target hbm-pim); the sram-pim arrays are driven by the host's cores",
      );
    const sys = systemOf(system);
    const cm = system.costModel;
    const busy: Record<string, number> = { [HOST]: 0, [PIM]: 0 };
    const ops = callViews(module, func, env).map((view) => {
      const placed = deviceFor(view.op, env);
      const onPim = placed === PIM ? cm.opTime(view, PIM, env) : undefined;
      const device = onPim !== undefined ? PIM : HOST;
      const seconds = onPim ?? hostSeconds(sys, view);
      busy[device] = busy[device]! + seconds;
      return { op: view.op, device, seconds, flops: view.cost.flops, bytes: view.cost.bytes };
    });
    // The host issues a LUT-GEMV and waits for it: one op at a time.
    return { seconds: ops.reduce((s, o) => s + o.seconds, 0), busy, ops };
  },
};

export default sramPim;
