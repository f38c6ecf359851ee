/**
 * CPU/PIM partitioning. Each op is placed on a device of the system by the target's cost model under
 * the workload: first where it runs fastest, then ops move to their neighbours' device while that
 * saves more transfer time than it costs, so consecutive ops on one device keep their activations
 * resident. `transfer` ops are inserted where a value crosses devices, and every op is annotated
 * with its `device`.
 *
 * Dynamic placement (option `placement: "dynamic"`, the PAPI rule): a linear layer whose best device
 * changes with the number of tokens per step T = B x S keeps both variants: it runs on `device`
 * while T <= `switch_above` (the crossover alpha of the cost model) and on `alt_device` above it.
 * The transfers inserted are those of the variant the workload selects.
 */
import type { DimEnv } from "../src/ir/dim.js";
import { dimEval } from "../src/ir/dim.js";
import { funcCosts, operandTyper, ssaTypeMap } from "../src/ir/cost.js";
import { weightGemm } from "../src/ir/registry.js";
import type { Attrs, Func, Module, Op } from "../src/ir/module.js";
import { typeBytes } from "../src/ir/types.js";
import { viewOf, type CostModel, type OpView } from "../src/pipeline/cost-model.js";
import type { Pass, PassContext } from "../src/pipeline/pass.js";
import { mapFuncs } from "../src/pipeline/rewrite.js";

export interface PlacementNote {
  readonly func: string;
  /** The op's first result (or its opcode when it has none). */
  readonly value: string;
  readonly opcode: string;
  readonly device: string;
  readonly flops: number;
  readonly bytes: number;
  readonly reason: string;
}

const NOTES = new WeakMap<PassContext, PlacementNote[]>();

/** What the partition pass decided, op by op, in this context. */
export function placementNotes(ctx: PassContext): readonly PlacementNote[] {
  return NOTES.get(ctx) ?? [];
}

/** Default dims per function when the options give none. */
const DEFAULT_ENV: Record<string, DimEnv> = {
  prefill: { B: 1, S: 128, P: 0 },
  decode: { B: 1, S: 1, P: 1024 },
};

const us = (s: number): string => (s >= 1e-3 ? `${(s * 1e3).toFixed(2)} ms` : `${(s * 1e6).toFixed(2)} us`);

interface Plan {
  device: string[];
  reason: string[];
  dynamic: Map<number, { device: string; alt: string; above: number }>;
}

function viewOp(op: OpView): boolean {
  return op.cost.flops === 0 && op.cost.bytes === 0;
}

/** Tokens per step at which `alt` becomes faster than `dev` for op `v` (binary search on B). */
function crossover(
  cm: CostModel,
  v: (env: DimEnv) => OpView,
  env: DimEnv,
  dev: string,
  alt: string,
): number | undefined {
  const time = (t: number, d: string): number =>
    cm.opTime(v({ ...env, B: t, S: 1 }), d, { ...env, B: t, S: 1 }) ?? Infinity;
  let hi = 1 << 20;
  if (time(hi, alt) >= time(hi, dev)) return undefined;
  let lo = 1;
  if (time(lo, alt) < time(lo, dev)) return undefined;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (time(mid, alt) < time(mid, dev)) hi = mid;
    else lo = mid;
  }
  return lo;
}

