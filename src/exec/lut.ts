/**
 * LUT-GEMV (SAIL, PIM-DL, T-MAC): low-bit weights times INT8 activations without multiplications.
 * The activations of a row are cut into vectors of `width` inputs; for each vector a table holds its
 * dot product with every possible pattern of `width` weights of `bits` bits (2^(bits x width)
 * entries); then every output's dot product over a weight group is the sum of the table entries its
 * weight patterns index. Integer throughout: the result equals the plain integer dot products
 * exactly (`groupDots`), which the tests check.
 */
import { lowbitRange, type GroupDots } from "../ir/ops/quant.js";

/** The table of one activation vector: entry p = sum_i x[i] x w_i(p), w_i(p) the i-th weight of pattern p. */
export function buildTable(x: Int8Array, at: number, width: number, bits: number, table: Int32Array): void {
  const [lo] = lowbitRange(bits);
  const levels = 1 << bits;
  const entries = levels ** width;
  for (let p = 0; p < entries; p++) {
    let acc = 0;
    let rest = p;
    for (let i = 0; i < width; i++) {
      acc += x[at + i]! * ((rest % levels) + lo);
      rest = Math.floor(rest / levels);
    }
    table[p] = acc;
  }
}

/** The pattern index of `width` weights from `at` (weight i in digit i, offset by the range's low end). */
export function patternOf(w: Int8Array, at: number, width: number, bits: number): number {
  const [lo] = lowbitRange(bits);
  const levels = 1 << bits;
  let p = 0;
  for (let i = width - 1; i >= 0; i--) p = p * levels + (w[at + i]! - lo);
  return p;
}

/**
 * GroupDots by lookup tables: one table per activation vector of a row, built once and reused by
 * every output (and, in a batch, only shared weights' patterns are looked up again).
 */
export function lutGroupDots(bits: number, width: number): GroupDots {
  return (xq, wq, k, group, dots) => {
    if (group % width !== 0)
      throw new Error(`internal: LUT vectors of ${width} do not divide groups of ${group}`);
    const n = wq.length / k;
    const rows = xq.length / k;
    const groups = k / group;
    const vectors = k / width;
    const entries = (1 << bits) ** width;
    const tables = new Int32Array(vectors * entries);
    // Patterns depend on the weights only: computed once for every row.
    const patterns = new Int32Array(n * vectors);
    for (let o = 0; o < n; o++)
      for (let v = 0; v < vectors; v++)
        patterns[o * vectors + v] = patternOf(wq, o * k + v * width, width, bits);
    for (let r = 0; r < rows; r++) {
      for (let v = 0; v < vectors; v++)
        buildTable(xq, r * k + v * width, width, bits, tables.subarray(v * entries, (v + 1) * entries));
      for (let o = 0; o < n; o++)
        for (let g = 0; g < groups; g++) {
          let acc = 0;
          for (let v = (g * group) / width; v < ((g + 1) * group) / width; v++)
            acc += tables[v * entries + patterns[o * vectors + v]!]!;
          dots[(r * n + o) * groups + g] = acc;
        }
    }
  };
}
