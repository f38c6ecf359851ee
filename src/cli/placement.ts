/**
 * Placement a user can read: per layer group (the ops of identical layers, `L*.qkv`) where it runs
 * and why (its time on every device of the system's cost model, per step, and the device chosen),
 * from which batch size another device becomes faster, and a one-line verdict. Target-agnostic: it
 * asks only the system's CostModel, under the same workload dims the partition pass placed for.
 */
import { getOp } from "../ir/registry.js";
import { operandTyper } from "../ir/cost.js";
import type { DimEnv } from "../ir/dim.js";
import { findFunc, type Module, type Op } from "../ir/module.js";
import { deviceLabel, viewOf, type CostModel } from "../pipeline/cost-model.js";
import { table } from "../report/table.js";
import { placementNotes, type PlacementNote } from "../../passes/partition.js";
import { deviceFor } from "../ir/placement.js";
import { workloadEnv, type Workload } from "../frontend/workload.js";
import type { PassContext } from "../pipeline/pass.js";
import type { SystemModel } from "../../targets/index.js";
import { layerGroupName } from "../report/format.js";
import { chooseTarget, type PipelineFlags } from "../driver/compile.js";
import { ms } from "./sim.js";

/** Batch sizes `from`..`to` (inclusive) at which `device` is the fastest. */
export interface Segment {
  readonly from: number;
  readonly to: number;
  readonly device: string;
}

/** Largest batch size the crossover search looks at (more when the workload's batch is larger). */
export const SCAN_BATCHES = 256;

/**
 * Batch sizes 1..max split into runs with the same fastest device: `winner` sampled at the powers of
 * two and at max, bisected between samples that differ (exact wherever the winner changes at most
 * once between two samples).
 */
export function batchSegments(winner: (batch: number) => string, max: number): Segment[] {
  const memo = new Map<number, string>();
  const at = (b: number): string => {
    let d = memo.get(b);
    if (d === undefined) memo.set(b, (d = winner(b)));
    return d;
  };
  const samples: number[] = [];
  for (let b = 1; b < max; b *= 2) samples.push(b);
  samples.push(max);
  const out: Segment[] = [];
  let start = 1;
  for (let i = 1; i < samples.length; i++) {
    let lo = samples[i - 1]!;
    const hi = samples[i]!;
    while (at(lo) !== at(hi)) {
      // The first batch after lo where the winner differs from lo's.
      let a = lo;
      let z = hi;
      while (z - a > 1) {
        const mid = Math.floor((a + z) / 2);
        if (at(mid) === at(lo)) a = mid;
        else z = mid;
      }
      out.push({ from: start, to: z - 1, device: at(lo) });
      start = lo = z;
    }
  }
  out.push({ from: start, to: max, device: at(max) });
  return out;
}

/** "host faster from batch 8", "DPUs faster at every batch up to 256", or every run when it flips back. */
export function crossoverText(segs: readonly Segment[], label: (device: string) => string): string {
  const last = segs[segs.length - 1]!;
  if (segs.length === 1) return `${label(last.device)} faster at every batch up to ${last.to}`;
  if (segs.length === 2) return `${label(last.device)} faster from batch ${last.from}`;
  const runs = segs.map((s) => `${label(s.device)} at ${s.from === s.to ? s.from : `${s.from}-${s.to}`}`);
  return `faster: ${runs.join(", ")}`;
}

export interface GroupPlacement {
  /** The group's name (`L*.qkv`: every layer's qkv). */
  readonly group: string;
  readonly opcode: string;
  /** Ops of the group in one step. */
  readonly ops: number;
  /** Where they run (the compiled module's placement). */
  readonly device: string;
  /** Seconds per step of all the group's ops on each device of the cost model (null: it cannot run them). */
  readonly seconds: Readonly<Record<string, number | null>>;
  /** The device where they would be fastest. */
  readonly fastest: string;
  /** Why they run on `device`: "2.4x faster", or the flag or partition decision that put them there. */
  readonly reason: string;
  /** Fastest device per range of batch sizes (the other dims as in the workload). */
  readonly crossover: readonly Segment[];
  readonly crossover_text: string;
}

