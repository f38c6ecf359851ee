/**
 * Element-wise work on the AiM units as CENT maps it (the CENT artifact, github.com/Morteza1814/CENT,
 * cent_simulation/Llama.py `trace_only` and the store/load helpers of TransformerBlock.py; docs/aim.md):
 * the host writes a vector into the banks with normal writes, the units multiply it element by
 * element (EWMUL: banks 0 and 1 of every bank group into bank 2), copy between banks through the
 * global buffer (COPY_BKGB, COPY_GBBK) or sum its squares (MAC_ABK), and the host reads the result
 * back with normal reads; the scalar work (a reduction, a reciprocal square root, exponentials) runs
 * on the near-memory units (standard.ts pnmCycles).
 *
 * The programs are instruction traces (trace.ts TraceStep) of one block: `channels` channels
 * holding its vectors, the `copies` blocks sharing a device (CENT's pipeline: each block's normal
 * writes and reads are sent for every block, the AiM instructions go to every channel at once).
 * Two of CENT's choices are not copied (docs/aim.md says what they cost): its RoPE EWMULs run over
 * `dim / 16` columns where its writes filled `2 x dim / (banks / 4) / 16` of each bank, and it reads
 * RoPE's result back with writes; pimc's programs multiply the columns written and read with reads.
 */
import type { AimInstr } from "./kernels.js";
import { banksOf, laneCount, rowElements, type AimSystem } from "./standard.js";
import type { TraceStep } from "./trace.js";

/** Where a block's vectors live: its channels, and how many blocks share the device (their copies). */
export interface VectorBlock {
  readonly sys: AimSystem;
  readonly channels: number;
  readonly copies: number;
}

/**
 * Rows the programs use, counted from the top of a bank (weights and KV caches fill the bank from
 * row 0): the input vector and its copy, the normalised result, the rotated vectors, the FFN's
 * product, and the attention scores (from SCORES down).
 */
const ROW = { x: 1, copy: 2, norm: 3, rope: 4, ffn: 5, scores: 16 } as const;

class Program {
  readonly steps: TraceStep[] = [];
  private readonly all: readonly number[];
  readonly banks: number;
  readonly lanes: number;

  constructor(readonly b: VectorBlock) {
    this.all = [...Array(b.channels * b.copies).keys()];
    this.banks = banksOf(b.sys);
    this.lanes = laneCount(b.sys);
  }

  /** The block's banks. */
  get total(): number {
    return this.b.channels * this.banks;
  }

  row(fromTop: number): number {
    return this.b.sys.rows - fromTop;
  }

  aim(instr: AimInstr): void {
    this.steps.push({ instr, channels: this.all, line: 0 });
  }

  /** A normal write or read of one burst to the block's bank `index` (channel-major), in every copy. */
  mem(op: "WR_SBK" | "RD_SBK", index: number, row: number): void {
    const ch = Math.floor(index / this.banks);
    const bank = index % this.banks;
    for (let tb = 0; tb < this.b.copies; tb++)
      this.steps.push({ instr: { op, bank, row }, channels: [ch + this.b.channels * tb], line: 0 });
  }

  /** `size` values into each of `used` banks `index(i)` (burst by burst, bank after bank). */
  transfer(
    op: "WR_SBK" | "RD_SBK",
    used: number,
    index: (i: number) => number,
    row: number,
    size: number,
  ): void {
    for (let c = 0; c < Math.ceil(size / this.lanes); c++)
      for (let i = 0; i < used; i++) this.mem(op, index(i), row);
  }

  /** Columns of `size` values. */
  cols(size: number): number {
    return Math.ceil(size / this.lanes);
  }

  sync(): void {
    this.steps.push({ instr: { op: "SYNC" }, channels: this.all, line: 0 });
  }

  /** `len` values of a vector into each of `used` banks of bank group `bg` (EWMUL's operand or result). */
  group(op: "WR_SBK" | "RD_SBK", bg: number, used: number, row: number, len: number): void {
    this.transfer(op, used, (i) => i * 4 + bg, row, len);
  }

