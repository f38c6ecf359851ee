/**
 * The DRAM standard as data (Ramulator-style): the organisation's levels, the commands, and the timing
 * constraints as a table of (level, preceding command, following command, latency) rows whose
 * latencies are expressions over the timing parameters. `HBM2` holds the values of Samsung's
 * PIMSimulator configuration (HBM2_samsung_2M_16B_x64.ini, github.com/SAITPublic/PIMSimulator); a system block overrides
 * any parameter (`timing = { tRCDRD = 16 }`). The controller (controller.ts) only reads this table.
 */
import { z } from "zod";
import { HBM_PATH, MAC_ENERGY, PIM_SRAM_PER_BYTE } from "../../src/pipeline/energy.js";
import { zHost } from "../cpu/index.js";
import { zXpu } from "../xpu/model.js";

/** Levels of the organisation, outermost first (a pseudo-channel has its own controller). */
export const LEVELS = ["pseudo_channel", "rank", "bank_group", "bank"] as const;
export type Level = (typeof LEVELS)[number];

/** DRAM commands. PREA precharges every bank of a rank; REF is an all-bank refresh of a rank. */
export const COMMANDS = ["ACT", "PRE", "PREA", "RD", "WR", "REF"] as const;
export type Cmd = (typeof COMMANDS)[number];
export const CMD_INDEX: Readonly<Record<Cmd, number>> = Object.fromEntries(
  COMMANDS.map((c, i) => [c, i]),
) as Record<Cmd, number>;

/**
 * One timing constraint: after `from` at a node of `level`, `to` may not issue at that node (the same
 * bank, bank group, rank or pseudo-channel) before `latency` cycles have passed. With `window` = n,
 * the constraint counts the last n `from` commands instead (tFAW: at most n ACTs per window).
 */
export interface Constraint {
  readonly level: Level;
  readonly from: readonly Cmd[];
  readonly to: readonly Cmd[];
  readonly latency: string;
  readonly window?: number;
}

/**
 * HBM2 (JEDEC JESD235 as configured in PIMSimulator). Derived delays as in DRAMSim2:
 * read-to-precharge AL + BL/2 + max(tRTPL, tCCDL) - tCCDL, write-to-precharge WL + BL/2 + tWR,
 * read-to-write RL + BL/2 + tRTRS - WL, write-to-read WL + BL/2 + tWTR (long within a bank group).
 */
export const HBM2_CONSTRAINTS: readonly Constraint[] = [
  // Bank.
  { level: "bank", from: ["ACT"], to: ["RD"], latency: "tRCDRD" },
  { level: "bank", from: ["ACT"], to: ["WR"], latency: "tRCDWR" },
  { level: "bank", from: ["ACT"], to: ["PRE"], latency: "tRAS" },
  { level: "bank", from: ["ACT"], to: ["ACT"], latency: "tRC" },
  { level: "bank", from: ["PRE"], to: ["ACT"], latency: "tRP" },
  { level: "bank", from: ["RD"], to: ["PRE"], latency: "AL + BL/2 + max(tRTPL, tCCDL) - tCCDL" },
  { level: "bank", from: ["WR"], to: ["PRE"], latency: "WL + BL/2 + tWR" },
  // Bank group.
  { level: "bank_group", from: ["RD"], to: ["RD"], latency: "max(tCCDL, BL/2)" },
  { level: "bank_group", from: ["WR"], to: ["WR"], latency: "max(tCCDL, BL/2)" },
  { level: "bank_group", from: ["WR"], to: ["RD"], latency: "WL + BL/2 + tWTRL" },
  { level: "bank_group", from: ["ACT"], to: ["ACT"], latency: "tRRDL" },
  // Rank.
  { level: "rank", from: ["RD"], to: ["RD"], latency: "max(tCCDS, BL/2)" },
  { level: "rank", from: ["WR"], to: ["WR"], latency: "max(tCCDS, BL/2)" },
  { level: "rank", from: ["RD"], to: ["WR"], latency: "RL + BL/2 + tRTRS - WL" },
  { level: "rank", from: ["WR"], to: ["RD"], latency: "WL + BL/2 + tWTRS" },
  { level: "rank", from: ["ACT"], to: ["ACT"], latency: "tRRDS" },
  { level: "rank", from: ["ACT"], to: ["ACT"], latency: "tFAW", window: 4 },
  { level: "rank", from: ["ACT"], to: ["PREA"], latency: "tRAS" },
  { level: "rank", from: ["PRE", "PREA"], to: ["REF"], latency: "tRP" },
  { level: "rank", from: ["PREA"], to: ["ACT"], latency: "tRP" },
  { level: "rank", from: ["RD"], to: ["PREA"], latency: "AL + BL/2 + max(tRTPL, tCCDL) - tCCDL" },
  { level: "rank", from: ["WR"], to: ["PREA"], latency: "WL + BL/2 + tWR" },
  { level: "rank", from: ["REF"], to: ["ACT", "REF"], latency: "tRFC" },
  // The pseudo-channel's data bus: another rank's burst follows after a rank-to-rank switch.
  { level: "pseudo_channel", from: ["RD"], to: ["RD"], latency: "BL/2" },
  { level: "pseudo_channel", from: ["WR"], to: ["WR"], latency: "BL/2" },
];

