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
import { dimEval, dimMul, dimProd, dimToString, type Dim, type DimEnv } from "../../src/ir/dim.js";
import { layoutOf, toLogical } from "../../src/ir/layout.js";
import { refName, type Attrs, type Func, type Module, type Op, type Value } from "../../src/ir/module.js";
import { ANNOTATIONS, getOp, isTargetAnnotation, weightGemm } from "../../src/ir/registry.js";
import type { Tensor } from "../../src/ir/tensor.js";
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
  attentionBytes,
  attentionKernels,
  cacheBytes,
  layoutDpus,
  planAttention,
  type AttentionCall,
  type AttentionDims,
  type AttentionLayout,
  type AttentionTiling,
  type ReduceSite,
} from "./attention.js";
import type { UpmemSystem } from "./system.js";
import { dialectOptions, lowerToDialect } from "./passes/lower.js";
import { mapOf, rangeOf } from "./dialect.js";

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
export const isPimAttention = (op: Op): boolean => op.attrs.device === PIM && op.opcode === "attention";
/** A W4A8 / W2A8 linear layer on the DPUs: a LUT-GEMV kernel. */
export const isPimLut = (op: Op): boolean =>
  op.attrs.device === PIM && op.opcode === "lowbit_linear" && op.attrs.act_bits === 8 && !!weightGemm(op);

/** A LUT-GEMV weight. */
export type LutPlan = WeightPlan<Omit<LutShape, "m">, LutTiling>;
export const isPimGemm = (op: Op): boolean =>
  op.attrs.device === PIM && op.opcode !== "lowbit_linear" && !!weightGemm(op);

/**
 * A host command's attributes: the op's own. A dequantizing op's `dtype` (the model's float type of
 * its result, for the IR's types) stays out: the host computes in f32 and the emulator times these
 * ops' results as f32, as it did before the dialect existed (so its figures are unchanged).
 */
function hostAttrs(op: Op): Attrs {
  const attrs = stripAnnotations(op.attrs);
  if ((op.opcode !== "dequantize" && op.opcode !== "group_dequantize") || attrs.dtype === undefined)
    return attrs;
  const { dtype: _, ...rest } = attrs;
  return rest;
}

