/**
 * The Tile-Selector: the GEMM cost model of gemm.ts minimised over its candidates, a subset of the
 * full space (space.ts): layouts near the DPUs' capacity (selectorLayouts) with the tile families of
 * gemm.ts (selectorFamilies: tasklets, tm, tn, tk, double buffering, K splits inside the DPU).
 * Layouts are visited in order of a lower bound (launch and the kernel's compute and DMA floors,
 * then the transfers), tile families likewise, and the search stops when no remaining candidate
 * can beat the best call found.
 */
import {
  kernelFloor,
  kernelModels,
  selectorFamilies,
  transferEstimate,
  transfersByKs,
  weightBlock,
  cdiv,
  elemBytesOf,
  roundUp,
  type Distribution,
  type GemmEstimate,
  type GemmShape,
  type Tile,
  type Tiling,
} from "./gemm.js";
import type { UpmemSystem } from "./system.js";

export interface Choice {
  readonly tiling: Tiling;
  readonly estimate: GemmEstimate;
}

/** Transfers and launch of a distribution for `m` rows with a K split `ks` inside the DPUs. */
function fixedSeconds(shape: GemmShape, d: Distribution, sys: UpmemSystem, m: number, ks = 1): number {
  const { push, pull } = transferEstimate({ ...shape, m }, { ...d, ks }, sys);
  return push + pull + sys.launch_overhead;
}

/** The best tile of a distribution for rows `ms` (summed: one W layout serves every phase). */
export function bestTiles(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  ms: readonly number[],
  bound = Infinity,
): { tiles: Tile[]; estimates: GemmEstimate[]; total: number } | undefined {
  const out: { tiles: Tile[]; estimates: GemmEstimate[]; total: number } = {
    tiles: [],
    estimates: [],
    total: 0,
  };
  for (const m of ms) {
    const best = bestTile({ ...shape, m }, d, sys, ms.length === 1 ? bound : Infinity);
    if (!best) return undefined;
    out.tiles.push(best.tile);
    out.estimates.push(best.estimate);
    out.total += best.estimate.total;
  }
  return out;
}

/**
 * The best tile of a distribution (the model's fastest call) if its time is below `bound`. Tiles
 * come in families (all but the tasklets equal: selectorFamilies); a family is skipped when its
 * floor (the transfers, launch, and all its instructions at one per cycle) reaches the best time
 * found.
 */
function bestTile(
  s: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  bound: number,
): { tile: Tile; estimate: GemmEstimate } | undefined {
  const byKs = transfersByKs(s, d, sys);
  const fixedOf = (ks: number): { push: number; pull: number; total: number } => {
    const { push, pull } = byKs(ks);
    return { push, pull, total: push + pull + sys.launch_overhead };
  };
  const { cycles, floor } = kernelModels(s, d, sys);
  const { nbPad } = weightBlock(s, d);
  const mb = cdiv(s.m, d.dm);
  let best: { t: Tile; kernel: number; total: number } | undefined;
  let limit = bound;
  for (const fam of selectorFamilies(s, d, sys)) {
    const t: { -readonly [K in keyof Tile]: Tile[K] } = {
      tasklets: fam.tasklets[0]!,
      tm: fam.tm,
      tn: fam.tn,
      tk: fam.tk,
      double: fam.double,
      ...(fam.ks === undefined ? {} : { ks: fam.ks }),
    };
    const f = fixedOf(fam.ks ?? 1).total;
    if (floor(t) / sys.frequency + f >= limit) continue;
    // Tasklets beyond the items idle: past the first count that covers them, the time repeats.
    const items = cdiv(mb, fam.tm) * (nbPad / fam.tn) * (fam.ks ?? 1);
    for (const tasklets of fam.tasklets) {
      if (tasklets > items && t.tasklets >= items && t.tasklets !== tasklets) break;
      t.tasklets = tasklets;
      const kernel = cycles(t) / sys.frequency;
      if (kernel + f < limit) {
        best = { t: { ...t }, kernel, total: kernel + f };
        limit = kernel + f;
      }
    }
  }
  if (!best) return undefined;
  const f = fixedOf(best.t.ks ?? 1);
  return {
    tile: best.t,
    estimate: {
      kernel: best.kernel,
      push: f.push,
      pull: f.pull,
      launch: sys.launch_overhead,
      total: best.total,
    },
  };
}

/**
 * The candidate weight layouts dn x dk of the selector (struct of arrays: a big GEMM has thousands),
 * with, for each row count i, the replicas dm a call uses (dms[l * ms + i], 0: none fits), and the
 * floor of the layout's time over the row counts (kernelFloor, launch and a floor of the transfers).
 */
