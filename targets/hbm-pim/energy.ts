/**
 * Energy of HBM-PIM runs from the commands the controller issued (docs/energy.md). A pseudo-channel's
 * command log is replayed into a counting device (PimChannel's events: commands by mode, bank rows
 * opened, bursts through the array and through the I/O, the PIM units' instructions), then priced
 * with the HBM2 standard's energies (HBM2_ENERGY in standard.ts, every constant with its source):
 *
 *   activate   bank rows opened x row bits x ACT/PRE energy per bit (an all-bank ACT opens every bank
 *              it reaches)
 *   array      bursts read or written in a bank's cells x burst bits x cell RD/WR energy per bit (a
 *              PIM unit's bank operand: one burst per unit; an all-bank write: one per bank reached)
 *   datapath   bursts that leave or enter the stack x bits x (column path + global I/O + TSV) per bit
 *   io         the same bursts x bits x interposer I/O energy per bit (PIM reads pay neither)
 *   refresh    REF commands x VDD x (IDD5AB - IDD3N) x tRFC
 *   background cycles with a row open x VDD x IDD3N, the rest x VDD x IDD2N (per pseudo-channel: half
 *              of a 128-bit channel's currents)
 *   pim_alu    FP16 lane operations of the units (MAC, MAD, ADD, MUL) x energy per lane operation
 *   pim_regs   register-file vectors (GRF, SRF) read and written x 32 bytes, and CRF instruction
 *              words read x 4 bytes, x energy per byte
 *   host_alu   the host's multiply-adds (flops / 2) x energy per MAC
 *   host_cache a GPU host's bytes through its L2 and L1, host_regs its register accesses (AttAcc's
 *              GPU model, targets/xpu/energy.ts)
 *
 * Host work (hostEnergy) reads and writes its bytes in the HBM as full rows (ACT, array, datapath and
 * I/O per bit, AttAcc's GPU memory energy of 28.72 pJ/byte), its multiply-adds and, for a GPU host,
 * its caches and registers; the PIM stacks idle in precharge standby meanwhile. A GPU's static power
 * is not counted, as in AttAcc's model.
 */
import type { Energy as TargetEnergy } from "../index.js";
import { COMMANDS, HBM2_ENERGY, type HbmPimSystem } from "./standard.js";
import { MAC_ENERGY } from "../../src/pipeline/energy.js";
import type { CommandLog } from "./controller.js";
import type { KernelResult } from "./device.js";
import type { PimKernel } from "./kernels.js";
import { PimChannel, type ByMode, type PimEvents } from "./pim.js";
import type { Payload } from "./kernels.js";
import { SB } from "./controller.js";

export const ENERGY_PARTS = [
  "activate",
  "array",
  "datapath",
  "io",
  "refresh",
  "background",
  "pim_alu",
  "pim_regs",
  "host_alu",
  "host_cache",
  "host_regs",
] as const;
export type EnergyPart = (typeof ENERGY_PARTS)[number];

/** Joules, in all and per part. */
export type Energy = TargetEnergy<EnergyPart>;

/** DRAM commands by mode, as `--json` reports them. */
export interface CommandEvents {
  readonly act: ModeCounts;
  readonly pre: ModeCounts;
  readonly rd: ModeCounts;
  readonly wr: ModeCounts;
  readonly ref: number;
}
export interface ModeCounts {
  readonly sb: number;
  readonly ab: number;
  readonly ab_pim: number;
}

const modes = (m: ByMode): ModeCounts => ({ sb: m[0], ab: m[1], ab_pim: m[2] });

/** One pseudo-channel's events, and the cycles it kept a row open. */
export interface ChannelActivity {
  readonly events: PimEvents;
  readonly cycles: number;
  readonly activeCycles: number;
}

/**
 * Replays a pseudo-channel's command log into a counting device (with the kernel's register and
 * data payloads, so mode changes and the microprogram follow): its events and the cycles during
 * which a bank of it had a row open, up to `cycles`.
 */
export function channelActivity(
  sys: HbmPimSystem,
  log: CommandLog,
  cycles: number,
  payload?: (req: number) => Payload | undefined,
): ChannelActivity {
  const dev = new PimChannel(sys);
  dev.countOnly = true;
  if (payload) dev.payload = payload;
  const banks = sys.bank_groups * sys.banks_per_group;
  const open = new Uint8Array(sys.ranks * banks);
  let openCount = 0;
  let active = 0;
  let last = 0;
  const set = (i: number, v: 0 | 1): void => {
    if (open[i] !== v) {
      openCount += v === 1 ? 1 : -1;
      open[i] = v;
    }
  };
  for (let i = 0; i < log.length; i++) {
    const at = log.cycle[i]!;
    if (openCount > 0) active += at - last;
    last = at;
    const cmd = COMMANDS[log.cmd[i]!]!;
    const rank = log.rank[i]!;
    const id = rank * banks + log.bg[i]! * sys.banks_per_group + log.bank[i]!;
    const allBank = rank === 0 && dev.mode !== SB;
    if (cmd === "ACT" || cmd === "PRE") {
      const v = cmd === "ACT" ? 1 : 0;
      if (!allBank) set(id, v);
      else
        for (let b = 0; b < banks; b++)
          if (sys.pim.banks_per_unit === 1 || b % 2 === log.bank[i]! % 2) set(rank * banks + b, v);
    } else if (cmd === "PREA") for (let b = 0; b < banks; b++) set(rank * banks + b, 0);
    dev.onCommand(cmd, rank, log.bg[i]!, log.bank[i]!, log.row[i]!, log.col[i]!, log.req[i]!);
  }
  if (openCount > 0 && cycles > last) active += cycles - last;
  return { events: dev.events, cycles, activeCycles: Math.min(active, cycles) };
}