export interface Placement {
  readonly batch: number;
  /** The device holding inputs and results (the host). */
  readonly home: string;
  /** Groups that some device besides the home could run, in program order. */
  readonly groups: readonly GroupPlacement[];
  /** Ops only the home device runs (norms, rope, ...): their opcodes and count (views left out). */
  readonly other: { readonly opcodes: readonly string[]; readonly ops: number };
  readonly verdict: string;
}

/** Choices behind a placement that are not the cost model's (the command's flags). */
export interface PlacementFlags {
  readonly cooperation?: boolean;
  readonly attention?: "auto" | "pim" | "host";
  /** --compile-once: the program was placed for this batch size. */
  readonly compiledFor?: number;
}

/** The kinds of op the verdict counts, in its order. */
const KINDS = ["linear layers", "experts", "attention", "other ops"] as const;

const kindOf = (opcode: string): (typeof KINDS)[number] =>
  getOp(opcode)?.traits?.gemm
    ? "linear layers"
    : opcode === "moe"
      ? "experts"
      : opcode === "attention"
        ? "attention"
        : "other ops";

const most = <T>(xs: readonly T[]): T => {
  const n = new Map<T, number>();
  for (const x of xs) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
};

/**
 * Where each layer group of `func` runs under `env` and why. `cm` times the ops (the system's cost
 * model with the cost comparison on: without --no-cooperation or --attention); the devices come from
 * the compiled module's placement, `notes` (the partition pass's) explain the ones `cm` would not pick.
 */
export function explainPlacement(a: {
  readonly module: Module;
  readonly func: string;
  readonly env: DimEnv;
  readonly cm: CostModel;
  readonly notes?: readonly PlacementNote[];
  readonly flags?: PlacementFlags;
  readonly maxBatch?: number;
}): Placement {
  const { module, cm, env } = a;
  const f = findFunc(module, a.func)!;
  const typeOf = operandTyper(module, f);
  const names = cm.devices.map((d) => d.name);
  const label = (d: string): string => deviceLabel(cm, d);
  const batch = env.B ?? 1;
  const max = Math.max(a.maxBatch ?? SCAN_BATCHES, batch);
  const byGroup = new Map<string, Op[]>();
  for (const op of f.body) {
    if (op.opcode === "transfer") continue;
    const key = `${layerGroupName(op)}\u0000${op.opcode}`;
    byGroup.set(key, [...(byGroup.get(key) ?? []), op]);
  }
  /** Seconds per step of `ops` on each device (undefined: some op cannot run there). */
  const times = (ops: readonly Op[], e: DimEnv): (number | undefined)[] =>
    names.map((d) => {
      let t = 0;
      for (const op of ops) {
        const s = cm.opTime(viewOf(op, typeOf, e), d, e);
        if (s === undefined) return undefined;
        t += s;
      }
      return t;
    });
  const fastestOf = (ts: readonly (number | undefined)[]): string => {
    let best = -1;
    ts.forEach((t, i) => {
      if (t !== undefined && (best < 0 || t < ts[best]!)) best = i;
    });
    return best < 0 ? cm.home : names[best]!;
  };
  const reasons = new Map((a.notes ?? []).filter((n) => n.func === a.func).map((n) => [n.value, n.reason]));
  const groups: GroupPlacement[] = [];
  const other = { opcodes: new Set<string>(), ops: 0 };
  for (const [key, ops] of byGroup) {
    // Views (no cost) follow their input.
    if (
      ops.every((op) => {
        const c = viewOf(op, typeOf, env).cost;
        return c.flops === 0 && c.bytes === 0;
      })
    )
      continue;
    const ts = times(ops, env);
    if (!ts.some((t, i) => t !== undefined && names[i] !== cm.home)) {
      other.opcodes.add(ops[0]!.opcode);
      other.ops += ops.length;
      continue;
    }
    const device = most(ops.map((op) => deviceFor(op, env) ?? cm.home));
    const fastest = fastestOf(ts);
    const finite = ts.filter((t): t is number => t !== undefined).sort((x, y) => x - y);
    const flags = a.flags ?? {};
    const reason =
      device === fastest
        ? finite.length > 1
          ? `${(finite[1]! / finite[0]!).toFixed(1)}x faster`
          : `only ${label(device)} can run it`
        : ops[0]!.opcode === "attention" && (flags.attention === "pim" || flags.attention === "host")
          ? `--attention ${flags.attention}`
          : flags.cooperation === false && device !== cm.home
            ? "--no-cooperation"
            : flags.compiledFor !== undefined && flags.compiledFor !== batch
              ? `placed for batch ${flags.compiledFor} (--compile-once)`
              : reasons.size === 0
                ? "not placed (the partition pass did not run)"
                : (reasons.get(ops[0]!.results[0]?.name ?? "") ?? "placed by the partition pass");
    const crossover = batchSegments((b) => fastestOf(times(ops, { ...env, B: b })), max);
    groups.push({
      group: key.split("\u0000")[0]!,
      opcode: ops[0]!.opcode,
      ops: ops.length,
      device,
      seconds: Object.fromEntries(names.map((d, i) => [d, ts[i] ?? null])),
      fastest,
      reason,
      crossover,
      crossover_text: crossoverText(crossover, label),
    });
  }
  const out = { batch, home: cm.home, groups, other: { opcodes: [...other.opcodes], ops: other.ops } };
  return { ...out, verdict: verdict(out, cm, max) };
}

