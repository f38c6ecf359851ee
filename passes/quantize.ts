/**
 * Build-time weight quantization: every linear layer with a constant weight becomes a `qlinear` with
 * INT8 weights and per-output-channel scales (symmetric: scale = max |w[n, :]| / 127), computed once
 * in the constant table. Activations are quantized per row at run time by the op. Runs when the
 * options ask for it: `{ quantize: { weights: "int8" } }` (the --weights flag).
 */
import { match, P } from "ts-pattern";
import { produce } from "immer";
import { quantizeRows } from "../src/ir/ops/quant.js";
import { layoutOf, logicalSource } from "../src/ir/layout.js";
import type { ConstDecl } from "../src/ir/module.js";
import type { Tensor } from "../src/ir/tensor.js";
import type { Pass } from "../src/pipeline/pass.js";
import { mapFuncs, rewriteFunc, type Rule } from "../src/pipeline/rewrite.js";

export interface QuantizeOptions {
  weights?: "f32" | "int8";
  /** Activation precision of quantized layers: int8, or int16 carried as two INT8 planes. */
  activations?: "int8" | "int16";
}

/** Per-channel symmetric INT8 of a logical [n, k] f32 matrix (the same rule as activations per row). */
export function quantizeWeight(w: Tensor): { q: Tensor; scale: Tensor } {
  const [n, k] = w.shape as [number, number];
  const q = new Int8Array(n * k);
  const scale = quantizeRows(w.data as Float32Array, k, q);
  return { q: { dtype: "i8", shape: [n, k], data: q }, scale: { dtype: "f32", shape: [n], data: scale } };
}

export const quantize: Pass = {
  name: "quantize",
  optLevel: 0,
  summary: "quantize linear weights at build time (INT8, per-channel scales) when --weights int8",
  run(m, ctx) {
    const opts = (ctx.options.quantize ?? {}) as QuantizeOptions;
    if (opts.weights !== "int8") return m;
    const consts = new Map(m.consts.map((c) => [c.name, c]));
    const added = new Map<string, ConstDecl[]>();
    const quantized = (name: string): { q: string; scale: string } => {
      const names = { q: `${name}.q8`, scale: `${name}.scale` };
      if (added.has(name)) return names;
      const c = consts.get(name)!;
      const [n, k] = c.type.shape as [number, number];
      added.set(name, [
        { name: names.q, type: { dtype: "i8", shape: [n, k] }, attrs: {} },
        { name: names.scale, type: { dtype: "f32", shape: [n] }, attrs: {} },
      ]);
      if (ctx.weights.has(name)) {
        const src = logicalSource(ctx.weights, name, layoutOf(c.attrs), [n, k]);
        let memo: { q: Tensor; scale: Tensor } | undefined;
        const get = () => (memo ??= quantizeWeight(src()));
        ctx.weights.define(names.q, () => get().q);
        ctx.weights.define(names.scale, () => get().scale);
      }
      ctx.count("quantize", "weights quantized to int8");
      return names;
    };
    const isConst2d = (ref: string | undefined): boolean =>
      ref !== undefined &&
      ref.startsWith("@") &&
      consts.get(ref.slice(1))?.type.shape.length === 2 &&
      consts.get(ref.slice(1))?.type.dtype !== "i8";
    const rule: Rule = (op) =>
      match(op)
        .with({ opcode: "linear", operands: P.when((o: readonly string[]) => isConst2d(o[1])) }, (o) => {
          const { q, scale } = quantized(o.operands[1]!.slice(1));
          const operands = [o.operands[0]!, `@${q}`, `@${scale}`, ...o.operands.slice(2)];
          const attrs = opts.activations === "int16" ? { ...o.attrs, act_bits: 16 } : o.attrs;
          return {
            ops: [{ ...o, opcode: "qlinear", operands, attrs }],
            results: { [o.results[0]!.name]: `%${o.results[0]!.name}` },
          };
        })
        .otherwise(() => undefined);
    const out = mapFuncs(m, (f) => rewriteFunc(m, f, [rule]));
    return produce(out, (d) => void d.consts.push(...([...added.values()].flat() as never[])));
  },
};