export function stripAnnotations(attrs: Attrs): Attrs {
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
export function activationMap(m: IntExpr, k: number, mb: IntExpr, kb: number, d: Distribution): BlockMap {
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
 * pass's; else planLowering), the module in the UPMEM dialect (`dialect`: the upmem-lower pass's;
 * else lowered from the plan), then the program: the manifest from the plan, a command per op.
 */
export function lowerModule(
  m: Module,
  weights: WeightStore,
  opts: LowerOptions,
  plan?: LoweringPlan,
  dialect?: Module,
): Lowered {
  const p = plan ?? planLowering(m, opts);
  return buildProgram(m, weights, opts, p, dialect ?? lowerToDialect(m, p, dialectOptions(opts)));
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
function buildProgram(
  m: Module,
  weights: WeightStore,
  opts: LowerOptions,
  plan: LoweringPlan,
  dialect: Module,
): Lowered {
  const sys = opts.system;
  const { limits } = opts;
  const funcs = m.funcs;
  const pooling = opts.pooling ?? true;
  const { plans, luts, attn, kernels, regions, dpusUsed } = plan;
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
  const phases: Phase[] = dialect.funcs.map((f) => encodePhase(f, buffers, offsets));
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

/**
 * The phase of one function of the lowered module: each op its command (docs/upmem.md), in order,
 * with the dependencies its values and MRAM regions give: a host op or push follows the writers of the
 * host buffers it reads, a launch or pull the DPU values it takes (pushes, launches, allocations), and
 * every region is written only after its last reader and writer and read after its last writer.
 */
function encodePhase(f: Func, buffers: HostBuffer[], offsets: ReadonlyMap<string, number>): Phase {
  const em = new Emitter();
  const buf = (ref: string): string => (ref.startsWith("@") ? refName(ref) : `${f.name}/${refName(ref)}`);
  /** The commands that made the DPU-side values (push, launch, alloc and load results). */
  const dpu = new Map<string, number>();
  const onDpus = (ref: string): number | undefined => dpu.get(ref);
  // The host computes in fp32 (f16/bf16 activations are held as f32), integers as i32 or i8.
  const addBuffer = (v: Value, attrs: Attrs = {}): string => {
    const name = `${f.name}/${v.name}`;
    const t = v.type;
    const dtype = isFloat(t.dtype) ? "f32" : t.dtype === "i8" ? "i8" : "i32";
    const held = attrs["upmem.storage"];
    const storage = held === undefined ? storageOf(t.dtype) : held === "f32" ? {} : storageOf(String(held));
    buffers.push({ name, dtype, shape: t.shape.map(expr), ...storage });
    return name;
  };
  f.params.forEach((p) => addBuffer(p));
  const range = (op: Op): DpuRange => rangeOf(op.attrs.dpus as number[]);
  for (const op of f.body) {
    const res = op.results[0];
    switch (op.opcode) {
      case "upmem.alloc":
        dpu.set(`%${res!.name}`, em.emit({ kind: "alloc", dpus: op.attrs.dpus as number }, []));
        break;
      case "upmem.load": {
        const kernels = op.attrs.kernels as string[];
        dpu.set(
          `%${res!.name}`,
          em.emit({ kind: "load", kernels, range: range(op) }, [onDpus(op.operands[0]!)]),
        );
        break;
      }
      case "upmem.push": {
        const buffer = buf(op.operands[0]!);
        const region = op.attrs.region as string;
        const kind = op.attrs.broadcast === true ? "broadcast" : "push";
        const body = {
          kind,
          buffer,
          range: range(op),
          region,
          at: op.attrs.at as IntExpr,
          map: mapOf(op.attrs.map as IntExpr[]),
        } as const;
        const id = em.emit(body, [
          em.writerOf(buffer),
          ...em.beforeWrite(region),
          ...op.operands.slice(1).map(onDpus),
        ]);
        em.wrote(region, id);
        dpu.set(`%${res!.name}`, id);
        break;
      }
      case "upmem.launch": {
        const reads = op.attrs.reads as string[];
        const writes = op.attrs.writes as string;
        const w = op.attrs.w as string | undefined;
        const id = em.emit(
          {
            kind: "launch",
            kernel: op.attrs.kernel as string,
            range: range(op),
            ...(w !== undefined ? { args: { w: offsets.get(w)! } } : {}),
          },
          [...op.operands.map(onDpus), ...reads.map((r) => em.beforeRead(r)), ...em.beforeWrite(writes)],
        );
        for (const r of reads) em.read(r, id);
        em.wrote(writes, id);
        dpu.set(`%${res!.name}`, id);
        break;
      }
      case "upmem.pull": {
        const buffer = addBuffer(res!, op.attrs);
        const region = op.attrs.region as string;
        const id = em.emit(
          {
            kind: "pull",
            buffer,
            range: range(op),
            region,
            at: op.attrs.at as IntExpr,
            map: mapOf(op.attrs.map as IntExpr[]),
            ...(op.attrs.reduce === true ? { reduce: true } : {}),
          },
          [onDpus(op.operands[0]!), em.beforeRead(region)],
        );
        em.read(region, id);
        em.written(buffer, id);
        break;
      }
      default: {
        // A host computation.
        const ins = op.operands.map(buf);
        const outs = op.results.map((v) => addBuffer(v, op.attrs));
        const deps = ins.map((b) => em.writerOf(b));
        const def = getOp(op.opcode);
        if (def?.stateOperand !== undefined) deps.push(em.writerOf(ins[def.stateOperand]!));
        const id = em.emit(
          { kind: "host", opcode: op.opcode, attrs: hostAttrs(op), inputs: ins, outputs: outs },
          deps,
        );
        outs.forEach((o) => em.written(o, id));
        if (def?.stateOperand !== undefined) em.written(ins[def.stateOperand]!, id);
      }
    }
  }
  return {
    name: f.name,
    inputs: f.params.map((p) => `${f.name}/${p.name}`),
    outputs: f.results.map(buf),
    commands: em.commands,
  };
}
