/**
 * Lowering of a placed module (after the pass pipeline) to an UPMEM program.
 *
 * Every linear layer placed on the DPUs becomes a PGEMMlib GEMM: its weight is laid out once, at build
 * time, in the MRAM of the DPUs of its distribution (resident across calls: resource pooling), and each
 * call pushes (or broadcasts) the activation, launches the kernel and pulls the result, the host adding
 * partial sums when K is split. INT8 layers quantize the activation on the host first and dequantize
 * the int32 result after (the same arithmetic as the `qlinear` reference, so results are bit-identical).
 * Everything else runs on the host as the IR op it is. DPUs are allocated and kernels loaded once, in
 * the program's setup.
 */
import { dimAdd, dimEval, dimMul, dimProd, dimToString, type Dim, type DimEnv } from "../../src/ir/dim.js";
import { layoutOf, toLogical } from "../../src/ir/layout.js";
import { refName, type Attrs, type Func, type Module, type Op } from "../../src/ir/module.js";
import { ANNOTATIONS, getOp, isTargetAnnotation, weightGemm } from "../../src/ir/registry.js";
import type { Tensor } from "../../src/ir/tensor.js";
import type { TensorType } from "../../src/ir/types.js";
import { isFloat } from "../../src/ir/dtype.js";
import type { WeightStore } from "../../src/ir/weights.js";
import { toRuntime } from "../../src/exec/interpreter.js";
import { operandTyper } from "../../src/ir/cost.js";
import { UserError } from "../../src/errors.js";
import { bytes as fmtBytes } from "../../src/report/format.js";
import {
  cdiv,
  elemBytesOf,
  gemmKernel,
  mbExpr,
  roundUp,
  weightBlock,
  type Distribution,
  type GemmShape,
  type Tiling,
} from "./gemm.js";
import { codeBytes } from "./dpu.js";
import type {
  BlockMap,
  Command,
  CommandBody,
  DpuRange,
  HostBuffer,
  HostConstant,
  IntExpr,
  Kernel,
  MramImage,
  MramRegion,
  Phase,
  Program,
  StateBuffer,
  Storage,
} from "./program.js";
import { selectJoint } from "./selector.js";
import {
  decideLayouts,
  decision,
  weightOptions,
  type LayoutDecision,
  type Selection,
  type WeightLayout,
  type WeightOptions,
} from "./layouts.js";
import { lutBlock, lutKernel, lutWeightImage, selectLut, type LutShape, type LutTiling } from "./lut.js";
import { baseTiling, perCallFor } from "./base.js";
import {
  appendOffsets,
  attentionBytes,
  attentionKernels,
  attentionMaps,
  cacheBytes,
  cacheMaps,
  layoutDpus,
  planAttention,
  type AttentionCall,
  type AttentionDims,
  type AttentionLayout,
  type AttentionTiling,
  type ReduceSite,
} from "./attention.js";
import type { UpmemSystem } from "./system.js";

/** The name of the DPU device in the target's cost model. */
export const PIM = "pim";

export interface Limits {
  /** Largest batch. */
  readonly B: number;
  /** Largest number of tokens per call. */
  readonly S: number;
  /** Largest number of cached tokens after a call (P + S). */
  readonly T: number;
}

export interface LowerOptions {
  readonly system: UpmemSystem;
  readonly limits: Limits;
  /** The workload's dims per phase, for the Tile-Selector. */
  readonly envs: Readonly<Record<string, DimEnv>>;
  /** Keep weights and constants out of the program (shape-only, for timing). */
  readonly shapeOnly?: boolean;
  /** GEMM mapping: the Tile-Selector's (default) or PIM-LLM's naive BaseGEMM. */
  readonly gemm?: "selected" | "base";
  /**
   * Resource pooling (default): DPUs allocated, kernels loaded and weights laid out once, in the
   * setup. false: every GEMM call allocates its DPUs, loads its kernel and sends its weight.
   */
  readonly pooling?: boolean;
  /**
   * No build-time layout adjustment (needs pooling off): weights are kept transposed ([in, out], the
   * layout a column-major GEMM library would not want) and the host transposes each one at every call.
   */
  readonly runtimeTranspose?: boolean;
  /**
   * Where the context kernel's K-split partials of attention on the DPUs are added: by the cost
   * model (default), or forced to the host (reduce_sum) or the DPUs (the reduce kernel).
   */
  readonly attentionReduce?: "auto" | ReduceSite;
  /**
   * Calls of each function per request (e.g. prefill 1, decode 128): how a weight's phases weigh
   * when MRAM cannot hold each phase's layout. Default 1 each.
   */
  readonly mix?: Readonly<Record<string, number>>;
  /**
   * Replaces the tile of a GEMM call the Tile-Selector chose (tests, e.g. to force a K split inside
   * the DPUs); the distribution must stay the chosen one.
   */
  readonly retile?: (shape: GemmShape, chosen: Tiling) => Tiling;
}

/** A copy of a weight in MRAM: its distribution, the phases using it, its region and image. */
export interface PlacedLayout extends WeightLayout {
  readonly region: string;
  readonly image: string;
}

/**
 * What lowering decided for one DPU-resident weight: its layouts (one per phase while MRAM holds
 * them), and per phase the tiling, kernel and layout (an index into `layouts`).
 */
export interface WeightPlan<Shape, T> {
  readonly weight: string;
  readonly shape: Shape;
  readonly layouts: readonly PlacedLayout[];
  readonly phases: Map<string, { tiling: T; kernel: string; m: number; layout: number }>;
  /** Seconds per call each phase lost against its own best layout when MRAM was short. */
  readonly paid?: Readonly<Record<string, number>>;
}

/** A plan from a layout decision (phases in the decision's order). */
function planOf<S, T>(
  d: LayoutDecision<T>,
  shape: S,
  ms: ReadonlyMap<string, number>,
  layouts: readonly PlacedLayout[],
): WeightPlan<S, T> {
  const phases = new Map<string, { tiling: T; kernel: string; m: number; layout: number }>();
  [...ms.keys()].forEach((p, i) =>
    phases.set(p, { tiling: d.choices[i]!.tiling, kernel: "", m: ms.get(p)!, layout: d.layoutOf[i]! }),
  );
  return { weight: d.weight, shape, layouts, phases, ...(d.paid ? { paid: d.paid } : {}) };
}

/** Per-DPU MRAM bytes of a GEMM weight's block under a distribution. */
const gemmBlockBytes = (shape: Omit<GemmShape, "m">, d: Distribution): number => {
  const { nbPad, kb } = weightBlock({ ...shape, m: 1 }, d);
  return nbPad * kb * elemBytesOf(shape.dtype);
};

/** Per-DPU MRAM bytes of a LUT-GEMV weight's packed segments under a distribution. */
const lutBlockBytes = (shape: Omit<LutShape, "m">, d: Distribution): number => {
  const b = lutBlock(shape, d);
  return b.segments * b.nbPad * b.gkBytes;
};

/** A GEMM weight (PGEMMlib kernels). */
export type GemmPlan = WeightPlan<Omit<GemmShape, "m">, Tiling>;

const expr = (d: Dim): IntExpr => (typeof d === "number" ? d : dimToString(d));
const isPimAttention = (op: Op): boolean => op.attrs.device === PIM && op.opcode === "attention";
/** A W4A8 / W2A8 linear layer on the DPUs: a LUT-GEMV kernel. */
const isPimLut = (op: Op): boolean =>
  op.attrs.device === PIM && op.opcode === "lowbit_linear" && op.attrs.act_bits === 8 && !!weightGemm(op);

