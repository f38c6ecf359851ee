/**
 * The UPMEM dialect: the ops of a lowered module, one per command of the program (docs/upmem.md).
 * `upmem-lower` (passes/lower.ts) turns each op the DPUs run into them; the encoder (lower.ts,
 * encodePhase) writes each as its command. Their values have value semantics, so the reference
 * interpreter runs a lowered module and checks it against the model:
 *
 *   %t = upmem.alloc() {dpus = 64} : i32[]                       DPUs reserved (no resource pooling)
 *   %t2 = upmem.load(%t) {kernels = ["gemm0"], dpus = [0, 64]} : i32[]
 *   %xd = upmem.push(%x, after...) {region = "x", at = 0, map = [...], dpus = [0, 64]} : T   host -> DPUs
 *   %yd = upmem.launch(%xd, @w, after...) {kernel = "gemm0", computes = "gemm", ...} : R
 *   %y = upmem.pull(%yd) {region = "y", at = 0, map = [...], dpus = [0, 64]} : R          DPUs -> host
 *
 * A push's value is its operand as the DPUs hold it, a pull's the launch result as the host gets it
 * (a pull with `reduce` adds the DPUs' copies of a block: the launch's value is already their sum).
 * A launch's value is what its kernel computes, named by `computes` (the kernels are the plan's:
 * the value is the one the emulator's DPUs produce, up to the order of float additions):
 *  - gemm:    x [..., K] . w [N, K]^T -> [..., N] (i8 operands: exact i32), or with a K split inside
 *             the DPU (ks > 1) the ks partial sums [..., ks, N]: K index k goes to item
 *             floor((k mod kb) / (per * tk)), per = cdiv(kb / tk, ks) chunks of tk per item;
 *  - lut:     the integer dot products of every weight group with the INT8 activations, laid out as
 *             [..., blocks, groups, ld] (output o at block o / block, column o % block; the padding's
 *             weights are the digits 0, i.e. -2^(bits-1));
 *  - scores:  q [B, H, S, D] . k [B, KVH, T, D]^T -> [B, H, S, T] (unscaled; GQA: head h reads h / rep);
 *  - context: p [B, H, S, T] . v [B, KVH, T, D] (or V^T [B, KVH, D, T] with vt) -> [B, H, S, D], or
 *             with ks > 1 the partials over token chunks [B, H, S, dt, ks, D / dt] (per = cdiv(cdiv(T,
 *             tk), ks) chunks of tk tokens per item);
 *  - reduce:  the sum of those partials in order, [B, H, S, D].
 * Operands past the ones a launch computes from (and past a push's first) are `after` operands: values
 * it must follow, which is all their ordering means. `reads`, `writes` and `w` name MRAM regions: the
 * hazards the encoder orders commands by, and the region whose offset binds the kernel's `w`.
 */
import { z } from "zod";
import { dimEval, type Dim } from "../../src/ir/dim.js";
import { registerOp } from "../../src/ir/registry.js";
import { f32, i32, type Tensor } from "../../src/ir/tensor.js";
import { tensor, type TensorType } from "../../src/ir/types.js";
import { DTYPES } from "../../src/ir/dtype.js";
import {
  concreteShape,
  fdata,
  need,
  needDimEq,
  needRank,
  nelem,
  show,
  sumBytes,
} from "../../src/ir/ops/util.js";
import type { BlockMap, DpuRange, IntExpr } from "./program.js";

const zIntExpr = z.union([z.number().int().nonnegative(), z.string().min(1)]);
const zRange = z.tuple([z.number().int().nonnegative(), z.number().int().positive()]);
/** A BlockMap as [rows, cols, blockRows, blockCols, ld, rowEvery, rowBlocks, colEvery, colBlocks]. */
const zMap = z.tuple([
  zIntExpr,
  zIntExpr,
  zIntExpr,
  zIntExpr,
  zIntExpr,
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
]);

export const mapAttr = (m: BlockMap): z.infer<typeof zMap> => [
  m.rows,
  m.cols,
  m.blockRows,
  m.blockCols,
  m.ld,
  m.rowEvery,
  m.rowBlocks,
  m.colEvery,
  m.colBlocks,
];

export const mapOf = (a: readonly IntExpr[]): BlockMap => {
  const [rows, cols, blockRows, blockCols, ld, rowEvery, rowBlocks, colEvery, colBlocks] = a as [
    IntExpr,
    IntExpr,
    IntExpr,
    IntExpr,
    IntExpr,
    number,
    number,
    number,
    number,
  ];
  return { rows, cols, blockRows, blockCols, ld, rowEvery, rowBlocks, colEvery, colBlocks };
};

