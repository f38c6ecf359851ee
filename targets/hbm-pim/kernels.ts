/**
 * PIM kernels as DRAM request streams (one pseudo-channel's; every pseudo-channel runs the same
 * stream on its own data), their CRF microprograms and data layouts, and the non-PIM baselines that
 * stream the same data through the normal read path.
 *
 * Every PIM kernel has the same frame (docs/hbm-pim.md):
 *  - park: a read of the park row in every bank (all banks in a known state);
 *  - SB -> AB: writes to the ABMR row of banks 0 and 1 of bank groups 0 and 2;
 *  - CRF: the microprogram, 8 instructions per write to the register row;
 *  - AB -> AB-PIM: a write of the mode register (PIM on, GRF_B cleared, program counter 0);
 *  - the body: column commands that step the microprogram, and register writes (GRF_A loads);
 *  - AB-PIM -> AB, AB -> SB (write the SBMR row; the mode changes when it is precharged), park.
 * Each group of commands of one CRF instruction ends with a barrier, so the controller keeps their
 * order while it may still open the next group's rows.
 */
import { RD, WR, type Request } from "./controller.js";
import { encode, type Instr } from "./isa.js";
import type { HbmPimSystem } from "./standard.js";

/** Column of the register row: mode word, CRF (8 instructions per burst), GRF_A, GRF_B, SRF. */
export const REG_COL = { mode: 0, crf: 4, grfA: 8, grfB: 16, srf: 24 } as const;
/** Mode register bits. */
export const MODE_PIM = 1;
export const MODE_CLEAR_GRF_B = 2;

export type Payload = Float32Array | Uint32Array;

export interface PimKernel {
  readonly name: string;
  readonly summary: string;
  /** One pseudo-channel's requests (the same on every pseudo-channel). */
  readonly requests: readonly Request[];
  readonly crf: readonly Instr[];
  /**
   * The pseudo-channels that hold the kernel's data; the others run the same commands on nothing
   * (functional execution skips them).
   */
  readonly active: readonly number[];
  /** Data of write requests that carry some (register writes; host data). */
  payload(channel: number, req: number): Payload | undefined;
}

/** Builds a request list with payload hooks. */
class Stream {
  readonly requests: Request[] = [];
  readonly payloads = new Map<number, (ch: number) => Payload>();
  rd(bg: number, bank: number, row: number, col: number): number {
    this.requests.push({ kind: RD, rank: 0, bg, bank, row, col });
    return this.requests.length - 1;
  }
  wr(bg: number, bank: number, row: number, col: number, data?: (ch: number) => Payload): number {
    this.requests.push({ kind: WR, rank: 0, bg, bank, row, col });
    if (data) this.payloads.set(this.requests.length - 1, data);
    return this.requests.length - 1;
  }
  /** Marks the last request as a barrier. */
  barrier(): void {
    const i = this.requests.length - 1;
    if (i >= 0) this.requests[i] = { ...this.requests[i]!, barrier: true };
  }
}

const words = (xs: readonly number[]): Uint32Array => {
  const w = new Uint32Array(8);
  w.set(xs);
  return w;
};

/** The frame's prologue: park, SB -> AB, CRF program. */
function prologue(s: Stream, sys: HbmPimSystem, crf: readonly Instr[]): void {
  const p = sys.pim;
  if (crf.length > p.crf)
    throw new Error(`internal: microprogram of ${crf.length} instructions exceeds the CRF (${p.crf})`);
  park(s, sys);
  for (const [bg, bank] of [
    [0, 0],
    [0, 1],
    [2, 0],
    [2, 1],
  ] as const)
    s.wr(bg, bank, p.abmr_row, sys.columns - 1);
  s.barrier();
  const code = crf.map(encode);
  for (let i = 0; i < code.length; i += 8)
    s.wr(0, 1, p.register_row, REG_COL.crf + i / 8, () => words(code.slice(i, i + 8)));
  s.barrier();
}

