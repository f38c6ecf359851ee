/**
 * The device side of one pseudo-channel: the mode state machine and, when functional, the banks'
 * contents and the PIM units (Aquabolt-XL class: one unit per even/odd bank pair of rank 0 with a
 * GRF_A and a GRF_B of `grf` x 16 FP16 lanes, scalar registers SRF_M / SRF_A, and the CRF shared by
 * the pseudo-channel's units).
 *
 * Modes (docs/hbm-pim.md): SB (single bank, normal DRAM), AB (all-bank: a command to bank b reaches
 * every bank of b's parity; writes broadcast), AB-PIM (column commands step the CRF microprogram
 * instead of moving data). SB -> AB: activates of the ABMR row in banks 0 and 1 of bank groups 0 and
 * 2; AB -> SB: precharges of the SBMR row in banks 0 and 1; AB <-> AB-PIM: the mode register.
 *
 * FP16 arithmetic: every result is rounded to FP16 (f16round); MAC rounds the product, then the sum.
 */
import { f16round } from "@petamoriken/float16";
import { AB, AB_PIM, SB, type ModeWatcher } from "./controller.js";
import { decode, formatInstr, type Instr, type OperandName, type OpName } from "./isa.js";
import { MODE_CLEAR_GRF_B, MODE_PIM, REG_COL, unitBank, type Payload } from "./kernels.js";
import type { Cmd, HbmPimSystem } from "./standard.js";

export class PimError extends Error {}

const isGrf = (o: OperandName | undefined): boolean => o === "GRF_A" || o === "GRF_B";
const isBank = (o: OperandName | undefined): boolean => o === "EVEN_BANK" || o === "ODD_BANK";

const ABMR_BANKS: Readonly<Record<string, number>> = { "0,0": 1, "0,1": 2, "2,0": 4, "2,1": 8 };

/** Commands by the mode of rank 0 when they were issued: [SB, AB, AB-PIM]. */
export type ByMode = [sb: number, ab: number, abPim: number];

/**
 * What one pseudo-channel did, counted for the energy model (targets/hbm-pim/energy.ts): DRAM
 * commands by mode, the bank rows they opened, the bursts that moved through a bank's array and
 * through the external I/O, and the PIM units' work.
 */
export interface PimEvents {
  readonly act: ByMode;
  readonly pre: ByMode;
  readonly prea: ByMode;
  readonly rd: ByMode;
  readonly wr: ByMode;
  ref: number;
  /** Bank rows opened: one per single-bank ACT, every bank an all-bank ACT reaches. */
  bankActs: number;
  /** Bursts read from / written to a bank's array (an all-bank write: one per bank it reaches). */
  arrayReads: number;
  arrayWrites: number;
  /** Bursts between the stack and the host (single-bank data, all-bank and register writes). */
  ioReads: number;
  ioWrites: number;
  /** Instructions the units executed (per unit and vector), their FP16 lane operations, and the
   * register-file (GRF, SRF) vectors they read and wrote. */
  pimInstrs: number;
  laneOps: number;
  regAccesses: number;
  /** Instructions the sequencer read from the CRF (32-bit words, JUMPs and EXIT included). */
  crfReads: number;
}

export const noEvents = (): PimEvents => ({
  act: [0, 0, 0],
  pre: [0, 0, 0],
  prea: [0, 0, 0],
  rd: [0, 0, 0],
  wr: [0, 0, 0],
  ref: 0,
  bankActs: 0,
  arrayReads: 0,
  arrayWrites: 0,
  ioReads: 0,
  ioWrites: 0,
  pimInstrs: 0,
  laneOps: 0,
  regAccesses: 0,
  crfReads: 0,
});

/** Banks of a rank an all-bank command reaches: all of them with a unit per bank, else one parity. */
export const allBankReach = (sys: HbmPimSystem): number =>
  (sys.bank_groups * sys.banks_per_group) / (sys.pim.banks_per_unit === 1 ? 1 : 2);

/** Tracks the mode of rank 0 from the command stream (enough for timing). */
export class ModeTracker implements ModeWatcher {
  mode = SB;
  private abmr = 0;
  private sbmr = 0;
  constructor(protected readonly sys: HbmPimSystem) {}

