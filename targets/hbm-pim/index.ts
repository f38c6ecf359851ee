/**
 * The bank-level HBM-PIM target (Samsung Aquabolt-XL / FIMDRAM class): FP16 PIM units beside the
 * banks of HBM2 pseudo-channels, driven by DRAM commands, and the host processor that reads the same
 * memory. Decode GEMVs, element-wise ops and attention over the KV cache run as PIM kernels on the
 * command-level device model (docs/hbm-pim.md); the partition pass places each op by comparing the
 * kernels' measured time with the host's roofline.
 */
import { validateSystem } from "../../src/frontend/system.js";
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import { callViews } from "../../src/pipeline/cost-model.js";
import type { PrepareOptions, SystemOptions, Target } from "../index.js";
import { deviceFor } from "../../src/ir/placement.js";
import { ATTN_PIM, hbmPimCostModel, hostCost, opCost, PIM } from "./cost.js";
import { plus, scaled, standbyWatts, type Energy } from "./energy.js";
import { systemOf } from "./system.js";
import { HbmPimRunner, type Limits } from "./runner.js";
import { attnSystem, DEFAULT_SYSTEM, reservedRows, zHbmPimSystem, type HbmPimSystem } from "./standard.js";
import type { Memory, MemoryMap } from "../../src/pipeline/capacity.js";
import { hbmPimKernels } from "./kernel-runner.js";

function limitsOf(opts: PrepareOptions | undefined): Limits {
  if (opts?.limits) return opts.limits;
  const envs = Object.values(opts?.envs ?? {});
  const max = (f: (e: Readonly<Record<string, number>>) => number): number => Math.max(16, ...envs.map(f));
  return { B: max((e) => e.B ?? 1), S: max((e) => e.S ?? 1), T: max((e) => (e.P ?? 0) + (e.S ?? 1)) };
}

/** Data bytes of a set of stacks: rank 0's banks (the other ranks hold no data), reserved rows left out. */
const stackBytes = (s: HbmPimSystem): number =>
  s.pseudo_channels *
  s.bank_groups *
  s.banks_per_group *
  (s.rows - new Set(reservedRows(s)).size) *
  s.columns *
  s.burst_bytes;

/**
 * The PIM stacks hold what ops on their units use, and the host's data too unless the host is an xPU
 * with memory of its own (AttAcc's GPU keeps the weights in its HBM); the Attn-PIM stacks (PAPI)
 * hold the KV caches of the attention they run.
 */
function memoryMap(sys: HbmPimSystem): MemoryMap {
  const banks: Memory = { name: "the PIM banks", bytes: stackBytes(sys) };
  const attn = attnSystem(sys);
  const attnBanks: Memory | undefined = attn && { name: "the Attn-PIM banks", bytes: stackBytes(attn) };
  const hbm: Memory | undefined =
    sys.xpu?.memory !== undefined ? { name: "the xPU's HBM", bytes: sys.xpu.memory } : undefined;
  return {
    memories: [banks, ...(attnBanks ? [attnBanks] : []), ...(hbm ? [hbm] : [])],
    place(_kind, devices) {
      if (attnBanks && devices.has(ATTN_PIM)) return attnBanks.name;
      if (devices.has(PIM)) return banks.name;
      return (hbm ?? banks).name;
    },
    holdsAll: true,
  };
}

const hbmPim: Target = {
  name: "hbm-pim",
  summary:
    "bank-level HBM-PIM (Aquabolt-XL class): FP16 PIM units driven by DRAM commands; emulated at command level",
  // FP16 weights, activations and accumulation: logits within 2e-2 (measured: 4e-3 on the tiny models).
  tolerance: 2e-2,
  kernel: hbmPimKernels,
  energy:
    "PIM kernels from their DRAM commands (HBM2 IDDs, per-bit path energies); host work by its HBM bytes and MACs",
  idlePower: (system) => ({ background: standbyWatts(systemOf(system)) }),
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "dce", "partition"],
  flags: [
    {
      key: "kSplit",
      flags: "--no-k-split",
      description:
        "linear layers keep K whole: no split over groups of pseudo-channels for layers whose outputs do not fill the units",
    },
  ],
  system(decl, opts) {
    const described = decl ? validateSystem(decl, zHbmPimSystem) : DEFAULT_SYSTEM;
    const sys: HbmPimSystem =
      opts?.targetFlags?.kSplit === false ? { ...described, k_split: false } : described;
    return {
      name: decl?.name ?? "hbm_pim_default",
      costModel: hbmPimCostModel(sys, opts),
      ...(opts ? { options: opts } : {}),
      passOptions: { layout: ROW_MAJOR_WEIGHTS },
      config: sys,
    };
  },
  timeCall(module, system, func, env, opts) {
    const sys = systemOf(system);
    // Sub-batches (NeuPIMs): each runs at B / n, and while one sub-batch's ops run on the host the
    // other's run on the PIM units (dual row buffers let both use the memory at once).
    const n = Math.max(1, Math.min(opts?.subBatches ?? 1, env.B ?? 1));
    const subEnv = n > 1 ? { ...env, B: Math.ceil((env.B ?? 1) / n) } : env;
    const busy: Record<string, number> = Object.fromEntries(system.costModel.devices.map((d) => [d.name, 0]));
    const given = (system.options ?? {}) as SystemOptions;
    const energies: Energy[] = [];
    const ops = callViews(module, func, subEnv).map((view) => {
      const placed = deviceFor(view.op, subEnv);
      const device = placed === PIM || placed === ATTN_PIM ? placed : "host";
      // The device model's time and energy of the op's kernels where it is placed (the host's otherwise).
      const one =
        (device !== "host" ? opCost(sys, given, view, device, subEnv) : undefined) ??
        hostCost(sys, view, subEnv);
      const seconds = n * one.seconds;
      const energy = scaled(one.energy, n);
      energies.push(energy);
      busy[device] = (busy[device] ?? 0) + seconds;
      return {
        op: view.op,
        device,
        seconds,
        flops: n * view.cost.flops,
        bytes: n * view.cost.bytes,
        joules: energy.joules,
      };
    });
    // The host drives the PIM units with its memory commands: one at a time, unless sub-batches
    // overlap them (then the busier device sets the pace; the pipeline's fill is neglected).
    const total = ops.reduce((s, o) => s + o.seconds, 0);
    return {
      seconds: n > 1 ? Math.max(...Object.values(busy)) : total,
      busy,
      ops,
      energy: plus(...energies),
    };
  },
  memories: (system) => memoryMap(systemOf(system)),
  prepare(model, system, opts) {
    return new HbmPimRunner(model.module, model.weights, systemOf(system), limitsOf(opts));
  },
};

export default hbmPim;
