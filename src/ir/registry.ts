/**
 * The op registry: one entry per op with its operand and attribute schema, shape rule, cost facts and
 * reference implementation. Adding an op means adding one entry (see src/ir/ops/).
 */
import { z } from "zod";
import { zodMessage } from "./attrs.js";
import type { DimEnv } from "./dim.js";
import { isGlobal, type Attrs, type Op } from "./module.js";
import type { Tensor } from "./tensor.js";
import type { TensorType } from "./types.js";

/** Thrown by shape rules; the caller adds the op name and the source location. */
export class ShapeError extends Error {}

export interface Cost {
  /** Arithmetic operations (a multiply-add counts 2). */
  readonly flops: number;
  /** Bytes moved to and from memory when the op runs alone (operands read, results written). */
  readonly bytes: number;
}

export interface EvalCtx {
  /** Result types with every dim concrete (computed by the shape rule). */
  readonly outTypes: readonly TensorType[];
}

/** What passes and targets ask of an op, declared with it instead of re-derived from opcodes. */
export interface OpTraits {
  /** A linear layer `x W^T`: the operand indices of its input rows and its weight [out, in]. */
  readonly gemm?: { readonly input: number; readonly weight: number };
  /** A table lookup (embedding): the operand indices of its integer ids and of its table [V, D]. */
  readonly lookup?: { readonly ids: number; readonly table: number };
}

export interface OpDef<A extends Attrs = Attrs> {
  readonly name: string;
  readonly summary: string;
  /** Operand names, for messages; a trailing `?` marks optional ones, `...` variadic. */
  readonly operands: readonly string[];
  readonly traits?: OpTraits;
  readonly attrs: z.ZodType<A>;
  /** Index of an operand that names a state: it is read, and replaced by result 0. */
  readonly stateOperand?: number;
  /** Shape rule. Throws ShapeError with a message naming what is inconsistent. */
  infer(ins: readonly TensorType[], attrs: A): TensorType[];
  /** Cost facts for a concrete workload (dims evaluated under env). */
  cost(ins: readonly TensorType[], outs: readonly TensorType[], attrs: A, env: DimEnv): Cost;
  /** Reference implementation in fp32 (float tensors are f32, integer tensors i32). */
  eval(ins: readonly Tensor[], attrs: A, ctx: EvalCtx): Tensor[];
}

const REGISTRY = new Map<string, OpDef>();

export function registerOp<A extends Attrs>(def: OpDef<A>): OpDef<A> {
  if (REGISTRY.has(def.name)) throw new Error(`op ${def.name} registered twice`);
  REGISTRY.set(def.name, def as unknown as OpDef);
  return def;
}

export function getOp(name: string): OpDef | undefined {
  return REGISTRY.get(name);
}

/**
 * The weight GEMM an op is: its `gemm` trait when the weight operand is a constant of the module
 * (what PIM devices keep resident), else undefined (another op, or a weight computed at run time).
 */
export function weightGemm(op: Op): OpTraits["gemm"] {
  const g = REGISTRY.get(op.opcode)?.traits?.gemm;
  const w = g && op.operands[g.weight];
  return w !== undefined && isGlobal(w) ? g : undefined;
}

export function allOps(): OpDef[] {
  return [...REGISTRY.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

export function operandArity(def: OpDef): { min: number; max: number } {
  let min = 0;
  let max = 0;
  for (const o of def.operands) {
    if (o.endsWith("...")) return { min, max: Infinity };
    max++;
    if (!o.endsWith("?")) min = max;
  }
  return { min, max };
}

/**
 * Annotations any op may carry, added by passes and checked here rather than by each op's schema:
 * where it runs (`device`; with dynamic placement it runs on `alt_device` when B x S exceeds
 * `switch_above`) and what a horizontal fusion made of it (`fused`).
 */
export const zAnnotations = z.strictObject({
  device: z.string().optional(),
  alt_device: z.string().optional(),
  switch_above: z.number().nonnegative().optional(),
  fused: z.string().optional(),
});
export const ANNOTATIONS: ReadonlySet<string> = new Set(Object.keys(zAnnotations.shape));

/**
 * A target's annotation: `<target>.<key>` (e.g. `upmem.tiling`), a string or number its lowering
 * passes record on an op for the stages after them and for people reading the IR.
 */
export const isTargetAnnotation = (key: string): boolean => /^[a-z][a-z0-9-]*\.[a-z_][a-z0-9_]*$/.test(key);

function splitAnnotations(attrs: Attrs): [Attrs, Attrs, Attrs] {
  let own: Record<string, Attrs[string]> | undefined;
  let ann: Record<string, Attrs[string]> | undefined;
  let tgt: Record<string, Attrs[string]> | undefined;
  for (const [k, v] of Object.entries(attrs))
    if (ANNOTATIONS.has(k)) (ann ??= {})[k] = v;
    else if (isTargetAnnotation(k)) (tgt ??= {})[k] = v;
    else (own ??= {})[k] = v;
  return [ann || tgt ? (own ?? {}) : attrs, ann ?? {}, tgt ?? {}];
}

/**
 * Checks operand count and attributes of an op, then runs its shape rule. Returns result types or an
 * error message (without location).
 */
export function checkOp(
  def: OpDef,
  ins: readonly TensorType[],
  attrs: Attrs,
): { ok: true; types: TensorType[]; attrs: Attrs } | { ok: false; message: string } {
  const { min, max } = operandArity(def);
  if (ins.length < min || ins.length > max) {
    const want = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
    return {
      ok: false,
      message: `${def.name} takes ${want} operand${max === 1 ? "" : "s"} (${def.operands.join(", ")}), got ${ins.length}`,
    };
  }
  const [own, ann, tgt] = splitAnnotations(attrs);
  const parsed = def.attrs.safeParse(own);
  if (!parsed.success) return { ok: false, message: `${def.name}: ${zodMessage(parsed.error)}` };
  const annotations = zAnnotations.safeParse(ann);
  if (!annotations.success) return { ok: false, message: `${def.name}: ${zodMessage(annotations.error)}` };
  for (const [k, v] of Object.entries(tgt))
    if (typeof v !== "string" && typeof v !== "number")
      return { ok: false, message: `${def.name}: ${k}: a target annotation is a string or a number` };
  try {
    return { ok: true, types: def.infer(ins, parsed.data), attrs: { ...parsed.data, ...ann, ...tgt } };
  } catch (e) {
    if (e instanceof ShapeError) return { ok: false, message: `${def.name}: ${e.message}` };
    throw e;
  }
}
