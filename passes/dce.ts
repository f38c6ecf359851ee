/** Dead-code elimination: ops whose results nobody uses (and that update no state), then unused constants. */
import { produce } from "immer";
import type { Func, Module } from "../src/ir/module.js";
import type { Pass } from "../src/pipeline/pass.js";
import { hasEffect, mapFuncs } from "../src/pipeline/rewrite.js";

function dceFunc(f: Func, removed: { n: number }): Func {
  const live = new Set(f.results);
  const keep: boolean[] = new Array<boolean>(f.body.length).fill(false);
  for (let i = f.body.length - 1; i >= 0; i--) {
    const op = f.body[i]!;
    if (!hasEffect(op) && !op.results.some((r) => live.has(`%${r.name}`))) continue;
    keep[i] = true;
    for (const r of op.operands) live.add(r);
  }
  const dead = keep.filter((k) => !k).length;
  if (dead === 0) return f;
  removed.n += dead;
  return { ...f, body: f.body.filter((_, i) => keep[i]) };
}

export const dce: Pass = {
  name: "dce",
  optLevel: 1,
  summary: "remove ops whose results are unused and constants nothing references",
  run(m, ctx) {
    const removed = { n: 0 };
    const out = mapFuncs(m, (f) => dceFunc(f, removed));
    const used = new Set(out.funcs.flatMap((f) => f.body.flatMap((op) => op.operands)));
    const deadConsts = out.consts.filter((c) => !used.has(`@${c.name}`)).length;
    if (removed.n > 0) ctx.count("dce", "ops removed", removed.n);
    if (deadConsts === 0) return out;
    ctx.count("dce", "constants removed", deadConsts);
    return produce(out, (d): Module => ({ ...d, consts: d.consts.filter((c) => used.has(`@${c.name}`)) }));
  },
};
