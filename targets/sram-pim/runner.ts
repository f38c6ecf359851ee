/**
 * Functional execution on the SRAM-PIM system: the reference interpreter, with every low-bit A8
 * linear layer placed on the arrays computed by LUT-GEMV (src/exec/lut.ts) with the table width the
 * timing model chooses for its shape. The LUT's group sums are exact integers, so the logits are
 * bit-identical to the interpreter's plain integer dot products (`--target cpu`).
 */
import { Interpreter } from "../../src/exec/interpreter.js";
import { lutGroupDots } from "../../src/exec/lut.js";
import type { DimEnv } from "../../src/ir/dim.js";
import type { Module, Op } from "../../src/ir/module.js";
import { lowbitIntGemm } from "../../src/ir/ops/quant.js";
import { fdata } from "../../src/ir/ops/util.js";
import { f32, type Tensor } from "../../src/ir/tensor.js";
import type { WeightStore } from "../../src/ir/weights.js";
import { deviceFor } from "../../src/ir/placement.js";
import type { FunctionalRunner } from "../index.js";
import { lutGemv, PIM } from "./model.js";
import type { SramPimSystem } from "./system.js";

/** What ran on the arrays: LUT-GEMV calls and the width each layer used (by its result name). */
export interface LutStats {
  calls: number;
  readonly widths: Map<string, number>;
}

export class SramPimRunner implements FunctionalRunner {
  private readonly interp: Interpreter;
  readonly stats: LutStats = { calls: 0, widths: new Map() };

  constructor(
    module: Module,
    weights: WeightStore,
    private readonly sys: SramPimSystem,
  ) {
    this.interp = new Interpreter(module, weights, (op, ins, env) => this.hook(op, ins, env));
  }

  reset(): void {
    this.interp.reset();
  }

  run(func: string, inputs: readonly Tensor[]): Tensor[] {
    return this.interp.run(func, inputs);
  }

  /** A low-bit A8 layer placed on the arrays, by LUT; anything else: the interpreter's own eval. */
  private hook(op: Op, ins: readonly Tensor[], env: DimEnv): Tensor[] | undefined {
    if (op.opcode !== "lowbit_linear" || op.attrs.act_bits !== 8 || deviceFor(op, env) !== PIM)
      return undefined;
    const [x, w, s, b] = ins;
    const [n, k] = w!.shape as [number, number];
    const bits = op.attrs.bits as number;
    const group = op.attrs.group as number;
    const lut = lutGemv(this.sys, { m: x!.data.length / k, n, k, bits, group, bias: b !== undefined });
    if (!lut) return undefined; // placed by a cost model that could run it: not reached
    const wq = w!.data instanceof Int8Array ? w!.data : Int8Array.from(w!.data as Int32Array);
    const out = f32([...x!.shape.slice(0, -1), n]);
    lowbitIntGemm(
      fdata(x!),
      wq,
      fdata(s!),
      k,
      group,
      b ? fdata(b) : undefined,
      out.data as Float32Array,
      lutGroupDots(bits, lut.width),
    );
    this.stats.calls++;
    this.stats.widths.set(op.results[0]?.name ?? op.opcode, lut.width);
    return [out];
  }
}