  onCommand(cmd: Cmd, rank: number, bg: number, bank: number, row: number, col: number, req: number): void {
    if (rank !== 0) return;
    const p = this.sys.pim;
    if (this.mode === SB && cmd === "ACT" && row === p.abmr_row) {
      this.abmr |= ABMR_BANKS[`${bg},${bank}`] ?? 0;
      if (this.abmr === 15) {
        this.mode = AB;
        this.abmr = 0;
      }
    } else if (this.mode !== SB && cmd === "PRE" && row === p.sbmr_row) {
      // With a unit per bank one precharge reaches every bank; with bank pairs, one per parity.
      this.sbmr |= p.banks_per_unit === 1 ? 3 : 1 << (bank % 2);
      if (this.sbmr === 3) {
        this.mode = SB;
        this.sbmr = 0;
      }
    }
    if (cmd === "RD" || cmd === "WR") this.column(cmd, bg, bank, row, col, req);
  }

  /**
   * A column command of rank 0. Timing needs no more than SB vs all-bank (AB and AB-PIM reach the
   * same banks); the functional device moves data and runs the units here.
   */
  protected column(
    _cmd: "RD" | "WR",
    _bg: number,
    _bank: number,
    _row: number,
    _col: number,
    _req: number,
  ): void {}
}

interface Decoded {
  readonly i: Instr;
  readonly op: OpName;
}

/**
 * A functional pseudo-channel: bank rows of rank 0 (FP16 values held as float32), the PIM units and
 * the CRF. `payload` gives the data of a write request; reads in SB mode go to `onRead`.
 */
export class PimChannel extends ModeTracker {
  /** Bank rows, by bank * rows + row; 16 lanes x columns values each. */
  readonly rows = new Map<number, Float32Array>();
  readonly grfA: Float32Array[];
  readonly grfB: Float32Array[];
  readonly srfM: Float32Array[];
  readonly srfA: Float32Array[];
  readonly crf: Uint32Array;
  private code: Decoded[] = [];
  private pc = 0;
  private repeat = 0;
  private jumps: Int32Array;
  /** Column commands that stepped the microprogram, and the units' FP16 operations. */
  steps = 0;
  flops = 0;
  /** Commands and accesses for the energy model. */
  readonly events: PimEvents = noEvents();
  /** Counts commands and instructions without moving or computing data (the energy model's replay). */
  countOnly = false;
  payload: (req: number) => Payload | undefined = () => undefined;
  onRead: (req: number, data: Float32Array) => void = () => undefined;

  constructor(sys: HbmPimSystem) {
    super(sys);
    const p = sys.pim;
    const regs = () => Array.from({ length: p.units }, () => new Float32Array(p.vectors * p.grf * p.lanes));
    this.grfA = regs();
    this.grfB = regs();
    this.srfM = Array.from({ length: p.units }, () => new Float32Array(p.srf));
    this.srfA = Array.from({ length: p.units }, () => new Float32Array(p.srf));
    this.crf = new Uint32Array(p.crf);
    this.jumps = new Int32Array(p.crf).fill(-1);
  }

  private get lanes(): number {
    return this.sys.pim.lanes;
  }

  /** The 16 lanes of burst (bank, row, col), created as zeros on first use. */
  burst(bank: number, row: number, col: number): Float32Array {
    return this.row(bank, row).subarray(col * this.lanes, (col + 1) * this.lanes);
  }

  /** Host-side store of FP16 values (weights at program load), bypassing the command stream. */
  store(bank: number, row: number, col: number, values: ArrayLike<number>): void {
    const b = this.burst(bank, row, col);
    for (let i = 0; i < this.lanes; i++) b[i] = f16round(values[i] ?? 0);
  }