export const rangeAttr = (r: DpuRange): [number, number] => [r.first, r.count];
export const rangeOf = (a: readonly number[]): DpuRange => ({ first: a[0]!, count: a[1]! });

const TOKEN = tensor("i32", []);
const free = { flops: 0, bytes: 0 };
const transferCost = (ins: readonly TensorType[], env: Parameters<typeof nelem>[1]) => ({
  flops: 0,
  bytes: sumBytes(ins.slice(0, 1), env),
});

registerOp({
  name: "upmem.alloc",
  summary: "dpu_alloc: reserve DPUs (without resource pooling, per call); its value is the DPU count",
  operands: [],
  attrs: z.strictObject({ dpus: z.number().int().positive() }),
  infer: () => [TOKEN],
  cost: () => free,
  eval: (_ins, a) => [i32([], [a.dpus])],
});

registerOp({
  name: "upmem.load",
  summary: "dpu_load: the kernels' code into the IRAM of a DPU range, after its allocation",
  operands: ["dpus"],
  attrs: z.strictObject({ kernels: z.array(z.string().min(1)).min(1), dpus: zRange }),
  infer: () => [TOKEN],
  cost: () => free,
  eval: ([t]) => [t!],
});

const zMove = {
  region: z.string().min(1),
  at: zIntExpr,
  map: zMap,
  dpus: zRange,
  /** The float type the host holds the pulled value as (default: the launch result's). */
  dtype: z.enum(DTYPES).optional(),
};

registerOp({
  name: "upmem.push",
  summary:
    "host -> DPUs: a block of x to each DPU of a range (`broadcast`: all of x to every DPU) at `at` of an MRAM region; the value is x as the DPUs hold it",
  operands: ["x", "after..."],
  attrs: z.strictObject({ ...zMove, broadcast: z.boolean().optional() }),
  infer: ([x]) => [x!],
  cost: (ins, _o, _a, env) => transferCost(ins, env),
  eval: ([x]) => [x!],
});

registerOp({
  name: "upmem.pull",
  summary:
    "DPUs -> host: the blocks of a launch's result from an MRAM region (`reduce`: copies of a block added up)",
  operands: ["y"],
  attrs: z.strictObject({ ...zMove, reduce: z.boolean().optional() }),
  infer: ([y], a) => [a.dtype ? tensor(a.dtype, y!.shape) : y!],
  cost: (ins, _o, _a, env) => transferCost(ins, env),
  eval: ([y]) => [y!],
});

const zLaunch = z.strictObject({
  kernel: z.string().min(1),
  dpus: zRange,
  computes: z.enum(["gemm", "lut", "scores", "context", "reduce"]),
  /** MRAM regions the kernel reads and the one it writes; `w`: the region bound to parameter w. */
  reads: z.array(z.string().min(1)),
  writes: z.string().min(1),
  w: z.string().min(1).optional(),
  /** K split inside the DPU (gemm, context, reduce): items, chunk and K block (gemm). */
  ks: z.number().int().min(2).optional(),
  tk: z.number().int().positive().optional(),
  kb: z.number().int().positive().optional(),
  /** context: the V operand is V^T [B, KVH, D, T]; dt DPUs split the head dim (partials' layout). */
  vt: z.boolean().optional(),
  dt: z.number().int().positive().optional(),
  /** lut: weight bits, inputs per scale group, outputs per block, blocks, and the padded block width. */
  bits: z.number().int().min(1).max(8).optional(),
  group: z.number().int().positive().optional(),
  block: z.number().int().positive().optional(),
  blocks: z.number().int().positive().optional(),
  ld: z.number().int().positive().optional(),
});
type LaunchAttrs = z.infer<typeof zLaunch>;

/** How many operands a launch computes from (the rest are `after` operands). */
export const launchInputs = (a: Pick<LaunchAttrs, "computes">): number => (a.computes === "reduce" ? 1 : 2);

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