/** PIM on with GRF_B cleared and the program counter at 0. */
function pimOn(s: Stream, sys: HbmPimSystem): void {
  s.wr(0, 0, sys.pim.register_row, REG_COL.mode, () => words([MODE_PIM | MODE_CLEAR_GRF_B]));
  s.barrier();
}

/** PIM off: back to AB mode. */
function pimOff(s: Stream, sys: HbmPimSystem): void {
  s.wr(0, 0, sys.pim.register_row, REG_COL.mode, () => words([0]));
  s.barrier();
}

function epilogue(s: Stream, sys: HbmPimSystem): void {
  const p = sys.pim;
  pimOff(s, sys);
  s.wr(0, 0, p.sbmr_row, sys.columns - 1);
  s.wr(0, 1, p.sbmr_row, sys.columns - 1);
  s.barrier();
  park(s, sys);
}

/** A read of the park row in every bank, bank-index outer (successive activates change bank group). */
function park(s: Stream, sys: HbmPimSystem): void {
  for (let b = 0; b < sys.banks_per_group; b++)
    for (let g = 0; g < sys.bank_groups; g++) s.rd(g, b, sys.pim.park_row, 0);
  s.barrier();
}

/**
 * The bank group and bank of unit u's even (0) or odd (1) bank: with a unit per bank pair, unit u
 * has banks 2 (u mod 2) and 2 (u mod 2) + 1 of bank group u / 2; with a unit per bank, its own bank.
 */
export function unitBank(sys: HbmPimSystem, u: number, odd: number): { bg: number; bank: number } {
  if (sys.pim.banks_per_unit === 1)
    return { bg: Math.floor(u / sys.banks_per_group), bank: u % sys.banks_per_group };
  return { bg: Math.floor(u / 2), bank: 2 * (u % 2) + odd };
}

/**
 * Where input tile i of a GEMV lives in a unit: with a bank pair, even tiles in the even bank and odd
 * ones in the odd bank (they share flat columns); with one bank, one after the other. Returns the
 * bank parity and the first flat column of the tile.
 */
export function inputTile(sys: HbmPimSystem, i: number): { odd: number; flat: number } {
  const g = sys.pim.grf;
  return sys.pim.banks_per_unit === 1
    ? { odd: 0, flat: g * g * i }
    : { odd: i % 2, flat: g * g * Math.floor(i / 2) };
}

/** The bank parity GEMV results are stored in (the odd bank of a pair, or the unit's bank). */
export const resultOdd = (sys: HbmPimSystem): number => (sys.pim.banks_per_unit === 1 ? 0 : 1);

/** Flat column (over consecutive rows from `row0`) -> [row, col]. */
const at = (sys: HbmPimSystem, row0: number, flat: number): [number, number] => [
  row0 + Math.floor(flat / sys.columns),
  flat % sys.columns,
];

// ---------------------------------------------------------------------------------------------
// GEMV: y[n] = W[n, k] . x[k].

/**
 * Where a GEMV's weights live. Units: P pseudo-channels x `units` (one per bank pair: bank group g,
 * pair q = banks 2q and 2q+1). With `groups` independent GEMVs of the same shape (attention heads)
 * group i has the C = P / groups pseudo-channels from i x C, and its own input vector; they all run
 * in one kernel (the same command stream on every pseudo-channel). Output tile j gives unit u of
 * pseudo-channel c of a group the `grf` outputs o = ((j * C + c) * units + u) * grf + b. Input tile
 * i is 16 x grf inputs; even tiles live in the even bank, odd tiles in the odd bank, at flat columns
 * 64 * floor(i / 2) + 8 * a + b (a: the burst of the tile, b: the output) of the tile's rows, so a
 * column command's address names the GRF_A register (a = ((row & 1) << 2) | ((col >> 3) & 3)) and
 * the GRF_B accumulator (b = col & 7).
 */