  override onCommand(
    cmd: Cmd,
    rank: number,
    bg: number,
    bank: number,
    row: number,
    col: number,
    req: number,
  ): void {
    const e = this.events;
    const m = (rank === 0 ? this.mode : SB) as 0 | 1 | 2;
    switch (cmd) {
      case "ACT":
        e.act[m]++;
        e.bankActs += m === SB ? 1 : allBankReach(this.sys);
        break;
      case "PRE":
        e.pre[m]++;
        break;
      case "PREA":
        e.prea[m]++;
        break;
      case "REF":
        e.ref++;
        break;
      case "RD":
        e.rd[m]++;
        if (m === SB) {
          e.arrayReads++;
          e.ioReads++;
        }
        break;
      case "WR":
        e.wr[m]++;
        if (m === SB) {
          e.arrayWrites++;
          e.ioWrites++;
        }
        break;
    }
    super.onCommand(cmd, rank, bg, bank, row, col, req);
  }

  protected override column(
    cmd: "RD" | "WR",
    bg: number,
    bank: number,
    row: number,
    col: number,
    req: number,
  ): void {
    const sys = this.sys;
    const bpg = sys.banks_per_group;
    // The register rows: the register row itself (vector 0, mode word, CRF) and one per further vector below it.
    const vector = sys.pim.register_row - row;
    if (this.mode !== SB && vector >= 0 && vector < sys.pim.vectors) {
      if (cmd === "WR") {
        this.events.ioWrites++;
        this.writeRegister(vector, col, req);
      }
      return;
    }
    if (this.mode === SB) {
      if (this.countOnly) return;
      const id = bg * bpg + bank;
      if (cmd === "RD") this.onRead(req, this.burst(id, row, col));
      else this.writeBurst(id, row, col, req);
      return;
    }
    if (this.mode === AB) {
      // All-bank writes broadcast to every bank of the parity; reads return nothing to the host.
      this.events.ioWrites += cmd === "WR" ? 1 : 0;
      if (cmd === "RD") this.events.arrayReads += allBankReach(sys);
      else this.events.arrayWrites += allBankReach(sys);
      if (cmd === "WR" && !this.countOnly) {
        const step = sys.pim.banks_per_unit === 1 ? 1 : 2;
        for (let g = 0; g < sys.bank_groups; g++)
          for (let b = step === 1 ? 0 : bank % 2; b < bpg; b += step)
            this.writeBurst(g * bpg + b, row, col, req);
      }
      return;
    }
    this.step(cmd, row, col);
  }

  private writeBurst(id: number, row: number, col: number, req: number): void {
    const d = this.payload(req);
    if (!d) return;
    if (!(d instanceof Float32Array)) throw new PimError(`request ${req}: a data write carries FP16 values`);
    this.store(id, row, col, d);
  }

  private writeRegister(vector: number, col: number, req: number): void {
    const p = this.sys.pim;
    const d = this.payload(req);
    if (vector > 0 && col < REG_COL.grfA) return;
    if (col === REG_COL.mode) {
      const w = d instanceof Uint32Array ? d[0]! : 0;
      const on = (w & MODE_PIM) !== 0;
      // Turning PIM on (again) starts the microprogram from the top.
      if (on) {
        this.mode = AB_PIM;
        this.pc = 0;
        this.repeat = 0;
        this.jumps.fill(-1);
      } else if (!on && this.mode === AB_PIM) this.mode = AB;
      if (w & MODE_CLEAR_GRF_B) for (const g of this.grfB) g.fill(0);
      return;
    }
    if (col >= REG_COL.crf && col < REG_COL.grfA) {
      if (!(d instanceof Uint32Array))
        throw new PimError(`request ${req}: a CRF write carries 8 instructions`);
      const at = (col - REG_COL.crf) * 8;
      for (let i = 0; i < 8 && at + i < p.crf; i++) this.crf[at + i] = d[i]!;
      this.code = [];
      return;
    }
    if (!(d instanceof Float32Array)) return;
    const lanes = this.lanes;
    const set = (regs: Float32Array[], idx: number) => {
      for (const r of regs) for (let l = 0; l < lanes; l++) r[idx * lanes + l] = f16round(d[l] ?? 0);
    };
    const base = vector * p.grf;
    if (col >= REG_COL.grfA && col < REG_COL.grfA + p.grf) set(this.grfA, base + col - REG_COL.grfA);
    else if (col >= REG_COL.grfB && col < REG_COL.grfB + p.grf) set(this.grfB, base + col - REG_COL.grfB);
    else if (vector === 0 && col === REG_COL.srf)
      for (let u = 0; u < p.units; u++)
        for (let i = 0; i < p.srf; i++) {
          this.srfM[u]![i] = f16round(d[i] ?? 0);
          this.srfA[u]![i] = f16round(d[p.srf + i] ?? 0);
        }
  }

