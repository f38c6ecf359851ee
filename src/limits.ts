import { UserError } from "./errors.js";

/**
 * Hard caps on the sizes that come from input (model descriptions, config.json, workloads, request
 * traces, command-line flags, system descriptions), checked where each enters. They are far above any
 * published model or machine and exist so that a typo or a hostile file gives one error line instead
 * of a hang, an allocation failure or an Infinity: a cap names the field and the limit. Bounds that
 * follow from the model or the system (positions against max_positions, bytes against a memory's
 * capacity) are checked by the capacity checks, not here.
 */

/**
 * Model configuration (both front ends). The largest published decoders stay well below: GPT-3 175B
 * has 96 layers and hidden 12288 (Brown et al. 2020, Table 2.1), Llama 3.1 405B 126 layers, hidden
 * 16384, ffn 53248, 128 heads and a 128,256-token vocabulary (Llama 3 paper, Table 3), Gemma a
 * 256,000-token vocabulary, DeepSeek-V3 256 routed experts per layer.
 */
export const MODEL_LIMITS = {
  layers: 1024,
  hidden: 1 << 18,
  heads: 4096,
  kv_heads: 4096,
  head_dim: 4096,
  ffn: 1 << 20,
  vocab: 1 << 22,
  max_positions: 1 << 24,
  experts: 4096,
  top_k: 4096,
  embed_dim: 1 << 18,
  group_size: 1 << 20,
  /** Parameters of the whole model (about 8.8 T). */
  parameters: 2 ** 43,
} as const;

/** Custom graphs of description files (`graph { ... }`). */
export const GRAPH_LIMITS = {
  /** Iterations of all `for` loops together (the graph is unrolled: layers x experts, say). */
  iterations: 1 << 16,
  /** Each dimension of a weight's shape. */
  dim: 1 << 24,
} as const;

/** Workloads (description blocks and the --batch, --prompt, ... flags). */
export const WORKLOAD_LIMITS = {
  batch: 1 << 16,
  prompt: 1 << 24,
  context: 1 << 24,
  speculation: 1024,
  output: 1 << 24,
} as const;

/** Sweeps (`pimc sweep`): values per axis and points per grid (a sweep of 10^5 points takes hours). */
export const SWEEP_LIMITS = {
  values: 4096,
  points: 1 << 20,
} as const;

/** Request traces of `pimc serve` (files, or the --count, --prompt and --output flags). */
export const TRACE_LIMITS = {
  requests: 1 << 20,
  prompt: 1 << 24,
  output: 1 << 24,
  /** Generated tokens of all requests together: the serving simulation spends about 1 us per token. */
  total_output: 1 << 22,
  /** Arrival times, in seconds (a year). */
  arrival: 365 * 24 * 3600,
} as const;

/**
 * Numbers of a `system` block, by unit (the unit a value was written with; docs/language.md): each must
 * be finite, and non-zero values lie in the range, so that no step of a run divides by a denormal or
 * multiplies to Infinity. Values written without a unit are counts or ratios, capped by `count`.
 */
export const SYSTEM_LIMITS = {
  /** Hz: 1 kHz .. 100 THz. */
  frequency: [1e3, 1e14],
  /** B/s: 1 B/s .. 1 EB/s. */
  bandwidth: [1, 1e18],
  /** Bytes: 1 B .. 1 EiB. */
  bytes: [1, 2 ** 60],
  /** Seconds: 1 fs .. 1 hour. */
  seconds: [1e-15, 3600],
  /** FLOP/s or op/s: 1 .. 1 ZFLOP/s. */
  rate: [1, 1e21],
  /** A number without a unit (counts such as DPUs, channels, banks; ratios; cycles). */
  count: [1e-9, 2 ** 32],
} as const;

/**
 * Caps of counts the emulators allocate or loop over, by key (in any system block, nested or not).
 * UPMEM DPUs have 24 hardware threads (UPMEM SDK documentation); the largest UPMEM servers 2,560
 * DPUs; HBM3 stacks 32 pseudo-channels each (JEDEC JESD238).
 */
export const SYSTEM_KEY_LIMITS: Readonly<Record<string, number>> = {
  dpus: 1 << 20,
  dpus_per_rank: 1 << 12,
  max_tasklets: 64,
  pseudo_channels: 1 << 16,
  ranks: 64,
  bank_groups: 1 << 10,
  banks_per_group: 1 << 10,
};

/** Files pimc reads whole as text (descriptions, config.json, traces, references). */
export const MAX_TEXT_FILE = 256 * 1024 * 1024;

/**
 * A kernel size as `pimc kernel` takes it: 4096, 4K or 1M (K and M are powers of two), a positive
 * integer up to `max`. Bad input is a UserError naming `what`.
 */
export function kernelSize(v: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const m = /^(\d+)([KkMm]?)$/.exec(v.trim());
  const x = m ? Number(m[1]) * (m[2] === "" ? 1 : /k/i.test(m[2]!) ? 1024 : 1024 * 1024) : NaN;
  if (!m || !Number.isSafeInteger(x) || x <= 0 || x > max)
    throw new UserError(
      `${what}: expected a positive integer${max < Number.MAX_SAFE_INTEGER ? ` up to ${max}` : ""} (K and M suffixes allowed), got "${v}"`,
    );
  return x;
}