function plan(
  m: Module,
  f: Func,
  cm: CostModel,
  env: DimEnv,
  dynamic: boolean,
): { plan: Plan; views: OpView[] } {
  const typeOf = operandTyper(m, f);
  const viewAt = (op: Op, e: DimEnv): OpView => viewOf(op, typeOf, e);
  const views = f.body.map((op) => viewAt(op, env));
  const names = cm.devices.map((d) => d.name);
  const time = views.map((v) => names.map((d) => cm.opTime(v, d, env) ?? Infinity));
  const bytes = (ref: string): number => dimEval(typeBytes(typeOf(ref)), env);
  const producer = new Map<string, number>();
  f.body.forEach((op, i) => op.results.forEach((r) => producer.set(`%${r.name}`, i)));
  // Users of each value, by value reference.
  const users = new Map<string, number[]>();
  f.body.forEach((op, i) =>
    op.operands.forEach((ref) => {
      if (producer.has(ref)) users.set(ref, [...(users.get(ref) ?? []), i]);
    }),
  );
  const returned = new Set(f.results);
  const p: Plan = { device: [], reason: [], dynamic: new Map() };
  const devOf = (ref: string): string | undefined => {
    if (ref.startsWith("@")) return undefined; // constants and states live where they are used
    const i = producer.get(ref);
    return i === undefined ? cm.home : p.device[i];
  };
  const best = (i: number): number => time[i]!.indexOf(Math.min(...time[i]!));
  // 1. Fastest device (ops without cost follow their input).
  f.body.forEach((op, i) => {
    if (viewOp(views[i]!)) {
      const from = op.operands.map(devOf).find((d) => d !== undefined) ?? cm.home;
      p.device.push(from);
      p.reason.push("no cost (a view): stays with its input");
      return;
    }
    const b = best(i);
    const able = names.flatMap((d, k) => (Number.isFinite(time[i]![k]!) ? [`${d} ${us(time[i]![k]!)}`] : []));
    p.device.push(names[b]!);
    // An op only one device can run goes there; otherwise the fastest (devices that cannot run it left out).
    p.reason.push(able.length === 1 ? `only ${names[b]} runs it` : `fastest (${able.join(", ")})`);
    if (dynamic && op.opcode === "linear" && weightGemm(op)) {
      const at = (t: number) => {
        const e = { ...env, B: t, S: 1 };
        const tt = names.map((d) => cm.opTime(viewAt(op, e), d, e) ?? Infinity);
        return names[tt.indexOf(Math.min(...tt))]!;
      };
      const small = at(1);
      const large = at(1 << 20);
      const above = small !== large ? crossover(cm, (e) => viewAt(op, e), env, small, large) : undefined;
      if (above !== undefined) {
        const tokens = dimEval({ terms: [{ coef: 1, syms: ["B", "S"] }] }, env);
        p.dynamic.set(i, { device: small, alt: large, above });
        p.device[i] = tokens > above ? large : small;
        p.reason[i] = `dynamic: ${small} while B*S <= ${above}, else ${large} (B*S = ${tokens} now)`;
      }
    }
  });
  // 2. Move ops to their neighbours' device while the transfers saved outweigh the slowdown.
  /** Time of op i on device d plus the transfers its operands and results would need. */
  const local = (i: number, d: string): number => {
    let t = time[i]![names.indexOf(d)]!;
    for (const ref of new Set(f.body[i]!.operands)) {
      const from = devOf(ref);
      if (from !== undefined && from !== d) t += cm.transferTime(bytes(ref), from, d);
    }
    for (const r of f.body[i]!.results) {
      const ref = `%${r.name}`;
      const dests = new Set((users.get(ref) ?? []).map((u) => p.device[u]!));
      if (returned.has(ref)) dests.add(cm.home);
      for (const to of dests) if (to !== d) t += cm.transferTime(bytes(ref), d, to);
    }
    return t;
  };
  for (let sweep = 0; sweep < 20; sweep++) {
    let moved = false;
    f.body.forEach((_, i) => {
      if (p.dynamic.has(i)) return;
      const cur = p.device[i]!;
      let bestD = cur;
      let bestT = local(i, cur);
      for (const d of names) {
        const t = local(i, d);
        if (t < bestT * (1 - 1e-9) - 1e-15) {
          bestD = d;
          bestT = t;
        }
      }
      if (bestD === cur) return;
      const fastest = names[best(i)]!;
      p.device[i] = bestD;
      p.reason[i] = viewOp(views[i]!)
        ? `no cost (a view): stays with its neighbours on ${bestD}`
        : bestD === fastest
          ? p.reason[i]!
          : `kept on ${bestD} with its neighbours: ${fastest} is ${us(time[i]![names.indexOf(bestD)]! - time[i]![best(i)]!)} faster but moving activations costs more`;
      moved = true;
    });
    if (!moved) break;
  }
  return { plan: p, views };
}