interface LayoutCandidates {
  readonly dn: number[];
  readonly dk: number[];
  readonly dms: number[];
  readonly floor: number[];
}

/**
 * The shortest K block row (bytes) the selector splits K into in general: over the 160 GEMMs of the
 * big example models (docs/upmem.md) no best tiling on the DPU model had a shorter one, as shorter
 * blocks multiply the partial sums the host adds. Small GEMMs, whose kernels outweigh their
 * transfers, also get the splits of K into equal blocks and the powers of two.
 */
const MIN_K_ROW = 256;

/** Rows per DPU the selector tries: 1 to 4 (the tile heights) and 2^j, 3 x 2^j. */
const rowBlockOk = (mb: number): boolean => {
  const odd = mb / (mb & -mb);
  return mb <= 4 || odd === 1 || odd === 3;
};

/**
 * The layouts the Tile-Selector rates for the row counts `ms`: for each number of rows per DPU (the
 * fewest dm giving it) and each K block (the fewest dk giving it: rows of at least MIN_K_ROW bytes,
 * equal blocks, or dk a power of two), the dn filling the remaining DPUs, reduced to the fewest
 * DPUs giving the same padded W block; and the powers of two (layouts on fewer DPUs, for GEMMs
 * whose transfers outweigh the kernel). Each layout uses, for each row count, the most replicas dm
 * that fit beside it; with a cost per call `extra` (without pooling: DPUs allocated and W sent per
 * call, which favours small grids), the power-of-two layouts also with power-of-two caps on dm, and
 * the floors include it. Only legal distributions (space.ts) whose W block fits `budget`.
 */
export function selectorLayouts(
  shape: GemmShape,
  sys: UpmemSystem,
  ms: readonly number[],
  dpus: number,
  budget: number,
  extra?: (d: Distribution) => number,
  weights?: readonly number[],
): LayoutCandidates {
  const e = elemBytesOf(shape.dtype);
  const { n, k } = shape;
  const padN = (nb: number): number => roundUp(nb, nb >= 32 ? 16 : 2);
  /** weightBlock's K block, inline (called for every dk). */
  const kbOf = (dk: number): number => {
    const kl = cdiv(k, dk);
    return roundUp(kl, kl >= 256 ? 64 : 8 / e);
  };
  /** For each distinct row block of `m` rows, the fewest dm giving it (blocks non-degenerate). */
  const dmsOf = ms.map((m) => {
    const out: number[] = [];
    for (let dm = 1, prev = Infinity; dm <= Math.min(m, dpus); dm++) {
      const mb = cdiv(m, dm);
      if (mb < prev && (dm - 1) * mb < m && rowBlockOk(mb)) out.push(dm);
      prev = mb;
    }
    return out;
  });
  /**
   * Likewise for K: while the K block's rows are at least MIN_K_ROW bytes, and beyond, the splits
   * into equal blocks and the powers of two (small GEMMs, whose kernels outweigh their transfers).
   */
  const dks: number[] = [];
  const kbs: number[] = [];
  for (let dk = 1, prev = Infinity; dk <= Math.min(k, dpus); dk++) {
    const kb = kbOf(dk);
    const wanted = kb * e >= MIN_K_ROW || kb * dk === k || (dk & (dk - 1)) === 0;
    if (kb < prev && (dk - 1) * kb < k && wanted) {
      dks.push(dk);
      kbs.push(kb);
    }
    if (kb < prev) prev = kb;
  }
  /** The fewest dn giving the padded W block of dn. */
  const fewestDn = (dn: number): number => {
    const nbPad = padN(cdiv(n, dn));
    const dn2 = cdiv(n, nbPad);
    return padN(cdiv(n, dn2)) === nbPad ? dn2 : cdiv(n, cdiv(n, dn));
  };
  /**
   * A floor of transferEstimate without a K split inside the DPUs: X broadcast (its exact time) or
   * pushed, Y pulled, at most at the host's aggregate limit, the dk partial blocks added on the host.
   */
  const { latency, host_limit: limit, broadcast } = sys.transfer;
  const transferFloor = (d: Distribution, x: number, y: number): number => {
    const count = d.dm * d.dn * d.dk;
    const push =
      d.dm === 1 && d.dk === 1
        ? Math.max(x / broadcast, (x * Math.ceil(count / sys.dpus_per_rank)) / limit)
        : (x * count) / limit;
    const reduce = d.dk > 1 ? (2 * y * count) / sys.host.memory_bandwidth : 0;
    return 2 * latency + push + (y * count) / limit + reduce;
  };
  const out: LayoutCandidates = { dn: [], dk: [], dms: [], floor: [] };
  const seen = new Set<number>();
  const add = (dn: number, dk: number, kb: number, most = Infinity): void => {
    const nbPad = padN(cdiv(n, dn));
    if (nbPad * kb * e > budget) return;
    let floor = 0;
    const fit = Math.min(most, Math.floor(dpus / (dn * dk)));
    for (let i = 0; i < ms.length; i++) {
      // The most replicas that fit: the last of the ascending dmsOf[i] not above `fit`.
      const cands = dmsOf[i]!;
      let lo = 0;
      for (let hi = cands.length; lo < hi;) {
        const mid = (lo + hi) >> 1;
        if (cands[mid]! <= fit) lo = mid + 1;
        else hi = mid;
      }
      const dm = lo > 0 ? cands[lo - 1]! : 0;
      out.dms.push(dm);
      if (dm === 0) floor = Infinity;
      else {
        const mb = cdiv(ms[i]!, dm);
        floor +=
          (weights?.[i] ?? 1) *
          (kernelFloor(shape.dtype, mb, nbPad, kb, sys) / sys.frequency +
            sys.launch_overhead +
            transferFloor({ dm, dn, dk }, mb * kb * e, mb * cdiv(n, dn) * 4) +
            (extra?.({ dm, dn, dk }) ?? 0));
      }
    }
    out.dn.push(dn);
    out.dk.push(dk);
    out.floor.push(floor);
  };
  // For a K block, more replicas leave fewer DPUs along N: dn never grows with dm, so a layout
  // repeats only right after itself.
  const lastDn = new Int32Array(dks.length);
  for (const dms of dmsOf)
    for (const dm of dms)
      for (let i = 0; i < dks.length; i++) {
        const rest = Math.floor(dpus / (dm * dks[i]!));
        if (rest < 1) break;
        const dn = fewestDn(Math.min(rest, n));
        if (dn === lastDn[i]) continue;
        lastDn[i] = dn;
        // The powers of two below may repeat these.
        if ((dks[i]! & (dks[i]! - 1)) === 0) seen.add(dn * (dpus + 1) + dks[i]!);
        add(dn, dks[i]!, kbs[i]!);
      }
  for (let i = 0; i < dks.length; i++) {
    const dk = dks[i]!;
    if ((dk & (dk - 1)) !== 0) continue;
    for (let dn = 1; dn * dk <= dpus && dn <= n; dn *= 2) {
      const d = fewestDn(dn);
      const key = d * (dpus + 1) + dk;
      if (!seen.has(key)) add(d, dk, kbs[i]!);
      seen.add(key);
      // With a cost per DPU and call, also fewer replicas.
      if (extra)
        for (let most = 1; most * d * dk < dpus && most < Math.max(...ms); most *= 2)
          add(d, dk, kbs[i]!, most);
    }
  }
  return out;
}