  private instr(pc: number): Decoded {
    if (this.code.length === 0)
      this.code = Array.from(this.crf, (w) => {
        const i = decode(w);
        return { i, op: i.op };
      });
    const d = this.code[pc];
    if (!d)
      throw new PimError(`program counter ${pc} ran off the CRF (${this.sys.pim.crf} entries) without EXIT`);
    return d;
  }

  /** One column command in AB-PIM mode: the instruction at the program counter on every unit. */
  private step(cmd: "RD" | "WR", row: number, col: number): void {
    // JUMPs take no command. Every instruction the sequencer reads is a CRF read (energy).
    let d = this.instr(this.pc);
    this.events.crfReads++;
    while (d.op === "JUMP") {
      const left = this.jumps[this.pc]!;
      const n = left < 0 ? (d.i.count ?? 0) : left;
      if (n > 0) {
        this.jumps[this.pc] = n - 1;
        this.pc -= d.i.back ?? 1;
      } else {
        this.jumps[this.pc] = -1;
        this.pc++;
      }
      d = this.instr(this.pc);
      this.events.crfReads++;
    }
    if (d.op === "EXIT") return;
    this.steps++;
    const i = d.i;
    const g = this.sys.pim.grf;
    const auto = i.auto === true;
    if (d.op !== "NOP") this.execute(i, cmd, row, col, auto);
    const times = d.op === "NOP" ? (i.count ?? 1) : auto ? g : 1;
    if (++this.repeat >= times) {
      this.repeat = 0;
      this.pc++;
    }
  }

  /** Operand `o` of unit u at register `idx` or the addressed burst: its array and offset (into slotArr/slotOff). */
  private slotArr: Float32Array = new Float32Array(0);
  private slotOff = 0;
  private slot(o: OperandName | undefined, u: number, idx: number, row: number, col: number): boolean {
    const lanes = this.lanes;
    switch (o) {
      case "GRF_A":
        this.slotArr = this.grfA[u]!;
        this.slotOff = idx * lanes;
        return true;
      case "GRF_B":
        this.slotArr = this.grfB[u]!;
        this.slotOff = idx * lanes;
        return true;
      case "EVEN_BANK":
      case "ODD_BANK": {
        const { bg, bank: b } = unitBank(this.sys, u, o === "ODD_BANK" ? 1 : 0);
        const bank = bg * this.sys.banks_per_group + b;
        this.slotArr = this.row(bank, row);
        this.slotOff = col * lanes;
        return true;
      }
      default:
        return false;
    }
  }

  /** Bank row `row` of bank `bank` (zeros on first use). */
  private row(bank: number, row: number): Float32Array {
    const key = bank * this.sys.rows + row;
    let r = this.rows.get(key);
    if (!r) {
      r = new Float32Array(this.sys.columns * this.lanes);
      this.rows.set(key, r);
    }
    return r;
  }

  private readonly va = new Float32Array(64);
  private readonly vb = new Float32Array(64);

  /** Loads operand `o` of unit u into `into` (16 lanes; scalars broadcast, absent operands 0). */
  private load(
    o: OperandName | undefined,
    u: number,
    idx: number,
    row: number,
    col: number,
    into: Float32Array,
    grfOff = 0,
  ): void {
    const lanes = this.lanes;
    if (this.slot(o, u, idx + (isGrf(o) ? grfOff : 0), row, col)) {
      const a = this.slotArr;
      const off = this.slotOff;
      for (let l = 0; l < lanes; l++) into[l] = a[off + l]!;
    } else {
      const v = o === "SRF_M" ? this.srfM[u]![idx]! : o === "SRF_A" ? this.srfA[u]![idx]! : 0;
      into.fill(v, 0, lanes);
    }
  }

