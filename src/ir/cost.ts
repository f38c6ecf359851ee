/** Cost facts of a function under a workload: per-op flops and bytes from the op registry. */
import type { DimEnv } from "./dim.js";
import { concretizeAttrs } from "./attrs.js";
import { refName, type Func, type Module, type Op } from "./module.js";
import { getOp, type Cost } from "./registry.js";
import type { TensorType } from "./types.js";

export interface OpCost {
  readonly op: Op;
  readonly flops: number;
  readonly bytes: number;
}

export function ssaTypeMap(f: Func): Map<string, TensorType> {
  const types = new Map<string, TensorType>();
  for (const p of f.params) types.set(p.name, p.type);
  for (const op of f.body) for (const r of op.results) types.set(r.name, r.type);
  return types;
}

/** Flops and bytes of one op with operand types `ins`. */
export function opCost(op: Op, ins: readonly TensorType[], env: DimEnv): Cost {
  const def = getOp(op.opcode);
  if (!def) throw new Error(`internal: unknown op ${op.opcode}`);
  return def.cost(
    ins,
    op.results.map((r) => r.type),
    concretizeAttrs(op.attrs, env) as never,
    env,
  );
}

/** Resolves operand references of a function's ops to their types. */
export function operandTyper(m: Module, f: Func): (ref: string) => TensorType {
  const types = ssaTypeMap(f);
  const globals = new Map<string, TensorType>([...m.consts, ...m.states].map((g) => [g.name, g.type]));
  return (ref) => {
    const t = ref.startsWith("%") ? types.get(refName(ref)) : globals.get(refName(ref));
    if (!t) throw new Error(`internal: no type for ${ref}`);
    return t;
  };
}

export function funcCosts(m: Module, f: Func, env: DimEnv): OpCost[] {
  const typeOf = operandTyper(m, f);
  return f.body.map((op) => ({ op, ...opCost(op, op.operands.map(typeOf), env) }));
}
