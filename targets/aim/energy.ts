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
import type { Energy } from "../index.js";
import { sumEnergies } from "../../src/report/energy.js";
import type { ChannelRun } from "./device.js";
import type { TraceRun } from "./trace.js";
import { AIM_COMMANDS, type AimCmd, type AimSystem } from "./standard.js";

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

export type AimEnergy = Energy<AimEnergyPart>;

/** An energy of some parts (the others 0) and their sum. */
function energyOf(parts: Partial<Record<AimEnergyPart, number>>): AimEnergy {
  const breakdown = Object.fromEntries(AIM_ENERGY_PARTS.map((k) => [k, parts[k] ?? 0])) as Record<
    AimEnergyPart,
    number
  >;
  return { joules: AIM_ENERGY_PARTS.reduce((s, k) => s + breakdown[k], 0), breakdown };
}

/**
 * The energy of `used` channels each running `r`, the system's other channels precharged meanwhile.
 * Every command as cent_power_calculator.py `power_calculator` counts it: reads RD, RDCP, RDMAC16,
 * RDAF16 and an AF16 sixteen times; writes WR, WRCP, WRMAC16 and a WRA16 sixteen times; the units'
 * MACs a MAC16, a single-bank MAC a sixteenth, an EWMUL16 a quarter; the pins every burst to or from
 * the host.
 */
export function aimEnergy(sys: AimSystem, r: ChannelRun, used: number): AimEnergy {
  const P = CENT_POWER;
  const c = r.counts;
  const seconds = r.cycles * sys.timing.tCK;
  const active = r.activeCycles * sys.timing.tCK;
  const bursts = c.RD + c.WR + c.WRGB + c.WRMAC16 + c.RDMAC16 + c.RDAF16 + c.WRA16;
  // CENT's ISR_COUNT (column commands) and CMD_COUNT (every command).
  const columns = AIM_COMMANDS.filter((k) => !ROW_OR_MODE.has(k)).reduce((s, k) => s + c[k], 0);
  const commands = AIM_COMMANDS.reduce((s, k) => s + c[k], 0);
  const idle = standbyEnergy({ ...sys, channels: sys.channels - used }, seconds).breakdown;
  const per: Record<AimEnergyPart, number> = {
    activate: P.act * (c.ACT + 16 * c.ACT16) * P.tRC,
    read: P.rd * (c.RD + c.RDCP + c.RDMAC16 + c.RDAF16 + 16 * c.AF16) * P.tBL,
    write: P.wr * (c.WR + c.WRCP + c.WRMAC16 + 16 * c.WRA16) * P.tBL,
    pim_mac: P.macReads * P.rd * (c.MAC / 16 + c.MAC16 + c.EWMUL16 / 4) * P.tCCDL,
    background: P.actStandby * active + P.preStandby * (seconds - active),
    io: P.dqPerBit * P.wordBits * bursts,
    controller: (P.trx * columns + P.phy * commands) / P.channelsPerController / P.freq,
    buffer: (P.gbWrite * c.WRGB) / P.freq + P.gbStatic * seconds,
  };
  return energyOf(Object.fromEntries(AIM_ENERGY_PARTS.map((k) => [k, used * per[k] + idle[k]])));
}

/** Commands that open or close rows or switch modes: not in CENT's count of column commands. */
const ROW_OR_MODE: ReadonlySet<AimCmd> = new Set(["ACT", "ACT16", "PRE", "PREA", "TMOD"]);

/**
 * The dynamic energy of `reads` and `writes` bursts through the pins, rows opened whole (a row of
 * `columns` bursts per activation), priced as a channel issuing those commands: array, pins and
 * controller, as the kernels' conventional read is. No standby (standbyEnergy).
 */
export function pinEnergy(sys: AimSystem, reads: number, writes: number): AimEnergy {
  const rows = Math.ceil((reads + writes) / sys.columns);
  const counts = Object.fromEntries(AIM_COMMANDS.map((k) => [k, 0])) as Record<AimCmd, number>;
  Object.assign(counts, { RD: reads, WR: writes, ACT: rows, PRE: rows });
  return aimEnergy({ ...sys, channels: 1 }, { cycles: 0, activeCycles: 0, counts }, 1);
}

/**
 * The energy of a trace's run on `sys`: each channel's commands priced alone, every channel
 * precharged while it has nothing to do.
 */
export function traceEnergy(sys: AimSystem, r: TraceRun): Energy {
  const one: AimSystem = { ...sys, channels: 1 };
  const tCK = sys.timing.tCK;
  return sumEnergies([
    ...[...r.channels.values()].map((c) =>
      sumEnergies([aimEnergy(one, c, 1), standbyEnergy(one, (r.cycles - c.cycles) * tCK)]),
    ),
    standbyEnergy({ ...sys, channels: sys.channels - r.channels.size }, r.cycles * tCK),
  ]);
}

/** Every channel of `sys` precharged for `seconds` (precharge standby and the buffers' static power). */
export function standbyEnergy(sys: AimSystem, seconds: number): AimEnergy {
  return energyOf({
    background: sys.channels * CENT_POWER.preStandby * seconds,
    buffer: sys.channels * CENT_POWER.gbStatic * seconds,
  });
}
