/**
 * Energy of AiM runs from the commands a channel issued, priced as CENT's power model does (the CENT
 * artifact, github.com/Morteza1814/CENT, file cent_simulation/cent_power_calculator.py, L57-198: its
 * per-channel DRAM powers, DQ and SRAM energies and memory-controller powers; docs/aim.md):
 *
 *   activate    ACT x P_ACT x tRC, ACT16 sixteen times that
 *   read, write RD / RDMAC16 bursts x P_RD x tBL, WR / WRMAC16 bursts x P_WR x tBL
 *   pim_mac     MAC16 x 3 P_RD x tCCDL (the units read every bank's column)
 *   background  active-standby power while a row is open, precharge-standby power otherwise (every
 *               channel of the system, those without data precharged)
 *   io          bursts over the pins (RD, WR, WRGB, WRMAC16, RDMAC16) x 256 bits x the DQ energy
 *   controller  (column commands x the transaction engine's power + every command x the PHY's) / 2
 *               channels per controller / 2 GHz
 *   buffer      WRGB x the global buffer's write power / 2 GHz, and its static power
 *
 * Beyond the channels' commands (a call of a model, targets/aim/cost.ts): bytes the host reads or
 * writes through the pins as such bursts (`pinEnergy`), its multiply-adds at AttAcc's ALU energy
 * (`host`), values between CENT's devices at its PCIe energy (`cxl`), and every channel's standby
 * power while it waits (`standbyEnergy`).
 */
import type { ChannelRun } from "./device.js";
import type { AimSystem } from "./standard.js";

/** CENT's constants (cent_power_calculator.py): powers in W, times in s, energies in J. */
export const CENT_POWER = {
  /** DRAM_POWER, per channel (the chip's halved): ACT 132.6 / 2, RD 876.3 / 2, WR 1106.3 / 2 mW. */
  act: 132.6e-3 / 2,
  rd: 876.3e-3 / 2,
  wr: 1106.3e-3 / 2,
  /** ACT_STBY 527.5 / 2, PRE_STBY 366.3 / 2 mW per channel. */
  actStandby: 527.5e-3 / 2,
  preStandby: 366.3e-3 / 2,
  /** tRC 44.5 ns, tBL 1.25 ns, tCCDL 1.0 ns (the model's own times). */
  tRC: 44.5e-9,
  tBL: 1.25e-9,
  tCCDL: 1.0e-9,
  /** MAC16 costs three reads (`3 * DRAM_POWER["RD"] * MAC16 * tCCDL`). */
  macReads: 3,
  /** DQ_ENERGY 5.5 pJ/bit, WORD_SIZE 256 bits. */
  dqPerBit: 5.5e-12,
  wordBits: 256,
  /** CTRL_POWER: transaction engine 267.7, PHY 381.0 mW per controller of 2 channels; FREQ 2 GHz. */
  trx: 267.7082056e-3,
  phy: 381.0445262e-3,
  channelsPerController: 2,
  freq: 2e9,
  /** SRAM_POWER GB: static 0.067, write 0.325 mW. */
  gbStatic: 0.06702101898e-3,
  gbWrite: 0.3254884575e-3,
  /** PCIE_ENERGY 4.4 pJ per bit between CXL devices. */
  pciePerBit: 4.4e-12,
} as const;

export const AIM_ENERGY_PARTS = [
  "activate",
  "read",
  "write",
  "pim_mac",
  "background",
  "io",
  "controller",
  "buffer",
] as const;
export type AimEnergyPart = (typeof AIM_ENERGY_PARTS)[number];

export interface AimEnergy {
  readonly joules: number;
  readonly breakdown: Readonly<Record<AimEnergyPart, number>>;
}

/** The energy of `used` channels each running `r`, the system's other channels precharged meanwhile. */
export function aimEnergy(sys: AimSystem, r: ChannelRun, used: number): AimEnergy {
  const P = CENT_POWER;
  const c = r.counts;
  const seconds = r.cycles * sys.timing.tCK;
  const active = r.activeCycles * sys.timing.tCK;
  const bursts = c.RD + c.WRGB + c.WRMAC16 + c.RDMAC16;
  // CENT's ISR_COUNT (column commands) and CMD_COUNT (every command).
  const columns = c.RD + c.MAC16 + c.WRGB + c.RDMAC16 + c.WRMAC16;
  const commands = Object.values(c).reduce((s, n) => s + n, 0);
  const per: Record<AimEnergyPart, number> = {
    activate: P.act * (c.ACT + 16 * c.ACT16) * P.tRC,
    read: P.rd * (c.RD + c.RDMAC16) * P.tBL,
    write: P.wr * c.WRMAC16 * P.tBL,
    pim_mac: P.macReads * P.rd * c.MAC16 * P.tCCDL,
    background: P.actStandby * active + P.preStandby * (seconds - active),
    io: P.dqPerBit * P.wordBits * bursts,
    controller: (P.trx * columns + P.phy * commands) / P.channelsPerController / P.freq,
    buffer: (P.gbWrite * c.WRGB) / P.freq + P.gbStatic * seconds,
  };
  const idle = sys.channels - used;
  const breakdown = Object.fromEntries(
    AIM_ENERGY_PARTS.map((k) => [
      k,
      used * per[k] +
        (k === "background"
          ? idle * P.preStandby * seconds
          : k === "buffer"
            ? idle * P.gbStatic * seconds
            : 0),
    ]),
  ) as Record<AimEnergyPart, number>;
  return { joules: AIM_ENERGY_PARTS.reduce((s, k) => s + breakdown[k], 0), breakdown };
}

/**
 * The dynamic energy of `reads` and `writes` bursts through the pins, rows opened whole (a row of
 * `columns` bursts per activation): array, pins and controller, as the kernels' conventional read
 * is priced. No standby (standbyEnergy).
 */
export function pinEnergy(sys: AimSystem, reads: number, writes: number): AimEnergy {
  const P = CENT_POWER;
  const bursts = reads + writes;
  const rows = Math.ceil(bursts / sys.columns);
  const breakdown: Record<AimEnergyPart, number> = {
    activate: P.act * rows * P.tRC,
    read: P.rd * reads * P.tBL,
    write: P.wr * writes * P.tBL,
    pim_mac: 0,
    background: 0,
    io: P.dqPerBit * P.wordBits * bursts,
    // Column commands, and every command: the bursts, an ACT and a PRE per row.
    controller: (P.trx * bursts + P.phy * (bursts + 2 * rows)) / P.channelsPerController / P.freq,
    buffer: 0,
  };
  return { joules: AIM_ENERGY_PARTS.reduce((s, k) => s + breakdown[k], 0), breakdown };
}

/** Every channel of `sys` precharged for `seconds` (precharge standby and the buffers' static power). */
export function standbyEnergy(sys: AimSystem, seconds: number): AimEnergy {
  const P = CENT_POWER;
  const breakdown: Record<AimEnergyPart, number> = {
    activate: 0,
    read: 0,
    write: 0,
    pim_mac: 0,
    background: sys.channels * P.preStandby * seconds,
    io: 0,
    controller: 0,
    buffer: sys.channels * P.gbStatic * seconds,
  };
  return { joules: breakdown.background + breakdown.buffer, breakdown };
}
