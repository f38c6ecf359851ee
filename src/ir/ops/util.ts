/** Helpers shared by op definitions. */
import { z } from "zod";
import { dtypeBytes, isFloat, type DType } from "../dtype.js";
import { dimEval, dimEq, dimToString, type Dim, type DimEnv } from "../dim.js";
import { ShapeError, type Cost } from "../registry.js";
import { f32, shapeSize, type Tensor } from "../tensor.js";
import { shapeToString, type TensorType } from "../types.js";

export const noAttrs = z.strictObject({});

export function need(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new ShapeError(msg);
}

export const show = (t: TensorType): string => shapeToString(t.shape);
export const showDim = dimToString;

export function needFloat(t: TensorType, what: string): void {
  need(isFloat(t.dtype), `${what} must be a float tensor, got ${t.dtype}`);
}

export function needRank(t: TensorType, rank: number, what: string): void {
  need(t.shape.length === rank, `${what} must have rank ${rank}, got ${show(t)}`);
}

export function needDimEq(a: Dim, b: Dim, msg: string): void {
  need(dimEq(a, b), `${msg} (${showDim(a)} vs ${showDim(b)})`);
}

export function lastDim(t: TensorType): Dim {
  need(t.shape.length > 0, `expected a tensor of rank >= 1, got a scalar`);
  return t.shape[t.shape.length - 1]!;
}

export function nelem(t: TensorType, env: DimEnv): number {
  let n = 1;
  for (const d of t.shape) n *= dimEval(d, env);
  return n;
}

export function nbytes(t: TensorType, env: DimEnv): number {
  return nelem(t, env) * dtypeBytes(t.dtype);
}

export function sumBytes(ts: readonly TensorType[], env: DimEnv): number {
  let s = 0;
  for (const t of ts) s += nbytes(t, env);
  return s;
}

/** Cost of an op that reads its operands, writes its results and does `flopsPerOut` per result element. */
export function streamingCost(
  ins: readonly TensorType[],
  outs: readonly TensorType[],
  env: DimEnv,
  flopsPerOut: number,
): Cost {
  return { flops: flopsPerOut * nelem(outs[0]!, env), bytes: sumBytes(ins, env) + sumBytes(outs, env) };
}

/** Concrete shape of a result type computed by the shape rule (all dims are numbers at eval time). */
export function concreteShape(t: TensorType): number[] {
  return t.shape.map((d) => {
    if (typeof d !== "number") throw new Error(`internal: symbolic dim ${dimToString(d)} at run time`);
    return d;
  });
}

export function outF32(t: TensorType): Tensor {
  return f32(concreteShape(t));
}

export function fdata(t: Tensor): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error(`internal: expected f32 data, got ${t.dtype}`);
  return t.data;
}

export function idata(t: Tensor): Int32Array {
  if (!(t.data instanceof Int32Array)) throw new Error(`internal: expected i32 data, got ${t.dtype}`);
  return t.data;
}

export function size(t: Tensor): number {
  return shapeSize(t.shape);
}

export function resultDType(a: DType, b: DType): DType {
  return a === b ? a : isFloat(a) ? a : b;
}
