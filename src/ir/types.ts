import { dtypeBytes, type DType } from "./dtype.js";
import { dimEq, dimMul, dimProd, dimToString, dimsEq, type Dim } from "./dim.js";

/** The static type of a value: element type and (possibly symbolic) shape. Printed `f32[B, S, 64]`. */
export interface TensorType {
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}

export function tensor(dtype: DType, shape: readonly Dim[]): TensorType {
  return { dtype, shape };
}

export function typeToString(t: TensorType): string {
  return `${t.dtype}[${t.shape.map(dimToString).join(", ")}]`;
}

export function typeEq(a: TensorType, b: TensorType): boolean {
  return a.dtype === b.dtype && dimsEq(a.shape, b.shape);
}

export function numel(t: TensorType): Dim {
  return dimProd(t.shape);
}

export function typeBytes(t: TensorType): Dim {
  return dimMul(numel(t), dtypeBytes(t.dtype));
}

export function shapeToString(shape: readonly Dim[]): string {
  return `[${shape.map(dimToString).join(", ")}]`;
}

/** Normalises a possibly negative axis; undefined when out of range. */
export function normAxis(axis: number, rank: number): number | undefined {
  const a = axis < 0 ? axis + rank : axis;
  return Number.isInteger(a) && a >= 0 && a < rank ? a : undefined;
}

/** Numpy-style broadcast of two shapes; undefined when incompatible. */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[]): Dim[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (dimEq(x, y) || y === 1) out.push(x);
    else if (x === 1) out.push(y);
    else return undefined;
  }
  return out;
}