  private execute(i: Instr, cmd: "RD" | "WR", row: number, col: number, auto: boolean): void {
    const sys = this.sys;
    const p = sys.pim;
    const lanes = this.lanes;
    const g = p.grf;
    const mac = i.op === "MAC" || i.op === "MAD";
    const dstIdx = auto ? col % g : (i.dstIdx ?? 0);
    // Address-aligned mode: MAC sources walk the registers by the flat column (two rows per g x g block).
    const autoSrc = mac ? Math.floor(((row & 1) * sys.columns + col) / g) % g : col % g;
    const src0Idx = auto ? autoSrc : (i.src0Idx ?? 0);
    const src1Idx = auto ? autoSrc : (i.src1Idx ?? 0);
    const bankDst = isBank(i.dst);
    if (bankDst && cmd !== "WR")
      throw new PimError(`${formatInstr(i)}: a bank destination needs a WR command`);
    if (cmd !== "RD" && (isBank(i.src0) || isBank(i.src1)))
      throw new PimError(`${formatInstr(i)}: a bank source needs a RD command`);
    if (i.dst !== "GRF_A" && i.dst !== "GRF_B" && !bankDst)
      throw new PimError(`${formatInstr(i)}: destination must be a GRF or a bank`);
    const { va, vb } = this;
    const relu = i.relu === true;
    // Several vectors: MAC / MAD run on every vector's registers at once (one weight burst, several
    // inputs); other auto instructions address the vector floor(col / grf) mod vectors.
    const vecs = mac ? p.vectors : 1;
    const first = mac || !auto ? 0 : Math.floor(col / g) % p.vectors;
    this.count(i, vecs, mac, bankDst);
    if (this.countOnly) return;
    for (let k = first; k < first + vecs; k++)
      for (let u = 0; u < p.units; u++) {
        const regOff = k * g;
        this.load(i.src0, u, src0Idx, row, col, va, regOff);
        this.load(i.src1, u, src1Idx, row, col, vb, regOff);
        this.slot(i.dst, u, dstIdx + (isGrf(i.dst) ? regOff : 0), row, col);
        const d = this.slotArr;
        const off = this.slotOff;
        const add = i.op === "MAD" ? this.srfA[u]![dstIdx % p.srf]! : 0;
        for (let l = 0; l < lanes; l++) {
          let v: number;
          switch (i.op) {
            case "MOV":
            case "FILL":
              v = va[l]!;
              break;
            case "ADD":
              v = f16round(va[l]! + vb[l]!);
              break;
            case "MUL":
              v = f16round(va[l]! * vb[l]!);
              break;
            case "MAC":
              v = f16round(d[off + l]! + f16round(va[l]! * vb[l]!));
              break;
            case "MAD":
              v = f16round(f16round(va[l]! * vb[l]!) + add);
              break;
            default:
              throw new PimError(`${i.op} cannot execute`);
          }
          d[off + l] = relu && v < 0 ? 0 : v;
        }
      }
  }

  /**
   * The flops and energy events of an instruction on every unit: one bank burst per unit for a bank
   * operand (a MAC's weight burst serves every vector), the register vectors read and written, and
   * the lane operations.
   */
  private count(i: Instr, vecs: number, mac: boolean, bankDst: boolean): void {
    const p = this.sys.pim;
    const lanes = p.lanes;
    const moves = i.op === "MOV" || i.op === "FILL";
    this.flops += vecs * p.units * (mac ? 2 * lanes : moves ? 0 : lanes);
    const e = this.events;
    if (bankDst) e.arrayWrites += p.units;
    else if (isBank(i.src0) || isBank(i.src1)) e.arrayReads += p.units;
    const reg = (o: OperandName | undefined): number => (o !== undefined && !isBank(o) ? 1 : 0);
    const regs = (mac ? 1 : 0) + reg(i.src0) + reg(i.src1) + reg(i.dst);
    e.regAccesses += vecs * p.units * regs;
    e.pimInstrs += vecs * p.units;
    e.laneOps += moves ? 0 : vecs * p.units * lanes;
  }
}