const HBM2_TIMING = {
  /** Clock period, seconds. */
  tCK: 1e-9,
  BL: 4,
  RL: 20,
  WL: 8,
  AL: 0,
  tCCDS: 2,
  tCCDL: 4,
  tRCDRD: 14,
  tRCDWR: 10,
  tRAS: 33,
  tRP: 14,
  tRC: 47,
  tRRDS: 4,
  tRRDL: 6,
  tRTPS: 4,
  tRTPL: 5,
  tWR: 16,
  tWTRS: 4,
  tWTRL: 9,
  tRTRS: 1,
  tFAW: 16,
  tREFI: 3900,
  tRFC: 350,
};

/**
 * HBM2 energy, per pseudo-channel (docs/energy.md): the access path's per-bit energies (HBM_PATH:
 * O'Connor et al. MICRO 2017 as the AttAcc simulator tabulates them) and currents from DRAMsim3's
 * HBM2 configuration (umd-memsys/DRAMsim3, configs/HBM2_8Gb_x128.ini, [power]), which are per
 * 128-bit channel: a pseudo-channel, half of one, draws half. The PIM units' figures are AttAcc's for
 * its bank-level PIM (ENERGY_TABLE): no public source gives Aquabolt-XL's.
 */
export const HBM2_ENERGY = {
  ...HBM_PATH,
  /** Supply and currents (DRAMsim3 HBM2_8Gb_x128.ini: VDD 1.2 V, IDD2N 40, IDD3N 55, IDD5AB 250 mA). */
  vdd: 1.2,
  idd2n: 0.04,
  idd3n: 0.055,
  idd5ab: 0.25,
  /** Pseudo-channels sharing one channel's currents. */
  perChannel: 2,
  /** A PIM unit's FP16 lane operation (AttAcc's ALU energy per MAC). */
  laneOp: MAC_ENERGY,
  /** A PIM unit's register-file vector (32 bytes) read or written (AttAcc's PIM SRAM, 0.0034 pJ/byte). */
  regPerByte: PIM_SRAM_PER_BYTE,
} as const;

/** What `pimc kernel --refresh` takes: the controller's refresh policies, or none. */
export const REFRESH_POLICIES = ["jedec", "deferred", "off"] as const;

const cycles = z.number().int().nonnegative();
export const zTiming = z.strictObject(
  Object.fromEntries(
    Object.entries(HBM2_TIMING).map(([k, v]) => [
      k,
      k === "tCK" ? z.number().positive().default(v) : cycles.default(v),
    ]),
  ) as { [K in keyof typeof HBM2_TIMING]: z.ZodDefault<z.ZodNumber> },
);
export type Timing = z.infer<typeof zTiming>;

const posInt = z.number().int().positive();

/**
 * Address mapping of the non-PIM path: fields from the least significant bit up (Scheme8 of
 * DRAMSim2: burst offset, pseudo-channel, bank, bank group, column, row). Widths follow the
 * organisation.
 */
export const ADDRESS_FIELDS = [
  "offset",
  "pseudo_channel",
  "bank",
  "bank_group",
  "column",
  "row",
  "rank",
] as const;
export type AddressField = (typeof ADDRESS_FIELDS)[number];

