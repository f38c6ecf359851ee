/**
 * AiM kernels as command streams of one channel (every channel with data runs the same stream).
 *
 * GEMV y = W x, W [N, K] of 16-bit values, as CENT lays it out and orders it (the CENT artifact,
 * github.com/Morteza1814/CENT, file cent_simulation/TransformerBlock.py, "reuse-GB" order): the
 * outputs are dealt to the banks of every channel, ceil(N / (channels x 16)) per bank; output v's K
 * inputs fill ceil(K / 1024) rows of its bank (row v x chunks + r, 1024 values per 2 KB row). For
 * each K chunk r the input slice goes into the global buffer (WR_GB), then in groups of up to 32
 * outputs: the accumulators seeded (WR_BIAS, zero), a MAC_ABK over row (v, r) for each, and the 16
 * accumulators read out (RD_MAC); the host adds the chunks' partial sums.
 *
 * Instructions expand to commands as the AiM controller does: a switch between register read/write
 * instructions (WR_GB, WR_BIAS, RD_MAC) and bank ones (MAC_ABK) takes a TMOD; a MAC_ABK over a row
 * not open in every bank takes a PREA (another row open) and an ACT16, then `opsize` MAC16s.
 *
 * The conventional read of the same weights (the host streaming W through the channel's pins):
 * every row read burst by burst, bank after bank, the next rows activated while others are read.
 */
import type { AimCommand } from "./device.js";
import { banksOf, laneCount, rowElements, type AimSystem } from "./standard.js";

export type AimInstr =
  | { readonly op: "WR_GB"; readonly opsize: number }
  | { readonly op: "WR_BIAS" }
  | { readonly op: "MAC_ABK"; readonly opsize: number; readonly row: number }
  | { readonly op: "RD_MAC" };

/** Outputs whose MAC_ABKs share a global-buffer load and a register-mode switch (CENT's reuse size). */
export const REUSE = 32;

export interface GemvPlan {
  /** Outputs per bank, K chunks (rows per output), and channels holding data. */
  readonly perBank: number;
  readonly chunks: number;
  readonly channels: number;
  readonly instrs: readonly AimInstr[];
}

/** How a GEMV of W [n, k] spreads: outputs per bank, rows per output, channels with data. */
export function gemvShape(sys: AimSystem, n: number, k: number): Omit<GemvPlan, "instrs"> {
  const banks = banksOf(sys);
  return {
    perBank: Math.ceil(n / (sys.channels * banks)),
    chunks: Math.ceil(k / rowElements(sys)),
    channels: Math.min(sys.channels, Math.ceil(n / banks)),
  };
}

/** Whether W [n, k] fits the banks' rows (checked before its instructions are built). */
export const gemvFits = (sys: AimSystem, n: number, k: number): boolean => {
  const s = gemvShape(sys, n, k);
  return s.perBank * s.chunks <= sys.rows;
};

/** The instructions of a GEMV of W [n, k] on one channel (W must fit: gemvFits). */
export function gemvPlan(sys: AimSystem, n: number, k: number): GemvPlan {
  const { perBank, chunks, channels } = gemvShape(sys, n, k);
  const per = rowElements(sys);
  const lanes = laneCount(sys);
  const instrs: AimInstr[] = [];
  for (let r = 0; r < chunks; r++) {
    const opsize = Math.ceil(Math.min(per, k - r * per) / lanes);
    instrs.push({ op: "WR_GB", opsize });
    for (let v0 = 0; v0 < perBank; v0 += REUSE) {
      const group = Math.min(REUSE, perBank - v0);
      for (let v = 0; v < group; v++) instrs.push({ op: "WR_BIAS" });
      for (let v = v0; v < v0 + group; v++) instrs.push({ op: "MAC_ABK", opsize, row: v * chunks + r });
      for (let v = 0; v < group; v++) instrs.push({ op: "RD_MAC" });
    }
  }
  return { perBank, chunks, channels, instrs };
}

/** The commands of a channel's instructions (the controller's expansion). */
export function* expand(instrs: Iterable<AimInstr>): Generator<AimCommand> {
  let registerMode = false;
  let open: number | undefined;
  for (const i of instrs) {
    const reg = i.op !== "MAC_ABK";
    if (reg !== registerMode) {
      yield { cmd: "TMOD" };
      registerMode = reg;
    }
    switch (i.op) {
      case "WR_GB":
        for (let c = 0; c < i.opsize; c++) yield { cmd: "WRGB" };
        break;
      case "WR_BIAS":
        yield { cmd: "WRMAC16" };
        break;
      case "RD_MAC":
        yield { cmd: "RDMAC16" };
        break;
      case "MAC_ABK":
        if (open !== i.row) {
          if (open !== undefined) yield { cmd: "PREA" };
          yield { cmd: "ACT16" };
          open = i.row;
        }
        for (let c = 0; c < i.opsize; c++) yield { cmd: "MAC16" };
        break;
    }
  }
}

/** The conventional read of `bytes` from one channel: its rows burst by burst, banks in turn. */
export function* streamRead(sys: AimSystem, bytes: number): Generator<AimCommand> {
  const banks = banksOf(sys);
  const bursts = Math.ceil(bytes / sys.burst_bytes);
  const rows = Math.ceil(bursts / sys.columns);
  const bankOf = (i: number): number => i % banks;
  for (let i = 0; i < Math.min(banks, rows); i++) yield { cmd: "ACT", bank: bankOf(i) };
  for (let i = 0; i < rows; i++) {
    const n = Math.min(sys.columns, bursts - i * sys.columns);
    for (let c = 0; c < n; c++) yield { cmd: "RD", bank: bankOf(i) };
    yield { cmd: "PRE", bank: bankOf(i) };
    // The row after the previous bank's, activated while this bank's row is read.
    if (i >= 1 && i - 1 + banks < rows) yield { cmd: "ACT", bank: bankOf(i - 1) };
  }
  if (rows >= 1 && rows - 1 + banks < rows) yield { cmd: "ACT", bank: bankOf(rows - 1) };
}
