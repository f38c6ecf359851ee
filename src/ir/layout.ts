/**
 * Physical layouts of constants. A const's type is its logical shape; its `layout` attribute says how
 * the data in the weight store is arranged: `row` (row-major, the default), `col` (column-major: the
 * transposed matrix stored row-major, e.g. GPT-2's Conv1D weights or UPMEM's column-major B), or
 * `tiled:RxC` (R x C tiles, tiles in row-major order, each tile row-major). Layouts apply to 2-D
 * constants.
 */
import { permute } from "./ops/shape.js";
import type { Tensor } from "./tensor.js";
import type { Attrs, Op } from "./module.js";
import type { WeightStore } from "./weights.js";
import { getOp } from "./registry.js";

export type Layout = { kind: "row" } | { kind: "col" } | { kind: "tiled"; rows: number; cols: number };

/** What a target says: the layout it wants for operand `operand` of `op`, if it cares. */
export type WeightLayoutFn = (op: Op, operand: number) => string | undefined;

/**
 * Weights row-major: a GEMM's weight [out, in] (each output's K contiguous, as dot products and the
 * PIM devices' per-row blocks read it) and an embedding's table (each gathered row contiguous).
 * What every bundled target asks of the `layout` pass (GPT-2's Conv1D weights come back to rows).
 */
export const ROW_MAJOR_WEIGHTS: LayoutOptions = {
  weightLayout: (op, i) => {
    const t = getOp(op.opcode)?.traits;
    return t?.gemm?.weight === i || t?.lookup?.table === i ? "row" : undefined;
  },
};

/** The layout rules a target gives the `layout` pass (its SystemModel's passOptions.layout). */
export interface LayoutOptions {
  weightLayout?: WeightLayoutFn;
  /** Duplicate constants wanted in several layouts (default) instead of converting at run time. */
  duplicate?: boolean;
}

export function parseLayout(s: string): Layout | undefined {
  if (s === "row" || s === "col") return { kind: s };
  const m = /^tiled:(\d+)x(\d+)$/.exec(s);
  return m && Number(m[1]) > 0 && Number(m[2]) > 0
    ? { kind: "tiled", rows: Number(m[1]), cols: Number(m[2]) }
    : undefined;
}

export function layoutToString(l: Layout): string {
  return l.kind === "tiled" ? `tiled:${l.rows}x${l.cols}` : l.kind;
}

/** Why `layout` cannot hold a logical [n, k] matrix, or undefined when it can. */
export function layoutProblem(l: Layout, shape: readonly number[]): string | undefined {
  if (l.kind === "row") return undefined;
  if (shape.length !== 2) return `layout ${layoutToString(l)} needs a 2-D constant, got rank ${shape.length}`;
  if (l.kind === "tiled" && (shape[0]! % l.rows !== 0 || shape[1]! % l.cols !== 0))
    return `tiles ${l.rows}x${l.cols} do not divide [${shape.join(", ")}]`;
  return undefined;
}

/** Shape of the stored data of a logical [n, k] matrix. */
export function physicalShape(l: Layout, shape: readonly number[]): number[] {
  const [n, k] = shape as [number, number];
  switch (l.kind) {
    case "row":
      return [...shape];
    case "col":
      return [k, n];
    case "tiled":
      return [n / l.rows, k / l.cols, l.rows, l.cols];
  }
}

/** Logical tensor -> stored data in layout `l`. */
export function toPhysical(t: Tensor, l: Layout): Tensor {
  const [n, k] = t.shape as [number, number];
  switch (l.kind) {
    case "row":
      return t;
    case "col":
      return permute(t, [1, 0], [k, n]);
    case "tiled":
      return permute(
        { ...t, shape: [n / l.rows, l.rows, k / l.cols, l.cols] },
        [0, 2, 1, 3],
        physicalShape(l, t.shape),
      );
  }
}

/** Stored data in layout `l` -> the logical [n, k] tensor. */
export function toLogical(t: Tensor, l: Layout, shape: readonly number[]): Tensor {
  const [n, k] = shape as [number, number];
  switch (l.kind) {
    case "row":
      return t;
    case "col":
      return permute(t, [1, 0], [n, k]);
    case "tiled": {
      const [tr, tc] = [n / l.rows, k / l.cols];
      const blocks = permute(t, [0, 2, 1, 3], [tr, l.rows, tc, l.cols]);
      return { ...blocks, shape: [n, k] };
    }
  }
}

/** The layout of a constant from its attributes (row when absent). */
export function layoutOf(attrs: Attrs): Layout {
  return parseLayout(typeof attrs.layout === "string" ? attrs.layout : "row") ?? { kind: "row" };
}

/** A thunk for the logical value of a constant as stored now in `w` (later redefinitions do not matter). */
export function logicalSource(
  w: WeightStore,
  name: string,
  l: Layout,
  shape: readonly number[],
): () => Tensor {
  const src = w.source(name);
  return () => toLogical(src(), l, shape);
}