/** Annotates devices and inserts transfers where values cross devices (and before returning). */
function apply(f: Func, p: Plan, cm: CostModel, ctx: PassContext): Func {
  const producerDev = new Map<string, string>();
  for (const prm of f.params) producerDev.set(`%${prm.name}`, cm.home);
  const names = new Set([
    ...f.params.map((x) => x.name),
    ...f.body.flatMap((op) => op.results.map((r) => r.name)),
  ]);
  const moved = new Map<string, string>(); // `${ref}->${device}` -> moved ref
  const typeOf = ssaTypeMap(f);
  const body: Op[] = [];
  const move = (ref: string, to: string): string => {
    const from = producerDev.get(ref);
    if (from === undefined || from === to) return ref;
    const key = `${ref}->${to}`;
    const hit = moved.get(key);
    if (hit) return hit;
    let name = `${ref.slice(1)}.to_${to}`;
    for (let i = 1; names.has(name); i++) name = `${ref.slice(1)}.to_${to}_${i}`;
    names.add(name);
    body.push({
      opcode: "transfer",
      operands: [ref],
      results: [{ name, type: typeOf.get(ref.slice(1))! }],
      attrs: { from, to },
    });
    ctx.count("partition", `transfers ${from}->${to}`);
    moved.set(key, `%${name}`);
    producerDev.set(`%${name}`, to);
    return `%${name}`;
  };
  f.body.forEach((op, i) => {
    const device = p.device[i]!;
    const dyn = p.dynamic.get(i);
    const attrs: Attrs = dyn
      ? { ...op.attrs, device: dyn.device, alt_device: dyn.alt, switch_above: dyn.above }
      : { ...op.attrs, device };
    const operands = op.operands.map((r) => move(r, device));
    body.push({ ...op, operands, attrs });
    for (const r of op.results) producerDev.set(`%${r.name}`, device);
    ctx.count("partition", `ops on ${device}`);
    if (dyn) ctx.count("partition", "dynamic placements");
  });
  const results = f.results.map((r) => move(r, cm.home));
  return { ...f, body, results };
}

export const partition: Pass = {
  name: "partition",
  optLevel: 1,
  summary: "place each op on the host or a PIM/xPU device by the target's cost model; insert transfers",
  run(m, ctx) {
    const cm = ctx.costModel;
    const notes: PlacementNote[] = [];
    NOTES.set(ctx, notes);
    const envs = (ctx.options.envs ?? {}) as Record<string, DimEnv>;
    const out = mapFuncs(m, (f) => {
      const env = envs[f.name] ?? DEFAULT_ENV[f.name] ?? { B: 1, S: 1, P: 0 };
      if (!cm || cm.devices.length < 2) {
        const costs = funcCosts(m, f, env);
        f.body.forEach((op, i) =>
          notes.push({
            func: f.name,
            value: op.results[0]?.name ?? op.opcode,
            opcode: op.opcode,
            device: cm?.home ?? ctx.target,
            ...costs[i]!,
            reason: "the system has one device",
          }),
        );
        return f;
      }
      const { plan: p, views } = plan(m, f, cm, env, ctx.options.placement === "dynamic");
      f.body.forEach((op, i) =>
        notes.push({
          func: f.name,
          value: op.results[0]?.name ?? op.opcode,
          opcode: op.opcode,
          device: p.device[i]!,
          flops: views[i]!.cost.flops,
          bytes: views[i]!.cost.bytes,
          reason: p.reason[i]!,
        }),
      );
      return apply(f, p, cm, ctx);
    });
    return out;
  },
};
