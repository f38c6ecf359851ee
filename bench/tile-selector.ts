/**
 * The UPMEM Tile-Selector against the full tiling space, for `npm run bench`: over the GEMMs of
 * Llama-2-7B, Llama-2-13B, Mistral-7B and OPT-6.7B with f32 and INT8 weights, prefill (the
 * workload's prompt) and decode (batch 1), on 2048 and 2556 DPUs, the selector's time per shape
 * (median of 7 first-call runs after warm-up, as `pimc tune` measures it) and, unless `oracle` is
 * false, the emulated time of its pick against the best legal tiling (the oracle of
 * `pimc tune --exhaustive`, over the whole space: space.ts). A shape's oracle is computed once per
 * system (the models share shapes).
 */
import { loadModel } from "../src/frontend/load.js";
import { resolveWorkload } from "../src/cli/workload-flags.js";
import { forgetTiles } from "../targets/upmem/gemm.js";
import { select } from "../targets/upmem/selector.js";
import {
  emulatedGemm,
  gemmShapes,
  oracle,
  selectMs,
  summarize,
  type ShapeTune,
} from "../targets/upmem/tune.js";

export const MODELS = ["llama2-7b", "llama2-13b", "mistral-7b", "opt-6.7b"] as const;
export const SYSTEMS = ["upmem-2048", "upmem-prim-2556"] as const;

export interface SelectorGroup {
  readonly model: string;
  readonly system: string;
  readonly dpus: number;
  readonly weights: "f32" | "int8";
  readonly phase: "prefill" | "decode";
  readonly shapes: ShapeTune[];
}

/** Warm-up rounds of the selector over a group's shapes before it is timed (as tuneShapes). */
const WARM_UP = 10;

export async function tileSelectorSweep(
  root: string,
  opts: { oracle?: boolean; progress?: (line: string) => void } = {},
): Promise<SelectorGroup[]> {
  const out: SelectorGroup[] = [];
  const oracles = new Map<string, { emulated_s: number; space_size: number; timed: number }>();
  for (const model of MODELS)
    for (const system of SYSTEMS)
      for (const weights of ["f32", "int8"] as const)
        for (const phase of ["prefill", "decode"] as const) {
          const path = `${root}examples/${model}.pim`;
          const { shapes, system: sys } = await gemmShapes(
            loadModel(path),
            {
              disablePass: [],
              printBefore: [],
              printAfter: [],
              weights,
              system: `${root}examples/systems/${system}.pim`,
            },
            resolveWorkload(path, {}),
            [phase],
          );
          for (let i = 0; i < WARM_UP; i++)
            for (const s of shapes) {
              forgetTiles(sys);
              select(s, sys);
            }
          const times = shapes.map((s) => selectMs(s, sys));
          const rows = shapes.map((s, i): ShapeTune => {
            const c = select(s, sys)!;
            const emulated = emulatedGemm(s, c.tiling, sys);
            const base = {
              m: s.m,
              n: s.n,
              k: s.k,
              dtype: s.dtype,
              selector: {
                tiling: c.tiling,
                variant: "",
                estimate_s: c.estimate.total,
                emulated_s: emulated,
                select_ms: times[i]!,
              },
            };
            if (opts.oracle === false) return base;
            const key = `${system} ${s.m} ${s.n} ${s.k} ${s.dtype}`;
            let o = oracles.get(key);
            if (!o) {
              const r = oracle(s, sys, { start: c.tiling })!;
              oracles.set(key, (o = { emulated_s: r.emulated_s, space_size: r.candidates, timed: r.timed }));
            }
            return { ...base, ratio: o.emulated_s / emulated, space_size: o.space_size };
          });
          out.push({ model, system, dpus: sys.dpus, weights, phase, shapes: rows });
          const sum = summarize(rows);
          opts.progress?.(
            `${model} ${system} ${weights} ${phase}: ${rows.length} shapes, select ${sum.max_select_ms.toFixed(3)} ms max` +
              (sum.geomean_ratio === undefined ? "" : `, geomean ${sum.geomean_ratio.toFixed(4)}`),
          );
        }
  return out;
}
