/**
 * The reference interpreter: runs a module's functions on the CPU in fp32, keeping the KV cache
 * states between calls. It is the functional oracle for every target.
 */
import { UserError } from "../errors.js";
import { concretizeAttrs } from "../ir/attrs.js";
import { dimEval, dimSymbols, type DimEnv } from "../ir/dim.js";
import { isFloat } from "../ir/dtype.js";
import { findFunc, refName, type Attrs, type Module, type Op } from "../ir/module.js";
import { layoutToString, parseLayout, physicalShape, toLogical } from "../ir/layout.js";
import { getOp, ShapeError } from "../ir/registry.js";
import { f32, zeros, type Tensor } from "../ir/tensor.js";
import { typeToString, type TensorType } from "../ir/types.js";
import type { WeightStore } from "../ir/weights.js";
import "../ir/ops/index.js";

/** Converts any tensor to the interpreter's runtime form: floats as f32, i8 as is, other integers as i32. */
export function toRuntime(t: Tensor): Tensor {
  if (t.dtype === "f32" || t.dtype === "i32" || t.dtype === "i8") return t;
  if (isFloat(t.dtype)) throw new Error(`internal: ${t.dtype} weights must be converted when loaded`);
  const d = t.data;
  const out = new Int32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = Number(d[i]!);
  return { dtype: "i32", shape: t.shape, data: out };
}

const runtimeType = (t: Tensor): TensorType => ({ dtype: t.dtype, shape: t.shape });

/**
 * Lets a target run some ops itself (on its device model): the op's results, or undefined to have
 * the interpreter evaluate it. `idx` is the op's index in its function.
 */
export type OpHook = (
  op: Op,
  ins: readonly Tensor[],
  env: DimEnv,
  func: string,
  idx: number,
) => Tensor[] | undefined;

export class Interpreter {
  private readonly states = new Map<string, Tensor>();
  private readonly consts = new Map<string, Tensor>();

  constructor(
    readonly module: Module,
    private readonly weights: WeightStore,
    private readonly hook?: OpHook,
  ) {}

  /** Empties the KV cache. */
  reset(): void {
    this.states.clear();
  }

  /** Tokens currently held in the cache (the stored length `T` of the first state). */
  get cachedTokens(): number {
    const first = this.module.states[0];
    const t = first && this.states.get(first.name);
    if (!first || !t) return 0;
    const axis = first.type.shape.findIndex((d) => typeof d !== "number" && dimSymbols(d).includes("T"));
    return t.shape[axis] ?? 0;
  }

  /** The current value of a state; an empty one (T = 0, other dims from env) before the first append. */
  private state(name: string, env: DimEnv): Tensor {
    let t = this.states.get(name);
    if (!t) {
      const decl = this.module.states.find((s) => s.name === name)!;
      const shape = decl.type.shape.map((d) => dimEval(d, { ...env, T: 0 }));
      t = zeros(isFloat(decl.type.dtype) ? "f32" : "i32", shape);
    }
    return t;
  }

  /** A constant's logical value (the store holds it in the const's physical layout). */
  private constant(name: string): Tensor {
    let t = this.consts.get(name);
    if (!t) {
      const decl = this.module.consts.find((c) => c.name === name);
      if (!this.weights.has(name))
        throw new UserError(`constant @${name} has no data (the model is shape-only)`);
      t = toRuntime(this.weights.get(name));
      if (decl) {
        const logical = decl.type.shape as number[];
        const layout = parseLayout(typeof decl.attrs.layout === "string" ? decl.attrs.layout : "row");
        if (!layout)
          throw new UserError(`constant @${name} has an unknown layout ${String(decl.attrs.layout)}`);
        if (t.shape.join() !== physicalShape(layout, logical).join())
          throw new UserError(
            `constant @${name} has data of shape [${t.shape}] but is declared ${typeToString(decl.type)} in layout ${layoutToString(layout)}`,
          );
        t = toLogical(t, layout, logical);
      }
      this.consts.set(name, t);
    }
    return t;
  }

