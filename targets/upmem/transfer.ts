/**
 * Host <-> DPU transfer times from the system's bandwidth tables. A parallel transfer moves the same
 * number of bytes to (or from) each DPU of a range; the ranks of the range transfer at once, each at
 * the table's aggregate bandwidth for its DPU count, together bounded by the host's memory system.
 * The emulator and the Tile-Selector use these same functions, so transfers cost the same in both.
 */
import { hostBandwidth, hostSeconds, type HostDtype } from "../cpu/index.js";
import type { DpuRange } from "./program.js";
import type { UpmemSystem } from "./system.js";

type Table = readonly (readonly [number, number])[];

/** Aggregate bytes/s of `n` DPUs in one rank: log-linear interpolation of the table, clamped at its ends. */
export function tableBandwidth(table: Table, n: number): number {
  const first = table[0]!;
  if (n <= first[0]) return (first[1] * n) / first[0];
  for (let i = 1; i < table.length; i++) {
    const [n1, b1] = table[i]!;
    const [n0, b0] = table[i - 1]!;
    if (n <= n1) {
      const f = Math.log(n / n0) / Math.log(n1 / n0);
      return Math.exp(Math.log(b0) + f * (Math.log(b1) - Math.log(b0)));
    }
  }
  return table[table.length - 1]![1];
}

/** DPUs of `range` in each rank it touches. */
export function dpusPerRank(sys: UpmemSystem, range: DpuRange): number[] {
  const out: number[] = [];
  const end = range.first + range.count;
  for (let d = range.first; d < end;) {
    const rankEnd = (Math.floor(d / sys.dpus_per_rank) + 1) * sys.dpus_per_rank;
    const n = Math.min(end, rankEnd) - d;
    out.push(n);
    d += n;
  }
  return out;
}

function parallel(sys: UpmemSystem, table: Table, range: DpuRange, bytesPerDpu: number): number {
  if (bytesPerDpu <= 0 || range.count === 0) return 0;
  // The ranks touched hold the DPUs of the range in up to three sizes: a partial first rank, full
  // ranks, a partial last one (as dpusPerRank lists them); each size is timed once.
  const per = sys.dpus_per_rank;
  const end = range.first + range.count;
  const head = Math.min(end, (Math.floor(range.first / per) + 1) * per) - range.first;
  const tail = end - Math.max(range.first + head, Math.floor(end / per) * per);
  const full = range.count - head - tail >= per ? per : 0;
  const time = (n: number): number => (n > 0 ? (bytesPerDpu * n) / tableBandwidth(table, n) : 0);
  const slowest = Math.max(time(head), time(full), time(tail));
  const total = (bytesPerDpu * range.count) / sys.transfer.host_limit;
  return sys.transfer.latency + Math.max(slowest, total);
}

/** Seconds of a parallel host -> DPU push of `bytesPerDpu` to each DPU of `range`. */
export const pushTime = (sys: UpmemSystem, range: DpuRange, bytesPerDpu: number): number =>
  parallel(sys, sys.transfer.to_dpu, range, bytesPerDpu);

/**
 * Seconds of a parallel DPU -> host pull, plus, when `reduceGroups` > 1 DPUs hold partial sums of
 * the same block, the host adding them up (streaming every partial through the host's memory).
 */
export function pullTime(sys: UpmemSystem, range: DpuRange, bytesPerDpu: number, reduceGroups = 1): number {
  const t = parallel(sys, sys.transfer.from_dpu, range, bytesPerDpu);
  if (reduceGroups <= 1) return t;
  return t + (2 * bytesPerDpu * range.count) / hostBandwidth(sys.host);
}

/** Seconds to broadcast `bytes` to every DPU of `range` (each rank at the broadcast bandwidth). */
export function broadcastTime(sys: UpmemSystem, range: DpuRange, bytes: number): number {
  if (bytes <= 0 || range.count === 0) return 0;
  const ranks = dpusPerRank(sys, range).length;
  return (
    sys.transfer.latency + Math.max(bytes / sys.transfer.broadcast, (bytes * ranks) / sys.transfer.host_limit)
  );
}

/**
 * Host seconds of an op (the same model the emulator times host commands with, targets/cpu):
 * products (`dtype` given) at the host's rate for that data type, transposes at its transpose
 * bandwidth.
 */
export function hostTime(
  sys: UpmemSystem,
  flops: number,
  bytes: number,
  opcode = "",
  dtype?: HostDtype,
): number {
  return hostSeconds(sys.host, { opcode, flops, bytes, ...(dtype ? { dtype } : {}) });
}