/** A LUT-GEMV weight. */
export type LutPlan = WeightPlan<Omit<LutShape, "m">, LutTiling>;
const isPimGemm = (op: Op): boolean =>
  op.attrs.device === PIM && op.opcode !== "lowbit_linear" && !!weightGemm(op);

function stripAnnotations(attrs: Attrs): Attrs {
  const out: Record<string, Attrs[string]> = {};
  for (const [k, v] of Object.entries(attrs)) if (!ANNOTATIONS.has(k) && !isTargetAnnotation(k)) out[k] = v;
  return out;
}

/** A constant's data in its logical layout. */
function logical(m: Module, weights: WeightStore, name: string): Tensor {
  const decl = m.consts.find((c) => c.name === name)!;
  if (!weights.has(name)) throw new UserError(`constant @${name} has no data (the model is shape-only)`);
  const t = toRuntime(weights.get(name));
  return toLogical(t, layoutOf(decl.attrs), decl.type.shape as number[]);
}

/** The per-DPU image of a weight [N, K] under a distribution: block (in, ik) of DPU (im, in, ik). */
function weightImage(w: Tensor, shape: Omit<GemmShape, "m">, d: Distribution): Uint8Array {
  const { nb, nbPad, kb } = weightBlock({ ...shape, m: 1 }, d);
  const e = elemBytesOf(shape.dtype);
  const count = d.dm * d.dn * d.dk;
  const per = nbPad * kb * e;
  const out = new Uint8Array(count * per);
  const src = w.data;
  const f32 = shape.dtype === "f32" ? new Float32Array(out.buffer) : undefined;
  const i8 = shape.dtype === "i8" ? new Int8Array(out.buffer) : undefined;
  for (let dpu = 0; dpu < count; dpu++) {
    const ik = dpu % d.dk;
    const inn = Math.floor(dpu / d.dk) % d.dn;
    const base = (dpu * per) / e;
    for (let r = 0; r < nb; r++) {
      const row = inn * nb + r;
      if (row >= shape.n) break;
      for (let c = 0; c < kb; c++) {
        const col = ik * kb + c;
        if (col >= shape.k) break;
        const v = src[row * shape.k + col] as number;
        if (f32) f32[base + r * kb + c] = v;
        else i8![base + r * kb + c] = v;
      }
    }
  }
  return out;
}

/** The activation X [m, k] over a GEMM's DPUs: DPU (im, in, ik) holds row block im, column block ik. */
function activationMap(m: IntExpr, k: number, mb: IntExpr, kb: number, d: Distribution): BlockMap {
  return {
    rows: m,
    cols: k,
    blockRows: mb,
    blockCols: kb,
    ld: kb,
    rowEvery: d.dn * d.dk,
    rowBlocks: d.dm,
    colEvery: 1,
    colBlocks: d.dk,
  };
}

/** The storage type of a float tensor the host holds as f32 (timing only), when it differs. */
const storageOf = (dtype: string): { storage?: Storage } =>
  dtype === "f16" || dtype === "bf16" ? { storage: dtype } : {};

class Emitter {
  readonly commands: Command[] = [];
  private readonly writer = new Map<string, number>();
  /** Per MRAM region: the last command reading it and the last writing it. */
  private readonly regionUse = new Map<string, { read?: number; write?: number }>();

  emit(body: CommandBody, deps: Iterable<number | undefined>): number {
    const id = this.commands.length;
    const ds = [...new Set([...deps].filter((d): d is number => d !== undefined))].sort((a, b) => a - b);
    this.commands.push({ ...body, id, deps: ds } as Command);
    return id;
  }

  written(name: string, id: number): void {
    this.writer.set(name, id);
  }

  writerOf(name: string): number | undefined {
    return this.writer.get(name);
  }

  /** Dependencies of writing a region: its last reader and writer (no overwriting data in use). */
  beforeWrite(region: string): (number | undefined)[] {
    const u = this.regionUse.get(region);
    return [u?.read, u?.write];
  }

  beforeRead(region: string): number | undefined {
    return this.regionUse.get(region)?.write;
  }

  read(region: string, id: number): void {
    this.regionUse.set(region, { ...this.regionUse.get(region), read: id });
  }

  wrote(region: string, id: number): void {
    this.regionUse.set(region, { ...this.regionUse.get(region), write: id });
  }
}

export interface AttentionUse {
  readonly phase: string;
  readonly layout: AttentionLayout;
  readonly tiling: AttentionTiling;
  /** Query rows per group (rep x S) and cache length (P + S), as expressions. */
  readonly rows: IntExpr;
  readonly T: IntExpr;
  /** MRAM regions of the layer's K and V^T blocks. */
  readonly kRegion: string;
  readonly vRegion: string;
  scores: string;
  context: string;
  /** The reduce kernel, when the DPUs add the context's partials. */
  reduce?: string;
}

/** A KV-cache state resident in MRAM: appends to it also go to its blocks on the DPUs. */
export interface CacheUse {
  readonly layout: AttentionLayout;
  readonly role: "k" | "v";
  readonly region: string;
}

/** What lowering decided for one attention op on the DPUs. */
export interface AttentionPlan {
  readonly phase: string;
  readonly layout: AttentionLayout;
  readonly tiling: AttentionTiling;
}

export interface Lowered {
  readonly program: Program;
  readonly gemms: readonly GemmPlan[];
  readonly luts: readonly LutPlan[];
  readonly attention: readonly AttentionPlan[];
}

/**
 * What lowering decides before it builds anything: per DPU-resident weight its layouts, MRAM regions
 * and per-phase tiling and kernel (GEMMs and LUT-GEMVs), attention's layouts, tilings and KV-cache
 * regions, the deduplicated kernels, the MRAM map with the X and Y buffers, and the DPUs used.
 */
export interface LoweringPlan {
  readonly plans: Map<string, GemmPlan>;
  readonly luts: Map<string, LutPlan>;
  readonly attn: Map<string, AttentionUse>;
  readonly caches: Map<string, CacheUse>;
  readonly kernels: readonly Kernel[];
  readonly regions: readonly MramRegion[];
  readonly xRegion: string;
  readonly yRegion: string;
  readonly dpusUsed: number;
}

/**
 * Lowers a placed module to an UPMEM program: its plan (`plan`, made for `opts`: the upmem-plan
 * pass's; else planLowering), then the program built from it.
 */
export function lowerModule(
  m: Module,
  weights: WeightStore,
  opts: LowerOptions,
  plan?: LoweringPlan,
): Lowered {
  return buildProgram(m, weights, opts, plan ?? planLowering(m, opts));
}

/**
 * The plan of a placed module's lowering (no weight data needed): 1. the GEMM weights on the DPUs
 * and their rows per phase, 2. the Tile-Selector per weight and phase, LUT-GEMV weights, attention
 * layers, the layouts fitted to MRAM and the kernels.
 */