/** `explainPlacement` for the workload's phase of a compiled module, with the partition pass's notes. */
export function explainStep(
  c: { readonly module: Module; readonly ctx: PassContext },
  w: Workload,
  cm: CostModel,
  flags: PlacementFlags,
): Placement {
  return explainPlacement({
    module: c.module,
    func: w.phase,
    env: workloadEnv(w),
    cm,
    notes: placementNotes(c.ctx),
    flags,
  });
}

/**
 * The one-line verdict: per kind of op (linear layers, experts, attention, other ops) where its groups
 * run and from which batch size another device becomes faster; when nothing runs off the home
 * device, why, with the group that came closest.
 */
function verdict(p: Omit<Placement, "verdict">, cm: CostModel, max: number): string {
  const label = (d: string): string => deviceLabel(cm, d);
  const away = cm.devices.filter((d) => d.name !== p.home).map((d) => label(d.name));
  if (away.length === 0) return `everything on the ${label(p.home)}: the system has one device`;
  if (p.groups.length === 0)
    return `nothing can run on the ${away.join(" or the ")}: no op of this step has a kernel there`;
  // The crossovers of other ops (element-wise, norms) are in the table, not the verdict.
  const main = p.groups.filter((g) => kindOf(g.opcode) !== "other ops");
  if (p.groups.every((g) => g.device === p.home)) {
    /** Time on the best other device over time at home. */
    const ratio = (g: GroupPlacement): number => bestAway(g, p.home)[1] / g.seconds[p.home]!;
    const overruled = p.groups.find((g) => g.fastest !== p.home);
    // The host wins everywhere: the group that came closest; else the first it should not have kept.
    const shown =
      overruled ??
      (main.length > 0 ? main : p.groups)
        .filter((g) => g.seconds[p.home] !== null)
        .sort((x, y) => ratio(x) - ratio(y))[0];
    const why = overruled ? overruled.reason : `the ${label(p.home)} is faster for every layer`;
    const times = (g: GroupPlacement): string =>
      `${label(p.home)} ${g.seconds[p.home] === null ? "-" : ms(g.seconds[p.home]!)} vs ${label(bestAway(g, p.home)[0])} ${ms(bestAway(g, p.home)[1])} per step at batch ${p.batch}`;
    const detail = shown ? ` (${overruled ? "" : "closest: "}${shown.group}, ${times(shown)})` : "";
    return `nothing on the ${away.join(" or the ")}: ${why}${detail}; ${flipSummary(main.length > 0 ? main : p.groups, label, max)}`;
  }
  const parts = KINDS.flatMap((kind) => {
    const gs = p.groups.filter((g) => kindOf(g.opcode) === kind);
    if (gs.length === 0) return [];
    const off = new Map<string, number>();
    for (const g of gs) if (g.device !== p.home) off.set(g.device, (off.get(g.device) ?? 0) + 1);
    const [d, n] = [...off][0] ?? [p.home, gs.length];
    // Groups not on their fastest device: what put them there (a flag, the partition pass).
    const overruled = [...new Set(gs.filter((g) => g.device !== g.fastest).map((g) => g.reason))];
    const why = overruled.length > 0 ? ` (${overruled.join("; ")})` : "";
    let where =
      off.size > 1
        ? `${kind}: ${[...off].map(([x, k]) => `${k} on the ${label(x)}`).join(", ")} of ${gs.length}`
        : gs.length === 1 || d === p.home
          ? `${kind} on the ${label(d)}`
          : `${kind} on the ${label(d)}: ${n} of ${gs.length}`;
    where += why;
    if (kind === "other ops" && main.length > 0) return [where];
    // Every group fastest on the device it runs on at every batch size: say so briefly.
    if (gs.every((g) => g.crossover.length === 1 && g.crossover[0]!.device === d) && off.size <= 1)
      return [`${where}, faster at every batch up to ${max}`];
    return [`${where}, ${flipSummary(gs, label, max)}`];
  });
  return parts.join("; ");
}

