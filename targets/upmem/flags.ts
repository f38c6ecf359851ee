/**
 * The UPMEM target's own flags (its lowering's choices) and PIM-LLM's ablation over them
 * (`pimc bench --ablation`). Their values arrive as `SystemOptions.targetFlags` and become the
 * typed UpmemOptions the cost model and the lowering read.
 */
import type { AblationStep, SystemOptions, TargetFlag } from "../index.js";
import type { ReduceSite } from "./attention.js";

export const UPMEM_FLAGS: readonly TargetFlag[] = [
  {
    key: "pooling",
    flags: "--no-pooling",
    description: "send weights and allocate DPUs at every call (no resource pooling)",
  },
  {
    key: "baseGemm",
    flags: "--base-gemm",
    description: "PIM-LLM's naive BaseGEMM mapping (rows of X over DPUs, all of W on each, fixed tile)",
  },
  {
    key: "runtimeTranspose",
    flags: "--runtime-transpose",
    description:
      "no build-time layout adjustment: the host transposes each weight at every call (needs --no-pooling)",
  },
  {
    key: "attentionReduce",
    flags: "--attention-reduce <site>",
    description:
      "with attention on the DPUs: where the context kernel's K-split partials are added: the DPUs' reduce kernel (pim), the host, or the cheaper by the cost model (auto, default)",
    choices: ["auto", "pim", "host"],
  },
];

/** The upmem target's options: SystemOptions and its own flags' values, typed. */
export interface UpmemOptions extends SystemOptions {
  /** false: weights sent and DPUs allocated at every call (no resource pooling). */
  readonly pooling?: boolean;
  /** GEMM mapping: the Tile-Selector's (default) or PIM-LLM's naive BaseGEMM. */
  readonly gemm?: "selected" | "base";
  /** Weights kept in their imported layout and transposed by the host at every call. */
  readonly runtimeTranspose?: boolean;
  /**
   * Where attention's context partials (a K split inside the DPUs) are added: by the cost model
   * (default), or forced to the host's reduce_sum or the DPUs' reduce kernel.
   */
  readonly attentionReduce?: "auto" | ReduceSite;
}

/** The typed options of `opts`: its own typed fields first, then its target flags' values. */
export function upmemOptions(opts: UpmemOptions | undefined): UpmemOptions | undefined {
  if (!opts) return undefined;
  const f = opts.targetFlags ?? {};
  const pooling = opts.pooling ?? (f.pooling === false ? false : undefined);
  const gemm = opts.gemm ?? (f.baseGemm === true ? "base" : undefined);
  const runtimeTranspose = opts.runtimeTranspose ?? (f.runtimeTranspose === true ? true : undefined);
  const reduce = opts.attentionReduce ?? (f.attentionReduce as UpmemOptions["attentionReduce"]);
  return {
    ...opts,
    ...(pooling === undefined ? {} : { pooling }),
    ...(gemm === undefined ? {} : { gemm }),
    ...(runtimeTranspose === undefined ? {} : { runtimeTranspose }),
    ...(reduce === undefined ? {} : { attentionReduce: reduce }),
  };
}

const FUSION = ["fuse-qkv", "fuse-gate-up"];
/** Per-call mapping without cooperation or fusion: where PIM-LLM's ablation starts. */
const naive = { cooperation: false, targetFlags: { pooling: false } };

/** PIM-LLM's ablation (CGO'25): BaseGEMM, then each of its optimizations added in turn. */
export const PIMLLM_ABLATION: { title: string; steps: readonly AblationStep[] } = {
  title:
    "PIM-LLM's optimizations added to BaseGEMM one by one (Tile-Selector, layout, fusion, CPU/PIM cooperation, pooling)",
  steps: [
    {
      label: "BaseGEMM (rows of X per DPU, W transposed and sent per call, DPUs allocated per call)",
      flags: { ...naive, targetFlags: { pooling: false, baseGemm: true, runtimeTranspose: true } },
      disable: FUSION,
    },
    {
      label: "+ Tile-Selector (PGEMMlib kernels)",
      flags: { ...naive, targetFlags: { pooling: false, runtimeTranspose: true } },
      disable: FUSION,
    },
    { label: "+ build-time layout adjustment", flags: naive, disable: FUSION },
    { label: "+ QKV and gate/up fusion", flags: naive },
    { label: "+ CPU/PIM cooperation", flags: { cooperation: true, targetFlags: { pooling: false } } },
    { label: "+ resource pooling (pimc's default)", flags: { cooperation: true, targetFlags: {} } },
  ],
};