export function planLowering(m: Module, opts: Omit<LowerOptions, "shapeOnly">): LoweringPlan {
  const sys = opts.system;
  const { limits } = opts;
  const funcs = m.funcs;
  // 1. GEMM weights on the DPUs, with the row counts of each phase.
  interface Use {
    shape: Omit<GemmShape, "m">;
    ms: Map<string, number>;
    /** 2 when 16-bit activations travel as two INT8 planes. */
    planes: number;
    /** Most rows of X a call can have under the limits (planes included). */
    mMax: number;
  }
  const uses = new Map<string, Use>();
  for (const f of funcs) {
    const typeOf = operandTyper(m, f);
    const env = opts.envs[f.name] ?? {};
    for (const op of f.body) {
      if (!isPimGemm(op)) continue;
      const x = typeOf(op.operands[0]!);
      const w = typeOf(op.operands[1]!);
      const [n, k] = w.shape.map((d) => dimEval(d, {})) as [number, number];
      const dtype = op.opcode === "qlinear" ? "i8" : "f32";
      const planes = op.attrs.act_bits === 16 ? 2 : 1;
      const mm = planes * dimEval(dimProd(x.shape.slice(0, -1)), { B: 1, S: 1, P: 0, ...env });
      const name = refName(op.operands[1]!);
      const atLimits = { B: limits.B, S: limits.S, P: Math.max(0, limits.T - limits.S) };
      const mMax = planes * dimEval(dimProd(x.shape.slice(0, -1)), atLimits);
      const u = uses.get(name) ?? { shape: { n, k, dtype }, ms: new Map(), planes, mMax };
      u.planes = Math.max(u.planes, planes);
      u.mMax = Math.max(u.mMax, mMax);
      u.ms.set(f.name, Math.max(u.ms.get(f.name) ?? 0, mm));
      uses.set(name, u);
    }
  }
  // 2. The Tile-Selector per weight and phase; the layouts are fitted to MRAM below (layouts.ts).
  const regions: MramRegion[] = [];
  let offset = 0;
  const region = (name: string, bytes: number): string => {
    const b = roundUp(Math.max(bytes, 8), 8);
    regions.push({ name, offset, bytes: b });
    offset += b;
    return name;
  };
  const kernels: Kernel[] = [];
  const kernelKeys = new Map<string, string>();
  let xBytes = 0;
  let yBytes = 0;
  const pooling = opts.pooling ?? true;
  const calls = (p: string): number => opts.mix?.[p] ?? 1;
  /**
   * A weight's `select` (layouts.ts) over a selector of (row counts, MRAM budget, calls), memoized by
   * `key` (the weight's shape): the layers of a model repeat a few shapes.
   */
  const selections = new Map<string, Selection<unknown> | undefined>();
  const memoSelect =
    <T>(
      key: string,
      ms: readonly number[],
      weights: readonly number[],
      sel: (ms: readonly number[], budget: number, weights?: readonly number[]) => Selection<T> | undefined,
    ) =>
    (phase: number | "all", budget: number): Selection<T> | undefined => {
      const k = `${key} ${phase === "all" ? `${ms.join(",")} x ${weights.join(",")}` : ms[phase]} ${budget}`;
      if (!selections.has(k))
        selections.set(k, phase === "all" ? sel(ms, budget, weights) : sel([ms[phase]!], budget));
      return selections.get(k) as Selection<T> | undefined;
    };
  /** Resident weights whose layouts MRAM decides, and weights with fixed layouts (BaseGEMM, no pooling). */
  const gemmOpts: WeightOptions<Tiling>[] = [];
  const fixed: LayoutDecision<Tiling>[] = [];
  for (const [weight, u] of uses) {
    const phases = [...u.ms.keys()];
    const ms = phases.map((p) => u.ms.get(p)!);
    const bytes = (d: Distribution): number => gemmBlockBytes(u.shape, d);
    if (opts.gemm === "base") {
      const ts = ms.map((mm) => baseTiling({ ...u.shape, m: mm }, sys));
      if (ts.some((t) => !t))
        throw new UserError(
          `@${weight} [${u.shape.n}, ${u.shape.k}] ${u.shape.dtype} does not fit one DPU's MRAM: no BaseGEMM mapping`,
        );
      const dist = { dm: Math.max(...ts.map((t) => t!.dm)), dn: 1, dk: 1 };
      fixed.push({
        weight,
        layouts: [{ distribution: dist, phases, bytes: bytes(dist) }],
        choices: ts.map((t) => ({ tiling: t!, estimate: { total: 0 } })),
        layoutOf: phases.map(() => 0),
        bytes: bytes(dist),
        cost: 0,
      });
      continue;
    }
    // Without pooling a call also allocates its DPUs, loads its kernel and sends its weight.
    const perCall = (d: Distribution): number =>
      perCallFor({ ...u.shape, m: 1 }, d, sys, opts.runtimeTranspose === true);
    const key = `${u.shape.n} ${u.shape.k} ${u.shape.dtype}`;
    const w: WeightOptions<Tiling> = {
      weight,
      phases,
      calls: phases.map(calls),
      select: memoSelect(key, ms, phases.map(calls), (ms, mramBudget, weights) =>
        selectJoint({ ...u.shape, m: ms[0]! }, sys, ms, {
          mramBudget,
          ...(weights ? { weights } : {}),
          ...(pooling ? {} : { perCall }),
        }),
      ),
      bytes,
    };
    const own = phases.map((_, i) => w.select(i, sys.mram));
    if (own.some((x) => !x)) {
      // Legal with more MRAM: the MRAM is what is short.
      const roomy = { ...sys, mram: Number.MAX_SAFE_INTEGER };
      const s = ms.map((mm) => selectJoint({ ...u.shape, m: mm }, roomy, [mm], pooling ? {} : { perCall }));
      if (s.every((x) => x)) {
        const least = Math.min(...s.map((x) => gemmBlockBytes(u.shape, x!.distribution)));
        throw new UserError(
          `mram: @${weight} [${u.shape.n}, ${u.shape.k}] ${u.shape.dtype} has no tiling whose blocks fit the system's mram of ${fmtBytes(sys.mram)} per DPU (its W block alone takes ${fmtBytes(least)} in the layout the Tile-Selector picks without that limit)`,
        );
      }
      throw new UserError(
        `no legal UPMEM tiling for @${weight} [${u.shape.n}, ${u.shape.k}] ${u.shape.dtype} on ${sys.dpus} DPUs`,
      );
    }
    // Weights sent at every call share the "w" region: each phase keeps its own layout.
    if (pooling) gemmOpts.push(w);
    else
      fixed.push(
        decision(
          w,
          own as Selection<Tiling>[],
          own.map((x) => x!.choices[0]!),
        ),
      );
  }
  // LUT-GEMV weights: their own Tile-Selector and segment-major packed layout.
  const lutOpts: WeightOptions<LutTiling>[] = [];
  const lutUses = new Map<string, { shape: Omit<LutShape, "m">; ms: Map<string, number>; mMax: number }>();
  {
    for (const f of funcs) {
      const typeOf = operandTyper(m, f);
      const env = opts.envs[f.name] ?? {};
      for (const op of f.body) {
        if (!isPimLut(op)) continue;
        if (!pooling || opts.gemm === "base")
          throw new UserError(
            `%${op.results[0]!.name}: LUT-GEMV layers on the DPUs need resident weights and the Tile-Selector (no --no-pooling, no --base-gemm)`,
          );
        const x = typeOf(op.operands[0]!);
        const [n, k] = typeOf(op.operands[1]!).shape.map((d) => dimEval(d, {})) as [number, number];
        const lead = x.shape.slice(0, -1);
        const mm = dimEval(dimProd(lead), { B: 1, S: 1, P: 0, ...env });
        const mMax = dimEval(dimProd(lead), {
          B: limits.B,
          S: limits.S,
          P: Math.max(0, limits.T - limits.S),
        });
        const name = refName(op.operands[1]!);
        const shape = { n, k, bits: op.attrs.bits as number, group: op.attrs.group as number };
        const u = lutUses.get(name) ?? { shape, ms: new Map<string, number>(), mMax };
        u.mMax = Math.max(u.mMax, mMax);
        u.ms.set(f.name, Math.max(u.ms.get(f.name) ?? 0, mm));
        lutUses.set(name, u);
      }
    }
    for (const [weight, u] of lutUses) {
      const phases = [...u.ms.keys()];
      const ms = phases.map((p) => u.ms.get(p)!);
      const key = `lut ${u.shape.n} ${u.shape.k} ${u.shape.bits} ${u.shape.group}`;
      const w: WeightOptions<LutTiling> = {
        weight,
        phases,
        calls: phases.map(calls),
        select: memoSelect(key, ms, phases.map(calls), (ms, mramBudget, weights) =>
          selectLut(u.shape, sys, ms, { mramBudget, ...(weights ? { weights } : {}) }),
        ),
        bytes: (d) => lutBlockBytes(u.shape, d),
      };
      if (phases.some((_, i) => !w.select(i, sys.mram)))
        throw new UserError(
          `no legal LUT-GEMV tiling for @${weight} [${u.shape.n}, ${u.shape.k}] int${u.shape.bits} (groups of ${u.shape.group}) on ${sys.dpus} DPUs`,
        );
      lutOpts.push(w);
    }
  }
  // Attention on the DPUs: a layout per layer (its KV cache blocks, resident in MRAM with pooling)
  // shared by the phases, tiles per phase.
  const attn = new Map<string, AttentionUse>();
  const caches = new Map<string, CacheUse>();
  {
    interface Site {
      f: Func;
      op: Op;
      kState: string;
      vState: string;
      dims: AttentionDims;
      call: AttentionCall;
      tmax: number;
      /** Query rows per group (rep x S) and cache length (P + S) as expressions. */
      rows: IntExpr;
      T: IntExpr;
    }
    const layers = new Map<string, Site[]>();
    for (const f of funcs) {
      const typeOf = operandTyper(m, f);
      const env = { B: 1, S: 1, P: 0, ...(opts.envs[f.name] ?? {}) };
      const defs = new Map<string, Op>(
        f.body.flatMap((op) => op.results.map((v) => [`%${v.name}`, op] as const)),
      );
      /** The state a cache operand was appended to. */
      const stateOf = (op: Op, i: number): string => {
        let def = defs.get(op.operands[i]!);
        while (def?.opcode === "transfer") def = defs.get(def.operands[0]!);
        if (def?.opcode !== "kv_append" || !def.operands[0]!.startsWith("@"))
          throw new UserError(
            `attention %${op.results[0]!.name}: operand ${i} is not a KV cache (kv_append result); it cannot run on the DPUs`,
          );
        return refName(def.operands[0]!);
      };
      for (const op of f.body) {
        if (!isPimAttention(op)) continue;
        const q = typeOf(op.operands[0]!);
        const k = typeOf(op.operands[1]!);
        const [h, s, d] = [q.shape[1]!, q.shape[2]!, q.shape[3]!].map((x) => dimEval(x, env)) as [
          number,
          number,
          number,
        ];
        const kvh = dimEval(k.shape[1]!, env);
        // Laid out for the longest cache the program serves (prefill: S; decode: P + S).
        const tmax = dimEval(k.shape[2]!, { B: limits.B, S: limits.S, P: Math.max(0, limits.T - limits.S) });
        const site: Site = {
          f,
          op,
          kState: stateOf(op, 1),
          vState: stateOf(op, 2),
          dims: { h, kvh, d },
          call: { b: dimEval(q.shape[0]!, env), rows: (h / kvh) * s, s, t: dimEval(k.shape[2]!, env) },
          tmax,
          rows: expr(dimMul(h / kvh, q.shape[2]!)),
          T: expr(k.shape[2]!),
        };
        layers.set(site.kState, [...(layers.get(site.kState) ?? []), site]);
      }
    }
    for (const [kState, sites] of layers) {
      const first = sites[0]!;
      const tmax = Math.max(...sites.map((x) => x.tmax));
      const plan = planAttention(
        first.dims,
        { B: limits.B, T: tmax },
        sites.map((x) => x.call),
        sys,
        pooling,
        opts.attentionReduce === "auto" ? undefined : opts.attentionReduce,
      );
      if (!plan)
        throw new UserError(
          `attention %${first.op.results[0]!.name} cannot run on the DPUs (${first.dims.h} heads, head dim ${first.dims.d}, ${limits.B * first.dims.kvh} groups)`,
        );
      const bytes = cacheBytes(plan.layout);
      const kRegion = region(`kc:${kState}`, bytes.k);
      const vRegion = region(`vc:${first.vState}`, bytes.v);
      if (pooling) {
        caches.set(kState, { layout: plan.layout, role: "k", region: kRegion });
        caches.set(first.vState, { layout: plan.layout, role: "v", region: vRegion });
      }
      sites.forEach((site, i) => {
        const tiling = plan.tilings[i]!;
        const b = attentionBytes(plan.layout, tiling, (site.dims.h / site.dims.kvh) * limits.S);
        xBytes = Math.max(xBytes, b.x);
        yBytes = Math.max(yBytes, b.y);
        attn.set(`${site.f.name}/${site.op.results[0]!.name}`, {
          phase: site.f.name,
          layout: plan.layout,
          tiling,
          rows: site.rows,
          T: site.T,
          kRegion,
          vRegion,
          scores: "",
          context: "",
        });
      });
    }
  }
  // MRAM: the KV caches (allocated above), the weights' layouts, the X and Y buffers. Each weight's
  // options trade bytes per DPU for time per request; the fastest fitting together win (layouts.ts).
  const caches_ = offset;
  const all = [...gemmOpts, ...lutOpts] as WeightOptions<Tiling | LutTiling>[];
  const fixedBytes = fixed.reduce((s, d) => (pooling ? s + roundUp(d.bytes, 8) : Math.max(s, d.bytes)), 0);
  /** The X and Y buffers' bytes under some decisions (the largest block of any call, attention's too). */
  const buffersOf = (ds: readonly LayoutDecision<Tiling | LutTiling>[]): { x: number; y: number } => {
    let x = xBytes;
    let y = yBytes;
    for (const d of ds) {
      const u = uses.get(d.weight);
      for (const { tiling: t } of d.choices) {
        if (u) {
          const wb = weightBlock({ ...u.shape, m: 1 }, t as Tiling);
          const mbPad = roundUp(cdiv(u.mMax, t.dm), t.tm);
          x = Math.max(x, mbPad * wb.kb * elemBytesOf(u.shape.dtype));
          y = Math.max(y, mbPad * ((t as Tiling).ks ?? 1) * wb.nbPad * 4);
        } else {
          const lu = lutUses.get(d.weight)!;
          const lb = lutBlock(lu.shape, t);
          const mbPad = roundUp(cdiv(lu.mMax, t.dm), t.tm);
          x = Math.max(x, mbPad * lb.kb);
          y = Math.max(y, mbPad * lb.segments * lb.nbPad * 4);
        }
      }
    }
    return { x: roundUp(Math.max(x, 8), 8), y: roundUp(Math.max(y, 8), 8) };
  };
  const sizeOf = (b: { x: number; y: number }): number => b.x + b.y;
  const weightBytes = (ds: readonly LayoutDecision<unknown>[]): number =>
    ds.reduce((s, d) => s + d.layouts.reduce((t, l) => t + roundUp(l.bytes, 8), 0), 0);
  const room = sys.mram - caches_ - fixedBytes - sizeOf(buffersOf(fixed));
  const fronts = all.map((w) => weightOptions(w, room));
  const over = (ds: readonly LayoutDecision<Tiling | LutTiling>[]): number =>
    caches_ + fixedBytes + weightBytes(ds) + sizeOf(buffersOf([...ds, ...fixed])) - sys.mram;
  let decisions: LayoutDecision<Tiling | LutTiling>[] | undefined;
  // The buffers follow the tilings chosen: decide again with what they take, a few rounds; then with
  // the most any option's calls could need.
  for (let budget = room, round = 0; round < 4; round++) {
    decisions = decideLayouts(fronts, budget);
    const excess = decisions ? over(decisions) : 0;
    if (excess <= 0) break;
    budget -= excess;
    decisions = undefined;
  }
  if (!decisions) {
    const most = sizeOf(buffersOf([...fronts.flat(), ...fixed]));
    decisions = decideLayouts(fronts, sys.mram - caches_ - fixedBytes - most);
  }
  if (!decisions || over(decisions) > 0) {
    // The least the weights could take, whatever the room.
    const least = all.reduce((s, w) => s + weightOptions(w, sys.mram)[0]!.bytes, fixedBytes);
    throw new UserError(
      `mram: the DPU-resident weights need at least ${fmtBytes(least)} per DPU beside the KV caches (${fmtBytes(caches_)}) and buffers; the system's mram is ${fmtBytes(sys.mram)} (try --weights int8, more DPUs, or smaller limits)`,
    );
  }
  // Tests may replace a call's tile (the distribution stays).
  const retile = opts.retile;
  if (retile)
    decisions = decisions.map((d, i) => {
      const u = uses.get(d.weight);
      if (i >= gemmOpts.length || !u) return d;
      const ms = [...u.ms.values()];
      return {
        ...d,
        choices: d.choices.map((c, j) => ({
          ...c,
          tiling: retile({ ...u.shape, m: ms[j]! }, c.tiling as Tiling),
        })),
      };
    });
  ({ x: xBytes, y: yBytes } = buffersOf([...decisions, ...fixed]));
  // Regions and plans: one region (and image) per layout, named for its phases when a weight has several.
  const placed = (d: LayoutDecision<unknown>): PlacedLayout[] =>
    d.layouts.map((l) => {
      const tag = d.layouts.length > 1 ? `/${l.phases.join("+")}` : "";
      return {
        ...l,
        image: `${d.weight}${tag}`,
        region: pooling ? region(`w:${d.weight}${tag}`, l.bytes) : "w",
      };
    });
  const plans = new Map<string, GemmPlan>();
  const luts = new Map<string, LutPlan>();
  const tilings: { weight: string; phase: string; tiling: Tiling; shape: GemmShape }[] = [];
  for (const d of [...decisions.slice(0, gemmOpts.length), ...fixed] as LayoutDecision<Tiling>[]) {
    const u = uses.get(d.weight)!;
    const plan = planOf(d, u.shape, u.ms, placed(d));
    plans.set(d.weight, plan);
    for (const [phase, ph] of plan.phases)
      tilings.push({ weight: d.weight, phase, tiling: ph.tiling, shape: { ...u.shape, m: ph.m } });
  }
  for (const d of decisions.slice(gemmOpts.length) as LayoutDecision<LutTiling>[]) {
    const u = lutUses.get(d.weight)!;
    luts.set(d.weight, planOf(d, u.shape, u.ms, placed(d)));
  }
  if (!pooling) region("w", fixedBytes);
  const xRegion = region("x", xBytes);
  const yRegion = region("y", yBytes);
  const xOff = regions.find((r) => r.name === xRegion)!.offset;
  const yOff = regions.find((r) => r.name === yRegion)!.offset;
  if (offset > sys.mram)
    throw new Error(
      `internal: MRAM plan of ${offset} B exceeds the ${sys.mram} B the layouts were fitted to`,
    );
  // Kernels, deduplicated by structure (the M expression is the same "B*S"-style for all phases).
  const mExprOf = new Map<string, IntExpr>();
  for (const f of funcs) {
    const typeOf = operandTyper(m, f);
    for (const op of f.body)
      if (isPimGemm(op))
        mExprOf.set(
          `${f.name} ${refName(op.operands[1]!)}`,
          expr(
            dimProd([
              ...(op.attrs.act_bits === 16 ? [2] : []),
              ...typeOf(op.operands[0]!).shape.slice(0, -1),
            ]),
          ),
        );
  }
  const kernelName = (proto: Kernel, kind = "gemm"): string => {
    const key = JSON.stringify(proto);
    let name = kernelKeys.get(key);
    if (!name) {
      name = `${kind}${kernels.length}`;
      kernelKeys.set(key, name);
      kernels.push({ ...proto, name });
    }
    return name;
  };
  for (const t of tilings) {
    const plan = plans.get(t.weight)!;
    const mExpr = mExprOf.get(`${t.phase} ${t.weight}`)!;
    const proto = gemmKernel({ name: "", shape: t.shape, tiling: t.tiling, mExpr, xOff, yOff });
    plan.phases.get(t.phase)!.kernel = kernelName(proto);
  }
  for (const f of funcs) {
    const typeOf = operandTyper(m, f);
    for (const op of f.body) {
      if (!isPimLut(op)) continue;
      const plan = luts.get(refName(op.operands[1]!))!;
      const ph = plan.phases.get(f.name)!;
      const mExpr = expr(dimProd(typeOf(op.operands[0]!).shape.slice(0, -1)));
      const proto = lutKernel({ shape: { ...plan.shape, m: ph.m }, tiling: ph.tiling, mExpr, xOff, yOff });
      ph.kernel = kernelName(proto, "lut");
    }
  }
  for (const a of attn.values()) {
    const ks = attentionKernels(a.layout, a.tiling, { rows: a.rows, T: a.T }, xOff, yOff);
    a.scores = kernelName(ks.scores);
    a.context = kernelName(ks.context);
    if (ks.reduce) a.reduce = kernelName(ks.reduce, "reduce");
  }
  const code = kernels.reduce((s, k) => s + codeBytes(k), 0);
  if (code > sys.iram)
    throw new UserError(
      `the program's ${kernels.length} DPU kernels need ${code} B of IRAM, the DPUs have ${sys.iram} B`,
    );
  const dpusOf = (d: Distribution): number => d.dm * d.dn * d.dk;
  const dpusUsed = Math.max(
    1,
    ...[...plans.values(), ...luts.values()].flatMap((p) => p.layouts.map((l) => dpusOf(l.distribution))),
    ...[...attn.values()].map((a) => layoutDpus(a.layout)),
  );

  return { plans, luts, attn, caches, kernels, regions, xRegion, yRegion, dpusUsed };
}

