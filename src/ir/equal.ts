/** Structural comparison helpers: modules are equal when their data is, ignoring source locations. */
import { isSymDim } from "./attrs.js";
import type { Dim, SymDim } from "./dim.js";
import type { Attr, Attrs, Module, Value } from "./module.js";
import type { TensorType } from "./types.js";

const cloneSym = (d: SymDim): SymDim => ({
  terms: d.terms.map((t) => ({ coef: t.coef, syms: [...t.syms] })),
});
const cloneDim = (d: Dim): Dim => (typeof d === "number" ? d : cloneSym(d));
const cloneType = (t: TensorType): TensorType => ({ dtype: t.dtype, shape: t.shape.map(cloneDim) });
const cloneValue = (v: Value): Value => ({ name: v.name, type: cloneType(v.type) });

function cloneAttr(a: Attr): Attr {
  if (isSymDim(a)) return cloneSym(a);
  if (typeof a === "object") return a.map(cloneAttr);
  return a;
}

function cloneAttrs(attrs: Attrs): Attrs {
  return Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, cloneAttr(v)]));
}

/** A deep copy of the module without the ops' `loc` fields. */
export function stripLocs(m: Module): Module {
  const decl = <D extends { name: string; type: TensorType; attrs: Attrs }>(d: D) => ({
    name: d.name,
    type: cloneType(d.type),
    attrs: cloneAttrs(d.attrs),
  });
  return {
    name: m.name,
    attrs: cloneAttrs(m.attrs),
    consts: m.consts.map(decl),
    states: m.states.map(decl),
    funcs: m.funcs.map((f) => ({
      name: f.name,
      params: f.params.map(cloneValue),
      body: f.body.map((op) => ({
        opcode: op.opcode,
        operands: [...op.operands],
        results: op.results.map(cloneValue),
        attrs: cloneAttrs(op.attrs),
      })),
      results: [...f.results],
      attrs: cloneAttrs(f.attrs),
    })),
  };
}
