/**
 * The GDDR6-AiM standard as data (SK hynix Accelerator-in-Memory, ISSCC 2022 / JSSC 2023): the
 * organisation of a channel, its timing in command-clock cycles and the rules between commands, as
 * the public AiM simulator models them (github.com/arkhadem/aim_simulator, a Ramulator 2.0 fork,
 * file src/dram/impl/GDDR6.cpp: the `GDDR6_AiM_org` and `GDDR6_AiM_timing` presets and the timing
 * constraints; read, not copied). docs/aim.md lists every value with its line.
 *
 * A channel has 16 banks (4 bank groups x 4), each with a processing unit beside it; a MAC16
 * command multiplies one 32-byte column of every bank (16 16-bit values each) by 32 bytes of the
 * channel's global buffer and accumulates per bank (a MAC_ABK instruction is `opsize` of them over
 * a row, after an all-bank activate ACT16).
 */
import { z } from "zod";
import { zHost } from "../cpu/index.js";

/** The commands the device model issues: AiM's all-bank and register commands, and normal DRAM ones. */
export const AIM_COMMANDS = [
  "ACT16", // all-bank activate (every bank of the channel opens the row)
  "PREA", // precharge all banks
  "MAC16", // all-bank MAC: one column of every bank x 32 bytes of the global buffer
  "WRGB", // 32 bytes into the global buffer
  "WRMAC16", // the 16 banks' accumulators seeded (WR_BIAS)
  "RDMAC16", // the 16 accumulators read out (RD_MAC)
  "TMOD", // the switch between register read/write mode and bank mode
  "ACT", // single-bank activate
  "RD", // single-bank read burst to the host
  "PRE", // single-bank precharge
  "WR", // single-bank write burst from the host
  "MAC", // single-bank MAC (MAC_SBK): one column of a bank x 32 bytes of the global buffer
  "EWMUL16", // all-bank element-wise multiply (EWMUL): one column per bank
  "AF16", // all-bank activation function of the accumulators (AF), its table in a reserved row
  "RDAF16", // the 16 activation results read out (RD_AF)
  "RDCP", // a bank's column copied into the global buffer (COPY_BKGB)
  "WRCP", // a column of the global buffer copied into a bank (COPY_GBBK)
  "WRA16", // one burst written to every bank's open row, then all precharged (WR_ABK)
] as const;
export type AimCmd = (typeof AIM_COMMANDS)[number];

/** The AiM timing preset, command-clock cycles (GDDR6.cpp `GDDR6_AiM_timing`, L183-218). */
export const AIM_TIMING = {
  /** Command clock period: 0.5 ns (2 GHz), as the preset's ns comments and CENT's model take it. */
  tCK: 0.5e-9,
  nBL: 2,
  nCL: 50,
  nRCDRD: 36,
  /** ACT / ACT16 to MAC / MAC16 (the read delay plus 10 ns). */
  nRCDRDMAC: 56,
  /** ACT16 to EWMUL16, to AF16 (plus 25 ns), ACT to RDCP (plus 15 ns), ACT to WRCP (plus 10 ns). */
  nRCDEWMUL: 25,
  nRCDRDAF: 86,
  nRCDRDCP: 66,
  nRCDWR: 28,
  nRCDWRCP: 48,
  nRP: 32,
  nRAS: 54,
  nRC: 89,
  nWR: 33,
  nRTP: 12,
  nCWL: 6,
  nCCDS: 2,
  nCCDL: 2,
  nRRDS: 11,
  nRRDL: 11,
  nWTRS: 9,
  nWTRL: 11,
  /** After a register-mode switch (TMOD), before any command. */
  nMODCH: 32,
  /** Latencies of the register and global-buffer paths (GDDR6.cpp L699-714). */
  nCLREG: 0,
  nCWLGB: 1,
  nCWLREG: 1,
  /** The external bus turning from reads to writes (GDDR6.cpp L712). */
  nWPRE: 1,
};

export type AimTiming = typeof AIM_TIMING;

