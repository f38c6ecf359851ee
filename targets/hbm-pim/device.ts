/**
 * Runs kernels on every pseudo-channel of an HBM-PIM system, in time and (optionally) functionally.
 *
 * Fast mode (default): every pseudo-channel runs the same request stream, so one controller is timed
 * and its command order is replayed on the others' data (identical channels fast-forwarded).
 * Detailed mode: each pseudo-channel's controller is timed on its own; tests check both agree.
 * Streams of the non-PIM path may give the first pseudo-channels one burst more than the last: fast
 * mode times one of each distinct request count.
 */
import { COMMANDS } from "./standard.js";
import { runChannel, type ChannelTiming, type CommandLog } from "./controller.js";
import { f16round as f16 } from "@petamoriken/float16";
import {
  streamKey,
  streamRequests,
  type EltwiseLayout,
  type GemvLayout,
  type PimKernel,
  type StreamPhase,
  gemvResultFlat,
  inputTile,
  resultOdd,
  unitBank,
} from "./kernels.js";
import type { PimChannel } from "./pim.js";
import { ModeTracker } from "./pim.js";
import type { Cmd, HbmPimSystem } from "./standard.js";

export interface KernelResult {
  /** Cycles until the slowest pseudo-channel is done, and seconds at tCK. */
  readonly cycles: number;
  readonly seconds: number;
  /** Commands of one pseudo-channel (the slowest), by kind. */
  readonly counts: Readonly<Record<Cmd, number>>;
  /** Controllers timed (1 in fast mode for a PIM kernel; every pseudo-channel in detailed mode). */
  readonly timed: number;
  /** Cycles per pseudo-channel (detailed mode only). */
  readonly perChannel?: readonly number[];
  /** The slowest pseudo-channel's commands (for traces). */
  readonly log: CommandLog;
}

export interface RunOptions {
  readonly detailed?: boolean;
  /** Functional state of every pseudo-channel (PIM kernels execute on it). */
  readonly channels?: readonly PimChannel[];
  /** Called after each pseudo-channel's controller is timed (for a progress bar). */
  readonly onChannel?: () => void;
}

function result(sys: HbmPimSystem, timings: readonly ChannelTiming[], detailed: boolean): KernelResult {
  let worst = timings[0]!;
  for (const t of timings) if (t.cycles > worst.cycles) worst = t;
  return {
    cycles: worst.cycles,
    seconds: worst.cycles * sys.timing.tCK,
    counts: worst.counts,
    timed: timings.length,
    ...(detailed ? { perChannel: timings.map((t) => t.cycles) } : {}),
    log: worst.log,
  };
}

/** Replays a command log on a functional pseudo-channel. */
export function replay(dev: PimChannel, log: CommandLog): void {
  for (let i = 0; i < log.length; i++)
    dev.onCommand(
      COMMANDS[log.cmd[i]!]!,
      log.rank[i]!,
      log.bg[i]!,
      log.bank[i]!,
      log.row[i]!,
      log.col[i]!,
      log.req[i]!,
    );
}

export function runPimKernel(sys: HbmPimSystem, k: PimKernel, opts: RunOptions = {}): KernelResult {
  const devs = opts.channels;
  if (devs && devs.length !== sys.pseudo_channels)
    throw new Error(
      `internal: ${devs.length} functional pseudo-channels for a system of ${sys.pseudo_channels}`,
    );
  const bind = (ch: number): ModeTracker => {
    const d = devs?.[ch];
    if (!d) return new ModeTracker(sys);
    d.payload = (req) => k.payload(ch, req);
    return d;
  };
  if (opts.detailed) {
    const timings = Array.from({ length: sys.pseudo_channels }, (_, ch) => {
      const t = runChannel(sys, k.requests, bind(ch));
      opts.onChannel?.();
      return t;
    });
    return result(sys, timings, true);
  }
  const t = runChannel(sys, k.requests, bind(0));
  opts.onChannel?.();
  if (devs) for (const ch of k.active) if (ch !== 0) replay(bind(ch) as PimChannel, t.log);
  return result(sys, [t], false);
}

/** Times streams of the normal read/write path (the non-PIM baseline of a kernel). */
export function runStream(
  sys: HbmPimSystem,
  phases: readonly StreamPhase[],
  opts: RunOptions = {},
): KernelResult {
  const timings: ChannelTiming[] = [];
  const seen = new Set<string>();
  for (let ch = 0; ch < sys.pseudo_channels; ch++) {
    const key = streamKey(sys, phases, ch);
    if (!opts.detailed && seen.has(key)) continue;
    seen.add(key);
    timings.push(runChannel(sys, streamRequests(sys, phases, ch)));
    opts.onChannel?.();
  }
  return result(sys, timings, opts.detailed === true);
}

// ---------------------------------------------------------------------------------------------
// Data in the kernels' layouts (kernels.ts), written and read by the host (weights at program load,
// results after a kernel).

/** The bank id (bank group x banks per group + bank) of unit u's even or odd bank. */
const unitBankId = (sys: HbmPimSystem, u: number, odd: number): number => {
  const { bg, bank } = unitBank(sys, u, odd);
  return bg * sys.banks_per_group + bank;
};

