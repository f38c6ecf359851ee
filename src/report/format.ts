/** Number formatting for reports. */

const SI = ["", "k", "M", "G", "T", "P", "E"];

/** 1234567 -> "1.23 M" (SI prefixes, 3 significant digits). */
export function si(x: number, unit = ""): string {
  if (x === 0) return `0 ${unit}`.trim();
  let i = 0;
  let v = Math.abs(x);
  while (v >= 999.5 && i < SI.length - 1) {
    v /= 1000;
    i++;
  }
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${x < 0 ? "-" : ""}${v.toFixed(digits)} ${SI[i]}${unit}`.trim();
}

/** Bytes with binary prefixes: 1536 -> "1.50 KiB". */
export function bytes(x: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = x;
  while (v >= 1023.5 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

/** Arithmetic intensity, flops per byte. */
export function opb(flops: number, bytesMoved: number): string {
  if (bytesMoved === 0) return flops === 0 ? "-" : "inf";
  const r = flops / bytesMoved;
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

/** Thousands separators: 109440 -> "109,440". */
export function int(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

/** Seconds as "1.234 s", "12.345 ms" or "98.76 us". */
export const ms = (s: number): string =>
  s >= 1 ? `${s.toFixed(3)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(3)} ms` : `${(s * 1e6).toFixed(2)} us`;

/** The name ops of identical layers share: `L*.q` for every layer's q, `kv.*.k` for their caches. */
export const layerGroupName = (op: {
  readonly opcode: string;
  readonly results: readonly { readonly name: string }[];
}): string => (op.results[0]?.name ?? op.opcode).replace(/^(L|kv\.)\d+\./, "$1*.");
