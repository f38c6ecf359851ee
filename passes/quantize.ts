/**
 * Build-time weight quantization: every linear layer with a constant weight becomes a `qlinear` with
 * INT8 weights and per-output-channel scales (symmetric: scale = max |w[n, :]| / 127), or a
 * `lowbit_linear` with 8, 4 or 2-bit weights and one scale per group of inputs, computed once in the
 * constant table. Activations are quantized per row at run time by the op. Runs when the options ask
 * for it: `{ quantize: { weights: "int8" } }` (the --weights flag).
 */
import { match, P } from "ts-pattern";
import { produce } from "immer";
import { quantizeGroups, quantizeRows } from "../src/ir/ops/quant.js";
import { layoutOf, logicalSource } from "../src/ir/layout.js";
import type { Attrs, ConstDecl, Op } from "../src/ir/module.js";
import type { Tensor } from "../src/ir/tensor.js";
import type { Pass } from "../src/pipeline/pass.js";
import { mapFuncs, rewriteFunc, type Rule } from "../src/pipeline/rewrite.js";

export type Precision = "f32" | "int8" | "int4" | "int2";

export interface QuantizeOptions {
  /**
   * int8: W8A8 `qlinear` with per-channel scales, or with `group` a `lowbit_linear` of 8 bits and
   * group-wise scales (W8A8 too unless activations are f32); int4 / int2: `lowbit_linear` with
   * group-wise scales, weight-only unless activations are int8.
   */
  weights?: Precision;
  /** Weights per scale (int4 / int2 default 128; the largest divisor of K up to it). */
  group?: number;
  /** Per-layer precision by op name pattern (`*` any text); the first match wins over `weights`. */
  layers?: readonly { readonly pattern: string; readonly weights: Precision }[];
  /**
   * Activation precision of quantized layers. INT8 weights: int8 (default) or int16 carried as two
   * INT8 planes, or f32 (weight-only `lowbit_linear`). INT4 / INT2 weights: weight-only unless int8
   * (then W4A8 / W2A8, integer group dot products).
   */
  activations?: "f32" | "int8" | "int16";
}

/** Per-channel symmetric INT8 of a logical [n, k] f32 matrix (the same rule as activations per row). */
export function quantizeWeight(w: Tensor): { q: Tensor; scale: Tensor } {
  const [n, k] = w.shape as [number, number];
  const q = new Int8Array(n * k);
  const scale = quantizeRows(w.data as Float32Array, k, q);
  return { q: { dtype: "i8", shape: [n, k], data: q }, scale: { dtype: "f32", shape: [n], data: scale } };
}

/** How a linear layer's weight [n, k] is quantized and the op that uses it. */
interface Scheme {
  /** Names of the quantized constants (from the weight's name). */
  readonly suffix: { readonly q: string; readonly scale: string };
  /** Shape of the scales for a weight [n, k]. */
  scaleShape(n: number, k: number): number[];
  quantize(w: Tensor): { q: Tensor; scale: Tensor };
  /** The op replacing `linear`, and its attributes. */
  readonly opcode: string;
  attrs(k: number, base: Attrs): Attrs;
  readonly counter: string;
}

function scheme(weights: Precision | undefined, opts: QuantizeOptions): Scheme | undefined {
  if (weights === "int8" && opts.group === undefined && opts.activations !== "f32")
    return {
      suffix: { q: "q8", scale: "scale" },
      scaleShape: (n) => [n],
      quantize: quantizeWeight,
      opcode: "qlinear",
      attrs: (_k, base) => (opts.activations === "int16" ? { ...base, act_bits: 16 } : base),
      counter: "weights quantized to int8",
    };
  if (weights !== "int8" && weights !== "int4" && weights !== "int2") return undefined;
  const bits = weights === "int8" ? 8 : weights === "int4" ? 4 : 2;
  // INT8 per group keeps its int8 activations unless asked for weight-only (f32); INT8 weight-only
  // without a group size has one scale per row.
  const actBits = opts.activations === "int8" || (bits === 8 && opts.activations !== "f32");
  const group = (k: number) => groupFor(k, opts.group ?? (bits === 8 ? k : 128));
  return {
    suffix: { q: `q${bits}`, scale: "gscale" },
    scaleShape: (n, k) => [n, k / group(k)],
    quantize: (w) => quantizeWeightGroups(w, bits, group(w.shape[1]!)),
    opcode: "lowbit_linear",
    attrs: (k, base) => ({
      ...base,
      bits,
      group: group(k),
      ...(actBits ? { act_bits: 8 } : {}),
    }),
    counter: `weights quantized to int${bits}`,
  };
}

