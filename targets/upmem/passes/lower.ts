/**
 * `upmem-lower`: the ops the upmem-plan pass planned on the DPUs become the UPMEM dialect
 * (targets/upmem/dialect.ts), one op per command of the program, the host's work staying the IR ops
 * it is. A GEMM on the DPUs:
 *
 *   %L0.o = linear(%L0.attn_out.to_pim, @o_proj.weight) {device = "pim", upmem.kernel = "gemm2", ...}
 * becomes
 *   %L0.o.x.dpu = upmem.push(%L0.attn_out) {region = "x", map = [...], dpus = [0, 16], broadcast = true}
 *   %L0.o.y.dpu = upmem.launch(%L0.o.x.dpu, @o_proj.weight) {kernel = "gemm2", computes = "gemm", ...}
 *   %L0.o = upmem.pull(%L0.o.y.dpu) {region = "y", map = [...], dpus = [0, 16]}
 *
 * with the host's quantize / dequantize around INT8 layers, its reduce_sum of K-split partials and its
 * bias add; attention on the DPUs becomes its pushes, the scores and context launches, the host's
 * softmax and the pulls (and the appends of new tokens to the MRAM-resident caches); `transfer` ops go
 * (the pushes and pulls are the transfers). What the encoder writes is then one command per op.
 *
 * Values the host holds as the DPUs' f32 though the model computes in f16 / bf16 (a GEMM's pulled
 * result, its K-split partials and their sum) carry `upmem.storage = "f32"`: the emulator times host
 * ops on a buffer by its storage, and these stay f32 on the host.
 */
import type { Attrs, Func, Module, Op, Value } from "../../../src/ir/module.js";
import { refName } from "../../../src/ir/module.js";
import { dimProd, dimToString, type Dim } from "../../../src/ir/dim.js";
import type { Tensor } from "../../../src/ir/tensor.js";
import { layoutOf, toLogical } from "../../../src/ir/layout.js";
import { toRuntime } from "../../../src/exec/interpreter.js";
import { checkOp, getOp } from "../../../src/ir/registry.js";
import { tensor, type TensorType } from "../../../src/ir/types.js";
import { isFloat } from "../../../src/ir/dtype.js";
import type { Pass } from "../../../src/pipeline/pass.js";
import { produce } from "immer";
import { UserError } from "../../../src/errors.js";
import {
  activationMap,
  isPimAttention,
  isPimGemm,
  isPimLut,
  stripAnnotations,
  type LoweringPlan,
} from "../lower.js";
import { mbExpr, weightBlock } from "../gemm.js";
import { lutBlock } from "../lut.js";
import { appendOffsets, attentionMaps, cacheMaps, layoutDpus } from "../attention.js";
import { mapAttr, rangeAttr } from "../dialect.js";
import type { BlockMap, DpuRange, IntExpr } from "../program.js";
import { passInputs, planFor } from "./plan.js";
import type { LowerOptions } from "../lower.js";
import "../dialect.js";

export const LOWER = "upmem-lower";

const expr = (d: Dim): IntExpr => (typeof d === "number" ? d : dimToString(d));

/** Marks a value the host holds as f32 where the model's float type is narrower. */
const F32_STORAGE: Attrs = { "upmem.storage": "f32" };