function launchType(ins: readonly TensorType[], a: LaunchAttrs): TensorType {
  const [x, w] = ins;
  const lead = x!.shape.slice(0, -1);
  switch (a.computes) {
    case "gemm": {
      needRank(w!, 2, "w");
      needDimEq(x!.shape[x!.shape.length - 1]!, w!.shape[1]!, `x ${show(x!)} and w ${show(w!)} differ in K`);
      need(a.ks === undefined || (a.tk !== undefined && a.kb !== undefined), "a K split needs tk and kb");
      const dtype = x!.dtype === "i8" ? "i32" : "f32";
      return tensor(dtype, [...lead, ...(a.ks ? [a.ks] : []), w!.shape[0]!]);
    }
    case "lut": {
      need(x!.dtype === "i8" && w!.dtype === "i8", "lut takes i8 activations and weights");
      need(a.bits && a.group && a.block && a.blocks && a.ld, "lut needs bits, group, block, blocks and ld");
      const k = w!.shape[1]!;
      need(
        typeof k === "number" && k % a.group === 0,
        `group ${a.group} does not divide the inputs of ${show(w!)}`,
      );
      return tensor("i32", [...lead, a.blocks, k / a.group, a.ld]);
    }
    case "scores": {
      needRank(x!, 4, "q");
      needRank(w!, 4, "k");
      return tensor("f32", [x!.shape[0]!, x!.shape[1]!, x!.shape[2]!, w!.shape[2]!]);
    }
    case "context": {
      needRank(x!, 4, "p");
      needRank(w!, 4, "v");
      const d = w!.shape[a.vt ? 2 : 3]!;
      const [b, h, s] = x!.shape as [Dim, Dim, Dim];
      if (!a.ks) return tensor("f32", [b, h, s, d]);
      need(a.dt !== undefined && a.tk !== undefined, "a K split of context needs dt and tk");
      need(typeof d === "number" && d % a.dt === 0, `dt ${a.dt} does not split the head dim of ${show(w!)}`);
      return tensor("f32", [b, h, s, a.dt, a.ks, d / a.dt]);
    }
    case "reduce": {
      needRank(x!, 6, "parts");
      const [b, h, s, dt, , dd] = x!.shape as [Dim, Dim, Dim, number, number, number];
      return tensor("f32", [b, h, s, dt * dd]);
    }
  }
}

/** The K-split item of index k (< K) of a block of `kb`, `per` chunks of `tk` per item. */
const itemOf = (k: number, kb: number, tk: number, per: number): number => Math.floor((k % kb) / (per * tk));