/** The joules of one pseudo-channel's activity, per part. */
export function channelEnergy(sys: HbmPimSystem, a: ChannelActivity): Energy {
  const E = HBM2_ENERGY;
  const e = a.events;
  const burstBits = sys.pim.lanes * 16;
  const rowBits = sys.columns * burstBits;
  const tCK = sys.timing.tCK;
  const amps = (idd: number): number => idd / E.perChannel;
  const io = e.ioReads + e.ioWrites;
  const breakdown: Record<EnergyPart, number> = {
    activate: e.bankActs * rowBits * E.actPerBit,
    array: (e.arrayReads + e.arrayWrites) * burstBits * E.arrayPerBit,
    datapath: io * burstBits * E.datapathPerBit,
    io: io * burstBits * E.ioPerBit,
    refresh: e.ref * E.vdd * amps(E.idd5ab - E.idd3n) * sys.timing.tRFC * tCK,
    background: E.vdd * (amps(E.idd3n) * a.activeCycles + amps(E.idd2n) * (a.cycles - a.activeCycles)) * tCK,
    pim_alu: e.laneOps * E.laneOp,
    pim_regs: (e.regAccesses * (burstBits / 8) + e.crfReads * 4) * E.regPerByte,
    host_alu: 0,
    host_cache: 0,
    host_regs: 0,
  };
  return { joules: sum(breakdown), breakdown };
}

const sum = (b: Readonly<Record<EnergyPart, number>>): number => ENERGY_PARTS.reduce((s, k) => s + b[k], 0);

const part = (k: EnergyPart, j: number): Record<EnergyPart, number> =>
  Object.fromEntries(ENERGY_PARTS.map((x) => [x, x === k ? j : 0])) as Record<EnergyPart, number>;

export const NO_ENERGY: Energy = { joules: 0, breakdown: part("host_alu", 0) };

/** The sum of energies, part by part. */
export function plus(...es: readonly Energy[]): Energy {
  const breakdown = Object.fromEntries(
    ENERGY_PARTS.map((k) => [k, es.reduce((s, e) => s + e.breakdown[k], 0)]),
  ) as Record<EnergyPart, number>;
  return { joules: sum(breakdown), breakdown };
}

/** Every pseudo-channel's energy of a kernel run (all run the timed one's commands). */
export function kernelEnergy(sys: HbmPimSystem, r: KernelResult, kernel?: PimKernel): Energy {
  const ch = kernel?.active[0] ?? 0;
  const a = channelActivity(sys, r.log, r.cycles, kernel && ((req) => kernel.payload(ch, req)));
  return scaled(channelEnergy(sys, a), sys.pseudo_channels);
}

/**
 * Host work of `flops` and `bytes` taking `seconds`: its bytes through the HBM as full rows, its
 * multiply-adds, and the PIM stacks' precharge standby meanwhile.
 */
/** Watts of every pseudo-channel in precharge standby (VDD x IDD2N, a channel's shared by two). */
export const standbyWatts = (sys: HbmPimSystem): number =>
  sys.pseudo_channels * HBM2_ENERGY.vdd * (HBM2_ENERGY.idd2n / HBM2_ENERGY.perChannel);

export function hostEnergy(
  sys: HbmPimSystem,
  flops: number,
  bytes: number,
  seconds: number,
  chip?: { readonly cache: number; readonly regs: number },
): Energy {
  const E = HBM2_ENERGY;
  const bits = 8 * bytes;
  const breakdown = {
    ...part("host_alu", (flops / 2) * MAC_ENERGY),
    host_cache: chip?.cache ?? 0,
    host_regs: chip?.regs ?? 0,
    activate: bits * E.actPerBit,
    array: bits * E.arrayPerBit,
    datapath: bits * E.datapathPerBit,
    io: bits * E.ioPerBit,
    background: standbyWatts(sys) * seconds,
  };
  return { joules: sum(breakdown), breakdown };
}

/** `n` times an energy (every pseudo-channel running the same commands). */
export function scaled(e: Energy, n: number): Energy {
  const breakdown = Object.fromEntries(ENERGY_PARTS.map((k) => [k, e.breakdown[k] * n])) as Record<
    EnergyPart,
    number
  >;
  return { joules: e.joules * n, breakdown };
}

/** The DRAM commands of some events by mode (what `--json` prints beside the energy). */
export const commandEvents = (e: PimEvents): CommandEvents => ({
  act: modes(e.act),
  pre: modes([e.pre[0] + e.prea[0], e.pre[1] + e.prea[1], e.pre[2] + e.prea[2]]),
  rd: modes(e.rd),
  wr: modes(e.wr),
  ref: e.ref,
});