  /** Both EWMUL operands written, multiplied into bank 2 of every bank group. */
  multiplyWritten(used: number, row: number, len: number): void {
    for (const bg of [0, 1]) this.group("WR_SBK", bg, used, row, len);
    this.aim({ op: "EWMUL", opsize: this.cols(len), row });
  }

  /** The product (bank 2 of each group) copied into bank 1 of its group, through the global buffer. */
  copyProduct(len: number, from: number, to: number): void {
    for (let bank = 2; bank < this.banks; bank += 4) {
      this.aim({ op: "COPY_BKGB", opsize: this.cols(len), bank, row: from });
      this.aim({ op: "COPY_GBBK", opsize: this.cols(len), bank: bank - 1, row: to });
    }
  }
}

/**
 * A vector of `n` values dealt to one bank of every bank group (EWMUL's operands): `len` values in
 * each of `used` banks (bank group `bg` of bank 4i + bg).
 */
function ewLayout(p: Program, n: number): { len: number; used: number } {
  const len = Math.ceil(n / (p.total / 4));
  return { len, used: Math.ceil(n / len) };
}

/**
 * Whether a vector of `n` values fits the programs' layout: each bank's share (of one bank per bank
 * group) within a row. RoPE's programs hold 2n values (the rotation beside the values).
 */
export const vectorFits = (b: VectorBlock, n: number): boolean =>
  Math.ceil(n / ((b.channels * banksOf(b.sys)) / 4)) <= rowElements(b.sys);

/**
 * RMSNorm of one row of `d` values (Llama.py L613-649): the row written to two banks of each pair
 * and squared and summed by a MAC_ABK per bank (the near-memory units add the partial sums and take
 * the reciprocal square root), then written as EWMUL's operands with the scale broadcast, multiplied,
 * copied beside the weight through the global buffer, multiplied by the weight, and read back.
 */
export function rmsNormProgram(b: VectorBlock, d: number): TraceStep[] {
  const p = new Program(b);
  const nbLen = Math.ceil(d / (p.total / 2));
  const nbUsed = Math.ceil(d / nbLen);
  const x = p.row(ROW.x);
  for (const bg of [0, 1]) p.transfer("WR_SBK", nbUsed, (i) => i * 2 + bg, x, nbLen);
  p.aim({ op: "WR_BIAS" });
  p.aim({ op: "MAC_ABK", opsize: p.cols(nbLen), row: x });
  p.aim({ op: "RD_MAC" });
  const { len, used } = ewLayout(p, d);
  const copy = p.row(ROW.copy);
  const norm = p.row(ROW.norm);
  p.multiplyWritten(used, copy, len);
  p.copyProduct(len, copy, norm);
  p.aim({ op: "EWMUL", opsize: p.cols(len), row: norm });
  p.group("RD_SBK", 2, used, norm, len);
  p.sync();
  return p.steps;
}

/**
 * Rotary embedding of one row of `n` values (q or k: Llama.py L659-671): the values and their
 * rotation written beside the cos/sin tables (2n values), multiplied, and read back (the
 * near-memory cores add the halves).
 */
export function ropeProgram(b: VectorBlock, n: number): TraceStep[] {
  const p = new Program(b);
  const { len, used } = ewLayout(p, n);
  const row = p.row(ROW.rope);
  p.group("WR_SBK", 1, used, row, 2 * len);
  p.aim({ op: "EWMUL", opsize: p.cols(2 * len), row });
  p.group("RD_SBK", 2, used, row, 2 * len);
  return p.steps;
}

/**
 * SiLU's product and the gate (Llama.py L826-840, one row of `f` values): x1 and its sigmoid (the
 * AF of the gate's GEMV) written and multiplied, the product copied beside up's output (written),
 * multiplied again, read back. `silu`: the sigmoid (an AF and its read for each of the
 * `afPerBank` outputs a bank of the gate's GEMV holds: CENT's W1 GEMV with activation,
 * TransformerBlock.py L737-781) and the first multiply with its copies; `mul`: the second.
 */