/** The best device other than `home` for a group, and its seconds per step. */
function bestAway(g: GroupPlacement, home: string): [string, number] {
  let best: [string, number] = ["", Infinity];
  for (const [d, s] of Object.entries(g.seconds)) if (d !== home && s !== null && s < best[1]) best = [d, s];
  return best;
}

/**
 * Where the winners of some groups change: "host faster from batch 8", "host faster from batch 8
 * (L*.o) to 24 (L*.qkv)" (the first and last group to change), the groups that never change when
 * they stay elsewhere, and those that change more than once.
 */
function flipSummary(groups: readonly GroupPlacement[], label: (d: string) => string, max: number): string {
  const flips = new Map<string, { from: number; group: string }[]>();
  for (const g of groups)
    if (g.crossover.length === 2) {
      const last = g.crossover[1]!;
      flips.set(last.device, [...(flips.get(last.device) ?? []), { from: last.from, group: g.group }]);
    }
  const steady = groups.filter((g) => g.crossover.length === 1);
  const wobbly = groups.filter((g) => g.crossover.length > 2).map((g) => g.group);
  const parts = [...flips].map(([d, fs]) => {
    const sorted = [...fs].sort((x, y) => x.from - y.from);
    const lo = sorted[0]!;
    const hi = sorted[sorted.length - 1]!;
    return lo.from !== hi.from
      ? `${label(d)} faster from batch ${lo.from} (${lo.group}) to ${hi.from} (${hi.group})`
      : `${label(d)} faster from batch ${lo.from}${fs.length === 1 && groups.length > 1 ? ` (${lo.group})` : ""}`;
  });
  const stay = steady.filter((g) => !flips.has(g.crossover[0]!.device));
  if (stay.length > 0) {
    const ds = [...new Set(stay.map((g) => label(g.crossover[0]!.device)))];
    const who =
      stay.length === groups.length
        ? ""
        : stay.length <= 2
          ? `${stay.map((g) => g.group).join(" and ")} on the ${ds.join(" or the ")} `
          : `${stay.length} others on the ${ds.join(" or the ")} `;
    parts.push(
      stay.length === groups.length && ds.length === 1
        ? `${ds[0]} faster at every batch up to ${max}`
        : stay.length === groups.length
          ? `no crossover up to batch ${max}`
          : `${who}at every batch up to ${max}`,
    );
  }
  if (wobbly.length > 0) parts.push(`${wobbly.join(", ")} change more than once (see the crossover column)`);
  return parts.join("; ");
}

