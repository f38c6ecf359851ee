/**
 * `pimc tune`: the target's own tuner (the Target contract's `tune`), or for the systems without one
 * PAPI's alpha per linear layer: for every distinct weight shape of the model, the largest number of
 * tokens per step (RLP x TLP: batch x speculation) at which the system's PIM device is still faster
 * than its home device (the host: a CPU or an xPU), both timed by the cost model: above it the layer
 * belongs on the host. The partition's dynamic placement switches at the same point
 * (`switch_above`). A system of one device has nothing to place: its report says so, with no shapes.
 */
import { UserError } from "../errors.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import { defaultWorkload, type Workload } from "../frontend/workload.js";
import { dimEval } from "../ir/dim.js";
import { int, ms } from "../report/format.js";
import { table } from "../report/table.js";
import { deviceLabel, type OpView } from "../pipeline/cost-model.js";
import type { SystemModel, Target, TuneOptions, TuneReport } from "../../targets/index.js";
import { allFlags, chooseTarget, compileModel, type CompileFlags } from "./compile.js";

export interface AlphaRow {
  readonly n: number;
  readonly k: number;
  /** Largest tokens per step with the PIM units at least as fast; 0 when the host always wins. */
  readonly alpha: number;
  readonly pim_at_1: number;
  readonly host_at_1: number;
}

const MAX_TOKENS = 1 << 16;

/** The view of a linear layer [n, k] (FP16) over `t` tokens. */
function linearView(n: number, k: number, t: number): OpView {
  return {
    op: { opcode: "linear", operands: ["%x", "@w"], results: [], attrs: {} },
    ins: [
      { dtype: "f16", shape: [t, k] },
      { dtype: "f16", shape: [n, k] },
    ],
    outs: [{ dtype: "f16", shape: [t, n] }],
    cost: { flops: 2 * t * n * k, bytes: 2 * (t * k + n * k + t * n) },
  };
}

/** The devices alpha compares: the system's home (host) and its first PIM device, if it has one. */
function alphaDevices(system: SystemModel): { host: string; pim: string } | undefined {
  const cm = system.costModel;
  const pim = cm.devices.find((d) => d.kind === "pim" && d.name !== cm.home);
  return pim && { host: cm.home, pim: pim.name };
}

export function alphaOf(system: SystemModel, n: number, k: number): AlphaRow {
  const cm = system.costModel;
  const devices = alphaDevices(system);
  if (!devices) throw new UserError(`${system.name} has no PIM device beside its host`);
  const time = (t: number, device: string): number => {
    const env = { B: t, S: 1, P: 0 };
    return cm.opTime(linearView(n, k, t), device, env) ?? Infinity;
  };
  const pimWins = (t: number) => time(t, devices.pim) <= time(t, devices.host);
  let alpha = 0;
  if (pimWins(1)) {
    let lo = 1;
    let hi = MAX_TOKENS;
    if (pimWins(hi)) lo = hi;
    else
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (pimWins(mid)) lo = mid;
        else hi = mid;
      }
    alpha = lo;
  }
  return { n, k, alpha, pim_at_1: time(1, devices.pim), host_at_1: time(1, devices.host) };
}

/** PAPI's alpha of every distinct linear-layer weight shape of the model, and their median. */
export async function tuneAlpha(model: LoadedModel, flags: CompileFlags): Promise<TuneReport> {
  const { module, system } = await compileModel(model, flags, defaultWorkload("decode"), 2);
  const shapes = new Map<string, [number, number]>();
  for (const c of module.consts) {
    const used = module.funcs.some((f) =>
      f.body.some((op) => op.opcode === "linear" && op.operands[1] === `@${c.name}`),
    );
    if (!used || c.type.shape.length !== 2) continue;
    const [n, k] = c.type.shape.map((d) => dimEval(d, {})) as [number, number];
    shapes.set(`${n}x${k}`, [n, k]);
  }
  if (shapes.size === 0)
    throw new UserError(`${module.name}: the model has no linear layer with a constant weight`);
  const devices = alphaDevices(system);
  const cm = system.costModel;
  if (!devices)
    return {
      json: { model: module.name, system: system.name, shapes: [], alpha: null },
      lines: [
        `model     ${module.name} on ${system.name}: one device (${cm.devices.map((d) => deviceLabel(cm, d.name)).join(", ")}), no PIM device beside it: nothing to place, nothing to tune`,
      ],
    };
  const [hostLabel, pimLabel] = [deviceLabel(cm, devices.host), deviceLabel(cm, devices.pim)];
  const rows = [...shapes.values()].map(([n, k]) => alphaOf(system, n, k));
  const alphas = rows.map((r) => r.alpha).sort((a, b) => a - b);
  const median = alphas[Math.floor(alphas.length / 2)]!;
  const t = table(
    ["N", "K", "alpha (tokens)", `${pimLabel} at 1`, `${hostLabel} at 1`],
    ["right", "right", "right", "right", "right"],
  );
  for (const r of rows) t.push([String(r.n), String(r.k), int(r.alpha), ms(r.pim_at_1), ms(r.host_at_1)]);
  return {
    json: { model: module.name, system: system.name, shapes: rows, alpha: median },
    lines: [
      `model     ${module.name} on ${system.name}: where each linear layer belongs, by tokens per step (PAPI's alpha)`,
      t.toString(),
      `alpha     ${int(median)} tokens per step (median over shapes): at most that many, the ${pimLabel}; more, the ${hostLabel}`,
    ],
  };
}

/**
 * `pimc tune` on the system the flags name: the target's own tuner, else PAPI's alpha (a report of
 * no shapes on a system of one device).
 */
export async function tuneModel(
  model: LoadedModel,
  flags: CompileFlags,
  w: Workload,
  opts: TuneOptions,
): Promise<{ target: Target; report: TuneReport }> {
  const { target } = await chooseTarget(allFlags(flags));
  if (target.tune) return { target, report: await target.tune(model, flags, w, opts) };
  if (opts.exhaustive)
    throw new UserError(
      `--exhaustive searches a target's own tilings; on ${target.name}, tune reports alpha`,
    );
  return { target, report: await tuneAlpha(model, flags) };
}