/** 3. The weight images and host constants, 4. the setup and the phases' commands, from the plan. */
function buildProgram(m: Module, weights: WeightStore, opts: LowerOptions, plan: LoweringPlan): Lowered {
  const sys = opts.system;
  const { limits } = opts;
  const funcs = m.funcs;
  const pooling = opts.pooling ?? true;
  const { plans, luts, attn, caches, kernels, regions, xRegion, yRegion, dpusUsed } = plan;
  const dpusOf = (d: Distribution): number => d.dm * d.dn * d.dk;
  // 3. Images (one per layout of a resident weight) and constants.
  const images: MramImage[] = [];
  const image = (
    plan: WeightPlan<unknown, unknown>,
    data: (w: Tensor, d: Distribution) => Uint8Array,
  ): void => {
    const w = opts.shapeOnly ? undefined : logical(m, weights, plan.weight);
    for (const l of plan.layouts)
      images.push({
        name: l.image,
        region: l.region,
        range: { first: 0, count: dpusOf(l.distribution) },
        bytesPerDpu: l.bytes,
        ...(w ? { data: data(w, l.distribution) } : {}),
      });
  };
  for (const plan of pooling ? plans.values() : []) image(plan, (w, d) => weightImage(w, plan.shape, d));
  for (const plan of luts.values()) image(plan, (w, d) => lutWeightImage(w, plan.shape, d));
  const hostConsts = new Set<string>();
  const runtimeT = !pooling && opts.runtimeTranspose === true;
  if (opts.runtimeTranspose && pooling)
    throw new UserError(
      "--runtime-transpose needs --no-pooling (resident weights are laid out once, at build time)",
    );
  const transposed = new Set<string>();
  const stateNames = new Set(m.states.map((s) => s.name));
  for (const f of funcs)
    for (const op of f.body)
      op.operands.forEach((ref, i) => {
        if (!ref.startsWith("@") || stateNames.has(refName(ref))) return;
        if (isPimGemm(op) && i === 1 && (pooling || runtimeT)) {
          if (runtimeT) transposed.add(refName(ref));
          return;
        }
        if (isPimAttention(op)) return;
        if (isPimLut(op) && i === 1) return;
        hostConsts.add(refName(ref));
      });
  const constants: HostConstant[] = [...hostConsts].map((name) => {
    const decl = m.consts.find((c) => c.name === name)!;
    const dtype = decl.type.dtype === "i8" ? "i8" : "f32";
    const shape = decl.type.shape.map((d) => dimEval(d, {}));
    const storage = storageOf(decl.type.dtype);
    if (opts.shapeOnly) return { name, dtype, shape, ...storage };
    const t = logical(m, weights, name);
    const data =
      dtype === "i8" ? Int8Array.from(t.data as Int8Array) : Float32Array.from(t.data as Float32Array);
    return { name, dtype, shape, data, ...storage };
  });
  // Without layout adjustment the host holds W^T ([in, out]) and transposes it back at every call.
  for (const name of transposed) {
    const decl = m.consts.find((c) => c.name === name)!;
    const dtype = decl.type.dtype === "i8" ? "i8" : "f32";
    const [n, k] = decl.type.shape.map((d) => dimEval(d, {})) as [number, number];
    if (opts.shapeOnly) {
      constants.push({ name: `${name}.T`, dtype, shape: [k, n] });
      continue;
    }
    const t = logical(m, weights, name);
    const data = dtype === "i8" ? new Int8Array(n * k) : new Float32Array(n * k);
    for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) data[c * n + r] = t.data[r * k + c] as number;
    constants.push({ name: `${name}.T`, dtype, shape: [k, n], data });
  }
  const states: StateBuffer[] = m.states.map((s) => ({
    name: s.name,
    dtype: "f32",
    shape: s.type.shape.map(expr),
    ...storageOf(s.type.dtype),
  }));

  // 4. Setup and phases.
  const setup = new Emitter();
  if (pooling) {
    const alloc = setup.emit({ kind: "alloc", dpus: dpusUsed }, []);
    const load = setup.emit(
      { kind: "load", kernels: kernels.map((k) => k.name), range: { first: 0, count: dpusUsed } },
      [alloc],
    );
    for (const img of images) setup.emit({ kind: "upload", image: img.name }, [alloc, load]);
  }

  const buffers: HostBuffer[] = [];
  const offsets = new Map(regions.map((x) => [x.name, x.offset]));
  const phases: Phase[] = funcs.map((f) =>
    lowerFunc(m, f, plans, luts, attn, caches, buffers, {
      xRegion,
      yRegion,
      offsets,
      pooling,
      runtimeTranspose: runtimeT,
    }),
  );
  const program: Program = {
    version: 1,
    target: "upmem",
    model: m.name,
    system: sys,
    limits: { B: limits.B, S: limits.S, T: limits.T },
    buffers,
    constants,
    states,
    regions,
    kernels,
    images,
    setup: setup.commands,
    phases,
  };
  const attention = [...attn.values()].map((a) => ({ phase: a.phase, layout: a.layout, tiling: a.tiling }));
  return { program, gemms: [...plans.values()], luts: [...luts.values()], attention };
}