/**
 * A rule between commands: `to` issues at least `latency` cycles after the last `from` of the same
 * channel, or of the same bank with `bank`.
 */
export interface AimRule {
  readonly from: readonly AimCmd[];
  readonly to: readonly AimCmd[];
  readonly latency: (t: AimTiming) => number;
  readonly bank?: true;
}

const ALL = AIM_COMMANDS;
type Cmds = readonly AimCmd[];
const ACTS: Cmds = ["ACT", "ACT16"];
/** Reads and writes on the channel's external bus. */
const BUS_RD: Cmds = ["RD", "RDMAC16", "RDAF16"];
const BUS_WR: Cmds = ["WR", "WRA16", "WRGB", "WRMAC16"];
/** Column commands on the buses between bank groups (nCCDS) and inside one (nCCDL). */
const COL_RD: Cmds = ["RD", "MAC", "MAC16", "RDCP", "RDMAC16", "RDAF16"];
const COL_WR: Cmds = ["WR", "WRA16", "WRGB", "WRCP", "WRMAC16"];
const UNIT_RD: Cmds = ["RDMAC16", "RDAF16", "MAC16", "EWMUL16"];
const UNIT_WR: Cmds = ["WRA16", "WRMAC16", "EWMUL16"];

const rule = (from: Cmds, to: Cmds, latency: (t: AimTiming) => number, bank?: true): AimRule => ({
  from,
  to,
  latency,
  ...(bank ? { bank } : {}),
});