export function swigluProgram(b: VectorBlock, f: number, part: "silu" | "mul", afPerBank = 0): TraceStep[] {
  const p = new Program(b);
  const { len, used } = ewLayout(p, f);
  const row = p.row(ROW.ffn);
  if (part === "silu") {
    for (let v = 0; v < afPerBank; v++) {
      p.aim({ op: "AF" });
      p.aim({ op: "RD_AF" });
    }
    p.multiplyWritten(used, row, len);
    p.copyProduct(len, row, row);
    return p.steps;
  }
  p.group("WR_SBK", 0, used, row, len);
  p.aim({ op: "EWMUL", opsize: p.cols(len), row });
  p.group("RD_SBK", 2, used, row, len);
  p.sync();
  return p.steps;
}

/**
 * A product of two vectors of `n` values (EWMUL): both written, multiplied, the product read back.
 */
export function ewmulProgram(b: VectorBlock, n: number): TraceStep[] {
  const p = new Program(b);
  const { len, used } = ewLayout(p, n);
  const row = p.row(ROW.ffn);
  p.multiplyWritten(used, row, len);
  p.group("RD_SBK", 2, used, row, len);
  p.sync();
  return p.steps;
}

/** Whether `heads` heads' scores of `t` tokens fit the rows below the programs' vectors. */
export const softmaxFits = (b: VectorBlock, heads: number, t: number): boolean =>
  Math.ceil(heads / (b.channels * 4)) * Math.ceil(t / rowElements(b.sys)) <= b.sys.rows - ROW.scores;

/**
 * The softmax's element-wise passes over `heads` heads' scores of `t` tokens (Llama.py L773-810):
 * each head's scores in one bank per bank group (rows of 1024 values), the scale written and
 * multiplied in, read back (the near-memory units take the exponentials and sums), the
 * normalisation written and multiplied in, read back.
 */
export function softmaxProgram(b: VectorBlock, heads: number, t: number): TraceStep[] {
  if (!softmaxFits(b, heads, t))
    throw new Error(`internal: the scores of ${heads} heads over ${t} tokens exceed a bank's rows`);
  const p = new Program(b);
  const per = rowElements(b.sys);
  const rows = Math.ceil(t / per);
  const perBank = Math.ceil(heads / (b.channels * 4));
  const base = p.row(ROW.scores + perBank * rows);
  const scores = (op: "WR_SBK" | "RD_SBK", bg: number): void => {
    for (let k = 0; k < rows; k++) {
      const size = k === rows - 1 ? t - per * k : per;
      for (let j = 0; j < perBank; j++)
        for (let c = 0; c < p.cols(size); c++)
          for (let bank = bg; bank < p.total; bank += 4) {
            if (Math.floor(bank / 4) * perBank + j >= heads) break;
            p.mem(op, bank, base + j * rows + k);
          }
    }
  };
  const multiply = (): void => {
    for (let j = 0; j < perBank; j++)
      for (let k = 0; k < rows; k++)
        p.aim({ op: "EWMUL", opsize: p.cols(k === rows - 1 ? t - per * k : per), row: base + j * rows + k });
  };
  for (let pass = 0; pass < 2; pass++) {
    scores("WR_SBK", 0);
    scores("WR_SBK", 1);
    multiply();
    scores("RD_SBK", 2);
    p.sync();
  }
  return p.steps;
}

/**
 * The new token's K and V appended to caches in the banks (Llama.py L673-690): K's `kvDim` values
 * written over the pins into the rows of the token's bank (`position`: the token's), V's
 * `kvDim / 16` columns with an all-bank write each (WR_ABK) on the channels holding the heads.
 */
export function kvAppendProgram(b: VectorBlock, kvDim: number, position: number): TraceStep[] {
  const p = new Program(b);
  const per = rowElements(b.sys);
  const rows = Math.ceil(kvDim / per);
  // Token i's K in bank i of the block's (its scores' GEMV output).
  const bank = position % p.total;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < p.cols(Math.min(per, kvDim - r * per)); c++) p.mem("WR_SBK", bank, r);
  const columns = Math.ceil(kvDim / p.lanes);
  for (let i = 0; i < columns; i++) {
    const ch = i % b.channels;
    for (let tb = 0; tb < b.copies; tb++)
      p.steps.push({
        instr: { op: "WR_ABK", row: Math.floor(i / b.channels) },
        channels: [ch + b.channels * tb],
        line: 0,
      });
  }
  return p.steps;
}
