/**
 * Structural and type checks of a module: names, SSA def-before-use, references to consts and
 * states, and every op against its registry entry (operand count, attributes, shape rule).
 */
import { fmtLoc, UserError } from "../errors.js";
import type { Func, Module, Op } from "./module.js";
import { fmtGlobal, fmtRef, fmtSsa } from "./printer.js";
import { layoutProblem, parseLayout } from "./layout.js";
import { checkOp, getOp } from "./registry.js";
import { typeEq, typeToString, type TensorType } from "./types.js";
import "./ops/index.js";

/** Every problem found, one line each; empty when the module is valid. */
export function verifyModule(m: Module): string[] {
  const problems: string[] = [];
  const globals = new Map<string, { kind: "const" | "state"; type: TensorType }>();
  for (const [kind, decls] of [
    ["const", m.consts],
    ["state", m.states],
  ] as const)
    for (const d of decls) {
      const layout = d.attrs.layout;
      if (layout !== undefined) {
        const l = typeof layout === "string" ? parseLayout(layout) : undefined;
        const shape = d.type.shape;
        const problem = !l
          ? `unknown layout ${JSON.stringify(layout)} (row, col or tiled:RxC)`
          : shape.every((x) => typeof x === "number")
            ? layoutProblem(l, shape as number[])
            : "a constant with a layout needs a concrete shape";
        if (problem) problems.push(`${kind} ${fmtGlobal(d.name)}: ${problem}`);
      }
      const prev = globals.get(d.name);
      if (prev) problems.push(`${kind} ${fmtGlobal(d.name)}: name already used by a ${prev.kind}`);
      else globals.set(d.name, { kind, type: d.type });
    }
  const funcNames = new Set<string>();
  for (const f of m.funcs) {
    if (funcNames.has(f.name)) problems.push(`func ${fmtGlobal(f.name)}: defined twice`);
    funcNames.add(f.name);
    verifyFunc(f, globals, problems);
  }
  return problems;
}

type Globals = ReadonlyMap<string, { kind: "const" | "state"; type: TensorType }>;

function opLabel(f: Func, op: Op, k: number): string {
  const res = op.results.map((r) => fmtSsa(r.name)).join(", ");
  const where = `func ${fmtGlobal(f.name)}, op ${k} (${res === "" ? "" : `${res} = `}${op.opcode})`;
  return op.loc ? `${fmtLoc(op.loc)}: ${where}` : where;
}

function verifyFunc(f: Func, globals: Globals, problems: string[]): void {
  const fn = `func ${fmtGlobal(f.name)}`;
  /** SSA name -> its type and where it is defined (-1 = parameter). */
  const defs = new Map<string, { type: TensorType; at: number }>();
  const definedBy = (at: number): string => (at < 0 ? "a parameter" : `op ${at}`);
  for (const p of f.params) {
    if (defs.has(p.name)) problems.push(`${fn}: parameter ${fmtSsa(p.name)} is declared twice`);
    else defs.set(p.name, { type: p.type, at: -1 });
  }
  // Where each name is (first) defined, to tell "used before its definition" from "not defined".
  const laterDef = new Map<string, number>();
  f.body.forEach((op, k) => op.results.forEach((r) => laterDef.has(r.name) || laterDef.set(r.name, k)));

  f.body.forEach((op, k) => {
    const bad = (msg: string): void => void problems.push(`${opLabel(f, op, k)}: ${msg}`);
    const def = getOp(op.opcode);
    if (!def) bad(`unknown op '${op.opcode}'`);
    const ins: TensorType[] = [];
    let resolved = true;
    op.operands.forEach((ref, i) => {
      const name = ref.slice(1);
      if (ref.startsWith("%")) {
        const d = defs.get(name);
        if (d) ins.push(d.type);
        else {
          resolved = false;
          const later = laterDef.get(name);
          bad(
            later === undefined
              ? `operand ${i} ${fmtRef(ref)} is not defined`
              : `operand ${i} ${fmtRef(ref)} is used before its definition (op ${later})`,
          );
        }
        if (def?.stateOperand === i)
          bad(`operand ${i} of ${op.opcode} must be a state, got the value ${fmtRef(ref)}`);
      } else if (ref.startsWith("@")) {
        const g = globals.get(name);
        if (!g) {
          resolved = false;
          bad(`operand ${i} ${fmtRef(ref)} names no const or state`);
        } else {
          ins.push(g.type);
          if (def && g.kind === "const" && def.stateOperand === i)
            bad(`operand ${i} of ${op.opcode} must be a state, but ${fmtRef(ref)} is a const`);
          if (def && g.kind === "state" && def.stateOperand !== i)
            bad(
              def.stateOperand === undefined
                ? `operand ${i} ${fmtRef(ref)} is a state, but ${op.opcode} takes no state`
                : `operand ${i} ${fmtRef(ref)} is a state, but ${op.opcode} takes its state as operand ${def.stateOperand}`,
            );
        }
      } else {
        resolved = false;
        bad(`operand ${i} ${JSON.stringify(ref)} is neither a %value nor a @global`);
      }
    });
    if (def && resolved) {
      const res = checkOp(def, ins, op.attrs);
      if (!res.ok) bad(res.message);
      else if (res.types.length !== op.results.length)
        bad(`the shape rule gives ${res.types.length} result(s), the op has ${op.results.length}`);
      else
        res.types.forEach((t, i) => {
          const have = op.results[i]!.type;
          if (!typeEq(t, have))
            bad(`result ${i} has type ${typeToString(have)} but the shape rule gives ${typeToString(t)}`);
        });
    }
    for (const r of op.results) {
      const prev = defs.get(r.name);
      if (prev) bad(`${fmtSsa(r.name)} is defined twice (first by ${definedBy(prev.at)})`);
      else defs.set(r.name, { type: r.type, at: k });
    }
  });

  if (f.results.length === 0) problems.push(`${fn}: returns nothing`);
  for (const ref of f.results) {
    if (!ref.startsWith("%")) problems.push(`${fn}: return operand ${fmtRef(ref)} is not a %value`);
    else if (!defs.has(ref.slice(1))) problems.push(`${fn}: return operand ${fmtRef(ref)} is not defined`);
  }
}

/** Throws a UserError with the first problem (and how many more there are). */
export function assertValid(m: Module): void {
  const problems = verifyModule(m);
  if (problems.length === 0) return;
  const more = problems.length - 1;
  throw new UserError(problems[0]! + (more > 0 ? ` (and ${more} more problem${more === 1 ? "" : "s"})` : ""));
}
