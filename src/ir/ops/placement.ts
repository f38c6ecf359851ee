/**
 * Ops that move data without changing values: `relayout` converts a tensor to another physical
 * layout at run time (inserted by the layout pass only where a build-time conversion is not
 * possible), `transfer` moves an activation between devices (inserted by the partition pass).
 */
import { z } from "zod";
import { registerOp } from "../registry.js";
import { need, sumBytes } from "./util.js";
import { parseLayout } from "../layout.js";

registerOp({
  name: "relayout",
  summary: "the same values in another physical layout (row, col, tiled:RxC)",
  operands: ["x"],
  attrs: z.strictObject({ layout: z.string() }),
  infer([x], { layout }) {
    need(parseLayout(layout), `unknown layout "${layout}" (row, col or tiled:RxC)`);
    return [x!];
  },
  cost: (ins, outs, _a, env) => ({ flops: 0, bytes: sumBytes(ins, env) + sumBytes(outs, env) }),
  eval: ([x]) => [x!],
});

registerOp({
  name: "transfer",
  summary: "move a value from one device to another",
  operands: ["x"],
  attrs: z.strictObject({ from: z.string(), to: z.string() }),
  infer([x], { from, to }) {
    need(from !== to, `transfer from ${from} to itself`);
    return [x!];
  },
  cost: (ins, _o, _a, env) => ({ flops: 0, bytes: sumBytes(ins, env) }),
  eval: ([x]) => [x!],
});