/** Lowers one function of a planned module to the dialect. */
export function lowerFunc(
  m: Module,
  f: Func,
  plan: LoweringPlan,
  o: { pooling: boolean; runtimeTranspose: boolean },
  extra: readonly { name: string; type: TensorType }[] = [],
): Func {
  const { plans, luts, attn, caches, xRegion, yRegion } = plan;
  const body: Op[] = [];
  const types = new Map<string, TensorType>();
  const globals = new Map<string, TensorType>(
    [...m.consts, ...m.states, ...extra].map((g) => [g.name, g.type]),
  );
  for (const p of f.params) types.set(p.name, p.type);
  for (const op of f.body) for (const r of op.results) types.set(r.name, r.type);
  // transfer results are their operands (the pushes and pulls move the data).
  const alias = new Map<string, string>();
  const ref = (r: string): string => (r.startsWith("%") ? (alias.get(r) ?? r) : r);
  const typeOf = (r: string): TensorType => {
    const t = r.startsWith("%") ? types.get(refName(r)) : globals.get(refName(r));
    if (!t) throw new Error(`internal: no type for ${r}`);
    return t;
  };
  /** Adds an op with results named `names`, typed by its shape rule (or `given`). */
  const add = (
    opcode: string,
    operands: string[],
    attrs: Attrs,
    names: string[],
    given?: TensorType[],
  ): string[] => {
    const def = getOp(opcode)!;
    const ins = operands.map(typeOf);
    let outs = given;
    if (!outs) {
      const r = checkOp(def, ins, attrs);
      if (!r.ok) throw new Error(`internal: ${opcode} in the UPMEM lowering: ${r.message}`);
      outs = r.types;
    }
    const results: Value[] = names.map((name, i) => ({ name, type: outs[i]! }));
    for (const v of results) types.set(v.name, v.type);
    body.push({ opcode, operands, attrs, results });
    return names.map((n) => `%${n}`);
  };
  const host = (
    opcode: string,
    attrs: Attrs,
    ins: string[],
    names: string[],
    given?: TensorType[],
  ): string[] => add(opcode, ins, { device: "host", ...attrs }, names, given);
  const move = (
    kind: "push" | "pull",
    x: string,
    region: string,
    map: BlockMap,
    range: DpuRange,
    name: string,
    a: Attrs = {},
    after: string[] = [],
  ): string =>
    add(`upmem.${kind}`, [x, ...after], { region, at: 0, map: mapAttr(map), dpus: rangeAttr(range), ...a }, [
      name,
    ])[0]!;
  /** The float type of a result the host computes from the DPUs' f32, and its storage mark. */
  const floatOf = (t: TensorType): { dtype?: TensorType["dtype"]; mark: Attrs } =>
    isFloat(t.dtype) && t.dtype !== "f32" ? { dtype: t.dtype, mark: F32_STORAGE } : { mark: {} };

  /** An append to a cache resident in MRAM: the new tokens also go to its blocks on the DPUs. */
  const appendToDpus = (op: Op, whole: string): void => {
    const cache = caches.get(refName(op.operands[0]!))!;
    const l = cache.layout;
    const x = ref(op.operands[1]!);
    const xt = typeOf(x);
    const wt = typeOf(whole);
    const maps = cacheMaps(l, { B: expr(xt.shape[0]!), S: expr(xt.shape[2]!), T: expr(wt.shape[2]!) });
    const at = appendOffsets(l, expr(op.attrs.past as Dim));
    const range: DpuRange = { first: 0, count: layoutDpus(l) };
    const base = refName(whole);
    if (cache.role === "k") {
      move("push", x, cache.region, maps.kNew, range, `${base}.new.dpu`, { at: at.k });
      return;
    }
    const [win] = host("kv_window", { align: 2 }, [whole, x], [`${base}.window`]);
    move("push", win!, cache.region, maps.vWindow, range, `${base}.window.dpu`, { at: at.v });
  };

  const lowerAttention = (op: Op): void => {
    const res = op.results[0]!;
    const use = attn.get(`${f.name}/${res.name}`)!;
    const l = use.layout;
    const [q, k, v] = op.operands.map(ref) as [string, string, string];
    const qt = typeOf(q);
    const kt = typeOf(k);
    const dims = { B: expr(qt.shape[0]!), S: expr(qt.shape[2]!), T: expr(kt.shape[2]!) };
    const maps = {
      ...attentionMaps(l, use.tiling, dims),
      ...cacheMaps(l, { ...dims, B: expr(kt.shape[0]!) }),
    };
    const range: DpuRange = { first: 0, count: layoutDpus(l) };
    const dpus = rangeAttr(range);
    const base = res.name;
    // Without residency the call's DPUs get the whole cache (K, and V transposed by the host).
    let kIn = k;
    let vIn = v;
    const after: string[] = [];
    if (!o.pooling) {
      const [a] = add("upmem.alloc", [], { dpus: range.count }, [`${base}.dpus`]);
      const kernels = [use.scores, use.context, ...(use.reduce ? [use.reduce] : [])];
      const [ld] = add("upmem.load", [a!], { kernels, dpus }, [`${base}.code`]);
      const [vt] = host("transpose", { perm: [0, 1, 3, 2], ...floatOf(typeOf(v)).mark }, [v], [`${base}.vt`]);
      kIn = move("push", k, use.kRegion, maps.kAll, range, `${base}.k.dpu`, {}, [ld!]);
      vIn = move("push", vt!, use.vRegion, maps.vtAll, range, `${base}.vt.dpu`, {}, [ld!]);
      after.push(kIn, vIn);
    }
    const launch = (
      kernel: string,
      ins: string[],
      region: string,
      a: Attrs,
      name: string,
      extra: string[],
    ): string =>
      add(
        "upmem.launch",
        [...ins, ...extra],
        { kernel, dpus, computes: "scores", reads: [xRegion, region], writes: yRegion, w: region, ...a },
        [name],
      )[0]!;
    const pq = move("push", q, xRegion, maps.q, range, `${base}.q.dpu`, {}, after);
    const l1 = launch(
      use.scores,
      [pq, kIn],
      use.kRegion,
      {},
      `${base}.scores.dpu`,
      after.length ? [vIn] : [],
    );
    const scores = move(
      "pull",
      l1,
      yRegion,
      maps.scores,
      range,
      `${base}.scores`,
      l.dt > 1 ? { reduce: true } : {},
    );
    const [probs] = host("masked_softmax", stripAnnotations(op.attrs), [scores], [`${base}.probs`]);
    const pp = move("push", probs!, xRegion, maps.probs, range, `${base}.probs.dpu`);
    const ks = use.tiling.context.ks ?? 1;
    const split: Attrs = ks > 1 ? { ks, tk: use.tiling.context.tk, dt: l.dt } : {};
    const l2 = launch(
      use.context,
      [pp, vIn],
      use.vRegion,
      { computes: "context", ...(o.pooling ? {} : { vt: true }), ...split },
      `${base}.context.dpu`,
      after.length ? [kIn] : [],
    );
    const out = floatOf(res.type);
    if (ks === 1) {
      move("pull", l2, yRegion, maps.out, range, base, out.dtype ? { dtype: out.dtype } : {});
      return;
    }
    if (use.reduce) {
      // The tasklets split the tokens: the reduce kernel adds their partial tiles in place.
      const [l3] = add(
        "upmem.launch",
        [l2],
        { kernel: use.reduce, dpus, computes: "reduce", reads: [yRegion], writes: yRegion },
        [`${base}.sum.dpu`],
      );
      move("pull", l3!, yRegion, maps.out, range, base, out.dtype ? { dtype: out.dtype } : {});
      return;
    }
    // The tasklets split the tokens: the host adds their partial rows.
    const parts = move("pull", l2, yRegion, maps.out, range, `${base}.parts`, {
      ...(out.dtype ? { dtype: out.dtype } : {}),
      ...out.mark,
    });
    const [sum] = host("reduce_sum", { axis: 4, ...out.mark }, [parts], [`${base}.sum`]);
    host("reshape", { shape: res.type.shape }, [sum!], [base]);
  };

  /**
   * A LUT-GEMV layer: INT8 activations pushed, the kernel's per-segment integer dot products pulled
   * into [lead..., dn, groups, nbPad] (the parts of a group split over DPUs added by the pull), folded
   * with the scales by the host.
   */
  const lowerLut = (op: Op): void => {
    const lp = luts.get(refName(op.operands[1]!))!;
    const ph = lp.phases.get(f.name)!;
    const t = ph.tiling;
    const b = lutBlock(lp.shape, t);
    const x = ref(op.operands[0]!);
    const xType = typeOf(x);
    const lead = xType.shape.slice(0, -1);
    const res = op.results[0]!;
    const base = res.name;
    const [xq, xs] = host("quantize", {}, [x], [`${base}.xq`, `${base}.xs`]);
    const mExpr = expr(dimProd(lead));
    const range: DpuRange = { first: 0, count: t.dm * t.dn * t.dk };
    const mb = mbExpr(mExpr, t.dm);
    const xMap = activationMap(mExpr, lp.shape.k, mb, b.kb, t);
    const push = move(
      "push",
      xq!,
      xRegion,
      xMap,
      range,
      `${base}.x.dpu`,
      t.dm === 1 && t.dk === 1 ? { broadcast: true } : {},
    );
    const region = lp.layouts[ph.layout]!.region;
    const groups = lp.shape.k / lp.shape.group;
    const [y] = add(
      "upmem.launch",
      [push, op.operands[1]!],
      {
        kernel: ph.kernel,
        dpus: rangeAttr(range),
        computes: "lut",
        reads: [xRegion, region],
        writes: yRegion,
        w: region,
        bits: lp.shape.bits,
        group: lp.shape.group,
        block: b.nb,
        blocks: t.dn,
        ld: b.nbPad,
      },
      [`${base}.y.dpu`],
    );
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
    const dots = move("pull", y!, yRegion, yMap, range, `${base}.dots`, b.split > 1 ? { reduce: true } : {});
    const ins = [dots, xs!, ref(op.operands[2]!), ...(op.operands[3] ? [ref(op.operands[3])] : [])];
    host("group_dequantize", { block: b.nb, ...dtypeAttr(res.type) }, ins, [base]);
  };

  const lowerGemm = (op: Op): void => {
    const gp = plans.get(refName(op.operands[1]!))!;
    const ph = gp.phases.get(f.name)!;
    const t = ph.tiling;
    const { nb, nbPad, kb } = weightBlock({ ...gp.shape, m: 1 }, t);
    const res = op.results[0]!;
    const base = res.name;
    let x = ref(op.operands[0]!);
    const xType = typeOf(x);
    const lead = xType.shape.slice(0, -1);
    let xs: string | undefined;
    const int8 = gp.shape.dtype === "i8";
    // 16-bit activations travel as two INT8 planes: twice the rows, combined on the host after.
    const planes = int8 && op.attrs.act_bits === 16 ? 2 : 1;
    const bits: Attrs = planes === 2 ? { bits: 16 } : {};
    if (int8) {
      const [xq, s] = host("quantize", bits, [x], [`${base}.xq`, `${base}.xs`]);
      x = xq!;
      xs = s;
    }
    const mExpr = expr(dimProd(planes === 2 ? [2, ...lead] : lead));
    const range: DpuRange = { first: 0, count: t.dm * t.dn * t.dk };
    const dpus = rangeAttr(range);
    const mb = mbExpr(mExpr, t.dm);
    const xMap = activationMap(mExpr, gp.shape.k, mb, kb, t);
    // Without pooling, the call allocates its DPUs, loads its kernel and sends the weight first.
    let w = op.operands[1]!;
    if (!o.pooling) {
      const [a] = add("upmem.alloc", [], { dpus: range.count }, [`${base}.dpus`]);
      const [ld] = add("upmem.load", [a!], { kernels: [ph.kernel], dpus }, [`${base}.code`]);
      const wMap: BlockMap = {
        rows: gp.shape.n,
        cols: gp.shape.k,
        blockRows: nb,
        blockCols: kb,
        ld: kb,
        rowEvery: t.dk,
        rowBlocks: t.dn,
        colEvery: 1,
        colBlocks: t.dk,
      };
      if (o.runtimeTranspose) {
        // The host keeps W^T ([in, out]) and transposes it back at every call.
        const [wt] = host(
          "transpose",
          { perm: [1, 0] },
          [`@${gp.weight}.T`],
          [`${base}.w`],
          [tensor(gp.shape.dtype === "i8" ? "i8" : "f32", [gp.shape.n, gp.shape.k])],
        );
        w = wt!;
      }
      w = move(
        "push",
        w,
        "w",
        wMap,
        range,
        `${base}.w.dpu`,
        t.dn === 1 && t.dk === 1 ? { broadcast: true } : {},
        [ld!],
      );
    }
    const push = move(
      "push",
      x,
      xRegion,
      xMap,
      range,
      `${base}.x.dpu`,
      t.dm === 1 && t.dk === 1 ? { broadcast: true } : {},
    );
    const ks = t.ks ?? 1;
    const region = gp.layouts[ph.layout]!.region;
    const [y] = add(
      "upmem.launch",
      [push, w],
      {
        kernel: ph.kernel,
        dpus,
        computes: "gemm",
        reads: o.pooling ? [xRegion] : [xRegion, "w"],
        writes: yRegion,
        w: region,
        ...(ks > 1 ? { ks, tk: t.tk, kb } : {}),
      },
      [`${base}.y.dpu`],
    );
    // With a K split inside the DPUs a Y row holds ks partial tiles of nbPad columns: viewed as ks
    // rows of nbPad, they come home as [..., ks, N] and the host adds them up.
    const times = (v: IntExpr): IntExpr => (ks === 1 ? v : typeof v === "number" ? v * ks : `(${v})*${ks}`);
    const yMap: BlockMap = {
      rows: times(mExpr),
      cols: gp.shape.n,
      blockRows: times(mb),
      blockCols: nb,
      ld: nbPad,
      rowEvery: t.dn * t.dk,
      rowBlocks: t.dm,
      colEvery: t.dk,
      colBlocks: t.dn,
    };
    const bias = op.operands.length > 2;
    const accName = int8 ? `${base}.acc` : bias ? `${base}.raw` : base;
    // Float results keep the model's type (marked as held in f32); INT8 ones are i32.
    const out = int8 ? { mark: {} } : floatOf(res.type);
    const pulled = move("pull", y!, yRegion, yMap, range, ks === 1 ? accName : `${base}.parts`, {
      ...(out.dtype ? { dtype: out.dtype } : {}),
      ...(t.dk > 1 ? { reduce: true } : {}),
      ...out.mark,
    });
    const acc = ks > 1 ? host("reduce_sum", { axis: -2, ...out.mark }, [pulled], [accName])[0]! : pulled;
    if (int8) {
      const ins = [acc, xs!, ref(op.operands[2]!), ...(op.operands[3] ? [ref(op.operands[3])] : [])];
      host("dequantize", { ...bits, ...dtypeAttr(res.type) }, ins, [base]);
    } else if (bias) host("add", {}, [acc, ref(op.operands[2]!)], [base]);
  };

  for (const op of f.body) {
    if (op.opcode === "transfer") {
      alias.set(`%${op.results[0]!.name}`, ref(op.operands[0]!));
      continue;
    }
    if (isPimAttention(op)) lowerAttention(op);
    else if (isPimLut(op)) lowerLut(op);
    else if (isPimGemm(op)) lowerGemm(op);
    else {
      // Legality: what the DPUs were given is lowered; nothing placed there may stay a high-level op.
      if (op.attrs.device === "pim")
        throw new UserError(
          `%${op.results[0]?.name ?? "?"} (${op.opcode}, ${f.name}) is placed on the DPUs but the UPMEM lowering has no kernel for it: place it on the host`,
        );
      body.push({ ...op, operands: op.operands.map(ref) });
      const cache = op.opcode === "kv_append" ? caches.get(refName(op.operands[0]!)) : undefined;
      if (cache) appendToDpus(op, `%${op.results[0]!.name}`);
    }
  }
  return { ...f, body, results: f.results.map(ref) };
}

