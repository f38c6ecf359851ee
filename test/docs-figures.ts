/**
 * The figures README.md and docs/*.md quote next to emulated results, with the commands (run with
 * --json) that produce them. test/docs.test.ts checks that each doc still contains `quote` verbatim
 * and that every number in it with an accessor equals the accessor's value to the quote's rounding
 * (half a unit of its last digit). Editing a figure in a doc means editing it here too.
 */

export interface Figure {
  doc: string;
  /** Text the doc contains verbatim. */
  quote: string;
  /** pimc commands (without --json); the accessors get their parsed JSON outputs in this order. */
  cmds: string[];
  /** One entry per number in `quote` (in order): its value from the outputs, or null (not emulated). */
  values: (((js: readonly unknown[]) => number) | null)[];
  /** Checked only by `npm run bench` (PIMC_DOCS_SLOW=1): its commands take seconds. */
  slow?: boolean;
}

export interface Quoted {
  text: string;
  value: number;
  tolerance: number;
}

/** The numbers of a quote (`13,278`, `59.6`, `1.58x`, `2e-2`), with half a unit of their last digit. */
export function quotedNumbers(quote: string): Quoted[] {
  return [
    ...quote.matchAll(/(?<![\w.-])\d+(?:,\d{3})*(?:\.(\d+))?(?:e(-?\d+))?(?![A-Za-wyz_]|[\w.]*\d)/g),
  ].map((m) => {
    const decimals = m[1]?.length ?? 0;
    const exp = Number(m[2] ?? 0);
    const value = Number(m[0].replaceAll(",", ""));
    return { text: m[0], value, tolerance: 0.5 * 10 ** (exp - decimals) * (1 + 1e-9) };
  });
}

interface Op {
  name: string;
  device: string;
  seconds: number;
}
interface Step {
  batch: number;
  seconds: number;
  tokens_per_second: number;
  host_only_s?: number;
  pim_only_s?: number | null;
  busy: Record<string, number>;
  ops?: Op[];
  placement?: {
    group: string;
    host_s: number;
    pim_s: number | null;
    crossover: { from: number; to: number; device: string }[];
  }[];
}

const stepOf = (j: unknown, batch: number): Step => {
  const s = (j as { steps: Step[] }).steps.find((x) => x.batch === batch);
  if (!s) throw new Error(`no step of batch ${batch}`);
  return s;
};
const groupOf = (j: unknown, batch: number, group: string) => {
  const g = stepOf(j, batch).placement?.find((x) => x.group === group);
  if (!g) throw new Error(`no layer group ${group} at batch ${batch}`);
  return g;
};
/** Step latency of output `i` at `batch`, in ms. */
const ms =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    stepOf(js[i], batch).seconds * 1e3;
/** Output `a`'s step latency over output `b`'s at `batch`. */
const speedup =
  (a: number, b: number, batch: number) =>
  (js: readonly unknown[]): number =>
    stepOf(js[a], batch).seconds / stepOf(js[b], batch).seconds;
/** The host-only reference of `--baselines`, in ms. */
const hostOnlyMs =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    stepOf(js[i], batch).host_only_s! * 1e3;
const pimOnlyMs =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    stepOf(js[i], batch).pim_only_s! * 1e3;
/** The summed time of the named op groups (`L*.attn`, ...) in a step, in ms, divided by `per`. */
const opsMs =
  (i: number, batch: number, names: string[], per = 1) =>
  (js: readonly unknown[]): number => {
    const ops = stepOf(js[i], batch).ops ?? [];
    for (const n of names) if (!ops.some((o) => o.name === n)) throw new Error(`no op ${n}`);
    return (ops.filter((o) => names.includes(o.name)).reduce((t, o) => t + o.seconds, 0) * 1e3) / per;
  };
const LINEAR = ["L*.qkv", "L*.o", "L*.gate_up", "L*.down"];

const NPM_START =
  "bench examples/llama2-7b.pim --system examples/systems/upmem-2048.pim --weights int8 --phase decode --batch 1,4,16 --baselines";
const gpt3 = (system: string) =>
  `bench examples/gpt3-175b.pim --system examples/systems/${system}.pim --phase decode --context 2047 --batch 1,4,16,64 --no-capacity-check`;