export const quantize: Pass = {
  name: "quantize",
  optLevel: 0,
  summary:
    "quantize linear weights at build time: INT8 per channel (W8A8, --weights int8) or per group (--group-size), INT4 / INT2 per group (weight-only, or W4A8 / W2A8 with --activations int8)",
  run(m, ctx) {
    const opts = (ctx.options.quantize ?? {}) as QuantizeOptions;
    const layers = (opts.layers ?? []).map((l) => ({
      re: globRe(l.pattern),
      scheme: scheme(l.weights, opts),
    }));
    const base = scheme(opts.weights, opts);
    if (!base && layers.every((l) => !l.scheme)) return m;
    const schemeOf = (op: Op): Scheme | undefined => {
      const name = op.results[0]?.name ?? "";
      const hit = layers.find((l) => l.re.test(name));
      return hit ? hit.scheme : base;
    };
    const consts = new Map(m.consts.map((c) => [c.name, c]));
    const added = new Map<string, ConstDecl[]>();
    const quantized = (name: string, s: Scheme): { q: string; scale: string; k: number } => {
      const c = consts.get(name)!;
      const [n, k] = c.type.shape as [number, number];
      const names = { q: `${name}.${s.suffix.q}`, scale: `${name}.${s.suffix.scale}`, k };
      if (added.has(names.q)) return names;
      added.set(names.q, [
        { name: names.q, type: { dtype: "i8", shape: [n, k] }, attrs: {} },
        { name: names.scale, type: { dtype: "f32", shape: s.scaleShape(n, k) }, attrs: {} },
      ]);
      if (ctx.weights.has(name)) {
        const src = logicalSource(ctx.weights, name, layoutOf(c.attrs), [n, k]);
        let memo: { q: Tensor; scale: Tensor } | undefined;
        const get = () => (memo ??= s.quantize(src()));
        ctx.weights.define(names.q, () => get().q);
        ctx.weights.define(names.scale, () => get().scale);
      }
      ctx.count("quantize", s.counter);
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
          const s = schemeOf(o);
          if (!s) return undefined;
          const { q, scale, k } = quantized(o.operands[1]!.slice(1), s);
          const operands = [o.operands[0]!, `@${q}`, `@${scale}`, ...o.operands.slice(2)];
          return {
            ops: [{ ...o, opcode: s.opcode, operands, attrs: s.attrs(k, o.attrs) }],
            results: { [o.results[0]!.name]: `%${o.results[0]!.name}` },
          };
        })
        .otherwise(() => undefined);
    const out = mapFuncs(m, (f) => rewriteFunc(m, f, [rule]));
    return produce(out, (d) => void d.consts.push(...([...added.values()].flat() as never[])));
  },
};

/** The largest divisor of k up to `group`. */
export function groupFor(k: number, group: number): number {
  for (let g = Math.min(group, k); g > 1; g--) if (k % g === 0) return g;
  return 1;
}

/** Group-wise quantization of a logical [n, k] matrix to `bits` bits. */
export function quantizeWeightGroups(w: Tensor, bits: number, group: number): { q: Tensor; scale: Tensor } {
  const [n, k] = w.shape as [number, number];
  const q = new Int8Array(n * k);
  const scale = quantizeGroups(w.data as Float32Array, k, bits, group, q);
  return {
    q: { dtype: "i8", shape: [n, k], data: q },
    scale: { dtype: "f32", shape: [n, k / group], data: scale },
  };
}

/** A pattern of op names with `*` for any text, as a regular expression. */
export function globRe(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split("*")
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
}