/** dequantize's result type when the model's float type is not f32. */
const dtypeAttr = (t: TensorType): Attrs => (t.dtype !== "f32" && isFloat(t.dtype) ? { dtype: t.dtype } : {});

/** Lowers every function; with runtime transposes, declares the W^T constants the host keeps. */
export function lowerToDialect(
  m: Module,
  plan: LoweringPlan,
  o: { pooling: boolean; runtimeTranspose: boolean },
): Module {
  const consts = o.runtimeTranspose
    ? [...plan.plans.values()].map((p) => {
        const decl = m.consts.find((c) => c.name === p.weight)!;
        const [n, k] = decl.type.shape;
        return {
          name: `${p.weight}.T`,
          type: tensor(decl.type.dtype === "i8" ? "i8" : "f32", [k!, n!]),
          attrs: {},
        };
      })
    : [];
  return produce(m, (d) => {
    d.funcs = m.funcs.map((f) => lowerFunc(m, f, plan, o, consts)) as never;
    d.consts.push(...(consts as never[]));
  });
}

/** The transpose of a 2-D weight [n, k] (f32 or i8), row-major. */
function transposed(t: Tensor): Tensor {
  const [n, k] = t.shape as [number, number];
  const out = t.dtype === "i8" ? new Int8Array(n * k) : new Float32Array(n * k);
  const src = t.data;
  for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) out[c * n + r] = src[r * k + c] as number;
  return { dtype: t.dtype === "i8" ? "i8" : "f32", shape: [k, n], data: out };
}

