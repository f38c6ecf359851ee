/**
 * Building a decoder module: a graph function written once is instantiated as the `prefill` function
 * (past = 0: the KV cache starts empty) and the `decode` function (past = P tokens already cached).
 * Both take token ids i32[B, S] and return logits [B, S, vocab]. Family builders and custom graphs
 * from the description language are both DecoderGraphs.
 */
import { dimAdd, sym, type Dim } from "../../ir/dim.js";
import type { DType } from "../../ir/dtype.js";
import { ModuleBuilder, type FuncBuilder, type Val } from "../../ir/builder.js";
import type { Loc } from "../../errors.js";
import type { Attrs, Module } from "../../ir/module.js";
import { tensor } from "../../ir/types.js";

export type Phase = "prefill" | "decode";

export interface DecoderCtx {
  readonly f: FuncBuilder;
  readonly phase: Phase;
  /** Batch, tokens in this call, tokens already in the cache (0 in prefill). */
  readonly B: Dim;
  readonly S: Dim;
  readonly past: Dim;
  /** Token ids, i32[B, S]. */
  readonly tokens: Val;
  /** Declares a weight of the model's dtype (or `dtype`) and returns it. */
  weight(name: string, shape: readonly Dim[], opts?: { dtype?: DType; loc?: Loc }): Val;
  /** Position ids past+offset ... past+offset+S-1, i32[S] (one op per offset per function). */
  positions(offset?: number, loc?: Loc): Val;
  /**
   * Appends x[B, H, S, D] to the cache state `kv.<slot>` and returns the whole cache [B, H, past+S, D].
   */
  cache(slot: string, x: Val, loc?: Loc): Val;
}

export type DecoderGraph = (ctx: DecoderCtx) => Val;

export const PHASES: readonly Phase[] = ["prefill", "decode"];

export function buildDecoderModule(name: string, attrs: Attrs, dtype: DType, graph: DecoderGraph): Module {
  const mb = new ModuleBuilder(name, attrs);
  for (const phase of PHASES) {
    const f = mb.func(phase, { phase });
    const B = sym("B");
    const S = sym("S");
    const past: Dim = phase === "prefill" ? 0 : sym("P");
    const tokens = f.param("tokens", tensor("i32", [B, S]));
    const positions = new Map<number, Val>();
    const ctx: DecoderCtx = {
      f,
      phase,
      B,
      S,
      past,
      tokens,
      weight: (wname, shape, opts = {}) =>
        mb.constant(wname, tensor(opts.dtype ?? dtype, shape), {}, opts.loc),
      positions(offset = 0, loc) {
        let p = positions.get(offset);
        if (!p) {
          const name = offset === 0 ? "pos" : `pos${offset}`;
          const start = dimAdd(past, offset);
          p = f.op1("positions", [], { start, len: S }, { name, ...(loc ? { loc } : {}) });
          positions.set(offset, p);
        }
        return p;
      },
      cache(slot, x, loc) {
        const shape = x.type.shape.map((d, i) => (i === 2 ? sym("T") : d));
        const st = mb.state(`kv.${slot}`, tensor(x.type.dtype, shape));
        return f.op1(
          "kv_append",
          [st, x],
          { axis: 2, past },
          { name: `kv.${slot}`, ...(loc ? { loc } : {}) },
        );
      },
    };
    f.ret(graph(ctx));
  }
  return mb.build();
}