const A100 = gpt3("a100");
const ATTACC = gpt3("a100-attacc");
/** Batch 64 alone: AttAcc's headline, cheap enough for the suite. */
const A100_64 = A100.replace("1,4,16,64", "64");
const ATTACC_64 = ATTACC.replace("1,4,16,64", "64");
const NEUPIMS =
  "bench examples/gpt3-175b.pim --system examples/systems/neupims.pim --phase decode --context 2047 --batch 16,64,256,512 --no-capacity-check";
const mixtral = (system: string) =>
  `bench examples/mixtral-8x7b.pim --system examples/systems/${system}.pim --phase decode --context 2048 --batch 16 --no-capacity-check`;
const SERVE =
  "serve examples/llama2-7b.pim --system examples/systems/h100.pim --rate 20 --count 200 --max-batch 32";
const TINY_PIMLLM =
  "bench examples/tiny-llama.pim --system examples/systems/upmem-2048-pimllm.pim --weights int8 --batch 1,16 --baselines --json";
const ATTENTION_PIM =
  "bench examples/llama2-7b.pim --system examples/systems/upmem-2048.pim --weights int8 --phase decode --batch 1 --attention pim";
const SAIL =
  "bench examples/llama2-7b.pim --system examples/systems/sail-n1-64.pim --weights int4 --activations int8 --phase decode --batch 1,4,16";
const H100 =
  "bench examples/llama2-7b.pim --system examples/systems/h100.pim --phase decode --batch 1,64,256 --no-capacity-check";
const H100_ATTENTION =
  "bench examples/llama2-7b.pim --system examples/systems/h100.pim --phase decode --context 2048 --batch 1,16,64 --no-capacity-check";
const HBM =
  "bench examples/llama2-7b.pim --system examples/systems/hbm-pim-64ch.pim --phase decode --batch 1";
const GEMV = "kernel gemv 4096x4096 --system examples/systems/hbm-pim-64ch.pim";
const ADD = "kernel add 1M";
const cycles =
  (i: number, mode: "pim" | "non_pim") =>
  (js: readonly unknown[]): number =>
    (js[i] as Record<typeof mode, { cycles: number }>)[mode].cycles;
interface Served {
  tokens_per_second: number;
  mean_batch: number;
  ttft: Record<"p50" | "p99", number>;
  tbt: Record<"p50" | "p99", number>;
}
const served =
  (i: number, f: (s: Served) => number) =>
  (js: readonly unknown[]): number =>
    f(js[i] as Served);

const ABLATION = (system: string) =>
  `bench examples/llama2-7b.pim --system examples/systems/${system}.pim --phase prefill --seq 128 --weights int8 --ablation`;
interface AblationRow {
  config: string;
  seconds: number;
  speedup_vs_basegemm: number;
  speedup_vs_cpu: number;
}
/** Row `row` of output `i`'s ablation (0 the CPU alone, 1 BaseGEMM, ... 6 resource pooling). */
const ablation =
  (i: number, row: number, f: (r: AblationRow) => number) =>
  (js: readonly unknown[]): number =>
    f((js[i] as { ablation: AblationRow[] }).ablation[row]!);

/** PAPI's configurations: GPU only, A100 + AttAcc, PIM only, static, PAPI (dynamic; the doc's command). */
const PAPI_CONFIGS = [
  ["a100", ""],
  ["a100-attacc", ""],
  ["a100-papi", " --no-cooperation"],
  ["a100-papi", " --compile-once"],
  ["a100-papi", " --dynamic-placement --compile-once"],
] as const;
const PAPI_MODELS = ["llama-65b", "gpt3-175b"] as const;
const papiCmds = (model: string, spec: number) =>
  PAPI_CONFIGS.map(
    ([system, flags]) =>
      `bench examples/${model}.pim --system examples/systems/${system}.pim --phase decode --context ${2048 - spec} --seq ${spec} --batch 4,16,64 --no-capacity-check${flags}`,
  );
/** All 30 PAPI runs: model, then speculation 1 / 2 / 4, then the five configurations. */
const PAPI_ALL = PAPI_MODELS.flatMap((m) => [1, 2, 4].flatMap((spec) => papiCmds(m, spec)));
/** PAPI (config 4) against config `other` at the 18 points (model x speculation x batch). */
const papiRatios = (js: readonly unknown[], other: number): number[] =>
  [0, 1, 2, 3, 4, 5].flatMap((run) => [4, 16, 64].map((b) => speedup(run * 5 + other, run * 5 + 4, b)(js)));