/** Distributions grouped by weight layout dn x dk (each with the values of dm a call may use). */
export function byLayout(all: readonly Distribution[]): Distribution[][] {
  const layouts = new Map<string, Distribution[]>();
  for (const d of all) {
    const key = `${d.dn} ${d.dk}`;
    const ds = layouts.get(key);
    if (ds) ds.push(d);
    else layouts.set(key, [d]);
  }
  return [...layouts.values()];
}

/**
 * The layout whose per-row-count picks sum to the least, each weighted by its calls (`weights`,
 * default 1 each: e.g. one prefill and 128 decode calls per request), with layouts in order of a
 * lower bound `lb` (of the same weighted sum), the search stopping when no remaining layout can beat
 * the best; and its picks. The layout keeps the largest dm of its picks (a call may use fewer replicas).
 */
export function bestLayout<C extends { readonly tiling: Distribution; readonly estimate: GemmEstimate }>(
  layouts: Iterable<{ readonly ds: readonly Distribution[]; readonly lb: number }>,
  ms: readonly number[],
  pick: (ds: readonly Distribution[], m: number) => C | undefined,
  weights?: readonly number[],
): { distribution: Distribution; choices: C[] } | undefined {
  let best: { total: number; choices: C[] } | undefined;
  for (const { ds, lb } of layouts) {
    if (best && lb >= best.total) break;
    const choices: C[] = [];
    let total = 0;
    for (const [i, m] of ms.entries()) {
      const c = pick(ds, m);
      if (!c) {
        total = Infinity;
        break;
      }
      choices.push(c);
      total += (weights?.[i] ?? 1) * c.estimate.total;
    }
    if (total < (best?.total ?? Infinity)) best = { total, choices };
  }
  if (!best) return undefined;
  const t0 = best.choices[0]!.tiling;
  const dm = Math.max(...best.choices.map((c) => c.tiling.dm));
  return { distribution: { dm, dn: t0.dn, dk: t0.dk }, choices: best.choices };
}