/** Where output o of a GEMV (of group `group`) lives: output tile, pseudo-channel, unit, accumulator. */
function gemvOutput(sys: HbmPimSystem, l: GemvLayout, o: number, group: number) {
  const g = sys.pim.grf;
  const b = o % g;
  const u = Math.floor(o / g) % sys.pim.units;
  const c = Math.floor(o / (g * sys.pim.units)) % l.channelsPerGroup;
  const j = Math.floor(o / (g * sys.pim.units * l.channelsPerGroup));
  return { j, ch: group * l.channelsPerGroup + c, u, b };
}

/** Where input `k` of output `o` of a GEMV (of group `group`) lives: pseudo-channel, bank, row, column, lane. */
export function gemvBurst(sys: HbmPimSystem, l: GemvLayout, o: number, k: number, group = 0) {
  const g = sys.pim.grf;
  const lanes = sys.pim.lanes;
  const { j, ch, u, b } = gemvOutput(sys, l, o, group);
  const a = Math.floor(k / lanes) % g;
  const tile = inputTile(sys, Math.floor(k / (lanes * g)));
  const flat = tile.flat + g * a + b;
  const { bg, bank: bankInGroup } = unitBank(sys, u, tile.odd);
  return {
    ch,
    bg,
    bankInGroup,
    bank: bg * sys.banks_per_group + bankInGroup,
    row: l.row0 + j * l.rowsPerTile + Math.floor(flat / sys.columns),
    col: flat % sys.columns,
    lane: k % lanes,
  };
}

/** Stores W [n, k] (row-major, rounded to FP16) in the GEMV layout. */
export function storeGemvWeights(
  sys: HbmPimSystem,
  devs: readonly PimChannel[],
  l: GemvLayout,
  w: Float32Array,
  group = 0,
): void {
  const lanes = sys.pim.lanes;
  const v = new Float32Array(lanes);
  for (let o = 0; o < l.n; o++)
    for (let k0 = 0; k0 < l.k; k0 += lanes) {
      for (let t = 0; t < lanes; t++) v[t] = k0 + t < l.k ? w[o * l.k + k0 + t]! : 0;
      const at = gemvBurst(sys, l, o, k0, group);
      devs[at.ch]!.store(at.bank, at.row, at.col, v);
    }
}

/**
 * The GEMV's results (of group `group`, input vector `vector`): each output's 16 lane partial sums
 * (FP16) added by the host in float32.
 */
export function readGemvResult(
  sys: HbmPimSystem,
  devs: readonly PimChannel[],
  l: GemvLayout,
  group = 0,
  vector = 0,
): Float32Array {
  const y = new Float32Array(l.n);
  const g = sys.pim.grf;
  for (let o = 0; o < l.n; o++) {
    const { j, ch, u, b } = gemvOutput(sys, l, o, group);
    const flat = gemvResultFlat(l, j, vector, b, g);
    const lanes = devs[ch]!.burst(
      unitBankId(sys, u, resultOdd(sys)),
      l.resultRow + Math.floor(flat / sys.columns),
      flat % sys.columns,
    );
    let s = 0;
    for (let t = 0; t < lanes.length; t++) s = Math.fround(s + lanes[t]!);
    y[o] = s;
  }
  return y;
}

/** Visits every element of an element-wise layout: (pseudo-channel, bank, row offset, column, lane). */
function eachElement(
  sys: HbmPimSystem,
  l: EltwiseLayout,
  f: (e: number, ch: number, bank: number, dRow: number, col: number, lane: number) => void,
): void {
  const g = sys.pim.grf;
  const lanes = sys.pim.lanes;
  const banks = sys.bank_groups * sys.banks_per_group;
  for (let e = 0; e < l.n; e++) {
    const lane = e % lanes;
    const c = Math.floor(e / lanes) % g;
    const bank = Math.floor(e / (lanes * g)) % banks;
    const ch = Math.floor(e / (lanes * g * banks)) % sys.pseudo_channels;
    const t = Math.floor(e / (lanes * g * banks * sys.pseudo_channels));
    const flat = t * g + c;
    f(e, ch, bank, Math.floor(flat / sys.columns), flat % sys.columns, lane);
  }
}

/** Stores operand `which` (0 or 1) of an element-wise kernel (rounded to FP16). */
export function storeEltwise(
  sys: HbmPimSystem,
  devs: readonly PimChannel[],
  l: EltwiseLayout,
  which: 0 | 1,
  x: Float32Array,
): void {
  eachElement(sys, l, (e, ch, bank, dRow, col, lane) => {
    devs[ch]!.burst(bank, l.rows[which] + dRow, col)[lane] = f16(x[e]!);
  });
}

export function readEltwise(sys: HbmPimSystem, devs: readonly PimChannel[], l: EltwiseLayout): Float32Array {
  const y = new Float32Array(l.n);
  eachElement(sys, l, (e, ch, bank, dRow, col, lane) => {
    y[e] = devs[ch]!.burst(bank, l.rows[2] + dRow, col)[lane]!;
  });
  return y;
}
