/**
 * HBM-PIM energy (targets/hbm-pim/energy.ts): the pricing of counted events, the events a kernel's
 * commands give by mode, and the published figures it is held against (docs/energy.md).
 */
import { describe, expect, it } from "vitest";
import { channelEnergy, ENERGY_PARTS, type EnergyPart } from "../targets/hbm-pim/energy.js";
import { noEvents } from "../targets/hbm-pim/pim.js";
import { DEFAULT_SYSTEM } from "../targets/hbm-pim/standard.js";
import { pimc } from "./util.js";

const GEMV = ["kernel", "gemv", "4096x4096", "--system", "examples/systems/hbm-pim-64ch.pim", "--json"];

interface Run {
  energy: {
    joules: number;
    pj_per_bit: number;
    breakdown: Record<EnergyPart, number>;
    events: Record<"act" | "pre" | "rd" | "wr", { sb: number; ab: number; ab_pim: number }> & { ref: number };
  };
  commands: Record<string, number>;
}

describe("HBM-PIM energy", () => {
  it("prices each event with the HBM2 per-bit energies and currents", () => {
    const sys = DEFAULT_SYSTEM;
    const e = noEvents();
    e.bankActs = 3;
    e.arrayReads = 5;
    e.ioReads = 2;
    e.ref = 1;
    e.laneOps = 100;
    e.regAccesses = 10;
    e.crfReads = 7;
    const j = channelEnergy(sys, { events: e, cycles: 1000, activeCycles: 600 });
    const b = j.breakdown;
    // A 1 KB row (32 bursts of 32 bytes): 8192 bits x 0.11 pJ; a burst: 256 bits.
    expect(b.activate).toBeCloseTo(3 * 8192 * 0.11e-12, 20);
    expect(b.array).toBeCloseTo(5 * 256 * 0.44e-12, 20);
    expect(b.datapath).toBeCloseTo(2 * 256 * 2.74e-12, 20);
    expect(b.io).toBeCloseTo(2 * 256 * 0.3e-12, 20);
    // Half a 128-bit channel's currents: (250 - 55) mA / 2 x 1.2 V x 350 ns; 55 / 2 and 40 / 2 mA standby.
    expect(b.refresh).toBeCloseTo(1.2 * 0.0975 * 350e-9, 15);
    expect(b.background).toBeCloseTo(1.2 * (0.0275 * 600 + 0.02 * 400) * 1e-9, 15);
    expect(b.pim_alu).toBeCloseTo(100 * 0.32e-12, 20);
    expect(b.pim_regs).toBeCloseTo((10 * 32 + 7 * 4) * 0.0034e-12, 22);
    expect(j.joules).toBeCloseTo(
      ENERGY_PARTS.reduce((s, k) => s + b[k], 0),
      18,
    );
  });

  it("pimc kernel gemv: the commands by mode, the PIM reads' bits equal to the weights', the energy per bit in HBM2's published range", async () => {
    const r = await pimc(...GEMV);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as {
      pim: Run;
      non_pim: Run;
      energy_ratio: number;
      pseudo_channels: number;
    };
    const pim = j.pim.energy;
    const base = j.non_pim.energy;
    // Per pseudo-channel: every PIM-mode RD is one weight burst for each of the 8 units (bank pairs).
    expect(pim.events.rd.ab_pim * 8 * 32 * j.pseudo_channels).toBe(2 * 4096 * 4096);
    // The commands by mode add up to the controller's counts.
    const all = (m: { sb: number; ab: number; ab_pim: number }) => m.sb + m.ab + m.ab_pim;
    expect(all(pim.events.rd)).toBe(j.pim.commands.RD);
    expect(all(pim.events.act)).toBe(j.pim.commands.ACT);
    expect(all(pim.events.pre)).toBe(j.pim.commands.PRE! + j.pim.commands.PREA!);
    expect(base.events.rd).toEqual({ sb: j.non_pim.commands.RD, ab: 0, ab_pim: 0 });
    // PIM reads stay in the banks: no I/O beyond the register and control writes.
    expect(pim.breakdown.io).toBeLessThan(0.01 * pim.joules);
    expect(base.breakdown.io).toBeGreaterThan(0.05 * base.joules);
    // Streamed HBM2 reads: O'Connor et al. (MICRO 2017) put an HBM2 access at about 3.9-4 pJ/bit.
    expect(base.pj_per_bit).toBeGreaterThan(3.5);
    expect(base.pj_per_bit).toBeLessThan(4.5);
    expect(j.energy_ratio).toBeCloseTo(base.joules / pim.joules, 12);
    // Deterministic: the same command again gives the same joules.
    const again = JSON.parse((await pimc(...GEMV)).stdout) as { pim: Run };
    expect(again.pim.energy).toEqual(pim);
  });
});