function lowerFunc(
  m: Module,
  f: Func,
  plans: Map<string, GemmPlan>,
  luts: ReadonlyMap<string, LutPlan>,
  attn: ReadonlyMap<string, AttentionUse>,
  caches: ReadonlyMap<string, CacheUse>,
  buffers: HostBuffer[],
  r: {
    xRegion: string;
    yRegion: string;
    offsets: ReadonlyMap<string, number>;
    pooling: boolean;
    runtimeTranspose: boolean;
  },
): Phase {
  const em = new Emitter();
  const typeOf = operandTyper(m, f);
  const alias = new Map<string, string>();
  const bufName = (ref: string): string => {
    if (ref.startsWith("@")) return refName(ref);
    const a = alias.get(ref);
    return a ?? `${f.name}/${refName(ref)}`;
  };
  // The host computes in fp32 (f16/bf16 activations are held as f32), integers as i32 or i8.
  const addBuffer = (name: string, t: TensorType): string => {
    const dtype = isFloat(t.dtype) ? "f32" : t.dtype === "i8" ? "i8" : "i32";
    buffers.push({ name, dtype, shape: t.shape.map(expr), ...storageOf(t.dtype) });
    return name;
  };
  f.params.forEach((p) => addBuffer(`${f.name}/${p.name}`, p.type));
  const host = (opcode: string, attrs: Attrs, ins: string[], outs: string[]): number => {
    const deps = ins.map((b) => em.writerOf(b));
    const def = getOp(opcode);
    if (def?.stateOperand !== undefined) deps.push(em.writerOf(ins[def.stateOperand]!));
    const id = em.emit({ kind: "host", opcode, attrs, inputs: ins, outputs: outs }, deps);
    outs.forEach((o) => em.written(o, id));
    if (def?.stateOperand !== undefined) em.written(ins[def.stateOperand]!, id);
    return id;
  };
  /** A transfer between a host buffer and an MRAM region, ordered against the region's other users. */
  const move = (
    kind: "push" | "pull",
    buffer: string,
    region: string,
    map: BlockMap,
    range: DpuRange,
    after: (number | undefined)[],
    opts: { reduce?: boolean; at?: IntExpr } = {},
  ): number => {
    const at = opts.at ?? 0;
    if (kind === "push") {
      const id = em.emit({ kind, buffer, range, region, at, map }, [
        em.writerOf(buffer),
        ...em.beforeWrite(region),
        ...after,
      ]);
      em.wrote(region, id);
      return id;
    }
    const id = em.emit({ kind, buffer, range, region, at, map, ...(opts.reduce ? { reduce: true } : {}) }, [
      em.beforeRead(region),
      ...after,
    ]);
    em.read(region, id);
    em.written(buffer, id);
    return id;
  };
  const launch = (kernel: string, range: DpuRange, w: string, after: number[]): number => {
    const id = em.emit({ kind: "launch", kernel, range, args: { w: r.offsets.get(w)! } }, [
      ...after,
      em.beforeRead(w),
      ...em.beforeWrite(r.yRegion),
    ]);
    em.read(r.xRegion, id);
    em.read(w, id);
    em.wrote(r.yRegion, id);
    return id;
  };
  /** An append to a cache resident in MRAM: the new tokens also go to its blocks on the DPUs. */
  const appendToDpus = (op: Op, cache: CacheUse): void => {
    const l = cache.layout;
    const x = bufName(op.operands[1]!);
    const xt = typeOf(op.operands[1]!);
    const whole = op.results[0]!;
    const maps = cacheMaps(l, {
      B: expr(xt.shape[0]!),
      S: expr(xt.shape[2]!),
      T: expr(whole.type.shape[2]!),
    });
    const at = appendOffsets(l, expr(op.attrs.past as Dim));
    const range: DpuRange = { first: 0, count: layoutDpus(l) };
    if (cache.role === "k") {
      move("push", x, cache.region, maps.kNew, range, [], { at: at.k });
      return;
    }
    const [b, h, s, d] = xt.shape as [Dim, Dim, Dim, Dim];
    const win = addBuffer(`${f.name}/${whole.name}.window`, { dtype: "f32", shape: [b, h, d, dimAdd(s, 2)] });
    host("kv_window", { align: 2 }, [bufName(`%${whole.name}`), x], [win]);
    move("push", win, cache.region, maps.vWindow, range, [], { at: at.v });
  };
  const lowerAttention = (op: Op): void => {
    const res = op.results[0]!;
    const use = attn.get(`${f.name}/${res.name}`)!;
    const l = use.layout;
    const [q, k, v] = op.operands.map(bufName) as [string, string, string];
    const qt = typeOf(op.operands[0]!);
    const kt = typeOf(op.operands[1]!);
    const T = expr(kt.shape[2]!);
    const dims = { B: expr(qt.shape[0]!), S: expr(qt.shape[2]!), T };
    const maps = {
      ...attentionMaps(l, use.tiling, dims),
      ...cacheMaps(l, { ...dims, B: expr(kt.shape[0]!) }),
    };
    const range: DpuRange = { first: 0, count: layoutDpus(l) };
    const base = `${f.name}/${res.name}`;
    const after: number[] = [];
    if (!r.pooling) {
      // No residency: the call's DPUs get the whole cache.
      const a = em.emit({ kind: "alloc", dpus: range.count }, []);
      const kernels = [use.scores, use.context, ...(use.reduce ? [use.reduce] : [])];
      const ld = em.emit({ kind: "load", kernels, range }, [a]);
      const vt = addBuffer(`${base}.vt`, {
        dtype: "f32",
        shape: [kt.shape[0]!, kt.shape[1]!, kt.shape[3]!, kt.shape[2]!],
      });
      host("transpose", { perm: [0, 1, 3, 2] }, [v], [vt]);
      after.push(
        move("push", k, use.kRegion, maps.kAll, range, [ld]),
        move("push", vt, use.vRegion, maps.vtAll, range, [ld]),
      );
    }
    const [bq, hq, sq] = qt.shape;
    const pq = move("push", q, r.xRegion, maps.q, range, after);
    const l1 = launch(use.scores, range, use.kRegion, [pq, ...after]);
    const scores = addBuffer(`${base}.scores`, { dtype: "f32", shape: [bq!, hq!, sq!, kt.shape[2]!] });
    move("pull", scores, r.yRegion, maps.scores, range, [l1], { reduce: l.dt > 1 });
    const probs = addBuffer(`${base}.probs`, { dtype: "f32", shape: [bq!, hq!, sq!, kt.shape[2]!] });
    host("masked_softmax", stripAnnotations(op.attrs), [scores], [probs]);
    const pp = move("push", probs, r.xRegion, maps.probs, range, []);
    const l2 = launch(use.context, range, use.vRegion, [pp, ...after]);
    const ks = use.tiling.context.ks ?? 1;
    if (ks === 1) {
      move("pull", addBuffer(base, res.type), r.yRegion, maps.out, range, [l2]);
      return;
    }
    if (use.reduce) {
      // The tasklets split the tokens: the reduce kernel adds their partial tiles in place.
      const l3 = em.emit({ kind: "launch", kernel: use.reduce, range }, [l2, ...em.beforeWrite(r.yRegion)]);
      em.read(r.yRegion, l3);
      em.wrote(r.yRegion, l3);
      move("pull", addBuffer(base, res.type), r.yRegion, maps.out, range, [l3]);
      return;
    }
    // The tasklets split the tokens: the host adds their partial rows.
    const dt = l.dt;
    const dd = l.dd;
    const parts = addBuffer(`${base}.parts`, { dtype: "f32", shape: [bq!, hq!, sq!, dt, ks, dd] });
    move("pull", parts, r.yRegion, maps.out, range, [l2]);
    const sum = addBuffer(`${base}.sum`, { dtype: "f32", shape: [bq!, hq!, sq!, dt, dd] });
    host("reduce_sum", { axis: 4 }, [parts], [sum]);
    host("reshape", { shape: res.type.shape }, [sum], [addBuffer(base, res.type)]);
  };
  /**
   * A LUT-GEMV layer: INT8 activations pushed, the kernel's per-segment integer dot products pulled
   * into [lead..., dn, groups, nbPad] (the parts of a group split over DPUs added by the pull), folded
   * with the scales by the host.
   */
  const lowerLut = (op: Op): void => {
    const plan = luts.get(refName(op.operands[1]!))!;
    const ph = plan.phases.get(f.name)!;
    const t = ph.tiling;
    const kernel = ph.kernel;
    const b = lutBlock(plan.shape, t);
    const xType = typeOf(op.operands[0]!);
    const lead = xType.shape.slice(0, -1);
    const res = op.results[0]!;
    const base = `${f.name}/${res.name}`;
    const xq = addBuffer(`${base}.xq`, { dtype: "i8", shape: xType.shape });
    const xs = addBuffer(`${base}.xs`, { dtype: "f32", shape: lead });
    host("quantize", {}, [bufName(op.operands[0]!)], [xq, xs]);
    const mExpr = expr(dimProd(lead));
    const count = t.dm * t.dn * t.dk;
    const range: DpuRange = { first: 0, count };
    const mb = mbExpr(mExpr, t.dm);
    const xMap = activationMap(mExpr, plan.shape.k, mb, b.kb, t);
    const broadcast = t.dm === 1 && t.dk === 1;
    const push = em.emit(
      { kind: broadcast ? "broadcast" : "push", buffer: xq, range, region: r.xRegion, at: 0, map: xMap },
      [em.writerOf(xq), ...em.beforeWrite(r.xRegion)],
    );
    em.wrote(r.xRegion, push);
    const l = launch(kernel, range, plan.layouts[ph.layout]!.region, [push]);
    const groups = plan.shape.k / plan.shape.group;
    const dots = addBuffer(`${base}.dots`, {
      dtype: "i32",
      shape: [...lead, t.dn, groups, b.nbPad],
    });
    const yMap: BlockMap = {
      rows: mExpr,
      cols: t.dn * groups * b.nbPad,
      blockRows: mb,
      blockCols: b.segments * b.nbPad,
      ld: b.segments * b.nbPad,
      rowEvery: t.dn * t.dk,
      rowBlocks: t.dm,
      colEvery: b.split,
      colBlocks: (t.dn * t.dk) / b.split,
    };
    move("pull", dots, r.yRegion, yMap, range, [l], { reduce: b.split > 1 });
    const ins = [dots, xs, bufName(op.operands[2]!), ...(op.operands[3] ? [bufName(op.operands[3])] : [])];
    host("group_dequantize", { block: b.nb }, ins, [addBuffer(base, res.type)]);
  };
  for (const op of f.body) {
    if (op.opcode === "transfer") {
      alias.set(`%${op.results[0]!.name}`, bufName(op.operands[0]!));
      continue;
    }
    if (isPimAttention(op)) {
      lowerAttention(op);
      continue;
    }
    if (isPimLut(op)) {
      lowerLut(op);
      continue;
    }
    if (!isPimGemm(op)) {
      const outs = op.results.map((v) => addBuffer(`${f.name}/${v.name}`, v.type));
      host(op.opcode, stripAnnotations(op.attrs), op.operands.map(bufName), outs);
      const cache = op.opcode === "kv_append" ? caches.get(refName(op.operands[0]!)) : undefined;
      if (cache) appendToDpus(op, cache);
      continue;
    }
    // A GEMM on the DPUs.
    const plan = plans.get(refName(op.operands[1]!))!;
    const ph = plan.phases.get(f.name)!;
    const t = ph.tiling;
    const { nb, nbPad, kb } = weightBlock({ ...plan.shape, m: 1 }, t);
    const xType = typeOf(op.operands[0]!);
    const lead = xType.shape.slice(0, -1);
    const res = op.results[0]!;
    const base = `${f.name}/${res.name}`;
    let x = bufName(op.operands[0]!);
    let xs: string | undefined;
    const int8 = plan.shape.dtype === "i8";
    // 16-bit activations travel as two INT8 planes: twice the rows, combined on the host after.
    const planes = int8 && op.attrs.act_bits === 16 ? 2 : 1;
    const bits: Attrs = planes === 2 ? { bits: 16 } : {};
    if (int8) {
      const xq = addBuffer(`${base}.xq`, {
        dtype: "i8",
        shape: planes === 2 ? [2, ...xType.shape] : xType.shape,
      });
      xs = addBuffer(`${base}.xs`, { dtype: "f32", shape: lead });
      host("quantize", bits, [x], [xq, xs]);
      x = xq;
    }
    const mExpr = expr(dimProd(planes === 2 ? [2, ...lead] : lead));
    const count = t.dm * t.dn * t.dk;
    const range: DpuRange = { first: 0, count };
    const mb = mbExpr(mExpr, t.dm);
    const xMap = activationMap(mExpr, plan.shape.k, mb, kb, t);
    // Without pooling, the call allocates its DPUs, loads its kernel and sends the weight first.
    const before: number[] = [];
    if (!r.pooling) {
      const a = em.emit({ kind: "alloc", dpus: count }, []);
      const l = em.emit({ kind: "load", kernels: [ph.kernel], range }, [a]);
      const wMap: BlockMap = {
        rows: plan.shape.n,
        cols: plan.shape.k,
        blockRows: nb,
        blockCols: kb,
        ld: kb,
        rowEvery: t.dk,
        rowBlocks: t.dn,
        colEvery: 1,
        colBlocks: t.dk,
      };
      const kind = t.dn === 1 && t.dk === 1 ? "broadcast" : "push";
      let wBuf = plan.weight;
      if (r.runtimeTranspose) {
        const dtype = plan.shape.dtype === "i8" ? "i8" : "f32";
        wBuf = addBuffer(`${base}.w`, { dtype, shape: [plan.shape.n, plan.shape.k] });
        host("transpose", { perm: [1, 0] }, [`${plan.weight}.T`], [wBuf]);
      }
      const pw = em.emit({ kind, buffer: wBuf, range, region: "w", at: 0, map: wMap }, [
        em.writerOf(wBuf),
        l,
        ...em.beforeWrite("w"),
      ]);
      em.wrote("w", pw);
      before.push(pw);
    }
    const broadcast = t.dm === 1 && t.dk === 1;
    const push = em.emit(
      { kind: broadcast ? "broadcast" : "push", buffer: x, range, region: r.xRegion, at: 0, map: xMap },
      [em.writerOf(x), ...em.beforeWrite(r.xRegion)],
    );
    em.wrote(r.xRegion, push);
    const launch = em.emit(
      {
        kind: "launch",
        kernel: ph.kernel,
        range,
        args: { w: r.offsets.get(plan.layouts[ph.layout]!.region)! },
      },
      [push, ...before, ...em.beforeWrite(r.yRegion)],
    );
    if (!r.pooling) em.read("w", launch);
    em.read(r.xRegion, launch);
    em.wrote(r.yRegion, launch);
    const accType = {
      dtype: int8 ? "i32" : "f32",
      shape: planes === 2 ? [2, ...res.type.shape] : res.type.shape,
    } as const;
    const accName = int8 ? `${base}.acc` : op.operands.length > 2 ? `${base}.raw` : base;
    // With a K split inside the DPUs a Y row holds ks partial tiles of nbPad columns: viewed as ks
    // rows of nbPad, they come home as [..., ks, N] and the host adds them up.
    const ks = t.ks ?? 1;
    const times = (x: IntExpr): IntExpr => (ks === 1 ? x : typeof x === "number" ? x * ks : `(${x})*${ks}`);
    const parts =
      ks === 1
        ? addBuffer(accName, accType)
        : addBuffer(`${base}.parts`, {
            ...accType,
            shape: [...accType.shape.slice(0, -1), ks, accType.shape[accType.shape.length - 1]!],
          });
    const acc = ks === 1 ? parts : addBuffer(accName, accType);
    const yMap: BlockMap = {
      rows: times(mExpr),
      cols: plan.shape.n,
      blockRows: times(mb),
      blockCols: nb,
      ld: nbPad,
      rowEvery: t.dn * t.dk,
      rowBlocks: t.dm,
      colEvery: t.dk,
      colBlocks: t.dn,
    };
    const pull = em.emit(
      {
        kind: "pull",
        buffer: parts,
        range,
        region: r.yRegion,
        at: 0,
        map: yMap,
        ...(t.dk > 1 ? { reduce: true } : {}),
      },
      [launch, em.beforeRead(r.yRegion)],
    );
    em.read(r.yRegion, pull);
    em.written(parts, pull);
    if (ks > 1) host("reduce_sum", { axis: -2 }, [parts], [acc]);
    if (int8) {
      const ins = [acc, xs!, bufName(op.operands[2]!), ...(op.operands[3] ? [bufName(op.operands[3])] : [])];
      host("dequantize", bits, ins, [addBuffer(base, res.type)]);
    } else if (op.operands.length > 2) {
      host("add", {}, [acc, bufName(op.operands[2]!)], [addBuffer(base, res.type)]);
    }
  }
  return {
    name: f.name,
    inputs: f.params.map((p) => `${f.name}/${p.name}`),
    outputs: f.results.map(bufName),
    commands: em.commands,
  };
}