const geomean = (xs: number[]) => Math.exp(xs.reduce((t, x) => t + Math.log(x), 0) / xs.length);

/** The rows of docs/heterogeneous.md's PAPI tables after `| speculation | batch |`, by "S,batch". */
const PAPI_ROWS: Record<"llama-65b" | "gpt3-175b", Record<string, string>> = {
  "llama-65b": {
    "1,4": "61.5 | 56.1 | 29.3 | 29.3 | 29.3 | 1.92x | 1.00x | 1.00x",
    "1,16": "81.6 | 63.7 | 89.6 | 89.6 | 68.2 | 0.93x | 1.31x | 1.31x",
    "1,64": "163.1 | 94.6 | 332.4 | 332.4 | 112.8 | 0.84x | 2.95x | 2.95x",
    "2,4": "61.5 | 59.1 | 49.5 | 49.5 | 49.5 | 1.19x | 1.00x | 1.00x",
    "2,16": "81.9 | 74.8 | 168.5 | 168.5 | 81.2 | 0.92x | 2.07x | 2.07x",
    "2,64": "206.5 | 177.7 | 648.0 | 648.0 | 206.1 | 0.86x | 3.14x | 3.14x",
    "4,4": "61.6 | 61.6 | 82.4 | 61.0 | 61.0 | 1.01x | 1.35x | 1.00x",
    "4,16": "83.4 | 83.4 | 302.3 | 82.7 | 82.7 | 1.01x | 3.66x | 1.00x",
    "4,64": "297.1 | 297.1 | 1179.5 | 296.8 | 296.8 | 1.00x | 3.97x | 1.00x",
  },
  "gpt3-175b": {
    "1,4": "141.9 | 133.7 | 57.2 | 57.2 | 57.2 | 2.34x | 1.00x | 1.00x",
    "1,16": "179.7 | 146.9 | 199.4 | 199.4 | 155.0 | 0.95x | 1.29x | 1.29x",
    "1,64": "325.2 | 201.9 | 772.2 | 772.2 | 235.3 | 0.86x | 3.28x | 3.28x",
    "2,4": "141.9 | 139.2 | 103.6 | 103.6 | 103.6 | 1.34x | 1.00x | 1.00x",
    "2,16": "180.1 | 165.5 | 387.7 | 387.7 | 179.7 | 0.92x | 2.16x | 2.16x",
    "2,64": "440.9 | 389.1 | 1521.8 | 1521.8 | 440.6 | 0.88x | 3.45x | 3.45x",
    "4,4": "142.1 | 142.1 | 185.9 | 141.6 | 141.6 | 1.00x | 1.31x | 1.00x",
    "4,16": "181.6 | 181.6 | 718.0 | 181.1 | 181.1 | 1.00x | 3.97x | 1.00x",
    "4,64": "680.4 | 680.4 | 2842.6 | 680.2 | 680.2 | 1.00x | 4.18x | 1.00x",
  },
};

const COMPARE =
  "bench examples/llama2-7b.pim --compare examples/systems/upmem-2048.pim,examples/systems/sail-n1-64.pim --phase decode --batch 1,4,16";
interface CompareRow {
  system: string;
  target: string;
  weights: string;
  seconds: number;
  speedup_vs_host: number;
}
/** `--compare`'s row of `system` running `target` with `weights` at `batch`: ms and speedup over its host. */
const compared = (system: string, target: string, weights: string) => {
  const row = (j: unknown, batch: number) => {
    const step = (j as { steps: { batch: number; rows: CompareRow[] }[] }).steps.find(
      (s) => s.batch === batch,
    );
    const r = step?.rows.find((x) => x.system === system && x.target === target && x.weights === weights);
    if (!r) throw new Error(`no --compare row ${system} ${target} ${weights} at batch ${batch}`);
    return r;
  };
  return [1, 4, 16].flatMap((b) => [
    (js: readonly unknown[]) => row(js[0], b).seconds * 1e3,
    (js: readonly unknown[]) => row(js[0], b).speedup_vs_host,
  ]);
};

