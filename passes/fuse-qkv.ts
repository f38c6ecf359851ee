/**
 * QKV fusion: the query, key and value projections of an attention layer (linears reading the same
 * input, each feeding attention) become one GEMM and a split; GQA shapes and biases are handled.
 * A projection that is already fused (GPT-2's c_attn: one linear split three ways into attention)
 * is recognised and annotated `fused = "qkv"`.
 */
import { produce } from "immer";
import type { Module, Op } from "../src/ir/module.js";
import { fuseLinears, linearGroups, reachesAttention } from "../src/pipeline/fusion.js";
import type { Pass } from "../src/pipeline/pass.js";
import { usersOf } from "../src/pipeline/rewrite.js";

/** Annotates single linears whose result is split into parts that all reach attention. */
function recogniseFused(m: Module, count: () => void): Module {
  return produce(m, (d) => {
    m.funcs.forEach((f, fi) => {
      const users = usersOf(f);
      f.body.forEach((op, i) => {
        if (op.opcode !== "linear" || op.attrs.fused !== undefined) return;
        const us = users.get(op.results[0]!.name) ?? [];
        const split = us.length === 1 && us[0]!.opcode === "split" ? us[0]! : undefined;
        if (
          split &&
          split.results.length >= 2 &&
          split.results.every((r) => reachesAttention(users, r.name))
        ) {
          d.funcs[fi]!.body[i]!.attrs = { ...op.attrs, fused: "qkv" } as never;
          count();
        }
      });
    });
  });
}

export const fuseQkv: Pass = {
  name: "fuse-qkv",
  optLevel: 1,
  summary:
    "fuse the Q, K and V projections of each attention layer into one GEMM (weights concatenated at build time)",
  run(m, ctx) {
    const fused = fuseLinears(m, ctx, "fuse-qkv", "qkv", (f, users) =>
      linearGroups(f).map((g: Op[]) => g.filter((op) => reachesAttention(users, op.results[0]!.name))),
    );
    return recogniseFused(fused, () => ctx.count("fuse-qkv", "already fused, recognised"));
  },
};