/** The organisation of a set of PIM stacks: pseudo-channels, timing, controller, PIM units. */
const STACK_FIELDS = {
  /** Independent pseudo-channels, each with its own controller and 8 PIM units (PIMSimulator: 64). */
  pseudo_channels: posInt.default(64),
  /** Ranks per pseudo-channel: data and PIM units live in rank 0; the others are refreshed too. */
  ranks: posInt.default(2),
  bank_groups: posInt.default(4),
  banks_per_group: posInt.default(4),
  rows: posInt.default(16384),
  /** Bursts (column addresses of BL x bus width) per row: 32 x 32 B = 1 KiB rows. */
  columns: posInt.default(32),
  burst_bytes: posInt.default(32),
  // A refresh that takes more than half of its interval leaves the banks (almost) no time: the
  // emulation would crawl or never finish. tREFI = 0 turns refresh off.
  timing: zTiming
    .refine((t) => t.tREFI === 0 || t.tREFI >= 2 * t.tRFC, {
      message: "tREFI must be 0 (no refresh) or at least 2 x tRFC (a refresh takes tRFC cycles)",
      path: ["tREFI"],
    })
    .default(zTiming.parse({})),
  address_mapping: z
    .array(z.enum(ADDRESS_FIELDS))
    .default(["offset", "pseudo_channel", "bank", "bank_group", "column", "row", "rank"]),
  controller: z
    .strictObject({
      /** Requests the scheduler sees at once (transaction + command queue of DRAMSim2). */
      queue_depth: posInt.default(64),
      /**
       * All-bank refresh of each rank every tREFI, staggered by tREFI / ranks (true or "jedec": a
       * rank whose refresh is due opens no rows until its REF, which waits tRP after its last PRE;
       * "deferred": PIMSimulator's DRAMSim2 controller, docs/hbm-pim.md; false: none).
       */
      refresh: z.union([z.boolean(), z.enum(["jedec", "deferred"])]).default(true),
    })
    .default({ queue_depth: 64, refresh: true }),
  pim: z
    .strictObject({
      /** PIM units per pseudo-channel: one per even/odd bank pair of rank 0 (or per bank). */
      units: posInt.default(8),
      /**
       * Banks a unit computes on: 2 (Aquabolt-XL: an even/odd pair, a column command steps the units
       * on the banks of one parity) or 1 (a unit per bank: a command steps every bank's unit).
       */
      banks_per_unit: z.union([z.literal(1), z.literal(2)]).default(2),
      /**
       * Input vectors a unit multiplies each weight burst with (its FPUs: PAPI's FC-PIM has 4 per
       * bank). Each has its own GRF_A and GRF_B, written through the register row minus its index.
       */
      vectors: posInt.default(1),
      /**
       * What the PIM stacks hold and run: linear layers (their weights in the banks), attention (the
       * KV cache in the banks), element-wise ops. AttAcc's stacks: attention only.
       */
      ops: z
        .array(z.enum(["linear", "attention", "elementwise"]))
        .default(["linear", "attention", "elementwise"]),
      /** FP16 lanes per unit (one 32-byte burst). */
      lanes: posInt.default(16),
      crf: posInt.default(32),
      grf: posInt.default(8),
      srf: posInt.default(8),
      /** Reserved rows: all-bank mode entry and exit (written/precharged), PIM registers. */
      abmr_row: cycles.default(0x17ff),
      sbmr_row: cycles.default(0x1fff),
      register_row: cycles.default(0x3fff),
      /** Row every kernel parks the banks on before mode changes. */
      park_row: cycles.default(0x1000),
    })
    .default({
      units: 8,
      banks_per_unit: 2,
      vectors: 1,
      ops: ["linear", "attention", "elementwise"],
      lanes: 16,
      crf: 32,
      grf: 8,
      srf: 8,
      abmr_row: 0x17ff,
      sbmr_row: 0x1fff,
      register_row: 0x3fff,
      park_row: 0x1000,
    }),
};

type Stacks = { [K in keyof typeof STACK_FIELDS]: z.infer<(typeof STACK_FIELDS)[K]> };