  /** Runs function `name` (e.g. "prefill") on `inputs`; the dims B, S, P are taken from them. */
  run(name: string, inputs: readonly Tensor[], extraEnv: DimEnv = {}): Tensor[] {
    const fn = findFunc(this.module, name);
    if (!fn) throw new UserError(`module has no function @${name}`);
    if (inputs.length !== fn.params.length)
      throw new UserError(`@${name} takes ${fn.params.length} inputs, got ${inputs.length}`);
    const env: Record<string, number> = { P: this.cachedTokens, ...extraEnv };
    const vals = new Map<string, Tensor>();
    fn.params.forEach((p, i) => {
      const t = toRuntime(inputs[i]!);
      if (t.shape.length !== p.type.shape.length)
        throw new UserError(`input %${p.name} must have rank ${p.type.shape.length}, got [${t.shape}]`);
      p.type.shape.forEach((d, k) => {
        if (typeof d === "number") {
          if (d !== t.shape[k])
            throw new UserError(`input %${p.name} axis ${k} must be ${d}, got ${t.shape[k]}`);
        } else if (d.terms.length === 1 && d.terms[0]!.syms.length === 1 && d.terms[0]!.coef === 1) {
          env[d.terms[0]!.syms[0]!] = t.shape[k]!;
        }
      });
      vals.set(p.name, t);
    });
    const states = new Set(this.module.states.map((s) => s.name));
    fn.body.forEach((op, idx) => {
      const def = getOp(op.opcode);
      if (!def) throw new UserError(`unknown op '${op.opcode}'`);
      const ins = op.operands.map((ref) => {
        const n = refName(ref);
        if (ref.startsWith("%")) {
          const v = vals.get(n);
          if (!v) throw new Error(`internal: %${n} used before definition`);
          return v;
        }
        return states.has(n) ? this.state(n, env) : this.constant(n);
      });
      let outs: Tensor[];
      try {
        outs = this.hook?.(op, ins, env, name, idx) ?? evalOp(op.opcode, op.attrs, ins, env);
      } catch (e) {
        if (e instanceof UserError)
          throw new UserError(
            `@${name} op ${idx} (%${op.results[0]?.name ?? ""} = ${op.opcode}): ${e.message}`,
          );
        throw e;
      }
      if (def.stateOperand !== undefined) this.states.set(refName(op.operands[def.stateOperand]!), outs[0]!);
      op.results.forEach((r, i) => vals.set(r.name, outs[i]!));
    });
    return fn.results.map((r) => vals.get(refName(r))!);
  }
}

/**
 * Runs one op of the registry on runtime tensors (f32/i32) with attributes concretized under `env`.
 * Inputs that do not fit (token ids, cache contents, shapes) raise UserErrors.
 */
export function evalOp(opcode: string, attrs: Attrs, ins: readonly Tensor[], env: DimEnv): Tensor[] {
  const def = getOp(opcode);
  if (!def) throw new UserError(`unknown op '${opcode}'`);
  const a = concretizeAttrs(attrs, env);
  try {
    return def.eval(ins, a as never, { outTypes: def.infer(ins.map(runtimeType), a as never) });
  } catch (e) {
    if (e instanceof RangeError || e instanceof ShapeError) throw new UserError(e.message);
    throw e;
  }
}

/** Token ids [B][S] as an i32 tensor. */
export function tokenTensor(ids: readonly (readonly number[])[]): Tensor {
  const b = ids.length;
  const s = ids[0]?.length ?? 0;
  if (ids.some((r) => r.length !== s))
    throw new UserError("all sequences in a batch must have the same length");
  return { dtype: "i32", shape: [b, s], data: Int32Array.from(ids.flat()) };
}

/** Index of the largest value of each row of the last position: logits [B, S, V] -> B token ids. */
export function greedyNext(logits: Tensor): number[] {
  const [b, s, v] = logits.shape as [number, number, number];
  const d = logits.data as Float32Array;
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    const off = (i * s + s - 1) * v;
    let best = 0;
    for (let j = 1; j < v; j++) if (d[off + j]! > d[off + best]!) best = j;
    out.push(best);
  }
  return out;
}

export { f32 };