function evalLaunch(ins: readonly Tensor[], a: LaunchAttrs, out: TensorType): Tensor {
  const shape = concreteShape(out);
  const [x, w] = ins as [Tensor, Tensor];
  switch (a.computes) {
    case "gemm": {
      const [n, k] = w.shape as [number, number];
      const rows = x.data.length / k;
      const ks = a.ks ?? 1;
      const per = ks > 1 ? cdiv(a.kb! / a.tk!, ks) : 1;
      const item = new Int32Array(k);
      if (ks > 1) for (let t = 0; t < k; t++) item[t] = itemOf(t, a.kb!, a.tk!, per);
      const xd = x.data;
      const wd = w.data;
      const int = x.dtype === "i8";
      const y = int ? new Int32Array(rows * ks * n) : new Float32Array(rows * ks * n);
      const acc = new Float64Array(ks);
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < n; o++) {
          acc.fill(0);
          for (let t = 0; t < k; t++) {
            const j = item[t]!;
            acc[j] = acc[j]! + (xd[r * k + t] as number) * (wd[o * k + t] as number);
          }
          for (let j = 0; j < ks; j++) y[(r * ks + j) * n + o] = acc[j]!;
        }
      return int ? i32(shape, y as Int32Array) : f32(shape, y as Float32Array);
    }
    case "lut": {
      const [n, k] = w.shape as [number, number];
      const g = a.group!;
      const groups = k / g;
      const rows = x.data.length / k;
      const per = a.blocks! * groups * a.ld!;
      const y = new Int32Array(rows * per);
      // Padding (columns past `block`, outputs past N) holds zero bytes, the offset-binary digits of
      // -2^(bits-1): its dot products are that times the group's sum of activations.
      const low = -(2 ** (a.bits! - 1));
      for (let r = 0; r < rows; r++)
        for (let q = 0; q < groups; q++) {
          let sum = 0;
          for (let t = q * g; t < (q + 1) * g; t++) sum += x.data[r * k + t] as number;
          for (let b = 0; b < a.blocks!; b++)
            for (let c = 0; c < a.ld!; c++) y[r * per + (b * groups + q) * a.ld! + c] = low * sum;
        }
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < n; o++)
          for (let q = 0; q < groups; q++) {
            let acc = 0;
            for (let t = q * g; t < (q + 1) * g; t++)
              acc += (x.data[r * k + t] as number) * (w.data[o * k + t] as number);
            y[r * per + (Math.floor(o / a.block!) * groups + q) * a.ld! + (o % a.block!)] = acc;
          }
      return i32(shape, y);
    }
    case "scores": {
      const [b, h, s, d] = x.shape as [number, number, number, number];
      const [, kvh, t] = w.shape as [number, number, number];
      const rep = h / kvh;
      const q = fdata(x);
      const kk = fdata(w);
      const y = new Float32Array(b * h * s * t);
      for (let bi = 0; bi < b; bi++)
        for (let hi = 0; hi < h; hi++)
          for (let si = 0; si < s; si++)
            for (let ti = 0; ti < t; ti++) {
              let acc = 0;
              const qo = ((bi * h + hi) * s + si) * d;
              const ko = ((bi * kvh + Math.floor(hi / rep)) * t + ti) * d;
              for (let di = 0; di < d; di++) acc += q[qo + di]! * kk[ko + di]!;
              y[((bi * h + hi) * s + si) * t + ti] = acc;
            }
      return f32(shape, y);
    }
    case "context": {
      const [b, h, s, t] = x.shape as [number, number, number, number];
      const kvh = w.shape[1]!;
      const d = w.shape[a.vt ? 2 : 3]!;
      const rep = h / kvh;
      const p = fdata(x);
      const v = fdata(w);
      const ks = a.ks ?? 1;
      const per = ks > 1 ? cdiv(cdiv(t, a.tk!), ks) : 1;
      const dt = a.dt ?? 1;
      const dd = d / dt;
      const y = new Float32Array(b * h * s * ks * d);
      const acc = new Float64Array(ks);
      for (let bi = 0; bi < b; bi++)
        for (let hi = 0; hi < h; hi++) {
          const g = bi * kvh + Math.floor(hi / rep);
          for (let si = 0; si < s; si++)
            for (let di = 0; di < d; di++) {
              acc.fill(0);
              const po = ((bi * h + hi) * s + si) * t;
              for (let ti = 0; ti < t; ti++) {
                const vv = a.vt ? v[(g * d + di) * t + ti]! : v[(g * t + ti) * d + di]!;
                const j = ks > 1 ? Math.floor(Math.floor(ti / a.tk!) / per) : 0;
                acc[j] = acc[j]! + p[po + ti]! * vv;
              }
              const row = (bi * h + hi) * s + si;
              // [.., D] without a split; [.., dt, ks, dd] with one.
              for (let j = 0; j < ks; j++)
                y[ks === 1 ? row * d + di : ((row * dt + Math.floor(di / dd)) * ks + j) * dd + (di % dd)] =
                  acc[j]!;
            }
        }
      return f32(shape, y);
    }
    case "reduce": {
      const [b, h, s, dt, ks, dd] = x.shape as [number, number, number, number, number, number];
      const p = fdata(x);
      const y = new Float32Array(b * h * s * dt * dd);
      for (let r = 0; r < b * h * s * dt; r++)
        for (let c = 0; c < dd; c++) {
          // Partials 1..ks-1 added in order onto partial 0, in f32 (the reduce kernel's vadd).
          let acc = p[r * ks * dd + c]!;
          for (let j = 1; j < ks; j++) acc = Math.fround(acc + p[(r * ks + j) * dd + c]!);
          y[r * dd + c] = acc;
        }
      return f32(shape, y);
    }
  }
}

registerOp({
  name: "upmem.launch",
  summary:
    "runs a kernel on every DPU of a range; its value is what the kernel computes (`computes`: gemm, lut, scores, context or reduce)",
  operands: ["x", "w?", "after..."],
  attrs: zLaunch,
  infer(ins, a) {
    need(
      ins.length >= launchInputs(a),
      `${a.computes} takes ${launchInputs(a)} operand(s) before its after operands`,
    );
    return [launchType(ins, a)];
  },
  cost(ins, outs, a, env) {
    const [x, w] = ins;
    const last = (t: TensorType): number => dimEval(t.shape[t.shape.length - 1]!, env);
    // Multiply-adds: x's elements times w's rows (gemm, lut), out's elements times the reduced extent.
    const flops =
      a.computes === "reduce"
        ? nelem(x!, env)
        : a.computes === "gemm" || a.computes === "lut"
          ? 2 * nelem(x!, env) * dimEval(w!.shape[0]!, env)
          : (2 * nelem(outs[0]!, env) * last(x!)) / (a.ks ?? 1);
    return { flops, bytes: sumBytes(ins.slice(0, launchInputs(a)), env) + sumBytes(outs, env) };
  },
  eval: (ins, a, { outTypes }) => [evalLaunch(ins, a, outTypes[0]!)],
});