/** What the dialect lowering takes of the lowering's choices: pooling, and runtime transposes. */
export const dialectOptions = (
  o: Pick<LowerOptions, "pooling" | "runtimeTranspose">,
): { pooling: boolean; runtimeTranspose: boolean } => ({
  pooling: o.pooling ?? true,
  runtimeTranspose: o.pooling === false && o.runtimeTranspose === true,
});

/** Dialect modules the pass returned, per module it lowered, with the inputs of their plan. */
const kept = new WeakMap<Module, { key: string; out: Module }>();

/** The dialect module of `m` for these inputs: the pass's, when it lowered `m` for them, else a new one. */
export function dialectFor(m: Module, inputs: Omit<LowerOptions, "shapeOnly">): Module {
  const k = kept.get(m);
  if (k && k.key === JSON.stringify(inputs)) return k.out;
  return lowerToDialect(m, planFor(m, inputs), dialectOptions(inputs));
}

export const upmemLower: Pass = {
  name: LOWER,
  optLevel: 0,
  summary:
    "lower the ops planned on the DPUs to the UPMEM dialect: a push, launch and pull (and the host's work around them) per command",
  run(m, ctx) {
    const given = passInputs(ctx);
    if (!given) return m;
    const { o, inputs } = given;
    const opts = dialectOptions(o.lowering);
    const out = lowerToDialect(m, planFor(m, inputs), opts);
    // Without layout adjustment the host keeps W^T: the interpreter reads it as a constant too.
    if (opts.runtimeTranspose && ctx.weights)
      for (const c of out.consts)
        if (c.name.endsWith(".T") && !ctx.weights.has(c.name)) {
          const decl = m.consts.find((x) => x.name === c.name.slice(0, -2))!;
          const weights = ctx.weights;
          weights.define(c.name, () =>
            transposed(
              toLogical(toRuntime(weights.get(decl.name)), layoutOf(decl.attrs), decl.type.shape as number[]),
            ),
          );
        }
    kept.set(m, { key: JSON.stringify(inputs), out });
    return out;
  },
};