export interface SelectOptions {
  /** DPUs the GEMM may use (default: all). */
  readonly dpus?: number;
  /** Per-DPU MRAM bytes the W block may take. */
  readonly mramBudget?: number;
  /** Seconds a call costs besides transfers, launch and kernel under a distribution (e.g. without pooling). */
  readonly perCall?: (d: Distribution) => number;
  /** Calls of each row count (same order as `ms`) the joint layout is chosen for; default 1 each. */
  readonly weights?: readonly number[];
}

/** The weighted sum of a layout's per-row-count floors (`bestLayout`'s lower bound). */
export function layoutFloor(
  ds: readonly Distribution[],
  ms: readonly number[],
  floorOf: (d: Distribution, m: number) => number,
  weights?: readonly number[],
): number {
  return ms.reduce(
    (s, m, i) => s + (weights?.[i] ?? 1) * Math.min(...ds.filter((d) => d.dm <= m).map((d) => floorOf(d, m))),
    0,
  );
}

/**
 * Chooses the W layout (dn x dk, replicated dm times) minimising the summed time over the row counts
 * `ms` (e.g. prefill B*S and decode B; weighted by `opts.weights`), and for each row count the best tiling. A call may use fewer
 * replicas than the layout holds (the first dm' x dn x dk DPUs hold a complete copy of W), so each
 * phase picks its own dm; the layout keeps the largest. Undefined when no tiling is legal.
 */
export function selectJoint(
  shape: GemmShape,
  sys: UpmemSystem,
  ms: readonly number[],
  opts: SelectOptions = {},
): { distribution: Distribution; choices: Choice[] } | undefined {
  const l = selectorLayouts(
    shape,
    sys,
    ms,
    opts.dpus ?? sys.dpus,
    opts.mramBudget ?? sys.mram / 2,
    opts.perCall,
    opts.weights,
  );
  // With one row count the best call found bounds every layout's search.
  let bound = Infinity;
  // Layouts in order of their floors; a layout's distributions and transfers are made when the
  // search reaches it. A big GEMM has thousands of candidate layouts and visits a few: the one with
  // the lowest floor goes first, and only those whose floors are below the call it finds are sorted.
  function* ranked(): Generator<{ ds: Distribution[]; lb: number }> {
    const layout = (i: number): { ds: Distribution[]; lb: number } => {
      const dms = [...new Set(l.dms.slice(i * ms.length, (i + 1) * ms.length))].filter((dm) => dm > 0);
      return { ds: dms.map((dm) => ({ dm, dn: l.dn[i]!, dk: l.dk[i]! })), lb: l.floor[i]! };
    };
    let first = -1;
    for (let i = 0; i < l.floor.length; i++)
      if (l.floor[i]! < Infinity && (first < 0 || l.floor[i]! < l.floor[first]!)) first = i;
    if (first < 0) return;
    yield layout(first);
    const rest: number[] = [];
    for (let i = 0; i < l.floor.length; i++) if (i !== first && l.floor[i]! < bound) rest.push(i);
    rest.sort((a, b) => l.floor[a]! - l.floor[b]! || a - b);
    for (const i of rest) yield layout(i);
  }
  const found = bestLayout(
    ranked(),
    ms,
    (ds, m) => {
      let pick: Choice | undefined;
      const limit = (): number =>
        Math.min(pick?.estimate.total ?? Infinity, ms.length === 1 ? bound : Infinity);
      for (const d of ds) {
        if (d.dm > m) continue;
        const extra = opts.perCall?.(d) ?? 0;
        const { nbPad, kb } = weightBlock(shape, d);
        const lb = kernelFloor(shape.dtype, cdiv(m, d.dm), nbPad, kb, sys) / sys.frequency + extra;
        // The floor with the transfers (a K split only adds to them).
        if (lb + fixedSeconds(shape, d, sys, m) >= limit()) continue;
        const r = bestTiles(shape, d, sys, [m], limit() - extra);
        if (r && r.total + extra < limit()) {
          const e0 = r.estimates[0]!;
          pick = { tiling: { ...d, ...r.tiles[0]! }, estimate: { ...e0, total: e0.total + extra } };
        }
      }
      if (pick && ms.length === 1) bound = Math.min(bound, pick.estimate.total);
      return pick;
    },
    opts.weights,
  );
  return found;
}

/** The Tile-Selector for one GEMM shape. */
export function select(shape: GemmShape, sys: UpmemSystem, opts: SelectOptions = {}): Choice | undefined {
  return selectJoint(shape, sys, [shape.m], opts)?.choices[0];
}
