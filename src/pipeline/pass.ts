/**
 * The pass infrastructure (TVM style): a pass is a named module -> module transformation with an
 * optimisation level and the passes it requires; pipelines are Sequentials run under a PassContext
 * that holds the options, the target, the constant table and the instruments.
 */
import { UserError } from "../errors.js";
import type { DimEnv } from "../ir/dim.js";
import type { Module } from "../ir/module.js";
import { WeightStore } from "../ir/weights.js";
import type { CostModel } from "./cost-model.js";

export interface Pass {
  readonly name: string;
  /** Runs when the context's opt level is at least this (and it is not disabled). */
  readonly optLevel: number;
  /** Passes that must have run before this one (checked, not scheduled). */
  readonly requires?: readonly string[];
  readonly summary: string;
  run(m: Module, ctx: PassContext): Module;
}

/** Hooks around every pass (print, dump, time, verify). */
export interface Instrument {
  /** Called once per pipeline with the module before any pass. */
  start?(m: Module, ctx: PassContext): void;
  before?(pass: Pass, m: Module, ctx: PassContext): void;
  after?(pass: Pass, m: Module, ctx: PassContext, ms: number): void;
  /** Called once at the end (e.g. to print the timing table). */
  finish?(m: Module, ctx: PassContext): void;
}

/** Options that change what passes do, by pass: `{ "layout": { ... } }`; plus global ones. */
export interface PassOptions {
  /** Dimension values of the workload (B, S, P) for passes that decide by cost (partition). */
  readonly env?: DimEnv;
  /** Placement mode of the partition pass. */
  readonly placement?: "static" | "dynamic";
  readonly [key: string]: unknown;
}

export interface PassContextInit {
  optLevel?: number;
  disabled?: Iterable<string>;
  required?: Iterable<string>;
  target?: string;
  costModel?: CostModel;
  weights?: WeightStore;
  options?: PassOptions;
  instruments?: Instrument[];
}

/** What passes report (counts of rewrites, conversions, placements...), by pass name. */
export type PassReport = Map<string, Record<string, number>>;

export class PassContext {
  readonly optLevel: number;
  readonly disabled: ReadonlySet<string>;
  readonly required: ReadonlySet<string>;
  readonly target: string;
  readonly costModel: CostModel | undefined;
  /**
   * The constant table the passes write to: a fork of the model's, so the model is left as it was.
   * Run the compiled module with these weights.
   */
  readonly weights: WeightStore;
  readonly options: PassOptions;
  readonly instruments: Instrument[];
  readonly report: PassReport = new Map();
  /** Names of the passes run so far, in order. */
  readonly ran: string[] = [];

  constructor(init: PassContextInit = {}) {
    this.optLevel = init.optLevel ?? 2;
    this.disabled = new Set(init.disabled ?? []);
    this.required = new Set(init.required ?? []);
    this.target = init.target ?? "cpu";
    this.costModel = init.costModel;
    this.weights = (init.weights ?? new WeightStore()).fork();
    this.options = init.options ?? {};
    this.instruments = init.instruments ?? [];
  }

  /** Whether `pass` runs in this context (TVM's PassContext::PassEnabled). */
  enabled(pass: Pass): boolean {
    if (this.disabled.has(pass.name)) return false;
    return this.required.has(pass.name) || pass.optLevel <= this.optLevel;
  }

  /** Adds `n` to a counter of the report of `pass`. */
  count(pass: string, key: string, n = 1): void {
    const r = this.report.get(pass) ?? {};
    r[key] = (r[key] ?? 0) + n;
    this.report.set(pass, r);
  }
}

/** Runs passes in order, skipping those the context disables. */
export class Sequential implements Pass {
  readonly optLevel = 0;
  readonly summary: string;

  constructor(
    readonly name: string,
    readonly passes: readonly Pass[],
  ) {
    this.summary = passes.map((p) => p.name).join(", ");
  }

  run(m: Module, ctx: PassContext): Module {
    let cur = m;
    for (const p of this.passes) {
      if (!ctx.enabled(p)) continue;
      for (const r of p.requires ?? [])
        if (!ctx.ran.includes(r))
          throw new UserError(`pass ${p.name} requires ${r}, which has not run (is it disabled?)`);
      for (const i of ctx.instruments) i.before?.(p, cur, ctx);
      const t0 = performance.now();
      cur = p.run(cur, ctx);
      const ms = performance.now() - t0;
      ctx.ran.push(p.name);
      for (const i of ctx.instruments) i.after?.(p, cur, ctx, ms);
    }
    return cur;
  }
}

/** Runs a pipeline with the context's instruments around it. */
export function runPipeline(pipeline: Pass, m: Module, ctx: PassContext): Module {
  for (const i of ctx.instruments) i.start?.(m, ctx);
  const out = pipeline.run(m, ctx);
  for (const i of ctx.instruments) i.finish?.(out, ctx);
  return out;
}
