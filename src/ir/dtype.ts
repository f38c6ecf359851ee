/** Element types of the IR and their storage sizes. */
export const DTYPES = ["f32", "f16", "bf16", "i64", "i32", "i8", "u8", "bool"] as const;
export type DType = (typeof DTYPES)[number];

const BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i64: 8, i32: 4, i8: 1, u8: 1, bool: 1 };

export function dtypeBytes(dt: DType): number {
  return BYTES[dt];
}

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

export function isFloat(dt: DType): boolean {
  return dt === "f32" || dt === "f16" || dt === "bf16";
}