/** Checks of an organisation (units cover the banks; results fit a row). */
function organised<T extends z.ZodType<Stacks>>(schema: T) {
  return schema
    .refine((s) => s.pim.units * s.pim.banks_per_unit === s.bank_groups * s.banks_per_group, {
      message:
        "pim.units x pim.banks_per_unit must equal the banks of a rank (bank_groups x banks_per_group)",
      path: ["pim", "units"],
    })
    .refine((s) => s.columns % (s.pim.grf * s.pim.vectors) === 0, {
      message:
        "pim.grf x pim.vectors must divide the columns of a row (a GEMV stores its results a row at a time)",
      path: ["pim", "vectors"],
    });
}

/** A second set of PIM stacks (PAPI's Attn-PIM beside its FC-PIM): organisation only. */
export const zPimStacks = organised(z.strictObject(STACK_FIELDS));

export const zHbmPimSystem = organised(
  z.strictObject({
    ...STACK_FIELDS,
    /**
     * The processor that reads and writes this memory and runs what PIM does not: by default a GPU of
     * the class of the HBM-PIM paper's host (AMD MI100: 120 compute units x 64 FP32 lanes x FMA at
     * 1.502 GHz = 23.1 TFLOP/s) reading this HBM at its peak (64 pseudo-channels x 32 bytes per 2 ns).
     */
    host: zHost.default(
      zHost.parse({
        cores: 120,
        simd_width: 2048,
        fma_units: 1,
        frequency: 1.502e9,
        memory_bandwidth: 1.024e12,
      }),
    ),
    /**
     * An xPU host (GPU or NPU, targets/xpu/model.ts: caps, occupancy, launch overhead) with its own
     * memory bandwidth: when given, it times the host side instead of `host`'s roofline.
     */
    xpu: zXpu.optional(),
    /**
     * Other PIM stacks that hold the KV cache and run attention (PAPI's Attn-PIM): attention goes to
     * them (device `attn_pim`) when their units are faster; these stacks then keep the weights.
     */
    attn_pim: zPimStacks.optional(),
  }),
);

export type HbmPimSystem = z.infer<typeof zHbmPimSystem> & {
  /** `--no-k-split` (a flag, not a description key): linear layers keep K whole (linearSplit). */
  readonly k_split?: false;
};

/** Rows no data may use: park, mode changes, and the register rows (one per input vector). */
export function reservedRows(sys: HbmPimSystem): number[] {
  const p = sys.pim;
  return [
    p.park_row,
    p.abmr_row,
    p.sbmr_row,
    ...Array.from({ length: p.vectors }, (_, k) => p.register_row - k),
  ];
}

/** The attention stacks as a system of their own (sharing the host), or undefined. */
export function attnSystem(sys: HbmPimSystem): HbmPimSystem | undefined {
  return sys.attn_pim ? { ...sys.attn_pim, host: sys.host, ...(sys.xpu ? { xpu: sys.xpu } : {}) } : undefined;
}
export const DEFAULT_SYSTEM: HbmPimSystem = zHbmPimSystem.parse({});

// ---------------------------------------------------------------------------------------------
// Latency expressions: + - of terms, a term a name, an integer, NAME/INT or max(a, b).

export function evalLatency(expr: string, t: Timing): number {
  const tokens = expr.match(/max|[A-Za-z_]\w*|\d+|[-+/(),]/g) ?? [];
  let i = 0;
  const peek = (): string | undefined => tokens[i];
  const next = (): string => {
    const x = tokens[i++];
    if (x === undefined) throw new Error(`latency "${expr}": unexpected end`);
    return x;
  };
  const atom = (): number => {
    const x = next();
    if (x === "max") {
      if (next() !== "(") throw new Error(`latency "${expr}": max needs (`);
      const a = sum();
      if (next() !== ",") throw new Error(`latency "${expr}": max needs two arguments`);
      const b = sum();
      if (next() !== ")") throw new Error(`latency "${expr}": max needs )`);
      return Math.max(a, b);
    }
    let v: number;
    if (/^\d+$/.test(x)) v = Number(x);
    else if (x in t) v = t[x as keyof Timing];
    else throw new Error(`latency "${expr}": unknown timing parameter ${x}`);
    if (peek() === "/") {
      next();
      v /= Number(next());
    }
    return v;
  };
  const sum = (): number => {
    let v = atom();
    while (peek() === "+" || peek() === "-") v = next() === "+" ? v + atom() : v - atom();
    return v;
  };
  const v = sum();
  if (i !== tokens.length) throw new Error(`latency "${expr}": unexpected ${tokens[i]}`);
  return v;
}