export const FIGURES: Figure[] = [
  // npm start: README's headline and docs/upmem.md's table.
  {
    doc: "README.md",
    quote: "at batch 1 takes 59.6 ms per token with the linear layers on the DPUs against the host's 313 ms",
    cmds: [NPM_START],
    values: [null, ms(0, 1), hostOnlyMs(0, 1)],
  },
  ...[
    [1, "│     1 │           1 │  59.603 ms │ 313.303 ms │  59.603 ms │"],
    [4, "│     4 │           4 │ 191.501 ms │ 385.636 ms │ 191.501 ms │"],
    [16, "│    16 │          16 │ 674.968 ms │ 674.968 ms │ 713.730 ms │"],
  ].map(([b, quote]): Figure => ({
    doc: "docs/upmem.md",
    quote: quote as string,
    cmds: [NPM_START],
    values: [null, null, ms(0, b as number), hostOnlyMs(0, b as number), pimOnlyMs(0, b as number)],
  })),
  {
    doc: "docs/lowbit.md",
    quote: "| | INT8 MAC (PGEMMlib) | 59.6 ms | 5.26x | 191.5 ms | 2.01x | 675.0 ms | 1.00x |",
    cmds: [NPM_START],
    values: [
      ms(0, 1),
      (js) => hostOnlyMs(0, 1)(js) / ms(0, 1)(js),
      ms(0, 4),
      (js) => hostOnlyMs(0, 4)(js) / ms(0, 4)(js),
      ms(0, 16),
      (js) => hostOnlyMs(0, 16)(js) / ms(0, 16)(js),
    ],
  },
  // AttAcc: README and docs/heterogeneous.md.
  {
    doc: "README.md",
    quote: "175B decode 1.61x over GPU-only at batch 64",
    cmds: [A100_64, ATTACC_64],
    values: [speedup(0, 1, 64), null],
  },
  ...[1, 4, 16, 64].map((b, i): Figure => ({
    doc: "docs/heterogeneous.md",
    quote: [
      "| 1 | 131.7 ms | 130.9 ms | 1.01x | 3.8 / 3.1 ms |",
      "| 4 | 141.9 ms | 133.7 ms | 1.06x | 14.1 / 5.8 ms |",
      "| 16 | 179.7 ms | 146.9 ms | 1.22x | 51.7 / 18.8 ms |",
      "| 64 | 325.2 ms | 201.9 ms | 1.61x | 195.3 / 72.0 ms |",
    ][i]!,
    cmds: b === 64 ? [A100_64, ATTACC_64] : [A100, ATTACC],
    values: [null, ms(0, b), ms(1, b), speedup(0, 1, b), opsMs(0, b, ["L*.attn"]), opsMs(1, b, ["L*.attn"])],
    slow: b !== 64,
  })),
  // SAIL (docs/sram-pim.md, docs/lowbit.md).
  {
    doc: "docs/sram-pim.md",
    quote:
      "| `--weights int4 --activations int8` (arrays) | 20.52 ms | 28.61 | 61.00  | 17.27     | 17.27 | 17.27 |",
    cmds: [SAIL],
    values: [
      ms(0, 1),
      ms(0, 4),
      ms(0, 16),
      opsMs(0, 1, [...LINEAR, "logits"]),
      opsMs(0, 4, [...LINEAR, "logits"]),
      opsMs(0, 16, [...LINEAR, "logits"]),
    ],
  },
  {
    doc: "docs/lowbit.md",
    quote: "| | INT4 LUT on the arrays | 20.5 ms | 1.74x | 28.6 ms | 1.53x | 61.0 ms | 2.07x |",
    cmds: [SAIL],
    values: [ms(0, 1), null, ms(0, 4), null, ms(0, 16), null],
  },
  // The H100 calibration (README, docs/xpu.md).
  {
    doc: "README.md",
    quote: "5.15 ms per token at batch 1 (measured 5.18), 5.24 at 64 (5.27)",
    cmds: [H100],
    values: [opsMs(0, 1, LINEAR), null, null, opsMs(0, 64, LINEAR), null, null],
  },
  {
    doc: "docs/xpu.md",
    quote: "| linear layers, 32 layers, batch 1 | 5.18 ms | 5.15 ms | -0.6 % |",
    cmds: [H100],
    values: [null, null, null, opsMs(0, 1, LINEAR)],
  },
  {
    doc: "docs/xpu.md",
    quote: "| linear layers, batch 256 (fitted) | 6.03 ms | 6.12 ms | +1.5 % |",
    cmds: [H100],
    values: [null, null, opsMs(0, 256, LINEAR), null],
  },
  {
    doc: "README.md",
    quote: "decode attention at context 2048 0.178 ms per layer at batch 16 (0.18)",
    cmds: [H100_ATTENTION],
    values: [null, opsMs(0, 16, ["L*.attn"], 32), null, null],
  },
  ...(
    [
      [1, "| attention per layer, context 2048, batch 1 | 0.041 ms | 0.048 ms | +16 % |"],
      [16, "| attention per layer, context 2048, batch 16 | 0.18 ms | 0.178 ms | -0.9 % |"],
      [64, "| attention per layer, context 2048, batch 64 (fitted) | 0.70 ms | 0.701 ms | +0.2 % |"],
    ] as const
  ).map(([b, quote]): Figure => ({
    doc: "docs/xpu.md",
    quote,
    cmds: [H100_ATTENTION],
    values: [null, null, null, opsMs(0, b, ["L*.attn"], 32), ...(b === 16 ? [] : [null])],
  })),
  // HBM-PIM: PIMSimulator's kernels (README, docs/hbm-pim.md) and a model on the target.
  ...["README.md", "docs/hbm-pim.md"].flatMap((doc): Figure[] => {
    const fp16 = doc === "README.md" ? " FP16" : "";
    const nonPim = doc === "README.md" ? "without PIM" : "non-PIM";
    return [
      {
        doc,
        quote: `| GEMV 4096x4096${fp16}, PIM | 13,166${doc === "README.md" ? " cycles" : ""} | 13,278 |`,
        cmds: [GEMV],
        values: [null, cycles(0, "pim")],
      },
      {
        doc,
        quote: `| GEMV 4096x4096${fp16}, ${nonPim} | 36,082 | 36,422 |`,
        cmds: [GEMV],
        values: [null, cycles(0, "non_pim")],
      },
      { doc, quote: `| ADD 1M${fp16}, PIM | 3,349 | 3,427 |`, cmds: [ADD], values: [null, cycles(0, "pim")] },
      {
        doc,
        quote: `| ADD 1M${fp16}, ${nonPim} | 6,651 | 7,041 |`,
        cmds: [ADD],
        values: [null, cycles(0, "non_pim")],
      },
    ];
  }),
  {
    doc: "docs/hbm-pim.md",
    quote: "Llama-2-7B decode at batch 1: 6.36 -> 6.22 ms per step",
    cmds: [HBM],
    values: [null, null, ms(0, 1)],
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote: "`--attention pim`: 150.4 ms per step at batch 1 against 59.6 ms with attention on the host)",
    cmds: [ATTENTION_PIM, NPM_START],
    values: [ms(0, 1), null, ms(1, 1)],
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote: "with the step at 0.433 ms against 0.485 ms host only and 0.575 ms PIM only",
    cmds: [TINY_PIMLLM],
    values: [ms(0, 16), hostOnlyMs(0, 16), pimOnlyMs(0, 16)],
  },
  {
    doc: "docs/upmem.md",
    quote:
      "host 11.91 us vs DPUs 91.76 us per step at batch 1); DPUs faster from batch 11 (L*.gate_up) to 58",
    cmds: [TINY_PIMLLM],
    values: [
      (js) => groupOf(js[0], 1, "L*.gate_up").host_s * 1e6,
      (js) => groupOf(js[0], 1, "L*.gate_up").pim_s! * 1e6,
      null,
      (js) => groupOf(js[0], 1, "L*.gate_up").crossover.find((c) => c.device !== "host")!.from,
      (js) =>
        Math.max(
          ...stepOf(js[0], 1).placement!.flatMap((g) =>
            g.crossover.filter((c) => c.device !== "host").map((c) => c.from),
          ),
        ),
    ],
  },
  // Serving (docs/serving.md).
  {
    doc: "docs/serving.md",
    quote: "| continuous | 2056 | 33 ms / 1.11 s | 10.1 ms / 40.4 ms |",
    cmds: [SERVE],
    values: [
      served(0, (s) => s.tokens_per_second),
      served(0, (s) => s.ttft.p50 * 1e3),
      served(0, (s) => s.ttft.p99),
      served(0, (s) => s.tbt.p50 * 1e3),
      served(0, (s) => s.tbt.p99 * 1e3),
    ],
  },
  {
    doc: "docs/serving.md",
    quote: "| static | 1329 | 3.98 s / 8.81 s | 10.1 ms / 10.6 ms |",
    cmds: [`${SERVE} --batching static`],
    values: [
      served(0, (s) => s.tokens_per_second),
      served(0, (s) => s.ttft.p50),
      served(0, (s) => s.ttft.p99),
      served(0, (s) => s.tbt.p50 * 1e3),
      served(0, (s) => s.tbt.p99 * 1e3),
    ],
    slow: true,
  },
  {
    doc: "docs/serving.md",
    quote: "(24.4 sequences per decode step)",
    cmds: [SERVE],
    values: [served(0, (s) => s.mean_batch)],
  },
  // Duplex (docs/heterogeneous.md).
  {
    doc: "docs/heterogeneous.md",
    quote: "| 16 | 37.93 ms (422 tok/s) | 10.63 ms (1505 tok/s) | 3.57x | both / both / H100 |",
    cmds: [mixtral("h100"), mixtral("duplex")],
    values: [
      null,
      ms(0, 16),
      (js) => stepOf(js[0], 16).tokens_per_second,
      ms(1, 16),
      (js) => stepOf(js[1], 16).tokens_per_second,
      speedup(0, 1, 16),
    ],
    slow: true,
  },
  ...[
    [16, "| 16 | 179.7 | 415.7 | 707.6 | 0.59x |"],
    [64, "| 64 | 325.2 | 635.2 | 775.5 | 0.82x |"],
    [256, "| 256 | 1264.8 | 1513.0 | 1047.2 | 1.44x |"],
    [512, "| 512 | 2521.0 | 2683.4 | 1616.5 | 1.66x |"],
  ].map(([b, quote]): Figure => ({
    doc: "docs/heterogeneous.md",
    quote: quote as string,
    cmds: [
      (b as number) < 256
        ? A100
        : "bench examples/gpt3-175b.pim --system examples/systems/a100.pim --phase decode --context 2047 --batch 256,512 --no-capacity-check",
      NEUPIMS,
      `${NEUPIMS} --sub-batches 2`,
    ],
    values: [null, ms(0, b as number), ms(1, b as number), ms(2, b as number), speedup(1, 2, b as number)],
    slow: true,
  })),
  // PIM-LLM's ablation (README): the measured host and the fitted TVM-CPU host.
  ...(
    [
      ["| CPU only (host model) | 0.669 s (60.3x) | 186.9 s (0.32x) | 0.32x (45.75 / 14.65) |", 0, 3],
      ["| BaseGEMM | 40.4 s (1.00x) | 59.7 s (1.00x) | 1.00x |", 1, 1],
      ["| + Tile-Selector | 18.4 s (2.19x) | 34.4 s (1.74x) | |", 2, 0],
      ["| + build-time layout adjustment | 17.8 s (2.26x) | 18.7 s (3.20x) | |", 3, 0],
      ["| + QKV and gate/up fusion | 13.4 s (3.01x) | 14.2 s (4.20x) | |", 4, 0],
      ["| + CPU/PIM cooperation | 0.669 s (60.3x) | 14.2 s (4.20x) | |", 5, 0],
    ] as const
  ).map(([quote, row, paper]): Figure => ({
    doc: "README.md",
    quote,
    cmds: [ABLATION("upmem-2048"), ABLATION("upmem-2048-pimllm")],
    values: [
      ablation(0, row, (r) => r.seconds),
      ablation(0, row, (r) => r.speedup_vs_basegemm),
      ablation(1, row, (r) => r.seconds),
      ablation(1, row, (r) => r.speedup_vs_basegemm),
      ...Array<null>(paper).fill(null),
    ],
    slow: true,
  })),
  {
    doc: "README.md",
    quote:
      "| + resource pooling | 0.669 s (60.3x) | **3.38 s (17.7x; 55.2x over the CPU)** | 14.65x; 45.75x over the CPU |",
    cmds: [ABLATION("upmem-2048"), ABLATION("upmem-2048-pimllm")],
    values: [
      ablation(0, 6, (r) => r.seconds),
      ablation(0, 6, (r) => r.speedup_vs_basegemm),
      ablation(1, 6, (r) => r.seconds),
      ablation(1, 6, (r) => r.speedup_vs_basegemm),
      ablation(1, 6, (r) => r.speedup_vs_cpu),
      null,
      null,
    ],
    slow: true,
  },
  // PAPI (docs/heterogeneous.md): every row of both tables, five configurations per speculation length.
  ...PAPI_MODELS.flatMap((model) =>
    [1, 2, 4].flatMap((spec) =>
      [4, 16, 64].map((b): Figure => {
        const row = PAPI_ROWS[model][`${spec},${b}`]!;
        const cmds = papiCmds(model, spec);
        return {
          doc: "docs/heterogeneous.md",
          quote: `| ${spec} | ${b} | ${row} |`,
          cmds,
          values: [
            null,
            null,
            ...cmds.map((_, i) => ms(i, b)),
            speedup(1, 4, b),
            speedup(2, 4, b),
            speedup(3, 4, b),
          ],
          slow: true,
        };
      }),
    ),
  ),
  {
    doc: "docs/heterogeneous.md",
    quote:
      "Over the 18 points, PAPI's dynamic placement is 1.45x faster than the static placement (up to 3.5x), 2.03x faster than PIM only (up to 4.2x) and 1.06x faster than A100 + AttAcc on geometric mean (from 0.84x to 2.34x).",
    cmds: PAPI_ALL,
    values: [
      null,
      (js) => geomean(papiRatios(js, 3)),
      (js) => Math.max(...papiRatios(js, 3)),
      (js) => geomean(papiRatios(js, 2)),
      (js) => Math.max(...papiRatios(js, 2)),
      (js) => geomean(papiRatios(js, 1)),
      (js) => Math.min(...papiRatios(js, 1)),
      (js) => Math.max(...papiRatios(js, 1)),
    ],
    slow: true,
  },
  {
    doc: "README.md",
    quote:
      "1.45x over static placement and 2.03x over PIM only on geometric mean over batch 4/16/64 x speculation 1/2/4 on LLaMA-65B and GPT-3 175B",
    cmds: PAPI_ALL,
    values: [
      (js) => geomean(papiRatios(js, 3)),
      (js) => geomean(papiRatios(js, 2)),
      ...Array<null>(6).fill(null),
    ],
    slow: true,
  },
  // docs/lowbit.md's --compare table.
  ...(
    [
      [
        "| UPMEM 2048 DPUs | host CPU alone (2 x Xeon Silver 4215, 23.1 GB/s) | 313.3 ms | 1.00x | 385.6 ms | 1.00x | 675.0 ms | 1.00x |",
        4,
        ["upmem_2048", "host CPU alone", "int8"],
      ],
      [
        "| | INT4 LUT | 120.2 ms | 2.61x | 251.3 ms | 1.53x | 540.7 ms | 1.25x |",
        0,
        ["upmem_2048", "upmem", "int4 (a8)"],
      ],
      [
        "| | INT2 LUT | 83.4 ms | 3.76x | 179.8 ms | 2.14x | 469.1 ms | 1.44x |",
        0,
        ["upmem_2048", "upmem", "int2 (a8)"],
      ],
      [
        "| SAIL, Neoverse-N1 64 cores | host CPU alone (= INT8 there) | 35.7 ms | 1.00x | 43.8 ms | 1.00x | 126.4 ms | 1.00x |",
        1,
        ["sail_n1_64", "host CPU alone", "int8"],
      ],
      [
        "| | INT4 LUT on the arrays | 20.5 ms | 1.74x | 28.6 ms | 1.53x | 61.0 ms | 2.07x |",
        0,
        ["sail_n1_64", "sram-pim", "int4 (a8)"],
      ],
      [
        "| | INT2 LUT on the arrays | 12.5 ms | 2.87x | 20.5 ms | 2.13x | 52.9 ms | 2.39x |",
        0,
        ["sail_n1_64", "sram-pim", "int2 (a8)"],
      ],
    ] as const
  ).map(([quote, skip, [system, target, weights]]): Figure => ({
    doc: "docs/lowbit.md",
    quote,
    cmds: [COMPARE],
    values: [...Array<null>(skip).fill(null), ...compared(system, target, weights)],
    slow: true,
  })),
];
