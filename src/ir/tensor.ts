/** Concrete tensors: a dtype, a shape of numbers and a flat row-major typed array. */
import { dtypeBytes, type DType } from "./dtype.js";

export type TypedData = Float32Array | Int32Array | Uint16Array | Int8Array | Uint8Array | BigInt64Array;

export interface Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TypedData;
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function allocData(dtype: DType, n: number): TypedData {
  switch (dtype) {
    case "f32":
      return new Float32Array(n);
    case "f16":
    case "bf16":
      return new Uint16Array(n);
    case "i64":
      return new BigInt64Array(n);
    case "i32":
      return new Int32Array(n);
    case "i8":
      return new Int8Array(n);
    case "u8":
    case "bool":
      return new Uint8Array(n);
  }
}

export function zeros(dtype: DType, shape: readonly number[]): Tensor {
  return { dtype, shape: [...shape], data: allocData(dtype, shapeSize(shape)) };
}

export function f32(shape: readonly number[], data?: Float32Array): Tensor {
  const n = shapeSize(shape);
  if (data && data.length !== n) throw new Error(`f32 tensor: ${data.length} values for shape [${shape}]`);
  return { dtype: "f32", shape: [...shape], data: data ?? new Float32Array(n) };
}

export function i32(shape: readonly number[], data?: Int32Array | readonly number[]): Tensor {
  const n = shapeSize(shape);
  const d = data instanceof Int32Array ? data : Int32Array.from(data ?? new Array<number>(n).fill(0));
  if (d.length !== n) throw new Error(`i32 tensor: ${d.length} values for shape [${shape}]`);
  return { dtype: "i32", shape: [...shape], data: d };
}

export function tensorBytes(t: Tensor): number {
  return shapeSize(t.shape) * dtypeBytes(t.dtype);
}

/** Row-major strides of a shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}