export interface GemvLayout {
  readonly n: number;
  readonly k: number;
  /** Independent GEMVs side by side, and the pseudo-channels each has. */
  readonly groups: number;
  readonly channelsPerGroup: number;
  /** Input vectors the units hold (result columns are reserved for each). */
  readonly vectors: number;
  readonly outTiles: number;
  readonly inTiles: number;
  /** Rows of one output tile in each bank (even, for AAM). */
  readonly rowsPerTile: number;
  /** First row of the weights, and of the results (one flat column per output b, per output tile). */
  readonly row0: number;
  readonly resultRow: number;
  readonly rows: number;
}

export function gemvLayout(sys: HbmPimSystem, n: number, k: number, row0 = 0, groups = 1): GemvLayout {
  if (sys.pseudo_channels % groups !== 0)
    throw new Error(`internal: ${groups} GEMV groups do not divide ${sys.pseudo_channels} pseudo-channels`);
  const g = sys.pim.grf;
  const lanes = sys.pim.lanes;
  const perTile = lanes * g;
  const channelsPerGroup = sys.pseudo_channels / groups;
  const outTiles = Math.ceil(n / (channelsPerGroup * sys.pim.units * g));
  const inTiles = Math.ceil(k / perTile);
  const flat = (sys.pim.banks_per_unit === 1 ? inTiles : Math.ceil(inTiles / 2)) * g * g;
  const rowsPerTile = 2 * Math.ceil(flat / (2 * sys.columns));
  const resultRow = row0 + outTiles * rowsPerTile;
  const resultRows = Math.ceil((outTiles * g * sys.pim.vectors) / sys.columns);
  return {
    n,
    k,
    groups,
    channelsPerGroup,
    vectors: sys.pim.vectors,
    outTiles,
    inTiles,
    rowsPerTile,
    row0,
    resultRow,
    rows: resultRow + resultRows - row0,
  };
}

/** The pseudo-channels holding a GEMV's outputs (the others run its commands on nothing). */
export function gemvChannels(sys: HbmPimSystem, l: GemvLayout): number[] {
  const per =
    l.outTiles > 1
      ? l.channelsPerGroup
      : Math.min(l.channelsPerGroup, Math.ceil(l.n / (sys.pim.units * sys.pim.grf)));
  const out: number[] = [];
  for (let i = 0; i < l.groups; i++) for (let c = 0; c < per; c++) out.push(i * l.channelsPerGroup + c);
  return out;
}

export function gemvCrf(sys: HbmPimSystem, l: GemvLayout, vectors = 1): Instr[] {
  const grf = sys.pim.grf;
  const mac = (bank: "EVEN_BANK" | "ODD_BANK", tiles: number): Instr[] =>
    tiles === 0
      ? []
      : [
          { op: "MAC", dst: "GRF_B", src0: "GRF_A", src1: bank, auto: true },
          ...(tiles * grf > 1 ? [{ op: "JUMP" as const, back: 1, count: tiles * grf - 1 }] : []),
        ];
  const crf: Instr[] =
    sys.pim.banks_per_unit === 1
      ? mac("EVEN_BANK", l.inTiles)
      : [...mac("EVEN_BANK", Math.ceil(l.inTiles / 2)), ...mac("ODD_BANK", Math.floor(l.inTiles / 2))];
  // One store per vector (its accumulators sit in the result row's columns of that vector).
  for (let k = 0; k < vectors; k++)
    crf.push({ op: "MOV", dst: resultOdd(sys) ? "ODD_BANK" : "EVEN_BANK", src0: "GRF_B", auto: true });
  crf.push({ op: "EXIT" });
  return crf;
}

/**
 * The GEMV kernel: for each output tile, PIM on, then per input tile (even ones, then odd ones) the
 * 16 x grf inputs into GRF_A (grf register writes) and grf x grf MAC reads, then the grf accumulators
 * to the odd bank's result row. `input(ch)` gives the input vector (fp16 values).
 */
