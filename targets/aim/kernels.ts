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
import { FENCE, type AimCommand, type AimStep } from "./device.js";
import { banksOf, laneCount, rowElements, type AimCmd, type AimSystem } from "./standard.js";

/**
 * AiM instructions (the AiM simulator's ISR, src/base/request.h): register transfers (WR_GB,
 * WR_BIAS, RD_MAC, RD_AF), all-bank operations over a row (MAC_ABK, EWMUL, AF over the activation
 * table's reserved row, WR_ABK), single-bank ones (MAC_SBK, COPY_BKGB, COPY_GBBK, RD_SBK, WR_SBK),
 * and SYNC, a barrier. EWADD runs outside the DRAM (no command).
 */
export type AimInstr =
  | { readonly op: "WR_GB"; readonly opsize: number }
  | { readonly op: "WR_BIAS" }
  | { readonly op: "RD_MAC" }
  | { readonly op: "RD_AF" }
  | { readonly op: "MAC_ABK"; readonly opsize: number; readonly row: number }
  | { readonly op: "EWMUL"; readonly opsize: number; readonly row: number }
  /** `table`: the activation function (CFR 2, 0-7), whose table fills a reserved row. */
  | { readonly op: "AF"; readonly table?: number }
  | { readonly op: "WR_ABK"; readonly row: number }
  | { readonly op: "MAC_SBK"; readonly opsize: number; readonly bank: number; readonly row: number }
  | { readonly op: "COPY_BKGB"; readonly opsize: number; readonly bank: number; readonly row: number }
  | { readonly op: "COPY_GBBK"; readonly opsize: number; readonly bank: number; readonly row: number }
  | { readonly op: "RD_SBK"; readonly bank: number; readonly row: number }
  | { readonly op: "WR_SBK"; readonly bank: number; readonly row: number }
  | { readonly op: "EWADD" }
  | { readonly op: "SYNC" };

export type AimOp = AimInstr["op"];

/** Instructions that run in register read/write mode (a TMOD switches to and from it). */
const REGISTER: ReadonlySet<AimOp> = new Set(["WR_GB", "WR_BIAS", "RD_MAC", "RD_AF"]);
/** Instructions the host's DMA waits for on every channel before sending the next. */
export const BLOCKING: ReadonlySet<AimOp> = new Set(["RD_MAC", "RD_AF", "SYNC"]);
/** The command each instruction issues per column (after the rows it needs open). */
const COMMAND: Readonly<Record<Exclude<AimOp, "SYNC" | "EWADD">, AimCmd>> = {
  WR_GB: "WRGB",
  WR_BIAS: "WRMAC16",
  RD_MAC: "RDMAC16",
  RD_AF: "RDAF16",
  MAC_ABK: "MAC16",
  EWMUL: "EWMUL16",
  AF: "AF16",
  WR_ABK: "WRA16",
  MAC_SBK: "MAC",
  COPY_BKGB: "RDCP",
  COPY_GBBK: "WRCP",
  RD_SBK: "RD",
  WR_SBK: "WR",
};
/** The row an AF reads function f's table from (the simulator's (1 << 29) + f): no data row. */
const afRow = (f = 0): number => -1 - f;

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

/**
 * A channel's instructions as its controller expands them: the register-mode switches, the rows
 * each needs open (all banks: PREA if another row is open, ACT16 if a bank is closed; one bank: PRE
 * and ACT), the commands themselves, and a fence after each blocking instruction.
 */
export class Expander {
  /** In register read/write mode (after a TMOD into it). */
  registerMode = false;
  /** The row open in each bank (undefined: closed). */
  readonly rows: (number | undefined)[];

  constructor(banks: number) {
    this.rows = new Array<number | undefined>(banks).fill(undefined);
  }

  private *allRows(row: number): Generator<AimStep> {
    if (this.rows.some((r) => r !== undefined && r !== row)) {
      yield { cmd: "PREA" };
      this.rows.fill(undefined);
    }
    if (this.rows.some((r) => r === undefined)) {
      yield { cmd: "ACT16" };
      this.rows.fill(row);
    }
  }

  private *oneRow(bank: number, row: number): Generator<AimStep> {
    const open = this.rows[bank];
    if (open === row) return;
    if (open !== undefined) yield { cmd: "PRE", bank };
    yield { cmd: "ACT", bank };
    this.rows[bank] = row;
  }

  *expand(i: AimInstr): Generator<AimStep> {
    if (i.op === "SYNC") {
      yield FENCE;
      return;
    }
    if (i.op === "EWADD") return;
    const reg = REGISTER.has(i.op);
    const body = [...this.commands(i)];
    if (reg !== this.registerMode) {
      // The switch waits for the rules of the command it lets through.
      const ahead = body[0];
      yield ahead && !("fence" in ahead) ? { cmd: "TMOD", ahead } : { cmd: "TMOD" };
      this.registerMode = reg;
    }
    yield* body;
  }

  /** The commands of one instruction, its rows opened first, a fence after a blocking one. */
  private *commands(i: Exclude<AimInstr, { op: "SYNC" | "EWADD" }>): Generator<AimStep> {
    if ("bank" in i) yield* this.oneRow(i.bank, i.row);
    else if (i.op === "AF") yield* this.allRows(afRow(i.table));
    else if ("row" in i) yield* this.allRows(i.row);
    const c: AimCommand = { cmd: COMMAND[i.op], ...("bank" in i ? { bank: i.bank } : {}) };
    // One command per column of `opsize`.
    yield "opsize" in i && i.opsize > 1 ? { ...c, repeat: i.opsize } : c;
    // Written with auto-precharge: every bank closes.
    if (i.op === "WR_ABK") this.rows.fill(undefined);
    if (BLOCKING.has(i.op)) yield FENCE;
  }
}

/** The commands of one channel's instructions (the controller's expansion), fences included. */
export function* expand(instrs: Iterable<AimInstr>, banks = 16): Generator<AimStep> {
  const e = new Expander(banks);
  for (const i of instrs) yield* e.expand(i);
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