/** The rules the device model applies (GDDR6.cpp L774-999; the prerequisites of preq.h L94-130). */
export const AIM_RULES: readonly AimRule[] = [
  // The external bus: one burst per nBL each way; turning around (L782-825).
  rule(BUS_RD, BUS_RD, (t) => t.nBL),
  rule(BUS_WR, BUS_WR, (t) => t.nBL),
  rule(["RD"], ["WR", "WRA16"], (t) => t.nCL + t.nBL + 3 - t.nCWL + t.nWPRE),
  rule(["RDMAC16", "RDAF16"], ["WR", "WRA16"], (t) => t.nCLREG + t.nBL + 3 - t.nCWL + t.nWPRE),
  rule(["RD"], ["WRGB"], (t) => t.nCL + t.nBL + 3 - t.nCWLGB + t.nWPRE),
  rule(["RD"], ["WRMAC16"], (t) => t.nCL + t.nBL + 3 - t.nCWLREG + t.nWPRE),
  rule(["RDMAC16", "RDAF16"], ["WRGB"], (t) => t.nCLREG + t.nBL + 3 - t.nCWLGB + t.nWPRE),
  rule(["RDMAC16", "RDAF16"], ["WRMAC16"], (t) => t.nCLREG + t.nBL + 3 - t.nCWLREG + t.nWPRE),
  rule(["WR", "WRA16"], BUS_RD, (t) => t.nCWL + t.nBL + Math.max(t.nWTRS, t.nWTRL)),
  rule(["WR"], ["RD"], (t) => t.nCWL + t.nBL + t.nWTRS),
  rule(["WRGB"], BUS_RD, (t) => t.nCWLGB + t.nBL + t.nWTRS),
  rule(["WRMAC16"], BUS_RD, (t) => t.nCWLREG + t.nBL + Math.max(t.nWTRS, t.nWTRL)),
  // Column to column (L790-801).
  rule(COL_RD, COL_RD, (t) => t.nCCDS),
  rule(COL_WR, COL_WR, (t) => t.nCCDS),
  rule([...COL_RD, "EWMUL16"], UNIT_RD, (t) => t.nCCDL),
  rule(UNIT_RD, [...COL_RD, "EWMUL16"], (t) => t.nCCDL),
  rule(["WR", "WRCP", ...UNIT_WR], UNIT_WR, (t) => t.nCCDL),
  rule(UNIT_WR, ["WR", "WRCP", ...UNIT_WR], (t) => t.nCCDL),
  // Column to precharge (L843-849).
  rule(["RD", "RDCP", "MAC", "MAC16", "AF16", "EWMUL16"], ["PREA"], (t) => t.nRTP),
  rule(["MAC16", "AF16", "EWMUL16"], ["PRE"], (t) => t.nRTP),
  rule(["WR", "WRCP"], ["PREA"], (t) => t.nCWL + t.nBL + t.nWR),
  rule(["EWMUL16"], ["PRE", "PREA"], (t) => t.nCWL + t.nWR),
  // Activate and precharge (L851-880).
  rule(["ACT"], ["ACT"], (t) => t.nRRDS),
  rule(ACTS, ["ACT16"], (t) => Math.max(t.nRRDL, t.nRC)),
  rule(["ACT16"], ACTS, (t) => Math.max(t.nRRDL, t.nRC)),
  rule(ACTS, ["PREA"], (t) => t.nRAS),
  rule(["ACT16"], ["PRE"], (t) => t.nRAS),
  rule(["PRE", "PREA"], ["ACT16"], (t) => t.nRP),
  rule(["PREA"], ["ACT"], (t) => t.nRP),
  rule(["PREA"], ["PRE", "PREA"], (t) => t.nRP),
  rule(["PRE"], ["PREA"], (t) => t.nRP),
  rule(ACTS, ["MAC16"], (t) => t.nRCDRDMAC),
  rule(ACTS, ["AF16"], (t) => t.nRCDRDAF),
  rule(ACTS, ["EWMUL16"], (t) => t.nRCDEWMUL),
  rule(ACTS, ["WRA16"], (t) => t.nRCDWR),
  rule(["ACT16"], ["MAC"], (t) => t.nRCDRDMAC),
  rule(["ACT16"], ["RDCP"], (t) => t.nRCDRDCP),
  rule(["ACT16"], ["RD"], (t) => t.nRCDRD),
  rule(["ACT16"], ["WRCP"], (t) => t.nRCDWRCP),
  rule(["ACT16"], ["WR"], (t) => t.nRCDWR),
  rule(["WRA16"], ACTS, (t) => t.nCWL + t.nBL + t.nWR + t.nRP),
  // A register-mode switch holds every command for nMODCH (L905).
  rule(["TMOD"], ALL, (t) => t.nMODCH),
  // One bank (L986-1003).
  rule(["ACT"], ["MAC"], (t) => t.nRCDRDMAC, true),
  rule(["ACT"], ["RDCP"], (t) => t.nRCDRDCP, true),
  rule(["ACT"], ["RD"], (t) => t.nRCDRD, true),
  rule(["ACT"], ["WRCP"], (t) => t.nRCDWRCP, true),
  rule(["ACT"], ["WR"], (t) => t.nRCDWR, true),
  rule(["RD", "RDCP", "MAC"], ["PRE"], (t) => t.nRTP, true),
  rule(["WR", "WRCP"], ["PRE"], (t) => t.nCWL + t.nBL + t.nWR, true),
  rule(["ACT"], ["ACT"], (t) => t.nRC, true),
  rule(["ACT"], ["PRE"], (t) => t.nRAS, true),
  rule(["PRE"], ["ACT", "PRE"], (t) => t.nRP, true),
];

/** Cycles from a command's issue to its completion (GDDR6.cpp `m_command_latencies`, L754-770). */
export const completion = (cmd: AimCmd, t: AimTiming): number => {
  switch (cmd) {
    case "RD":
      return t.nCL + t.nBL;
    case "WR":
      return t.nCWL + t.nBL;
    case "WRGB":
      return t.nCWLGB + t.nBL;
    case "WRMAC16":
      return t.nCWLREG + t.nBL;
    case "RDMAC16":
    case "RDAF16":
      return t.nCLREG + t.nBL;
    case "WRA16":
      return t.nCWL + t.nBL + t.nRP;
    case "MAC16":
    case "MAC":
    case "EWMUL16":
    case "AF16":
    case "RDCP":
    case "WRCP":
      return 1;
    default:
      return 0;
  }
};

const posInt = z.number().int().positive();
const cycles = z.number().int().nonnegative();