export function gemvKernel(
  sys: HbmPimSystem,
  l: GemvLayout,
  input?: (ch: number, vector: number) => Float32Array,
  opts: { readback?: boolean; vectors?: number } = {},
): PimKernel {
  const g = sys.pim.grf;
  const lanes = sys.pim.lanes;
  const used = opts.vectors ?? 1;
  if (used < 1 || used > sys.pim.vectors)
    throw new Error(`internal: a GEMV of ${used} vectors on units of ${sys.pim.vectors}`);
  const crf = gemvCrf(sys, l, used);
  const s = new Stream();
  prologue(s, sys, crf);
  const chunk = (i: number, a: number, k: number) => (ch: number) => {
    const x = input?.(ch, k);
    const v = new Float32Array(lanes);
    if (x) for (let t = 0; t < lanes; t++) v[t] = x[(i * g + a) * lanes + t] ?? 0;
    return v;
  };
  // The microprogram's order: the even bank's tiles, then the odd bank's (one bank: in order).
  const order = [...Array(l.inTiles).keys()].sort(
    (a, b) => inputTile(sys, a).odd - inputTile(sys, b).odd || a - b,
  );
  for (let j = 0; j < l.outTiles; j++) {
    // Each output tile leaves PIM mode and enters it again (the program counter back to 0), and
    // writes its inputs into GRF_A even when a single input tile left them there: Samsung's kernel
    // does both (PIMSimulator, src/tests/PIMKernel.cpp computeGemv).
    if (j > 0) pimOff(s, sys);
    pimOn(s, sys);
    for (const i of order) {
      // Vector k's registers are written through the register row minus k.
      for (let k = 0; k < used; k++)
        for (let a = 0; a < g; a++) s.wr(0, 1, sys.pim.register_row - k, REG_COL.grfA + a, chunk(i, a, k));
      s.barrier();
      const base = j * l.rowsPerTile;
      for (let a = 0; a < g; a++) {
        for (let b = 0; b < g; b++) {
          const tile = inputTile(sys, i);
          const [row, col] = at(sys, l.row0 + base, tile.flat + g * a + b);
          s.rd(0, tile.odd, row, col);
        }
        s.barrier();
      }
    }
    for (let k = 0; k < used; k++) {
      for (let b = 0; b < g; b++)
        s.wr(0, resultOdd(sys), ...at(sys, l.resultRow, gemvResultFlat(l, j, k, b, g)));
      s.barrier();
    }
  }
  epilogue(s, sys);
  // The host reads each output's partial sums (one burst of 16 lanes) from the result banks.
  if (opts.readback)
    for (let j = 0; j < l.outTiles; j++)
      for (let k = 0; k < used; k++)
        for (let b = 0; b < g; b++)
          for (let u = 0; u < sys.pim.units; u++) {
            const { bg, bank } = unitBank(sys, u, resultOdd(sys));
            s.rd(bg, bank, ...at(sys, l.resultRow, gemvResultFlat(l, j, k, b, g)));
          }
  return {
    name: "gemv",
    summary: `gemv ${l.n}x${l.k} fp16${used > 1 ? ` x ${used} vectors` : ""}: ${l.outTiles} output x ${l.inTiles} input tiles`,
    requests: s.requests,
    crf,
    active: gemvChannels(sys, l),
    payload: (ch, req) => s.payloads.get(req)?.(ch),
  };
}

/** Flat column (from the result row) of accumulator b of vector k for output tile j. */
export const gemvResultFlat = (l: GemvLayout, j: number, k: number, b: number, grf: number): number =>
  (j * l.vectors + k) * grf + b;

// ---------------------------------------------------------------------------------------------
// Element-wise: z = x (op) y, or relu(x), over n fp16 elements.

export type EltwiseOp = "add" | "mul" | "relu";

/**
 * Where the operands of an element-wise kernel live: tile t holds `grf` bursts of every bank of every
 * pseudo-channel at flat columns grf * t .. grf * t + grf - 1 of each operand's rows; element
 * e = (((t * P + ch) * banks + bank) * grf + c) * lanes + lane, bank = bank group * banks per group +
 * bank in group.
 */
