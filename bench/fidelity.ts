/**
 * pimc against hardware measurements (test/fixtures/measured): each measured figure beside the
 * model's, with the error and the system constant fitted to it, if any. `npm run bench` prints them;
 * test/xpu.test.ts holds them.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compile, time } from "../src/index.js";
import { layerGroupName } from "../src/report/format.js";

/** One measured figure and the model's. */
export interface MeasuredFigure {
  /** Op group as `pimc bench` names it (`L*.qkv`), or `linear`: the four projections together. */
  readonly op: string;
  readonly batch: number;
  /** Tokens in the KV cache (attention); undefined where the figure does not depend on it. */
  readonly context?: number;
  /** Layers the figure covers: 1 (one layer's) or the whole model's. */
  readonly layers: number;
  readonly measuredMs: number;
  /** The system constant fitted to this figure; undefined for a prediction. */
  readonly fitted?: string;
  readonly modelMs: number;
  /** modelMs / measuredMs - 1. */
  readonly error: number;
}

const LINEAR = ["L*.qkv", "L*.o", "L*.gate_up", "L*.down"];
/** Context of the steps whose figures do not depend on it (the linear layers). */
const ANY_CONTEXT = 1024;

/** The rows of a measurement CSV (no quoted fields). */
export function readCsv(path: string): Record<string, string>[] {
  const [head, ...lines] = readFileSync(path, "utf8").trim().split(/\r?\n/);
  const keys = head!.split(",");
  return lines.map((l) => Object.fromEntries(l.split(",").map((v, i) => [keys[i]!, v])));
}

/**
 * Llama-2-7B decode on examples/systems/h100.pim against the H100 measurements
 * (test/fixtures/measured/h100-llama2-7b.csv). `root`: the repository's folder.
 */
export async function h100Fidelity(root = ""): Promise<MeasuredFigure[]> {
  const rows = readCsv(join(root, "test/fixtures/measured/h100-llama2-7b.csv"));
  // The batch-256 steps' KV caches do not fit the H100's 80 GB: the measurement timed the ops alone.
  const c = await compile(join(root, "examples/llama2-7b.pim"), join(root, "examples/systems/h100.pim"), {
    capacityCheck: false,
    warn: () => {},
    workload: { phase: "decode", batch: 1, context: ANY_CONTEXT },
  });
  const steps = new Map<string, Record<string, number>>();
  const groups = (batch: number, context: number): Record<string, number> => {
    const key = `${batch}/${context}`;
    let by = steps.get(key);
    if (!by) {
      by = {};
      for (const o of time(c, { batch, context }).timing!.ops) {
        const n = layerGroupName(o.op);
        by[n] = (by[n] ?? 0) + o.seconds;
      }
      steps.set(key, by);
    }
    return by;
  };
  return rows.map((r) => {
    const batch = Number(r.batch);
    const context = r.context ? Number(r.context) : undefined;
    const layers = Number(r.layers);
    const by = groups(batch, context ?? ANY_CONTEXT);
    const ops = r.op === "linear" ? LINEAR : [r.op!];
    const seconds = ops.reduce((s, op) => {
      const t = by[op];
      if (t === undefined) throw new Error(`internal: no op group ${op} in the H100 step`);
      return s + t;
    }, 0);
    // The step's op groups cover all the model's layers.
    const modelMs = (seconds * 1e3 * layers) / c.model.config!.layers;
    const measuredMs = Number(r.measured_ms);
    return {
      op: r.op!,
      batch,
      ...(context !== undefined ? { context } : {}),
      layers,
      measuredMs,
      ...(r.fitted ? { fitted: r.fitted } : {}),
      modelMs,
      error: modelMs / measuredMs - 1,
    };
  });
}
