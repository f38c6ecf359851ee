/**
 * Weight layouts per phase, and the MRAM they take.
 *
 * A resident weight gets, for each phase that runs it on the DPUs, the layout the Tile-Selector picks
 * for that phase's row count alone: a prefill of B x S rows and a decode step of B rows usually want
 * different distributions (BatchedGEMM replicas or N tiles for many rows, MixedGEMM K splits for one).
 * Phases whose picks hold the same W block (the same dn x dk) share one copy, with the larger replica
 * count dm.
 *
 * MRAM is per DPU, and a region takes the same offsets on every DPU, so what counts is the bytes of
 * a layout's W block on one DPU: replicas (dm) and layouts over few DPUs take much more than the
 * weight's share of the whole MRAM. When the layouts every phase wants do not fit together, the
 * weights trade time for MRAM: each weight's options are the Pareto front of (bytes per DPU, time per
 * request) over its layouts -- a layout per phase, or one shared by the phases -- with the time of a
 * request the calls of each phase (the workload's phase mix, e.g. 1 prefill and 128 decode steps)
 * times their tiling's estimate. Starting from every weight's smallest option, the upgrade that saves
 * the most time per byte goes first while MRAM lasts (the greedy solution of a multiple-choice
 * knapsack). What each phase then pays per call against its own best layout is kept for the reports.
 */
import type { Distribution } from "./gemm.js";

/** A Tile-Selector pick for one row count. */
export interface Picked<T> {
  readonly tiling: T;
  readonly estimate: { readonly total: number };
}

/** A W layout and, per row count asked for, its pick (what selectJoint and selectLut return). */
export interface Selection<T> {
  readonly distribution: Distribution;
  readonly choices: readonly Picked<T>[];
}

/** One resident weight: its phases, their calls per request, and the Tile-Selector under a budget. */
export interface WeightOptions<T> {
  readonly weight: string;
  readonly phases: readonly string[];
  readonly calls: readonly number[];
  /**
   * The best layout for phase `i` alone, or (`"all"`) one layout for every phase chosen for their
   * calls, among layouts whose W block takes at most `budget` bytes per DPU.
   */
  readonly select: (phase: number | "all", budget: number) => Selection<T> | undefined;
  /** Per-DPU MRAM bytes of a layout's W block. */
  readonly bytes: (d: Distribution) => number;
}

/** One copy of a weight in MRAM and the phases that use it. */
export interface WeightLayout {
  readonly distribution: Distribution;
  readonly phases: readonly string[];
  /** Per-DPU MRAM bytes of its W block. */
  readonly bytes: number;
}

export interface LayoutDecision<T> {
  readonly weight: string;
  readonly layouts: readonly WeightLayout[];
  /** Per phase (in the options' order): its tiling and estimate, and the index of its layout. */
  readonly choices: readonly Picked<T>[];
  readonly layoutOf: readonly number[];
  /** Per-DPU bytes of all its layouts. */
  readonly bytes: number;
  /** Seconds of a request (calls x estimates). */
  readonly cost: number;
  /** Seconds per call each phase lost against its own best layout (only when MRAM forced a smaller one). */
  readonly paid?: Readonly<Record<string, number>>;
}

/** Picks per budget, largest first: each the best among layouts smaller than the previous pick's. */
const MAX_FRONT = 10;

function front<T>(
  sel: (budget: number) => Selection<T> | undefined,
  bytes: (d: Distribution) => number,
  budget: number,
) {
  const out: Selection<T>[] = [];
  for (let b = budget; out.length < MAX_FRONT;) {
    const s = sel(b);
    if (!s) break;
    out.push(s);
    b = bytes(s.distribution) - 1;
  }
  return out;
}

/** Phases' picks (one per phase), phases with the same W block sharing one copy. */
export function decision<T>(
  w: WeightOptions<T>,
  picks: readonly Selection<T>[],
  choices: readonly Picked<T>[],
): LayoutDecision<T> {
  const layouts: { distribution: Distribution; phases: string[]; bytes: number }[] = [];
  const layoutOf = picks.map((s, i) => {
    const d = s.distribution;
    let at = layouts.findIndex((l) => l.distribution.dn === d.dn && l.distribution.dk === d.dk);
    if (at < 0) at = layouts.push({ distribution: d, phases: [], bytes: w.bytes(d) }) - 1;
    const l = layouts[at]!;
    l.phases.push(w.phases[i]!);
    if (d.dm > l.distribution.dm) l.distribution = { ...l.distribution, dm: d.dm };
    return at;
  });
  return {
    weight: w.weight,
    layouts,
    choices,
    layoutOf,
    bytes: layouts.reduce((s, l) => s + l.bytes, 0),
    cost: choices.reduce((s, c, i) => s + w.calls[i]! * c.estimate.total, 0),
  };
}