export interface EltwiseLayout {
  readonly n: number;
  readonly tiles: number;
  /** First rows of operand 0, operand 1 and the result. */
  readonly rows: readonly [number, number, number];
  readonly rowsPerOperand: number;
}

export function eltwiseLayout(sys: HbmPimSystem, n: number, row0 = 0): EltwiseLayout {
  const g = sys.pim.grf;
  const banks = sys.bank_groups * sys.banks_per_group;
  const tiles = Math.ceil(n / (sys.pim.lanes * g * banks * sys.pseudo_channels));
  const rowsPerOperand = Math.ceil((tiles * g) / sys.columns);
  return { n, tiles, rows: [row0, row0 + rowsPerOperand, row0 + 2 * rowsPerOperand], rowsPerOperand };
}

export function eltwiseCrf(sys: HbmPimSystem, op: EltwiseOp, tiles: number): Instr[] {
  const crf: Instr[] = [];
  const passes = [
    ["EVEN_BANK", "GRF_A"],
    ["ODD_BANK", "GRF_B"],
  ] as const;
  // With a unit per bank one pass covers every bank.
  for (const [bank, reg] of passes.slice(0, sys.pim.banks_per_unit)) {
    if (op === "relu") crf.push({ op: "MOV", dst: reg, src0: bank, auto: true, relu: true });
    else
      crf.push(
        { op: "FILL", dst: reg, src0: bank, auto: true },
        { op: op === "add" ? "ADD" : "MUL", dst: reg, src0: reg, src1: bank, auto: true },
      );
    crf.push({ op: "MOV", dst: bank, src0: reg, auto: true });
  }
  if (tiles > 1) crf.push({ op: "JUMP", back: crf.length, count: tiles - 1 });
  crf.push({ op: "EXIT" });
  return crf;
}

/** Host data of an element-wise kernel: operand bursts written before it, results read after. */
export interface EltwiseIo {
  operand(which: 0 | 1, ch: number, bank: number, flat: number): Float32Array;
}

export function eltwiseKernel(sys: HbmPimSystem, op: EltwiseOp, l: EltwiseLayout, io?: EltwiseIo): PimKernel {
  const g = sys.pim.grf;
  const crf = eltwiseCrf(sys, op, l.tiles);
  const s = new Stream();
  const bursts = (f: (bg: number, bank: number, flat: number) => void) => {
    for (let t = 0; t < l.tiles; t++)
      for (let c = 0; c < g; c++)
        for (let b = 0; b < sys.banks_per_group; b++)
          for (let bg = 0; bg < sys.bank_groups; bg++) f(bg, b, t * g + c);
  };
  if (io)
    for (const which of op === "relu" ? ([0] as const) : ([0, 1] as const))
      bursts((bg, b, flat) =>
        s.wr(bg, b, ...at(sys, l.rows[which], flat), (ch) =>
          io.operand(which, ch, bg * sys.banks_per_group + b, flat),
        ),
      );
  prologue(s, sys, crf);
  pimOn(s, sys);
  const reads = op === "relu" ? [l.rows[0]] : [l.rows[0], l.rows[1]];
  for (let t = 0; t < l.tiles; t++)
    for (const bank of sys.pim.banks_per_unit === 1 ? [0] : [0, 1]) {
      for (const r of reads) {
        for (let c = 0; c < g; c++) s.rd(0, bank, ...at(sys, r, t * g + c));
        s.barrier();
      }
      for (let c = 0; c < g; c++) s.wr(0, bank, ...at(sys, l.rows[2], t * g + c));
      s.barrier();
    }
  epilogue(s, sys);
  if (io) bursts((bg, b, flat) => s.rd(bg, b, ...at(sys, l.rows[2], flat)));
  return {
    name: op,
    summary: `${op} ${l.n} fp16: ${l.tiles} tiles`,
    requests: s.requests,
    crf,
    active: Array.from(
      {
        length:
          l.tiles > 1
            ? sys.pseudo_channels
            : Math.min(
                sys.pseudo_channels,
                Math.ceil(l.n / (sys.pim.lanes * g * sys.bank_groups * sys.banks_per_group)),
              ),
      },
      (_, ch) => ch,
    ),
    payload: (ch, req) => s.payloads.get(req)?.(ch),
  };
}