export const zAimTiming = z.strictObject(
  Object.fromEntries(
    Object.entries(AIM_TIMING).map(([k, v]) => [
      k,
      k === "tCK" ? z.number().positive().default(v) : cycles.default(v),
    ]),
  ) as { [K in keyof typeof AIM_TIMING]: z.ZodDefault<z.ZodNumber> },
);

/**
 * A GDDR6-AiM system: `channels` channels (two per 8 Gb AiM chip), each of 16 banks of `rows` rows of
 * `columns` 32-byte columns (2 KB rows), a global buffer of `global_buffer` bytes, and the host that
 * runs what the AiM units do not. Defaults: the AiM simulator's 32-channel system (16 chips, 16 GB).
 */
/**
 * The CXL network of CENT's GPU-free system (the CENT artifact, github.com/Morteza1814/CENT, file
 * cent_simulation/cxl_latency.py, L4-13): 8 GB/s per PCIe lane, halved with multicast; a one-hop round
 * trip of 4 CXL ports (25 ns), 2 PCIe links (5 + 20 + 5 ns) and a switch (20 ns).
 */
export const zCxl = z.strictObject({
  lanes_per_device: posInt.max(1024).default(18),
  lane_bandwidth: z.number().positive().default(4e9),
  port_latency: z.number().nonnegative().default(25e-9),
  pcie_latency: z.number().nonnegative().default(30e-9),
  switch_latency: z.number().nonnegative().default(20e-9),
});
export type Cxl = z.infer<typeof zCxl>;

/**
 * CENT's near-memory units (the CENT artifact, github.com/Morteza1814/CENT: constants in
 * cent_simulation/cent_power_calculator.py L93-106, latencies in run_sim.py
 * `calculate_acc_latency`): per device, one accelerator of `lanes` SIMD lanes per channel reading a
 * shared buffer, and `riscv` RISC-V cores, at `frequency`. Given, they time RMSNorm, RoPE and
 * attention's softmax as CENT does (pnmCycles); the host roofline the rest.
 */
export const zPnm = z.strictObject({
  frequency: z.number().positive().default(2e9),
  lanes: posInt.max(1 << 12).default(16),
  riscv: posInt.max(1 << 12).default(8),
  /** Cycles of a lane's exponential (EXP_LANE_CYCLE). */
  exp_cycles: cycles.default(11),
  /** A RISC-V core's cycles per RMSNorm (RV_RMSNorm_CYCLE), per RoPE element (3: RV_ROTEmbed x RV_COUNT). */
  rmsnorm_cycles: cycles.default(26),
  rope_cycles: cycles.default(3),
});
export type Pnm = z.infer<typeof zPnm>;

export const zAimSystem = z
  .strictObject({
    /**
     * AiM devices (CENT: CXL memory expanders of 32 channels each) sharing every linear layer's outputs
     * (tensor parallelism over the CXL network); 1: one board, no network.
     */
    devices: posInt.max(1024).default(1),
    cxl: zCxl.default(zCxl.parse({})),
    /**
     * CENT's pipeline mapping instead (cent_simulation/run_sim.py: PP = the model's blocks, TP = 1):
     * `blocks_per_device` decoder blocks on each device, each on its own floor(channels /
     * blocks_per_device) channels with its weights and KV cache, and one query per block in flight.
     */
    pipeline: z.strictObject({ blocks_per_device: posInt.max(1 << 12) }).optional(),
    /** Channels of a device. */
    channels: posInt.max(1 << 12).default(32),
    bank_groups: posInt.max(64).default(4),
    banks_per_group: posInt.max(64).default(4),
    rows: posInt.max(1 << 24).default(16384),
    columns: posInt.max(1 << 16).default(64),
    burst_bytes: posInt.max(1024).default(32),
    /** Bytes of the global buffer of a channel (the input slice a MAC_ABK multiplies). */
    global_buffer: posInt.max(1 << 20).default(2048),
    timing: zAimTiming.default(zAimTiming.parse({})),
    host: zHost.default(zHost.parse({})),
    /** CENT's near-memory units in place of the host roofline for what they run (zPnm). */
    pnm: zPnm.optional(),
    /**
     * Where element-wise work runs: "host" (the host, or the near-memory units where `pnm` is
     * given, by their roofline), or "units": CENT's mapping (vectors.ts), RMSNorm, RoPE, SiLU, the
     * gate's product and the softmax's scaling as AiM instructions over vectors written into the
     * banks, the near-memory units doing only their scalar work (needs `pnm`).
     */
    elementwise: z.enum(["host", "units"]).default("host"),
  })
  .superRefine((s, ctx) => {
    if (s.elementwise === "units" && !s.pnm)
      ctx.addIssue({
        code: "custom",
        path: ["elementwise"],
        message: `"units" needs the near-memory units (pnm) for the scalar work (sums, square roots, exponentials)`,
      });
    if (s.pipeline && s.pipeline.blocks_per_device > s.channels)
      ctx.addIssue({
        code: "custom",
        path: ["pipeline", "blocks_per_device"],
        message: `more blocks than the device's ${s.channels} channels (a block needs one at least)`,
      });
  });
