/**
 * The PIM unit's instruction set (Aquabolt-XL / FIMDRAM class): 32-bit CRF instructions stepped by
 * DRAM column commands in AB-PIM mode. See docs/hbm-pim.md for the encoding and semantics.
 *
 *   bits 31..28 opcode | 27..25 dst | 24..22 src0 | 21..19 src1 | 18 auto | 17 relu |
 *   16..14 dst index | 13..11 src0 index | 10..8 src1 index          (arithmetic and data moves)
 *   bits 31..28 opcode | 27..11 count | 10..0 back                      (JUMP: back `back` slots, count times)
 *   bits 31..28 opcode | 15..0 count                                    (NOP: count column commands)
 */

export const OP = { NOP: 0, JUMP: 1, EXIT: 2, MOV: 4, FILL: 5, ADD: 8, MUL: 9, MAC: 10, MAD: 11 } as const;
export type OpName = keyof typeof OP;
export const OP_NAMES: readonly (OpName | undefined)[] = (() => {
  const out: (OpName | undefined)[] = new Array(16).fill(undefined);
  for (const [k, v] of Object.entries(OP)) out[v] = k as OpName;
  return out;
})();

/** Operand kinds. SRF_M / SRF_A: the scalar registers MAD multiplies by and adds. */
export const OPND = { GRF_A: 0, GRF_B: 1, EVEN_BANK: 2, ODD_BANK: 3, SRF_M: 4, SRF_A: 5, NONE: 7 } as const;
export type OperandName = keyof typeof OPND;
export const OPND_NAMES: readonly (OperandName | undefined)[] = (() => {
  const out: (OperandName | undefined)[] = new Array(8).fill(undefined);
  for (const [k, v] of Object.entries(OPND)) out[v] = k as OperandName;
  return out;
})();

export interface Instr {
  readonly op: OpName;
  readonly dst?: OperandName;
  readonly src0?: OperandName;
  readonly src1?: OperandName;
  /** Address-aligned mode: register indices come from the command's address and the instruction repeats for `grf` commands. */
  readonly auto?: boolean;
  readonly relu?: boolean;
  readonly dstIdx?: number;
  readonly src0Idx?: number;
  readonly src1Idx?: number;
  /** JUMP: times to jump back; NOP: column commands it takes. */
  readonly count?: number;
  /** JUMP: slots to jump back. */
  readonly back?: number;
}

export class IsaError extends Error {}

export function encode(i: Instr): number {
  const op = OP[i.op];
  if (i.op === "JUMP") {
    const count = i.count ?? 0;
    const back = i.back ?? 1;
    if (count < 0 || count >= 1 << 17) throw new IsaError(`JUMP count ${count} out of range 0..131071`);
    if (back < 1 || back >= 1 << 11) throw new IsaError(`JUMP back ${back} out of range 1..2047`);
    return ((op << 28) | (count << 11) | back) >>> 0;
  }
  if (i.op === "NOP") {
    const count = i.count ?? 1;
    if (count < 1 || count >= 1 << 16) throw new IsaError(`NOP count ${count} out of range 1..65535`);
    return ((op << 28) | count) >>> 0;
  }
  if (i.op === "EXIT") return (op << 28) >>> 0;
  const o = (x: OperandName | undefined): number => OPND[x ?? "NONE"];
  const idx = (x: number | undefined): number => {
    if (x !== undefined && (x < 0 || x > 7)) throw new IsaError(`register index ${x} out of range 0..7`);
    return x ?? 0;
  };
  return (
    ((op << 28) |
      (o(i.dst) << 25) |
      (o(i.src0) << 22) |
      (o(i.src1) << 19) |
      ((i.auto ? 1 : 0) << 18) |
      ((i.relu ? 1 : 0) << 17) |
      (idx(i.dstIdx) << 14) |
      (idx(i.src0Idx) << 11) |
      (idx(i.src1Idx) << 8)) >>>
    0
  );
}

export function decode(w: number): Instr {
  const op = OP_NAMES[(w >>> 28) & 15];
  if (!op) throw new IsaError(`unknown opcode ${(w >>> 28) & 15} in instruction 0x${(w >>> 0).toString(16)}`);
  if (op === "JUMP") return { op, count: (w >>> 11) & 0x1ffff, back: w & 0x7ff };
  if (op === "NOP") return { op, count: w & 0xffff };
  if (op === "EXIT") return { op };
  const opnd = (x: number): OperandName => {
    const n = OPND_NAMES[x];
    if (!n) throw new IsaError(`unknown operand kind ${x} in instruction 0x${(w >>> 0).toString(16)}`);
    return n;
  };
  const dst = opnd((w >>> 25) & 7);
  const src0 = opnd((w >>> 22) & 7);
  const src1 = opnd((w >>> 19) & 7);
  return {
    op,
    ...(dst !== "NONE" ? { dst } : {}),
    ...(src0 !== "NONE" ? { src0 } : {}),
    ...(src1 !== "NONE" ? { src1 } : {}),
    ...((w >>> 18) & 1 ? { auto: true } : {}),
    ...((w >>> 17) & 1 ? { relu: true } : {}),
    dstIdx: (w >>> 14) & 7,
    src0Idx: (w >>> 11) & 7,
    src1Idx: (w >>> 8) & 7,
  };
}

/** `MAC GRF_B, GRF_A, EVEN_BANK (auto)`: one line of a listing. */
export function formatInstr(i: Instr): string {
  if (i.op === "JUMP") return `JUMP -${i.back ?? 1}, ${i.count ?? 0}x`;
  if (i.op === "NOP") return `NOP ${i.count ?? 1}`;
  if (i.op === "EXIT") return "EXIT";
  const reg = (n: OperandName | undefined, idx: number | undefined): string | undefined =>
    n === undefined
      ? undefined
      : n.startsWith("GRF") || n.startsWith("SRF")
        ? i.auto
          ? n
          : `${n}[${idx ?? 0}]`
        : n;
  const ops = [reg(i.dst, i.dstIdx), reg(i.src0, i.src0Idx), reg(i.src1, i.src1Idx)].filter(
    (x) => x !== undefined,
  );
  return `${i.op} ${ops.join(", ")}${i.auto ? " (auto)" : ""}${i.relu ? " relu" : ""}`;
}