// ---------------------------------------------------------------------------------------------
// The non-PIM path: linear address streams through the address mapping.

export interface StreamPhase {
  readonly kind: typeof RD | typeof WR;
  /** Bytes, from byte address `at`. */
  readonly bytes: number;
  readonly at: number;
  /** Starts once every earlier request has completed. */
  readonly fence?: boolean;
}

/** The field widths of the address mapping (log2 of the organisation's sizes). */
function fieldSizes(sys: HbmPimSystem): Record<string, number> {
  return {
    offset: sys.burst_bytes,
    pseudo_channel: sys.pseudo_channels,
    bank: sys.banks_per_group,
    bank_group: sys.bank_groups,
    column: sys.columns,
    row: sys.rows,
    rank: sys.ranks,
  };
}

/** Decodes a byte address into its fields (mixed radix, least significant field first). */
export function mapAddress(sys: HbmPimSystem, addr: number): Record<string, number> {
  const sizes = fieldSizes(sys);
  const out: Record<string, number> = {};
  let rest = addr;
  for (const f of sys.address_mapping) {
    const n = sizes[f]!;
    out[f] = rest % n;
    rest = Math.floor(rest / n);
  }
  return out;
}

/** The bursts of pseudo-channel `ch` in each phase: first byte address, step, count. */
function channelBursts(sys: HbmPimSystem, phases: readonly StreamPhase[], ch: number) {
  // With the pseudo-channel right above the burst offset, its bursts are P bursts apart.
  const bb = sys.burst_bytes;
  const interleaved = sys.address_mapping[0] === "offset" && sys.address_mapping[1] === "pseudo_channel";
  const step = interleaved ? bb * sys.pseudo_channels : bb;
  return phases.map((p) => {
    let first = p.at;
    if (interleaved) {
      first = p.at - (p.at % step) + ch * bb;
      if (first < p.at) first += step;
    }
    const end = p.at + p.bytes;
    return { first, step, count: first < end ? Math.ceil((end - first) / step) : 0 };
  });
}

/** A key equal for pseudo-channels whose streams are the same (fast mode times one of each). */
export function streamKey(sys: HbmPimSystem, phases: readonly StreamPhase[], ch: number): string {
  return channelBursts(sys, phases, ch)
    .map((b) => {
      const f = mapAddress(sys, b.first);
      return `${b.count}:${f.bank_group},${f.bank},${f.row},${f.column},${f.rank}`;
    })
    .join(" ");
}

/**
 * The requests of pseudo-channel `ch` for streams of bytes (a phase with `fence` starts when every
 * earlier request has completed).
 */
export function streamRequests(sys: HbmPimSystem, phases: readonly StreamPhase[], ch: number): Request[] {
  const out: Request[] = [];
  const fields = sys.address_mapping;
  const sizes = fieldSizes(sys);
  const radix = fields.map((f) => sizes[f]!);
  const at: Record<string, number> = {};
  const bursts = channelBursts(sys, phases, ch);
  phases.forEach((p, k) => {
    const { first, step, count } = bursts[k]!;
    for (let m = 0; m < count; m++) {
      let rest = first + m * step;
      for (let i = 0; i < fields.length; i++) {
        at[fields[i]!] = rest % radix[i]!;
        rest = Math.floor(rest / radix[i]!);
      }
      if (at.pseudo_channel !== ch) continue;
      out.push({
        kind: p.kind,
        rank: at.rank ?? 0,
        bg: at.bank_group!,
        bank: at.bank!,
        row: at.row!,
        col: at.column!,
        ...(m === 0 && p.fence ? { fence: true } : {}),
      });
    }
  });
  return out;
}