/**
 * A weight's options within `budget` bytes per DPU: the Pareto front of (bytes, seconds per request)
 * over a layout per phase (each phase's picks under shrinking budgets, combined) and one shared
 * layout, smallest first (so the time falls from one to the next). Empty when nothing fits.
 */
export function weightOptions<T>(w: WeightOptions<T>, budget: number): LayoutDecision<T>[] {
  const own = w.phases.map((_, i) => front((b) => w.select(i, b), w.bytes, budget));
  if (own.some((f) => f.length === 0)) return [];
  const all: LayoutDecision<T>[] = [];
  // Every combination of the phases' picks (a handful each; two phases at most in practice).
  const combine = (i: number, picks: Selection<T>[]): void => {
    if (i === own.length) {
      all.push(
        decision(
          w,
          picks,
          picks.map((s) => s.choices[0]!),
        ),
      );
      return;
    }
    for (const s of own[i]!) combine(i + 1, [...picks, s]);
  };
  combine(0, []);
  if (w.phases.length > 1)
    for (const s of front((b) => w.select("all", b), w.bytes, budget))
      all.push(
        decision(
          w,
          w.phases.map(() => s),
          s.choices,
        ),
      );
  // The Pareto front, smallest first; ties go to the earlier option (deterministic).
  all.sort((a, b) => a.bytes - b.bytes || a.cost - b.cost);
  const out: LayoutDecision<T>[] = [];
  for (const d of all)
    if (d.bytes <= budget && (out.length === 0 || d.cost < out[out.length - 1]!.cost)) out.push(d);
  // What each phase pays against its own best pick.
  return out.map((d) => {
    const paid: Record<string, number> = {};
    let any = false;
    w.phases.forEach((p, i) => {
      paid[p] = Math.max(0, d.choices[i]!.estimate.total - own[i]![0]!.choices[0]!.estimate.total);
      any ||= paid[p] > 0;
    });
    return any ? { ...d, paid } : d;
  });
}

/**
 * One option per weight within `budget` bytes per DPU in all: each weight's fastest when they fit
 * together; otherwise from every weight's smallest, upgrades in order of the seconds per request they
 * save per byte, while they fit. Undefined when even the smallest options do not fit (or a weight has
 * none).
 */
export function decideLayouts<T>(
  fronts: readonly (readonly LayoutDecision<T>[])[],
  budget: number,
): LayoutDecision<T>[] | undefined {
  if (fronts.some((f) => f.length === 0)) return undefined;
  const fastest = fronts.map((f) => f[f.length - 1]!);
  if (fastest.reduce((s, d) => s + d.bytes, 0) <= budget) return fastest;
  const at = fronts.map(() => 0);
  let used = fronts.reduce((s, f) => s + f[0]!.bytes, 0);
  if (used > budget) return undefined;
  /** Weight i's upgrade that saves the most seconds per byte and fits now. */
  const upgradeOf = (i: number): { j: number; rate: number } | undefined => {
    const f = fronts[i]!;
    const cur = f[at[i]!]!;
    let best: { j: number; rate: number } | undefined;
    for (let j = at[i]! + 1; j < f.length && used - cur.bytes + f[j]!.bytes <= budget; j++) {
      const rate = (cur.cost - f[j]!.cost) / (f[j]!.bytes - cur.bytes);
      if (!best || rate > best.rate) best = { j, rate };
    }
    return best;
  };
  // Upgrades only add bytes, so one that no longer fits never will: each weight's best is recomputed
  // when it is taken or found not to fit.
  const next = fronts.map((_, i) => upgradeOf(i));
  for (;;) {
    let i = -1;
    next.forEach((u, k) => {
      if (u && (i < 0 || u.rate > next[i]!.rate)) i = k;
    });
    if (i < 0) break;
    const f = fronts[i]!;
    const grow = f[next[i]!.j]!.bytes - f[at[i]!]!.bytes;
    if (used + grow <= budget) {
      used += grow;
      at[i] = next[i]!.j;
    }
    next[i] = upgradeOf(i);
  }
  return fronts.map((f, i) => f[at[i]!]!);
}
