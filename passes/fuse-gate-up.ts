/**
 * Gate/up fusion: the two projections of a gated MLP (SwiGLU: act(gate x) * up x), linears reading the
 * same input whose results meet in one multiplication, become one GEMM and a split.
 */
import type { Op } from "../src/ir/module.js";
import { fuseLinears, linearGroups } from "../src/pipeline/fusion.js";
import type { Pass } from "../src/pipeline/pass.js";

const UNARY = new Set(["silu", "gelu", "relu", "sigmoid", "tanh"]);

/** The `mul` a value reaches directly or through one activation. */
function gatingMul(users: ReadonlyMap<string, Op[]>, name: string): Op | undefined {
  for (const u of users.get(name) ?? []) {
    if (u.opcode === "mul") return u;
    if (UNARY.has(u.opcode)) {
      const m = (users.get(u.results[0]!.name) ?? []).find((x) => x.opcode === "mul");
      if (m) return m;
    }
  }
  return undefined;
}

export const fuseGateUp: Pass = {
  name: "fuse-gate-up",
  optLevel: 1,
  summary:
    "fuse the gate and up projections of each gated MLP into one GEMM (weights concatenated at build time)",
  run(m, ctx) {
    return fuseLinears(m, ctx, "fuse-gate-up", "gate_up", (f, users) =>
      linearGroups(f).flatMap((g) => {
        // Pairs of the group that meet in the same multiplication.
        const byMul = new Map<Op, Op[]>();
        for (const op of g) {
          const mul = gatingMul(users, op.results[0]!.name);
          if (mul) byMul.set(mul, [...(byMul.get(mul) ?? []), op]);
        }
        return [...byMul.values()].filter((pair) => pair.length === 2);
      }),
    );
  },
};