export type AimSystem = z.infer<typeof zAimSystem>;

export const DEFAULT_SYSTEM: AimSystem = zAimSystem.parse({});

export const banksOf = (s: AimSystem): number => s.bank_groups * s.banks_per_group;

/** Every device's channels as one pool (what a GEMV split over the devices runs on). */
export const poolOf = (s: AimSystem): AimSystem =>
  s.devices === 1 ? s : { ...s, channels: s.channels * s.devices, devices: 1 };

/**
 * Seconds to share a GEMV of W [n, k] over the devices (CENT's cxl_latency.py): the input broadcast
 * (k values) and the outputs gathered (n / devices from each of the others), each a one-hop round
 * trip plus its PBR flits (3 messages of 64 bytes of 2-byte values per 256-byte flit) at the device's
 * lanes. 0 on one device.
 */
export function cxlSeconds(s: AimSystem, n: number, k: number): number {
  if (s.devices === 1) return 0;
  const c = s.cxl;
  const rt = 4 * c.port_latency + 2 * c.pcie_latency + c.switch_latency;
  const bw = c.lanes_per_device * c.lane_bandwidth;
  const flits = (values: number): number => Math.ceil((values * 2) / 64 / 3);
  const broadcast = rt + (flits(k) * 256) / bw;
  const gather = rt + (flits(Math.ceil(n / s.devices)) * (s.devices - 1) * 256) / bw;
  return broadcast + gather;
}
/** 16-bit elements of a burst and of a row. */
export const laneCount = (s: AimSystem): number => s.burst_bytes / 2;
export const rowElements = (s: AimSystem): number => s.columns * laneCount(s);

/**
 * Cycles of CENT's near-memory units (run_sim.py `calculate_acc_latency`), with a shared buffer read
 * and write of one cycle each and one accelerator per channel: the accelerators' pipelined EXP
 * (channels + EXP lane + 1) and vector (2 x channels + 2) operations over `lanes`-wide slices.
 */
export const pnmCycles = (p: Pnm, channels: number) => {
  const exp = channels + p.exp_cycles + 1;
  const vec = 2 * channels + 1 + 1;
  // RV_SFT_CYCLE_PIPELINE: 16 shared-buffer writes, 2 cycles over the cores, 1 read.
  const softmaxCore = 16 + 2 / p.riscv + 1;
  return {
    /** One row of `d` values: a vector pass, a reduction, the RISC-V's scaling. */
    rmsNorm: (d: number): number => (d / p.lanes / p.lanes / channels) * vec + 3 + p.rmsnorm_cycles,
    /** One query row of one head over `t` tokens: exponentials, sums, a reduction, the cores' part. */
    softmax: (t: number): number => (t / p.lanes / channels) * (exp + vec) + 1 + softmaxCore,
    /** Rotating `n` values on the RISC-V cores. */
    rope: (n: number): number => (n * p.rope_cycles) / p.riscv,
  };
};