/**
 * The system whose cost model explains a placement: the compiled one with the cost comparison on
 * (--no-cooperation and --attention force devices; the explanation shows what they overrode).
 */
export async function referenceSystem(flags: PipelineFlags): Promise<SystemModel> {
  return (await chooseTarget({ ...flags, cooperation: true, attention: "auto" })).system;
}

/** The placement as JSON fields: per group `host_s` (the home device's seconds per step) and `pim_s` (the best other device's). */
export function placementJson(p: Placement): {
  placement: unknown[];
  placement_other: unknown;
  verdict: string;
} {
  return {
    placement: p.groups.map((g) => {
      const away = bestAway(g, p.home);
      return {
        group: g.group,
        opcode: g.opcode,
        ops: g.ops,
        device: g.device,
        host_s: g.seconds[p.home],
        pim_s: Number.isFinite(away[1]) ? away[1] : null,
        seconds: g.seconds,
        fastest: g.fastest,
        reason: g.reason,
        crossover: g.crossover,
        crossover_text: g.crossover_text,
      };
    }),
    placement_other: p.other,
    verdict: p.verdict,
  };
}

/**
 * The placement as text: a table of the groups (one row per batch size when there are several), a
 * line on the other ops and the verdict of each batch size.
 */
export function placementLines(ps: readonly Placement[], cm: CostModel): string[] {
  const first = ps[0];
  if (!first) return [];
  if (cm.devices.length < 2) return [`verdict   ${first.verdict}`];
  const label = (d: string): string => deviceLabel(cm, d);
  const multi = ps.length > 1;
  const devices = cm.devices.map((d) => d.name);
  const t = table(
    ["layer group", "ops", ...(multi ? ["batch"] : []), ...devices.map(label), "runs on", "why", "crossover"],
    [
      "left",
      "right",
      ...(multi ? (["right"] as const) : []),
      ...devices.map(() => "right" as const),
      "left",
      "left",
      "left",
    ],
    { drop: ["ops", "why"] },
  );
  // Groups by name over the batch sizes (a device may run a group at some batch sizes only).
  const keys = [...new Set(ps.flatMap((p) => p.groups.map((g) => `${g.group}\u0000${g.opcode}`)))];
  for (const key of keys) {
    let shown = false;
    for (const p of ps) {
      const g = p.groups.find((x) => `${x.group}\u0000${x.opcode}` === key);
      if (!g) continue;
      t.push([
        shown ? "" : g.group,
        shown ? "" : String(g.ops),
        ...(multi ? [String(p.batch)] : []),
        ...devices.map((d) => (g.seconds[d] === null ? "-" : ms(g.seconds[d]!))),
        label(g.device),
        g.reason,
        shown ? "" : g.crossover_text,
      ]);
      shown = true;
    }
  }
  const away = cm.devices.filter((d) => d.name !== first.home).map((d) => label(d.name));
  const lines: string[] = [];
  const scanned = ps.flatMap((p) => p.groups)[0]?.crossover.at(-1)?.to;
  if (scanned !== undefined)
    lines.push(
      `placement per layer group (the cost model's seconds per step; crossover: the fastest device over batch sizes 1-${scanned}):`,
      t.toString(),
    );
  if (first.other.ops > 0)
    lines.push(
      `          other ops (${first.other.opcodes.join(", ")}: ${first.other.ops} per step) run on the ${label(first.home)}${away.length > 0 ? `: the ${away.join(" and the ")} cannot run them` : ""}`,
    );
  if (multi)
    ps.forEach((p, k) =>
      lines.push(`${k === 0 ? "verdict   " : "          "}batch ${p.batch}: ${p.verdict}`),
    );
  else lines.push(`verdict   ${first.verdict}`);
  return lines;
}
