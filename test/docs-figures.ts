/**
 * The figures README.md and docs/*.md quote next to emulated results, with the commands (run with
 * --json) that produce them. test/docs.test.ts checks that each doc still contains `quote` verbatim
 * and that every number in it with an accessor equals the accessor's value to the quote's rounding
 * (half a unit of its last digit). Editing a figure in a doc means editing it here too.
 */
import { MODELS, SYSTEMS } from "../bench/tile-selector.js";
import type { OpRow } from "../src/driver/run.js";

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

/**
 * The numbers of a quote (`13,278`, `59.6`, `1.58x`, `2e-2`, `-0.6 %`), with half a unit of their last
 * digit. A sign counts when it starts a word (`-0.6`, `+16`), not inside one (`opt-tiny-350m`, `1e-5`).
 */
export function quotedNumbers(quote: string): Quoted[] {
  return [
    ...quote.matchAll(/(?<![\w.+-])[-+]?\d+(?:,\d{3})*(?:\.(\d+))?(?:e(-?\d+))?(?![A-Za-wyz_]|[\w.]*\d)/g),
  ].map((m) => {
    const decimals = m[1]?.length ?? 0;
    const exp = Number(m[2] ?? 0);
    const value = Number(m[0].replaceAll(",", ""));
    return { text: m[0], value, tolerance: 0.5 * 10 ** (exp - decimals) * (1 + 1e-9) };
  });
}

/** An accessor: one number of the figure's outputs. */
type Get = (js: readonly unknown[]) => number;
/** Units: seconds to ms or us, bytes to GiB or MiB, flops to G or M. */
const [MS, US, GIB, MIB, G, M] = [1e3, 1e6, 2 ** 30, 2 ** 20, 1e9, 1e6];

/** A row of `bench --json`'s ops. */
type Op = OpRow;
interface Group {
  group: string;
  ops: number;
  host_s: number;
  pim_s: number | null;
  crossover: { from: number; to: number; device: string }[];
}
/** Where the layer groups run: a `bench` step, or `compile`'s output (its workload). */
interface Placed {
  placement?: Group[];
  verdict?: string;
}
interface Step extends Placed {
  batch: number;
  seconds: number;
  tokens_per_second: number;
  host_only_s?: number;
  pim_only_s?: number | null;
  busy: Record<string, number>;
  /** The step's ops (UPMEM: host ops by opcode, DPU kernels, transfers). */
  ops?: Op[];
  placement_other?: { ops: number };
}

const stepOf = (j: unknown, batch: number): Step => {
  const s = (j as { steps: Step[] }).steps.find((x) => x.batch === batch);
  if (!s) throw new Error(`no step of batch ${batch}`);
  return s;
};
const groupIn = (p: Placed, group: string): Group => {
  const g = p.placement?.find((x) => x.group === group);
  if (!g) throw new Error(`no layer group ${group}`);
  return g;
};
const groupOf = (j: unknown, batch: number, group: string): Group => groupIn(stepOf(j, batch), group);
/** The first batch (above 1) of a group's crossover from which a device that `device` accepts runs it. */
const fromBatch = (g: Group, device: (d: string) => boolean): number => {
  const c = g.crossover.find((x) => device(x.device) && x.from > 1);
  if (!c) throw new Error(`${g.group}: no crossover`);
  return c.from;
};
const notHost = (d: string) => d !== "host";
const isHost = (d: string) => d === "host";
/** The first batches from which `device` takes a layer group over, reduced over the groups by `agg`. */
const fromBatches =
  (i: number, batch: number, device: (d: string) => boolean, agg: (...xs: number[]) => number): Get =>
  (js) =>
    agg(
      ...(stepOf(js[i], batch).placement ?? []).flatMap((g) =>
        g.crossover.filter((c) => device(c.device) && c.from > 1).map((c) => c.from),
      ),
    );
/** `f` of a layer group of output `i` at `batch` (of `compile`'s output without a batch). */
const placed =
  (i: number, batch: number | undefined, group: string, f: (g: Group) => number): Get =>
  (js) =>
    f(batch === undefined ? groupIn(js[i] as Placed, group) : groupOf(js[i], batch, group));
/** Group seconds in ms or us, and how many times faster its device is than the other. */
const hostTime = (scale: number) => (g: Group) => g.host_s * scale;
const pimTime = (scale: number) => (g: Group) => g.pim_s! * scale;
const faster = (g: Group) => Math.max(g.host_s, g.pim_s!) / Math.min(g.host_s, g.pim_s!);
/** The `n`-th number of a line pimc printed. */
const nthNumber = (line: string, n: number): number => {
  const q = quotedNumbers(line)[n];
  if (!q) throw new Error(`no number ${n + 1} in: ${line}`);
  return q.value;
};
/** The `n`-th number of output `i`'s verdict at `batch` (of `compile`'s without a batch). */
const verdict =
  (i: number, batch: number | undefined, n: number): Get =>
  (js) =>
    nthNumber((batch === undefined ? (js[i] as Placed) : stepOf(js[i], batch)).verdict ?? "", n);
/** The `n`-th number of the line of `compile`'s program summary that starts with `start`. */
const programLine =
  (i: number, start: string, n: number): Get =>
  (js) =>
    nthNumber((js[i] as { program: string[] }).program.find((l) => l.startsWith(start)) ?? "", n);

/** a / b. */
const ratio =
  (a: Get, b: Get): Get =>
  (js) =>
    a(js) / b(js);
/** The smallest and the largest of the numbers `all` gives (a range quoted as "a to b"). */
const rangeOf = (all: (js: readonly unknown[]) => number[]): [Get, Get] => [
  (js) => Math.min(...all(js)),
  (js) => Math.max(...all(js)),
];
const range = (gets: Get[]): [Get, Get] => rangeOf((js) => gets.map((g) => g(js)));
/** The value several things quoted as one number share (an error when they differ). */
const sameValue = (v: number[]): number => {
  if (v.length === 0 || v.some((x) => x !== v[0]))
    throw new Error(`one number quoted for different values: ${v.join(", ")}`);
  return v[0]!;
};
const same =
  (gets: Get[]): Get =>
  (js) =>
    sameValue(gets.map((g) => g(js)));
/** How far `get` is above a published or measured `reference`, in percent (below: negative). */
const pctOver =
  (get: Get, reference: number): Get =>
  (js) =>
    (get(js) / reference - 1) * 100;
const pctBelow =
  (get: Get, reference: number): Get =>
  (js) =>
    -pctOver(get, reference)(js);

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
/** The linear layers and the LM head. */
const LINEAR_LOGITS = [...LINEAR, "logits"];
/** A step's busy time of an engine (`host`, `pim`, `to_pim`, `kernels`, ...), in ms (or x `scale`). */
const busy =
  (i: number, batch: number, engine: string, scale = MS): Get =>
  (js) => {
    const t = stepOf(js[i], batch).busy[engine];
    if (t === undefined) throw new Error(`no busy time ${engine}`);
    return t * scale;
  };
const tokensPerS =
  (i: number, batch: number): Get =>
  (js) =>
    stepOf(js[i], batch).tokens_per_second;
const opOf = (j: unknown, batch: number, name: string): Op => {
  const o = stepOf(j, batch).ops?.find((x) => x.name === name);
  if (!o) throw new Error(`no op ${name}`);
  return o;
};
/**
 * The numbers of an op group's row in `bench`'s table of where the time goes: calls, seconds x
 * `time`, share of the step (%), bytes / `bytes`, flops / `flops`, Op/B.
 */
const opRow = (i: number, batch: number, name: string, [time, bytes, flops]: readonly number[]): Get[] => {
  const op = (js: readonly unknown[]) => opOf(js[i], batch, name);
  return [
    (js) => op(js).calls,
    (js) => op(js).seconds * time!,
    (js) => (op(js).seconds / stepOf(js[i], batch).seconds) * 100,
    (js) => op(js).bytes / bytes!,
    (js) => op(js).flops / flops!,
    (js) => op(js).flops / op(js).bytes,
  ];
};
/** The share of the step (%) of the ops (UPMEM: kernels, host ops) named `name`. */
const kernelShare =
  (i: number, batch: number, name: string): Get =>
  (js) => {
    const s = stepOf(js[i], batch);
    const named = (s.ops ?? []).filter((k) => k.name === name);
    if (named.length === 0) throw new Error(`no kernel ${name}`);
    return (named.reduce((t, k) => t + k.seconds, 0) / s.seconds) * 100;
  };

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
/** GPU only, NeuPIMs naive and interleaved, at `batch` (the GPU's large batches apart). */
const neupims = (batch: number) => [
  batch < 256 ? A100 : A100.replace("1,4,16,64", "256,512"),
  NEUPIMS,
  `${NEUPIMS} --sub-batches 2`,
];
const DUPLEX_BATCHES = [1, 16, 64, 256] as const;
/** docs/heterogeneous.md's Duplex commands: the H100 alone, then Duplex. */
const DUPLEX = ["h100", "duplex"].map(
  (system) =>
    `bench examples/mixtral-8x7b.pim --system examples/systems/${system}.pim --phase decode --context 2048 --batch ${DUPLEX_BATCHES.join(",")} --no-capacity-check`,
);
const duplexGains = DUPLEX_BATCHES.map((b) => speedup(0, 1, b));
const SERVE =
  "serve examples/llama2-7b.pim --system examples/systems/h100.pim --rate 20 --count 200 --max-batch 32";
const TINY_PIMLLM =
  "bench examples/tiny-llama.pim --system examples/systems/upmem-2048-pimllm.pim --weights int8 --batch 1,16 --baselines --json";
const ATTENTION_PIM =
  "bench examples/llama2-7b.pim --system examples/systems/upmem-2048.pim --weights int8 --phase decode --batch 1 --attention pim";
const H100 =
  "bench examples/llama2-7b.pim --system examples/systems/h100.pim --phase decode --batch 1,64,256 --no-capacity-check";
const H100_ATTENTION =
  "bench examples/llama2-7b.pim --system examples/systems/h100.pim --phase decode --context 2048 --batch 1,16,64 --no-capacity-check";
const HBM =
  "bench examples/llama2-7b.pim --system examples/systems/hbm-pim-64ch.pim --phase decode --batch 1";
/** A unit beside every bank instead of every bank pair (docs/hbm-pim.md). */
const HBM_BANK_SYSTEM = "examples/systems/hbm-pim-64ch-bank.pim";
const HBM_BANK = HBM.replace("hbm-pim-64ch.pim", "hbm-pim-64ch-bank.pim");
/** An A100 beside the HBM-PIM stacks (docs/hbm-pim.md). */
const A100_HBM =
  "bench examples/llama2-7b.pim --system examples/systems/a100-hbm-pim.pim --phase decode --context 2048 --batch 1";
/** docs/upmem.md: a small model on the default system. */
const TINY_COMPILE = "compile examples/tiny-llama.pim --target upmem";
/** PIM-LLM's BaseGEMM with run-time weight transposes on its fitted host (test/calibration-pimllm.test.ts). */
const TRANSPOSES =
  "bench examples/llama2-7b.pim --system examples/systems/upmem-2048-pimllm.pim --weights int8 --phase prefill --seq 128 --base-gemm --no-pooling --runtime-transpose --no-cooperation --disable-pass fuse-qkv,fuse-gate-up";
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
const SPECS = [1, 2, 4] as const;
const PAPI_ALL = PAPI_MODELS.flatMap((m) => SPECS.flatMap((spec) => papiCmds(m, spec)));
/** PAPI (config 4) against config `other` on `model` with speculation `spec` at `batch`. */
const papiVs = (
  other: number,
  model: (typeof PAPI_MODELS)[number],
  spec: (typeof SPECS)[number],
  batch: number,
): Get => {
  const run = (PAPI_MODELS.indexOf(model) * SPECS.length + SPECS.indexOf(spec)) * PAPI_CONFIGS.length;
  return speedup(run + other, run + 4, batch);
};
/** PAPI against config `other` at the 18 points (model x speculation x batch). */
const papiRatios = (js: readonly unknown[], other: number): number[] =>
  PAPI_MODELS.flatMap((m) => SPECS.flatMap((spec) => [4, 16, 64].map((b) => papiVs(other, m, spec, b)(js))));
const geomean = (xs: number[]) => Math.exp(xs.reduce((t, x) => t + Math.log(x), 0) / xs.length);

/** The rows of docs/heterogeneous.md's PAPI tables after `| speculation | batch |`, by "S,batch". */
const PAPI_ROWS: Record<"llama-65b" | "gpt3-175b", Record<string, string>> = {
  "llama-65b": {
    "1,4": "59.3 | 53.5 | 28.8 | 28.8 | 28.8 | 1.86x | 1.00x | 1.00x",
    "1,16": "79.4 | 60.4 | 87.0 | 87.0 | 64.6 | 0.93x | 1.35x | 1.35x",
    "1,64": "161.2 | 88.3 | 321.0 | 321.0 | 106.4 | 0.83x | 3.02x | 3.02x",
    "2,4": "59.4 | 56.2 | 48.8 | 48.8 | 48.8 | 1.15x | 1.00x | 1.00x",
    "2,16": "79.7 | 70.2 | 165.2 | 166.0 | 79.5 | 0.88x | 2.08x | 2.09x",
    "2,64": "204.7 | 167.0 | 632.9 | 633.5 | 204.5 | 0.82x | 3.10x | 3.10x",
    "4,4": "59.4 | 59.4 | 80.9 | 58.5 | 58.5 | 1.02x | 1.38x | 1.00x",
    "4,16": "81.5 | 81.5 | 295.0 | 80.5 | 80.5 | 1.01x | 3.66x | 1.00x",
    "4,64": "292.7 | 292.7 | 1149.2 | 292.1 | 292.1 | 1.00x | 3.93x | 1.00x",
  },
  "gpt3-175b": {
    "1,4": "134.7 | 125.9 | 56.6 | 56.6 | 56.6 | 2.23x | 1.00x | 1.00x",
    "1,16": "172.6 | 137.6 | 195.9 | 195.9 | 145.7 | 0.94x | 1.34x | 1.34x",
    "1,64": "319.3 | 188.1 | 757.2 | 757.2 | 221.9 | 0.85x | 3.41x | 3.41x",
    "2,4": "134.8 | 130.8 | 103.1 | 103.1 | 103.1 | 1.27x | 1.00x | 1.00x",
    "2,16": "172.9 | 154.3 | 383.3 | 384.3 | 172.3 | 0.90x | 2.22x | 2.23x",
    "2,64": "435.1 | 367.3 | 1505.9 | 1505.9 | 434.4 | 0.85x | 3.47x | 3.47x",
    "4,4": "135.0 | 135.0 | 184.4 | 134.2 | 134.2 | 1.01x | 1.37x | 1.00x",
    "4,16": "175.8 | 175.8 | 710.5 | 175.1 | 175.1 | 1.00x | 4.06x | 1.00x",
    "4,64": "667.9 | 667.9 | 2810.2 | 667.3 | 667.3 | 1.00x | 4.21x | 1.00x",
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

// pimc verify on the bundled models (test/fixtures).
const verify = (fixture: string, flags = "") => `verify test/fixtures/${fixture}${flags}`;
const FIXTURES = [
  "llama-tiny",
  "mistral-tiny",
  "qwen2-tiny",
  "mixtral-tiny",
  "mixtral-tiny-fused",
  "opt-tiny",
  "opt-tiny-350m",
  "llama-tiny-variants",
  "gpt2-tiny",
  "gpt2-tiny-bias",
] as const;
/** docs/lowbit.md's table: its models and columns. */
const LOWBIT_MODELS = ["llama-tiny", "qwen2-tiny", "mistral-tiny", "opt-tiny", "mixtral-tiny"] as const;
const LOWBIT_FLAGS = [
  " --weights int8",
  " --weights int8 --group-size 32",
  " --weights int4",
  " --weights int4 --activations int8",
  " --weights int2 --activations int8",
] as const;
/** Every op PIM can run on PIM (README: the HBM-PIM target's errors). */
const HBM_ALL_PIM = " --target hbm-pim --no-cooperation --attention pim";
interface Verified {
  prefill_max_abs_err: number;
  decode_max_abs_err: number;
  full_max_abs_err: number;
  tokens_agreed: number;
  tokens_total: number;
}
const prefillErr = (v: Verified) => v.prefill_max_abs_err;
const decodeErr = (v: Verified) => v.decode_max_abs_err;
const fullErr = (v: Verified) => v.full_max_abs_err;
const agreed = (v: Verified) => v.tokens_agreed;
const total = (v: Verified) => v.tokens_total;
const errorsOf = (v: Verified) => [prefillErr(v), decodeErr(v), fullErr(v)];
const maxErr = (v: Verified) => Math.max(...errorsOf(v));
const verified =
  (i: number, f: (v: Verified) => number): Get =>
  (js) =>
    f(js[i] as Verified);
/** The range of `f` over every output of the figure (a verify run each). */
const overRuns = (f: (v: Verified) => number | number[]): [Get, Get] =>
  rangeOf((js) => js.flatMap((j) => f(j as Verified)));
/** README's table: prefill, decode and full-sequence errors of one model, or of two (`a / b`). */
const errorColumns = (models: number): Get[] =>
  [prefillErr, decodeErr, fullErr].flatMap((f) => [...Array(models).keys()].map((i) => verified(i, f)));
/** docs/lowbit.md's table: full-sequence error and tokens agreeing of each of the row's runs. */
const lowbitRow = (runs: number): Get[] =>
  [...Array(runs).keys()].flatMap((i) => [verified(i, fullErr), verified(i, agreed)]);

/** SAIL (docs/sram-pim.md, docs/lowbit.md): Llama-2-7B decode on sail-n1-64.pim, context 1024 or 128. */
const sail = (weights: string, context = "") =>
  `bench examples/llama2-7b.pim --system examples/systems/sail-n1-64.pim ${weights} --phase decode --batch 1,4,16${context}`;
const W4A8 = "--weights int4 --activations int8";
const W2A8 = "--weights int2 --activations int8";
const W8 = "--weights int8";
const W4 = "--weights int4";
const CTX128 = " --context 128";
const SAIL = sail(W4A8);
const BATCHES = [1, 4, 16] as const;
const linearMs = (i: number, batch: number) => opsMs(i, batch, LINEAR_LOGITS);
/** docs/sram-pim.md's table: step and linear layers' ms at batch 1 / 4 / 16. */
const sailRow = (i: number): Get[] => [
  ...BATCHES.map((b) => ms(i, b)),
  ...BATCHES.map((b) => linearMs(i, b)),
];
/** Run `x` against the CPU alone (run `cpu`): step, then linear layers, at batch 1 / 4 / 16. */
const sailVsCpu = (cpu: number, x: number): Get[] => [
  ...BATCHES.map((b) => speedup(cpu, x, b)),
  ...BATCHES.map((b) => ratio(linearMs(cpu, b), linearMs(x, b))),
];
/** The per-step speedups over the CPU alone at `batches`: INT4 and INT2 at context 1024 and 128. */
const SAIL_STEPS = [sail(W8), SAIL, sail(W2A8), sail(W8, CTX128), sail(W4A8, CTX128), sail(W2A8, CTX128)];
const sailSteps = (batches: readonly number[]): Get[] =>
  [0, 3].flatMap((cpu) => [1, 2].flatMap((x) => batches.map((b) => speedup(cpu, cpu + x, b))));
/**
 * SAIL_STEPS' INT2 against the CPU alone on the linear layers at batch 16: the speedup, (the batch),
 * INT2's ms, the CPU's ms, and how far below SAIL's published 10.7x it is (%).
 */
const sailBest = (): (Get | null)[] => {
  const x = ratio(linearMs(0, 16), linearMs(2, 16));
  return [x, null, linearMs(2, 16), linearMs(0, 16), pctBelow(x, 10.7)];
};
/** A layer's time per call on the arrays (docs/sram-pim.md's per-layer table), in us. */
const perCallUs =
  (i: number, batch: number, name: string): Get =>
  (js) => {
    const o = opOf(js[i], batch, name);
    return (o.seconds / o.calls) * US;
  };

/** UPMEM, Llama-2-7B decode at batch 1 (docs/lowbit.md), with `weights` and `flags`. */
const upmemDecode = (weights: string, flags: string) =>
  `bench examples/llama2-7b.pim --system examples/systems/upmem-2048.pim ${weights} --phase decode --batch 1${flags}`;
const DPUS_ALONE = " --no-cooperation --attention host";
/** The DPUs' kernels, and with the transfers, in ms. */
const dpuMs = (i: number, batch: number) => busy(i, batch, "kernels");
const dpuWithTransfersMs =
  (i: number, batch: number): Get =>
  (js) =>
    ["kernels", "to_pim", "from_pim"].reduce((t, e) => t + busy(i, batch, e)(js), 0);

/** The Tile-Selector against the oracle, as `npm run bench` sweeps it (bench/tile-selector.ts). */
const tune = (model: string, system: string, weights: string) =>
  `tune examples/${model}.pim --system examples/systems/${system}.pim --weights ${weights} --exhaustive`;
const SWEEP_RUNS = MODELS.flatMap((model) =>
  SYSTEMS.flatMap((system) => (["f32", "int8"] as const).map((weights) => ({ model, system, weights }))),
);
type SweepRun = (typeof SWEEP_RUNS)[number];
const SWEEP = SWEEP_RUNS.map((r) => tune(r.model, r.system, r.weights));
interface TunedShape {
  m: number;
  n: number;
  k: number;
  ratio: number;
  space_size: number;
  oracle: { timed: number };
  selector: { estimate_s: number; emulated_s: number };
}
const PHASES = ["prefill", "decode"] as const;
/** A run's GEMM shapes of one phase (decode: one row, the workload's batch 1), or all of them. */
const shapesOf = (j: unknown, phase?: (typeof PHASES)[number]): TunedShape[] =>
  (j as { shapes: TunedShape[] }).shapes.filter(
    (s) => phase === undefined || (s.m === 1) === (phase === "decode"),
  );
/** The geomeans of oracle / selector of the groups (model, system, weights, phase) of the runs `which` picks. */
const groupGeomeans = (
  js: readonly unknown[],
  which: (r: SweepRun) => boolean,
  phases: readonly string[] = PHASES,
) =>
  SWEEP_RUNS.flatMap((r, i) =>
    which(r)
      ? PHASES.filter((p) => phases.includes(p)).map((p) => geomean(shapesOf(js[i], p).map((s) => s.ratio)))
      : [],
  );
/** A cell of docs/upmem.md's table (weights and phase, per system): the range over the four models. */
const geomeanRange = (weights: string, phase: string): Get[] =>
  SYSTEMS.flatMap((system) => {
    return rangeOf((js) => groupGeomeans(js, (r) => r.system === system && r.weights === weights, [phase]));
  });
const allShapes = (js: readonly unknown[]) => js.flatMap((j) => shapesOf(j));
/** The analytical model's relative error (|estimate / emulated - 1|, in %) on the selector's picks of a phase. */
const modelErrors = (js: readonly unknown[], phase: (typeof PHASES)[number]) =>
  js.flatMap((j) =>
    shapesOf(j, phase).map((s) => Math.abs(s.selector.estimate_s / s.selector.emulated_s - 1) * 100),
  );
const meanOf = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sdOf = (xs: readonly number[]) => Math.sqrt(meanOf(xs.map((x) => (x - meanOf(xs)) ** 2)));
const LLAMA_INT8 = tune("llama2-7b", "upmem-2048", "int8");
const shapeSpace =
  (m: number, n: number, k: number): Get =>
  (js) => {
    const s = shapesOf(js[0]).find((x) => x.m === m && x.n === n && x.k === k);
    if (!s) throw new Error(`no GEMM ${m} x ${n} x ${k}`);
    return s.space_size;
  };

/** `pimc tune`'s alpha (docs/heterogeneous.md: PAPI) of output 0's weight shape n x k, or shared by the others. */
interface Alpha {
  n: number;
  k: number;
  alpha: number;
}
const alphas = (j: unknown) => (j as { shapes: Alpha[] }).shapes;
const alphaOf =
  (which: (s: Alpha) => boolean): Get =>
  (js) =>
    sameValue(
      alphas(js[0])
        .filter(which)
        .map((s) => s.alpha),
    );
const alpha = (n: number, k: number) => alphaOf((s) => s.n === n && s.k === k);
const alphaOthers = (...shown: [number, number][]) =>
  alphaOf((s) => !shown.some(([n, k]) => s.n === n && s.k === k));

/** `compile --json`'s needs in the system's first memory (bytes). */
interface Memory {
  capacity: number;
  weights: number;
  kv_cache: number;
  activations: number;
}
const memory =
  (i: number, f: (m: Memory) => number): Get =>
  (js) =>
    f((js[i] as { memories: Memory[] }).memories[0]!);
/** GPT-3 175B on HBM-PIM: far beyond its banks (docs/hbm-pim.md, Capacity). */
const GPT3_HBM =
  "compile examples/gpt3-175b.pim --system examples/systems/hbm-pim-64ch.pim --no-capacity-check";

/** docs/sram-pim.md's verify lines (with --json: shared with the doc's commands). */
const SRAM_W4A8 = `${verify("llama-tiny", ` --target sram-pim ${W4A8}`)} --json`;
const CPU_W4A8 = `${verify("llama-tiny", ` --target cpu ${W4A8}`)} --json`;
const SRAM_F32 = `${verify("llama-tiny", " --target sram-pim")} --json`;
const UPMEM_INT2 = upmemDecode(W2A8, "").replace("--batch 1", "--batch 1,4");
const DPUS_ALONE_RUNS = [W8, W4A8, W2A8].map((w) => upmemDecode(w, DPUS_ALONE));

/** A kernel run's energy (`pimc kernel --json`): joules, or a part's share of them (%). */
type KernelEnergy = { joules: number; pj_per_bit: number; breakdown: Record<string, number> };
const kernelEnergy =
  (i: number, mode: "pim" | "non_pim", get: (e: KernelEnergy) => number) =>
  (js: readonly unknown[]): number =>
    get((js[i] as Record<typeof mode, { energy: KernelEnergy }>)[mode].energy);
const share = (part: string) => (e: KernelEnergy) => (100 * e.breakdown[part]!) / e.joules;
/** A bench step's energy per token, in mJ. */
const mjPerToken =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    (stepOf(js[i], batch) as unknown as { energy: { per_token_j: number } }).energy.per_token_j * 1e3;
/** The lane-operation energy (pJ) that would make the GEMV's PIM / non-PIM energy ratio 3.5x. */
const laneOpFor35 = (js: readonly unknown[]): number => {
  const j = js[0] as Record<"pim" | "non_pim", { energy: KernelEnergy }>;
  const alu = j.pim.energy.breakdown.pim_alu!;
  const ops = alu / 0.32e-12;
  return ((j.non_pim.energy.joules / 3.5 - (j.pim.energy.joules - alu)) / ops) * 1e12;
};

/** Output `a`'s tokens per joule over output `b`'s at `batch`. */
const perJoule =
  (a: number, b: number, batch: number) =>
  (js: readonly unknown[]): number => {
    const tpj = (i: number) =>
      (stepOf(js[i], batch) as unknown as { energy: { tokens_per_j: number } }).energy.tokens_per_j;
    return tpj(a) / tpj(b);
  };
/** A part of a bench step's energy, or all of it, in J. */
const stepJoules =
  (i: number, batch: number, part?: string) =>
  (js: readonly unknown[]): number => {
    const e = (
      stepOf(js[i], batch) as unknown as { energy: { joules: number; breakdown: Record<string, number> } }
    ).energy;
    return part === undefined ? e.joules : e.breakdown[part]!;
  };
/** Mixtral-8x7B on the H100 and on Duplex at three contexts (docs/energy.md): h100, duplex per context. */
const DUPLEX_ENERGY = [383, 1535, 6143].flatMap((c) =>
  ["h100", "duplex"].map(
    (s) =>
      `bench examples/mixtral-8x7b.pim --system examples/systems/${s}.pim --phase decode --context ${c} --batch 32,64,128 --no-capacity-check`,
  ),
);
/** GLaM and Grok-1 likewise (docs/energy.md), at their two extreme contexts. */
const moeEnergy = (model: string, contexts: readonly number[]) =>
  contexts.flatMap((c) =>
    ["h100", "duplex"].map(
      (s) =>
        `bench examples/${model}.pim --system examples/systems/${s}.pim --phase decode --context ${c} --batch 32,64,128 --no-capacity-check`,
    ),
  );
const GLAM_ENERGY = moeEnergy("glam-64e", [767, 3071]);
const GROK_ENERGY = moeEnergy("grok-1", [383, 6143]);
/** NeuPIMs: NPU-only (attention on the NPU), then sub-batch interleaving (docs/energy.md). */
const NEUPIMS_ENERGY = ["--attention host", "--sub-batches 2"].map(
  (f) =>
    `bench examples/gpt3-175b.pim --system examples/systems/neupims.pim --phase decode --context 2047 --batch 256 --no-capacity-check ${f}`,
);
/** The HBM's parts of a bench step's energy (not the processors' ALUs), in J. */
const MEMORY_PARTS = ["activate", "array", "datapath", "io", "refresh", "background", "pim_regs"];
const memoryJoules =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    MEMORY_PARTS.reduce((s, p) => s + stepJoules(i, batch, p)(js), 0);
const stepSeconds =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    (stepOf(js[i], batch) as unknown as { seconds: number }).seconds;
const memoryWatts =
  (i: number, batch: number) =>
  (js: readonly unknown[]): number =>
    memoryJoules(i, batch)(js) / stepSeconds(i, batch)(js);
/** Duplex's energy saving over the H100 (%) at DUPLEX_ENERGY's context `k` (0, 1, 2) and `batch`. */
const duplexSaving =
  (k: number, batch: number) =>
  (js: readonly unknown[]): number =>
    100 * (1 - 1 / perJoule(2 * k + 1, 2 * k, batch)(js));
/** NeuPIMs against NPU-only at batch 256: memory power ratio, speed-up, memory energy saving (%). */
const neupimsPower = (js: readonly unknown[]): number => memoryWatts(1, 256)(js) / memoryWatts(0, 256)(js);
const neupimsSpeedup = (js: readonly unknown[]): number => stepSeconds(0, 256)(js) / stepSeconds(1, 256)(js);
const neupimsSaving = (js: readonly unknown[]): number =>
  100 * (1 - memoryJoules(1, 256)(js) / memoryJoules(0, 256)(js));
const GPT3_ENERGY = ["a100", "a100-attacc"].map(
  (s) =>
    `bench examples/gpt3-175b.pim --system examples/systems/${s}.pim --phase decode --context 2047 --batch 1,16,64 --no-capacity-check`,
);

const AIM_GEMV = "kernel gemv 4096x4096 --system examples/systems/aimx.pim";
type AimRun = { cycles: number; seconds: number };
type AimJoules = { joules: number; pj_per_bit: number; breakdown: Record<string, number> };
const aimEnergy = (js: readonly unknown[], mode: "pim" | "non_pim"): AimJoules =>
  (js[0] as Record<typeof mode, { energy: AimJoules }>)[mode].energy;
const aimShare = (js: readonly unknown[], mode: "pim" | "non_pim", part: string): number =>
  (100 * aimEnergy(js, mode).breakdown[part]!) / aimEnergy(js, mode).joules;
const aim = (i: number, mode: "pim" | "non_pim") => (js: readonly unknown[]) =>
  (js[i] as Record<typeof mode, AimRun>)[mode];

export const FIGURES: Figure[] = [
  // docs/aim.md: BF16 on the units, against the fp32 reference.
  {
    doc: "docs/aim.md",
    quote:
      "gpt2-tiny passes with errors near 1e-2 (prefill 1.24e-2, decode 9.9e-3); llama-tiny's logits stay within 1.6e-2 and one of its\n14 greedy decisions flips",
    cmds: ["gpt2-tiny", "llama-tiny"].map(
      (m) => `verify test/fixtures/${m} --target aim --no-cooperation --attention pim`,
    ),
    values: [
      null,
      (js) => (js[0] as { prefill_max_abs_err: number }).prefill_max_abs_err,
      (js) => (js[0] as { decode_max_abs_err: number }).decode_max_abs_err,
      (js) => {
        const j = js[1] as { prefill_max_abs_err: number; decode_max_abs_err: number };
        return Math.max(j.prefill_max_abs_err, j.decode_max_abs_err);
      },
      (js) => (js[1] as { tokens_total: number }).tokens_total,
    ],
  },
  // docs/aim.md: the GEMV on the AiM units (the simulator's 8,124 cycles include its trace's end).
  {
    doc: "docs/aim.md",
    quote: "takes 8,121 cycles (4.06 us) on the AiM units",
    cmds: [AIM_GEMV],
    values: [(js) => aim(0, "pim")(js).cycles, (js) => aim(0, "pim")(js).seconds * 1e6],
  },
  {
    doc: "docs/aim.md",
    quote: "against 71,869 streamed through the pins, 8.85x faster",
    cmds: [AIM_GEMV],
    values: [(js) => aim(0, "non_pim")(js).cycles, (js) => (js[0] as { speedup: number }).speedup],
  },
  {
    doc: "docs/aim.md",
    quote:
      "The 4096 x 4096 GEMV takes 195.413 uJ on\nthe AiM units (MACs 44 %, activations 25 %) against 2.576 mJ streamed (9.59 pJ per bit, the pins 57 %),\n13.18x less.",
    cmds: [AIM_GEMV],
    values: [
      null,
      null,
      (js) => aimEnergy(js, "pim").joules * 1e6,
      (js) => aimShare(js, "pim", "pim_mac"),
      (js) => aimShare(js, "pim", "activate"),
      (js) => aimEnergy(js, "non_pim").joules * 1e3,
      (js) => aimEnergy(js, "non_pim").pj_per_bit,
      (js) => aimShare(js, "non_pim", "io"),
      (js) => (js[0] as { energy_ratio: number }).energy_ratio,
    ],
  },
  {
    doc: "docs/aim.md",
    quote: "reach 8263.6 GFLOP/s on that GEMV",
    cmds: [AIM_GEMV],
    values: [(js) => (2 * 4096 * 4096) / aim(0, "pim")(js).seconds / 1e9],
  },
  {
    doc: "docs/aim.md",
    quote:
      "| tensor parallel, one of 8 devices, 128 | 10,095 | 37,654 | 37,644 (-0.03 %) | 37,957 (18.98 us) |",
    cmds: [
      "kernel trace test/fixtures/peers/cent-llama2-7b-tp8_s128.trace.gz --system examples/systems/aimx.pim",
    ],
    values: [
      null,
      null,
      (js) =>
        Object.values((js[0] as { instructions: Record<string, number> }).instructions).reduce(
          (s, n) => s + n,
          0,
        ),
      null,
      (js) => (js[0] as { cycles: number }).cycles,
      (js) => ((js[0] as { cycles: number }).cycles / 37654 - 1) * 100,
      null,
      null,
    ],
  },
  // docs/aim.md: CENT's Llama-2-7B tokens against pimc's, both mappings (context one less than CENT's
  // tokens in the KV cache, which count the new one).
  ...(
    [
      [
        "| pipeline (`cent.pim`), 32 queries, 128 | 7.506 ms per token, 4,263 tokens/s | 7.356 ms | 7.044 ms, 4,543 tokens/s (-4.2 %) |",
        "cent",
        32,
        127,
        7.356,
      ],
      [
        "| pipeline, 1024 | 9.061 ms, 3,532 tokens/s | 8.911 ms | 8.861 ms, 3,611 tokens/s (-0.6 %) |",
        "cent",
        32,
        1023,
        8.911,
      ],
      [
        "| tensor parallel (`cent-latency.pim`), 1 query, 128 | 0.981 ms | 0.831 ms | 0.667 ms (-20 %) |",
        "cent-latency",
        1,
        127,
        0.831,
      ],
      ["| tensor parallel, 1024 | 1.271 ms | 1.121 ms | 0.848 ms (-24 %) |", "cent-latency", 1, 1023, 1.121],
    ] as const
  ).map(([quote, system, batch, context, cent]): Figure => {
    const latency = ms(0, batch);
    const rate = (js: readonly unknown[]) => stepOf(js[0], batch).tokens_per_second;
    // pimc's figures end each row: latency (with tokens/s in the pipeline) and its difference to
    // CENT's token time less its 0.15 ms of sampling.
    const diff: Get = (js) => (latency(js) / cent - 1) * 100;
    const last: Get[] = batch > 1 ? [latency, rate, diff] : [latency, diff];
    return {
      doc: "docs/aim.md",
      quote,
      cmds: [
        `bench examples/llama2-7b.pim --system examples/systems/${system}.pim --phase decode --batch ${batch} --context ${context}`,
      ],
      values: [...new Array<null>(quotedNumbers(quote).length - last.length).fill(null), ...last],
      slow: true,
    };
  }),
  // docs/aim.md and docs/energy.md: the energy of CENT's full pipeline (CENT's power model).
  {
    doc: "docs/aim.md",
    quote: "full, with 32 queries at 1,023 cached tokens, it takes\n80.1 mJ per token at 289 W",
    cmds: [
      "bench examples/llama2-7b.pim --system examples/systems/cent.pim --phase decode --batch 32 --context 1023",
    ],
    values: [
      null,
      null,
      (js) => (stepOf(js[0], 32) as unknown as { energy: { per_token_j: number } }).energy.per_token_j * 1e3,
      (js) => (stepOf(js[0], 32) as unknown as { energy: { watts: number } }).energy.watts,
    ],
    slow: true,
  },
  // docs/aim.md: Llama-2-7B compiled as CENT maps it (no fusion, attention on the units).
  ...(
    [
      ["the 7B pipeline takes 7.242 and\n8.869 ms (-1.6 %, -0.5 %)", "cent", 32, [7.356, 8.911]],
      ["pimc's token takes 0.764 and 0.931 ms (-8 %, -17 %)", "cent-latency", 1, [0.831, 1.121]],
    ] as const
  ).map(([quote, system, batch, cent]): Figure => ({
    doc: "docs/aim.md",
    quote,
    cmds: [127, 1023].map(
      (context) =>
        `bench examples/llama2-7b.pim --system examples/systems/${system}.pim --phase decode --batch ${batch} --context ${context} --disable-pass fuse-qkv,fuse-gate-up --attention pim`,
    ),
    values: [
      ms(0, batch),
      ms(1, batch),
      (js) => (ms(0, batch)(js) / cent[0] - 1) * 100,
      (js) => (ms(1, batch)(js) / cent[1] - 1) * 100,
    ],
    slow: true,
  })),
  {
    doc: "docs/aim.md",
    quote: "The tensor-parallel mapping takes 150.2 mJ per token at 1,023\ntokens (177 W",
    cmds: [
      "bench examples/llama2-7b.pim --system examples/systems/cent-latency.pim --phase decode --batch 1 --context 1023",
    ],
    values: [
      (js) => (stepOf(js[0], 1) as unknown as { energy: { per_token_j: number } }).energy.per_token_j * 1e3,
      null,
      (js) => (stepOf(js[0], 1) as unknown as { energy: { watts: number } }).energy.watts,
    ],
    slow: true,
  },
  // docs/aim.md: CENT's 13B and 70B in its pipeline, against its stored token times.
  ...(
    [
      [
        "| Llama-2-13B, 40 queries, 128 | 7.211 ms per token | 7.061 ms | 6.708 ms (-5.0 %) |",
        "13b",
        40,
        127,
        7.0606,
      ],
      [
        "| Llama-2-13B, 40 queries, 1024 | 8.393 ms | 8.243 ms | 8.141 ms (-1.2 %) |",
        "13b",
        40,
        1023,
        8.2431,
      ],
      [
        "| Llama-2-70B, 80 queries, 128 | 54.795 ms | 54.645 ms | 52.877 ms (-3.2 %) |",
        "70b",
        80,
        127,
        54.645,
      ],
      [
        "| Llama-2-70B, 80 queries, 1024 | 60.782 ms | 60.632 ms | 56.352 ms (-7.1 %) |",
        "70b",
        80,
        1023,
        60.6316,
      ],
    ] as const
  ).map(([quote, model, batch, context, cent]): Figure => ({
    doc: "docs/aim.md",
    quote,
    cmds: [
      `bench examples/llama2-${model}.pim --system examples/systems/cent-${model}.pim --phase decode --batch ${batch} --context ${context}`,
    ],
    values: [
      ...new Array<null>(quotedNumbers(quote).length - 2).fill(null),
      ms(0, batch),
      (js) => (ms(0, batch)(js) / cent - 1) * 100,
    ],
    slow: true,
  })),
  {
    doc: "docs/aim.md",
    quote: "runs its linear layers and attention on the AiM units\n(2.237 ms of a 3.051 ms step)",
    cmds: ["bench examples/llama2-7b.pim --system examples/systems/aimx.pim --phase decode --batch 1"],
    values: [
      (js) => (stepOf(js[0], 1) as unknown as { busy: Record<string, number> }).busy.pim! * 1e3,
      ms(0, 1),
    ],
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote:
      "GPT-3 175B decode with 2048 positions gives 0.97x the GPU's tokens per joule at batch 1, 1.20x at\nbatch 16 and 1.51x at batch 64",
    cmds: GPT3_ENERGY,
    values: [null, perJoule(1, 0, 1), null, perJoule(1, 0, 16), null, perJoule(1, 0, 64), null],
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote:
      "standby and refresh are counted while the GPU's HBM's are not (0.789 J of a batch-64 step's 27.1 J)",
    cmds: GPT3_ENERGY,
    values: [stepJoules(1, 64, "background"), stepJoules(1, 64)],
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote: "| 1.51x at batch 64 (GPT-3 175B, 2048 positions) |",
    cmds: GPT3_ENERGY,
    values: [perJoule(1, 0, 64), null, null],
    slow: true,
  },
  // docs/hbm-pim.md: a fixture point in PIMSimulator's refresh policy.
  {
    doc: "docs/hbm-pim.md",
    quote: "all 54 are within 2 % (ADD 2M: 5,936 cycles against 5,926, non-PIM 13,239 against 13,255;",
    cmds: ["kernel add 2M --system examples/systems/hbm-pim-64ch.pim --refresh deferred"],
    values: [
      null,
      null,
      (js) => (js[0] as { pim: { cycles: number } }).pim.cycles,
      null,
      (js) => (js[0] as { non_pim: { cycles: number } }).non_pim.cycles,
      null,
    ],
  },
  // docs/energy.md: Duplex's energy saving over the H100 (Mixtral-8x7B decode).
  {
    doc: "docs/energy.md",
    quote:
      "| 384 | 32.8 % less | 25.5 % less | 18.5 % less |\n| 1,536 | 33.1 % less | 26.6 % less | 21.0 % less |\n| 6,144 | 34.0 % less | 29.5 % less | 26.8 % less |",
    cmds: DUPLEX_ENERGY,
    values: [0, 1, 2].flatMap((k) => [null, ...[32, 64, 128].map((b) => duplexSaving(k, b))]),
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote:
      "| up to 34.0 % less (batch 32, 6,144 positions), 18.5 to 34.0 % over the grid; GLaM 34.6 %, Grok-1 34.2 % |",
    // Commands: Mixtral's 3 contexts, then GLaM's 2, then Grok-1's 2 (h100, duplex each).
    cmds: [...DUPLEX_ENERGY, ...GLAM_ENERGY, ...GROK_ENERGY],
    values: [
      duplexSaving(2, 32),
      null,
      null,
      duplexSaving(0, 128),
      duplexSaving(2, 32),
      duplexSaving(4, 32),
      duplexSaving(6, 32),
    ],
    slow: true,
  },
  // docs/energy.md: Duplex's other two models (co-processing columns; the one-device columns come
  // from the sweep shown there).
  ...(
    [
      ["| Mixtral (33.28 %) | 384 | 32.8 / 25.5 / 18.5 % less |", DUPLEX_ENERGY, 0],
      ["| Mixtral | 6,144 | 34.0 / 29.5 / 26.8 % less |", DUPLEX_ENERGY, 2],
      ["| GLaM (42.03 %) | 768 | 34.0 / 32.1 / 31.9 % less |", GLAM_ENERGY, 0],
      ["| GLaM | 3,072 | 34.6 / 33.2 / 33.6 % less |", GLAM_ENERGY, 1],
      ["| Grok-1 (34.59 %) | 384 | 33.8 / 25.7 / 26.4 % less |", GROK_ENERGY, 0],
      ["| Grok-1 | 6,144 | 34.2 / 27.2 / 28.6 % less |", GROK_ENERGY, 1],
    ] as const
  ).map(([quote, cmds, k]) => ({
    doc: "docs/energy.md",
    quote,
    cmds,
    values: [
      ...(quote.includes("%) |") ? [null] : []),
      null,
      ...[32, 64, 128].map((b) => duplexSaving(k, b)),
    ],
    slow: true,
  })),
  {
    doc: "docs/energy.md",
    quote: "The largest saving, 34.0 %, is 2 % above Duplex's 33.28 % for Mixtral",
    cmds: DUPLEX_ENERGY,
    values: [duplexSaving(2, 32), (js) => (duplexSaving(2, 32)(js) / 33.28 - 1) * 100, null],
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote: "(at batch 32 and 6,144 positions the H100\nspends 130.9 mJ per token, 13 % of it in its caches)",
    cmds: DUPLEX_ENERGY,
    values: [
      null,
      null,
      mjPerToken(4, 32),
      (js) => (100 * stepJoules(4, 32, "xpu_cache")(js)) / stepJoules(4, 32)(js),
    ],
    slow: true,
  },
  // docs/energy.md: NeuPIMs' memory energy against NPU-only.
  {
    doc: "docs/energy.md",
    quote:
      "At batch 256 the memory (activations, cells, datapath, I/O, refresh, standby, the units' registers)\ntakes 339.1 mJ per token at 27.8 W for NPU-only and 177.9 mJ at 43.5 W for NeuPIMs with sub-batch\ninterleaving: 1.56x the power at 2.98x the speed, 47.5 % less.",
    cmds: NEUPIMS_ENERGY,
    values: [
      null,
      (js) => (1e3 * memoryJoules(0, 256)(js)) / 256,
      (js) => memoryWatts(0, 256)(js),
      (js) => (1e3 * memoryJoules(1, 256)(js)) / 256,
      (js) => memoryWatts(1, 256)(js),
      neupimsPower,
      neupimsSpeedup,
      neupimsSaving,
    ],
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote: "| 47.5 % less: 1.56x the memory power at 2.98x the speed (GPT-3 175B, batch 256) |",
    cmds: NEUPIMS_ENERGY,
    values: [neupimsSaving, neupimsPower, neupimsSpeedup, null],
    slow: true,
  },
  {
    doc: "docs/energy.md",
    quote: "at NeuPIMs' 2.4x, 1.56x the power would be 35 % less",
    cmds: NEUPIMS_ENERGY,
    values: [null, neupimsPower, (js) => 100 * (1 - neupimsPower(js) / 2.4)],
    slow: true,
  },
  // docs/energy.md: the GEMV kernel's energy, and Llama-2-7B per token.
  {
    doc: "docs/energy.md",
    quote:
      "takes 231.516 uJ with PIM against 1.095 mJ\nstreamed to the host without it, 4.73x less: the PIM units read the weights in the banks (array 51 %\nof the PIM run, activations 21 %) where the streamed run pays the datapath and the interposer for\nevery bit (datapath 67 %). The streamed run costs 4.08 pJ per bit read.",
    cmds: [GEMV],
    values: [
      kernelEnergy(0, "pim", (e) => e.joules * 1e6),
      kernelEnergy(0, "non_pim", (e) => e.joules * 1e3),
      (js) => (js[0] as { energy_ratio: number }).energy_ratio,
      kernelEnergy(0, "pim", share("array")),
      kernelEnergy(0, "pim", share("activate")),
      kernelEnergy(0, "non_pim", share("datapath")),
      kernelEnergy(0, "non_pim", (e) => e.pj_per_bit),
    ],
  },
  {
    doc: "docs/energy.md",
    quote: "| 4.08 pJ/bit streaming a GEMV's weights |",
    cmds: [GEMV],
    values: [kernelEnergy(0, "non_pim", (e) => e.pj_per_bit)],
  },
  {
    doc: "docs/energy.md",
    quote: "| 4.73x less on a 4096 x 4096 GEMV |",
    cmds: [GEMV],
    values: [(js) => (js[0] as { energy_ratio: number }).energy_ratio, null, null],
  },
  {
    doc: "docs/energy.md",
    quote: "at 5.2 pJ per lane operation (a value derived here from the 3.5x, not used by pimc)",
    cmds: [GEMV],
    values: [laneOpFor35, null],
  },
  {
    doc: "docs/energy.md",
    quote:
      "Llama-2-7B decode at batch 1 on `hbm-pim-64ch.pim` (every linear layer on the PIM units) takes\n101.8 mJ per token; on `a100.pim` (the A100's HBM streamed at 28.72 pJ per byte, its caches and\nregisters) 453.9 mJ.",
    cmds: [HBM, "bench examples/llama2-7b.pim --system examples/systems/a100.pim --phase decode --batch 1"],
    values: [null, mjPerToken(0, 1), null, mjPerToken(1, 1)],
    slow: true,
  },
  // npm start: README's headline and docs/upmem.md's table.
  {
    doc: "README.md",
    quote: "at batch 1 takes 59.6 ms per token with the linear layers on the DPUs against the host's 313 ms",
    cmds: [NPM_START],
    values: [null, ms(0, 1), hostOnlyMs(0, 1)],
  },
  ...(
    [
      [
        1,
        "│     1 │           1 │  59.603 ms │ 313.303 ms │  59.603 ms │       17 │  30.212 ms │ 1.683 ms │ 1.746 ms │   25.962 ms │",
      ],
      [
        4,
        "│     4 │           4 │ 191.501 ms │ 385.636 ms │ 191.501 ms │       21 │ 102.929 ms │ 2.863 ms │ 1.871 ms │   83.838 ms │",
      ],
      [
        16,
        "│    16 │          16 │ 674.968 ms │ 674.968 ms │ 713.730 ms │       24 │ 674.968 ms │  0.00 us │  0.00 us │     0.00 us │",
      ],
    ] as const
  ).map(([b, quote]): Figure => {
    const link = b === 16 ? US : MS;
    return {
      doc: "docs/upmem.md",
      quote,
      cmds: [NPM_START],
      values: [
        null,
        null,
        ms(0, b),
        hostOnlyMs(0, b),
        pimOnlyMs(0, b),
        tokensPerS(0, b),
        busy(0, b, "host"),
        busy(0, b, "to_pim", link),
        busy(0, b, "from_pim", link),
        busy(0, b, "kernels", link),
      ],
    };
  }),
  {
    doc: "docs/lowbit.md",
    quote: "| | INT8 MAC (PGEMMlib) | 59.6 ms | 5.26x | 191.5 ms | 2.01x | 675.0 ms | 1.00x |",
    cmds: [NPM_START],
    values: BATCHES.flatMap((b) => [ms(0, b), ratio(hostOnlyMs(0, b), ms(0, b))]),
  },
  // AttAcc: README and docs/heterogeneous.md.
  {
    doc: "README.md",
    quote: "175B decode 1.70x over GPU-only at batch 64",
    cmds: [A100_64, ATTACC_64],
    values: [speedup(0, 1, 64), null],
  },
  ...[1, 4, 16, 64].map((b, i): Figure => ({
    doc: "docs/heterogeneous.md",
    quote: [
      "| 1 | 124.5 ms | 123.3 ms | 1.01x | 3.9 / 2.7 ms |",
      "| 4 | 134.7 ms | 125.9 ms | 1.07x | 14.1 / 5.3 ms |",
      "| 16 | 172.6 ms | 137.6 ms | 1.25x | 51.7 / 16.8 ms |",
      "| 64 | 319.3 ms | 188.1 ms | 1.70x | 195.3 / 64.1 ms |",
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
    values: sailRow(0),
  },
  {
    doc: "docs/lowbit.md",
    quote: "| | INT4 LUT on the arrays | 20.5 ms | 1.74x | 28.6 ms | 1.53x | 61.0 ms | 2.07x |",
    cmds: [SAIL],
    values: BATCHES.flatMap((b) => [ms(0, b), null]),
  },
  // The H100 calibration (README, docs/xpu.md).
  {
    doc: "README.md",
    quote: "5.15 ms per token at batch 1 (measured 5.18), 5.16 at 64 (5.27), 6.27 at 256 (6.03)",
    cmds: [H100],
    values: [
      opsMs(0, 1, LINEAR),
      null,
      null,
      opsMs(0, 64, LINEAR),
      null,
      null,
      opsMs(0, 256, LINEAR),
      null,
      null,
    ],
  },
  // docs/xpu.md's tables: the row's numbers before the measurement, then measured, model, error.
  ...(
    [
      ["| QKV 4096 x 12288, batch 1 (fitted) | 0.0378 ms | 0.0378 ms | +0.1 %", 1, "L*.qkv"],
      ["| O 4096 x 4096, batch 1 (fitted) | 0.0233 ms | 0.0233 ms | +0.1 %", 1, "L*.o"],
      ["| up+gate 4096 x 22016, batch 1 (fitted) | 0.0655 ms | 0.0655 ms | +0.0 %", 1, "L*.gate_up"],
      ["| down 11008 x 4096, batch 1 | 0.0354 ms | 0.0342 ms | -3.4 %", 1, "L*.down"],
      ["| QKV 4096 x 12288, batch 64 | 0.0381 ms | 0.0385 ms | +1.2 %", 64, "L*.qkv"],
      ["| O 4096 x 4096, batch 64 | 0.0213 ms | 0.0213 ms | +0.0 %", 64, "L*.o"],
      ["| up+gate 4096 x 22016, batch 64 | 0.0673 ms | 0.0667 ms | -0.9 %", 64, "L*.gate_up"],
      ["| down 11008 x 4096, batch 64 | 0.0380 ms | 0.0348 ms | -8.3 %", 64, "L*.down"],
      ["| QKV 4096 x 12288, batch 256 (fitted) | 0.0417 ms | 0.0417 ms | +0.1 %", 256, "L*.qkv"],
      ["| O 4096 x 4096, batch 256 (fitted) | 0.0213 ms | 0.0213 ms | +0.0 %", 256, "L*.o"],
      ["| up+gate 4096 x 22016, batch 256 | 0.0760 ms | 0.0806 ms | +6.1 %", 256, "L*.gate_up"],
      ["| down 11008 x 4096, batch 256 | 0.0493 ms | 0.0525 ms | +6.4 %", 256, "L*.down"],
    ] as const
  ).map(([row, batch, op]): Figure => {
    const n = quotedNumbers(row);
    const measured = n[n.length - 3]!.value;
    const model = opsMs(0, batch, [op], 32);
    return {
      doc: "docs/xpu.md",
      quote: `${row} |`,
      cmds: [H100],
      values: [...Array<null>(n.length - 2).fill(null), model, pctOver(model, measured)],
    };
  }),
  ...(
    [
      ["linear layers, 32 layers, batch 1 | 5.18 ms | 5.15 ms | -0.6 %", 2, opsMs(0, 1, LINEAR)],
      ["linear layers, batch 64 | 5.27 ms | 5.16 ms | -2.0 %", 1, opsMs(0, 64, LINEAR)],
      ["linear layers, batch 256 | 6.03 ms | 6.27 ms | +4.1 %", 1, opsMs(0, 256, LINEAR)],
    ] as const
  ).map(([row, skip, model]): Figure => {
    const measured = quotedNumbers(row)[skip]!.value;
    return {
      doc: "docs/xpu.md",
      quote: `| ${row} |`,
      cmds: [H100],
      values: [...Array<null>(skip + 1).fill(null), model, pctOver(model, measured)],
    };
  }),
  {
    doc: "README.md",
    quote: "decode attention at context 2048 0.177 ms per layer at batch 16 (0.18)",
    cmds: [H100_ATTENTION],
    values: [null, opsMs(0, 16, ["L*.attn"], 32), null, null],
  },
  ...(
    [
      [1, "| attention per layer, context 2048, batch 1 | 0.041 ms | 0.046 ms | +13 % |"],
      [16, "| attention per layer, context 2048, batch 16 | 0.18 ms | 0.177 ms | -1.6 % |"],
      [64, "| attention per layer, context 2048, batch 64 (fitted) | 0.70 ms | 0.700 ms | +0.0 % |"],
    ] as const
  ).map(([b, quote]): Figure => {
    const model = opsMs(0, b, ["L*.attn"], 32);
    return {
      doc: "docs/xpu.md",
      quote,
      cmds: [H100_ATTENTION],
      values: [null, null, null, model, pctOver(model, quotedNumbers(quote)[2]!.value)],
    };
  }),
  // HBM-PIM: PIMSimulator's kernels (README, docs/hbm-pim.md): its cycles, pimc's, the error.
  ...["README.md", "docs/hbm-pim.md"].flatMap((doc) => {
    const readme = doc === "README.md";
    const fp16 = readme ? " FP16" : "";
    const nonPim = readme ? "without PIM" : "non-PIM";
    return (
      [
        [`GEMV 4096x4096${fp16}, PIM | 13,166${readme ? " cycles" : ""} | 13,188 | +0.2 %`, GEMV, "pim"],
        [`GEMV 4096x4096${fp16}, ${nonPim} | 36,082 | 36,422 | +0.9 %`, GEMV, "non_pim"],
        [`ADD 1M${fp16}, PIM | 3,349 | 3,380 | +0.9 %`, ADD, "pim"],
        [`ADD 1M${fp16}, ${nonPim} | 6,651 | 7,041 | +5.9 %`, ADD, "non_pim"],
      ] as const
    ).map(([row, cmd, mode]): Figure => ({
      doc,
      quote: `| ${row} |`,
      cmds: [cmd],
      values: [null, cycles(0, mode), pctOver(cycles(0, mode), quotedNumbers(row)[0]!.value)],
    }));
  }),
  {
    doc: "docs/hbm-pim.md",
    quote:
      "Llama-2-7B decode at batch 1: 6.22 ms per step on `hbm-pim-64ch.pim` (6.36 ms with `--no-k-split`, which keeps K whole), 4.0 ms with a unit per bank (`hbm-pim-64ch-bank.pim`)",
    cmds: [HBM, HBM_BANK, `${HBM} --no-k-split`],
    values: [null, ms(0, 1), ms(2, 1), ms(1, 1)],
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
      placed(0, 1, "L*.gate_up", hostTime(US)),
      placed(0, 1, "L*.gate_up", pimTime(US)),
      null,
      placed(0, 1, "L*.gate_up", (g) => fromBatch(g, notHost)),
      fromBatches(0, 1, notHost, Math.max),
    ],
  },
  // Serving (docs/serving.md).
  {
    doc: "docs/serving.md",
    quote: "| continuous | 2146 | 28 ms / 750 ms | 9.4 ms / 34.6 ms |",
    cmds: [SERVE],
    values: [
      served(0, (s) => s.tokens_per_second),
      served(0, (s) => s.ttft.p50 * 1e3),
      served(0, (s) => s.ttft.p99 * 1e3),
      served(0, (s) => s.tbt.p50 * 1e3),
      served(0, (s) => s.tbt.p99 * 1e3),
    ],
  },
  {
    doc: "docs/serving.md",
    quote: "| static | 1471 | 3.07 s / 7.04 s | 9.4 ms / 9.9 ms |",
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
    quote: "(23.5 sequences per decode step)",
    cmds: [SERVE],
    values: [served(0, (s) => s.mean_batch)],
  },
  // Duplex (docs/heterogeneous.md, README).
  ...(
    [
      [1, "| 1 | 11.69 ms (86 tok/s) | 4.36 ms (229 tok/s) | 2.68x | Logic-PIM / both / Logic-PIM |"],
      [16, "| 16 | 36.61 ms (437 tok/s) | 10.74 ms (1490 tok/s) | 3.41x | both / both / H100 |"],
      [64, "| 64 | 40.82 ms (1568 tok/s) | 15.75 ms (4064 tok/s) | 2.59x | both / both / H100 |"],
      [256, "| 256 | 58.04 ms (4411 tok/s) | 28.63 ms (8942 tok/s) | 2.03x | both / both / H100 |"],
    ] as const
  ).map(([b, quote]): Figure => ({
    doc: "docs/heterogeneous.md",
    quote,
    cmds: DUPLEX,
    values: [null, ms(0, b), tokensPerS(0, b), ms(1, b), tokensPerS(1, b), speedup(0, 1, b)],
  })),
  {
    doc: "docs/heterogeneous.md",
    quote: "the MoE layers' Op/B 4.0 at batch 16, all 8 experts'",
    cmds: DUPLEX,
    // The L*.moe rows of Duplex's step: their flops over their bytes.
    values: [
      (js) => {
        const moe = (stepOf(js[1], 16).ops ?? []).filter((o) => o.name === "L*.moe");
        return moe.reduce((s, o) => s + o.flops, 0) / moe.reduce((s, o) => s + o.bytes, 0);
      },
      null,
      null,
    ],
  },
  {
    doc: "docs/heterogeneous.md",
    quote: "Ours peaks higher (3.41x at batch 16)",
    cmds: DUPLEX,
    values: [speedup(0, 1, 16), null],
  },
  {
    doc: "README.md",
    quote: "Mixtral-8x7B 2.0x to 3.4x the H100's throughput",
    cmds: DUPLEX,
    values: range(duplexGains),
  },
  ...[
    [16, "| 16 | 172.6 | 417.0 | 707.6 | 0.59x |"],
    [64, "| 64 | 319.3 | 640.0 | 775.5 | 0.83x |"],
    [256, "| 256 | 1252.4 | 1532.4 | 1047.2 | 1.46x |"],
    [512, "| 512 | 2495.3 | 2722.2 | 1655.4 | 1.64x |"],
  ].map(([b, quote]): Figure => ({
    doc: "docs/heterogeneous.md",
    quote: quote as string,
    cmds: neupims(b as number),
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
    SPECS.flatMap((spec) =>
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
      "Over the 18 points, PAPI's dynamic placement is 1.46x faster than the static placement (up to 3.5x), 2.06x faster than PIM only (up to 4.2x) and 1.04x faster than A100 + AttAcc on geometric mean (from 0.82x to 2.23x).",
    cmds: PAPI_ALL,
    values: [
      null,
      (js) => geomean(papiRatios(js, 3)),
      (js) => Math.max(...papiRatios(js, 3)),
      (js) => geomean(papiRatios(js, 2)),
      (js) => Math.max(...papiRatios(js, 2)),
      (js) => geomean(papiRatios(js, 1)),
      ...rangeOf((js) => papiRatios(js, 1)),
    ],
    slow: true,
  },
  {
    doc: "README.md",
    quote:
      "1.46x over static placement and 2.06x over PIM only on geometric mean over batch 4/16/64 x speculation 1/2/4 on LLaMA-65B and GPT-3 175B",
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
  // README: the verdict of npm start.
  {
    doc: "README.md",
    quote: "`linear layers on the DPUs: 5 of 5, host faster from batch 13 (L*.o) to 15 (logits)`",
    cmds: [NPM_START],
    values: [0, 1, 2, 3].map((n) => verdict(0, 1, n)),
  },
  // docs/upmem.md: npm start's placement, verdicts and what the text reads from them.
  ...(
    [
      // batch, group, the DPUs' unit, the crossover (the batch the host takes over from; "none": no
      // change up to 256; "-": a further batch's row, without ops and crossover), the row
      [
        1,
        "L*.qkv",
        MS,
        "from",
        "│ L*.qkv      │  32 │     1 │  69.975 ms │   8.002 ms │ DPUs    │ 8.7x faster  │ host faster from batch 14            │",
      ],
      [
        4,
        "L*.qkv",
        MS,
        "-",
        "│             │     │     4 │  70.111 ms │  21.279 ms │ DPUs    │ 3.3x faster  │",
      ],
      [
        16,
        "L*.qkv",
        MS,
        "-",
        "│             │     │    16 │  70.655 ms │  78.348 ms │ host    │ 1.1x faster  │",
      ],
      [
        1,
        "L*.attn",
        MS,
        "none",
        "│ L*.attn     │  32 │     1 │  23.424 ms │ 114.546 ms │ host    │ 4.9x faster  │ host faster at every batch up to 256 │",
      ],
      [
        1,
        "L*.o",
        MS,
        "from",
        "│ L*.o        │  32 │     1 │  23.424 ms │   4.490 ms │ DPUs    │ 5.2x faster  │ host faster from batch 13            │",
      ],
      [
        1,
        "L*.gate_up",
        MS,
        "from",
        "│ L*.gate_up  │  32 │     1 │ 125.253 ms │  12.916 ms │ DPUs    │ 9.7x faster  │ host faster from batch 14            │",
      ],
      [
        1,
        "L*.down",
        MS,
        "from",
        "│ L*.down     │  32 │     1 │  62.663 ms │   7.483 ms │ DPUs    │ 8.4x faster  │ host faster from batch 13            │",
      ],
      [
        1,
        "logits",
        US,
        "from",
        "│ logits      │   1 │     1 │   5.687 ms │  508.08 us │ DPUs    │ 11.2x faster │ host faster from batch 15            │",
      ],
    ] as const
  ).map(([b, group, pimUnit, crossover, quote]): Figure => {
    const get = (f: (g: Group) => number) => placed(0, b, group, f);
    const first = crossover !== "-";
    return {
      doc: "docs/upmem.md",
      quote,
      cmds: [NPM_START],
      values: [
        ...(first ? [get((g) => g.ops)] : []),
        null,
        get(hostTime(MS)),
        get(pimTime(pimUnit)),
        get(faster),
        ...(!first ? [] : [crossover === "from" ? get((g) => fromBatch(g, isHost)) : null]),
      ],
    };
  }),
  {
    doc: "docs/upmem.md",
    quote: "kv_append, add, silu, mul: 515 per step) run on the host",
    cmds: [NPM_START],
    values: [(js) => stepOf(js[0], 1).placement_other!.ops],
  },
  ...(
    [
      [
        1,
        "verdict   batch 1: linear layers on the DPUs: 5 of 5, host faster from batch 13 (L*.o) to 15 (logits); attention on the host, faster at every batch up to 256",
      ],
      [
        4,
        "batch 4: linear layers on the DPUs: 5 of 5, host faster from batch 13 (L*.o) to 15 (logits); attention on the host, faster at every batch up to 256",
      ],
      [
        16,
        "batch 16: nothing on the DPUs: the host is faster for every layer (closest: logits, host 5.734 ms vs DPUs 6.303 ms per step at batch 16); host faster from batch 13 (L*.o) to 15 (logits)",
      ],
    ] as const
  ).map(([b, quote]): Figure => ({
    doc: "docs/upmem.md",
    quote,
    cmds: [NPM_START],
    values: [null, ...[0, 1, 2, 3, 4].map((n) => verdict(0, b, n))],
  })),
  {
    doc: "docs/upmem.md",
    quote:
      "linear layer (5.2x to 11.2x faster than the host by the cost model: the host streams the INT8 weights at its measured 23.1 GB/s), the cooperative step is 59.6 ms against 313.3 ms on the host alone; attention stays on the host (float arithmetic is emulated in software on the DPUs: 114.5 ms of DPU time against the host's 23.4 ms). From batch 13 to 15",
    cmds: [NPM_START],
    values: [
      ...range(LINEAR_LOGITS.map((g) => placed(0, 1, g, faster))),
      null,
      ms(0, 1),
      hostOnlyMs(0, 1),
      placed(0, 1, "L*.attn", pimTime(MS)),
      placed(0, 1, "L*.attn", hostTime(MS)),
      fromBatches(0, 1, isHost, Math.min),
      fromBatches(0, 1, isHost, Math.max),
    ],
  },
  {
    doc: "docs/upmem.md",
    quote: "`5 of 5` is 129 GEMMs (4 per layer and the LM head)",
    cmds: [NPM_START],
    values: [
      verdict(0, 1, 0),
      verdict(0, 1, 1),
      (js) => LINEAR_LOGITS.reduce((t, g) => t + groupOf(js[0], 1, g).ops, 0),
      null,
    ],
  },
  // docs/upmem.md: a small model on the default system (compile's placement).
  ...(
    [
      [
        "L*.qkv",
        "│ L*.qkv      │   2 │ 11.50 us │ 136.72 us │ host    │ 11.9x faster │ host faster at every batch up to 256 │",
      ],
      [
        "L*.gate_up",
        "│ L*.gate_up  │   2 │ 16.55 us │ 143.65 us │ host    │ 8.7x faster  │ host faster at every batch up to 256 │",
      ],
    ] as const
  ).map(([group, quote]): Figure => ({
    doc: "docs/upmem.md",
    quote,
    cmds: [TINY_COMPILE],
    values: [
      placed(0, undefined, group, (g) => g.ops),
      placed(0, undefined, group, hostTime(US)),
      placed(0, undefined, group, pimTime(US)),
      placed(0, undefined, group, faster),
      null,
    ],
  })),
  {
    doc: "docs/upmem.md",
    quote:
      "verdict   nothing on the DPUs: the host is faster for every layer (closest: L*.gate_up, host 16.55 us vs DPUs 143.65 us per step at batch 1); host faster at every batch up to 256",
    cmds: [TINY_COMPILE],
    values: [0, 1, 2, 3].map((n) => verdict(0, undefined, n)),
  },
  {
    doc: "docs/upmem.md",
    quote: "and at batch 16 `linear layers on the DPUs: 1 of 5, ...`",
    cmds: [TINY_PIMLLM],
    values: [null, verdict(0, 16, 0), verdict(0, 16, 1)],
  },
  // docs/upmem.md: attention on the DPUs, what compile says and the reduce kernel at batch 16.
  {
    doc: "docs/upmem.md",
    quote:
      "`attention 32 layers on the DPUs (64 per group); context kernel: prefill no K split; decode ks 16, partials added by the host`",
    cmds: [
      "compile examples/llama2-7b.pim --system examples/systems/upmem-2048.pim --weights int8 --attention pim",
    ],
    values: [0, 1, 2].map((n) => programLine(0, "attention ", n)),
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote:
      "INT8 decode at batch 16 with attention on the DPUs: 1571.0 ms per step with the reduce kernel, 1571.4 ms with `--attention-reduce host`",
    cmds: [
      ATTENTION_PIM.replace("--batch 1", "--batch 16"),
      `${ATTENTION_PIM.replace("--batch 1", "--batch 16")} --attention-reduce host`,
    ],
    values: [null, ms(0, 16), ms(1, 16)],
    slow: true,
  },
  // The Tile-Selector against the whole tiling space (README, docs/upmem.md).
  {
    doc: "README.md",
    quote:
      "38 G tilings for Llama-2-7B INT8 on 2048 DPUs, searched by an exact branch-and-bound): geomean ratio 0.999 to 1.000",
    cmds: SWEEP,
    values: [
      (js) => (js[SWEEP.indexOf(LLAMA_INT8)] as { space_size: number }).space_size / 1e9,
      null,
      ...rangeOf((js) => groupGeomeans(js, () => true)),
    ],
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote:
      "is off by 0.15 % +- 0.14 % in decode (largest 0.50 %) and 0.04 % +- 0.06 % in prefill (largest 0.30 %)",
    cmds: SWEEP,
    values: PHASES.slice()
      .reverse()
      .flatMap((p): Get[] => [
        (js) => meanOf(modelErrors(js, p)),
        (js) => sdOf(modelErrors(js, p)),
        (js) => Math.max(...modelErrors(js, p)),
      ]),
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote: "on the call the selector picks for each of the 160 GEMMs of the sweep below",
    cmds: SWEEP,
    values: [(js) => allShapes(js).length],
    slow: true,
  },
  {
    doc: "README.md",
    quote: "2048 and 2556 DPUs (0.9996 over the 160 GEMMs)",
    cmds: SWEEP,
    values: [null, null, (js) => geomean(allShapes(js).map((s) => s.ratio)), (js) => allShapes(js).length],
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote:
      "21.8 M legal tilings for Llama-2-7B INT8's 1 x 4096 x 4096 on 2048 DPUs, 7.1 G for its 128 x 12288 x 4096, 38.2 G over its ten GEMMs (the selector's own former list, which `--exhaustive` used to search: 226 k)",
    cmds: [LLAMA_INT8],
    values: [
      (js) => shapeSpace(1, 4096, 4096)(js) / 1e6,
      null,
      null,
      null,
      null,
      (js) => shapeSpace(128, 12288, 4096)(js) / 1e9,
      null,
      null,
      null,
      (js) => (js[0] as { space_size: number }).space_size / 1e9,
      null,
    ],
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote: "Llama-2-7B INT8 on 2048 DPUs: 2,186 of 38.2 G tilings timed",
    cmds: [LLAMA_INT8],
    values: [
      null,
      (js) => shapesOf(js[0]).reduce((t, s) => t + s.oracle.timed, 0),
      (js) => (js[0] as { space_size: number }).space_size / 1e9,
    ],
    slow: true,
  },
  {
    doc: "docs/upmem.md",
    quote: "160 GEMMs, 128 distinct, 1.0 x 10^12 legal tilings",
    cmds: SWEEP,
    values: [
      (js) => allShapes(js).length,
      (js) =>
        new Set(
          SWEEP_RUNS.flatMap((r, i) =>
            shapesOf(js[i]).map((s) => `${r.system} ${s.m} ${s.n} ${s.k} ${r.weights}`),
          ),
        ).size,
      (js) => allShapes(js).reduce((t, s) => t + s.space_size, 0) / 1e12,
      null,
      null,
    ],
    slow: true,
  },
  ...(
    [
      ["f32", "prefill", "| f32 prefill | 0.9998 - 1.0000 | 0.9990 - 1.0000 |"],
      ["f32", "decode", "| f32 decode | 0.9994 - 0.9996 | 0.9992 - 0.9998 |"],
      ["int8", "prefill", "| INT8 prefill | 0.9990 - 0.9997 | 0.9995 - 1.0000 |"],
      ["int8", "decode", "| INT8 decode | 0.9988 - 1.0000 | 0.9990 - 1.0000 |"],
    ] as const
  ).map(([weights, phase, quote]): Figure => ({
    doc: "docs/upmem.md",
    quote,
    cmds: SWEEP,
    values: geomeanRange(weights, phase),
    slow: true,
  })),
  {
    doc: "docs/upmem.md",
    quote: "0.9996 over the 160",
    cmds: SWEEP,
    values: [(js) => geomean(allShapes(js).map((s) => s.ratio)), (js) => allShapes(js).length],
    slow: true,
  },
  // README: pimc verify on the bundled models.
  ...(
    [
      [["llama-tiny"], "| llama-tiny | HuggingFace transformers 5.17 | 1.1e-6 | 8.3e-7 | 8.4e-7 |"],
      [
        ["mistral-tiny"],
        "| mistral-tiny (sliding window 4) | independent numpy re-implementation | 3.4e-7 | 4.1e-7 | 2.7e-7 |",
      ],
      [["qwen2-tiny"], "| qwen2-tiny | numpy | 4.0e-7 | 2.9e-7 | 2.2e-7 |"],
      [
        ["opt-tiny", "opt-tiny-350m"],
        "| opt-tiny / opt-tiny-350m | numpy | 3.0e-7 / 1.1e-7 | 2.4e-7 / 1.0e-7 | 1.5e-7 / 8.6e-8 |",
      ],
      [
        ["llama-tiny-variants"],
        "| llama-tiny-variants (biases, MQA, llama3 rope) | numpy | 2.6e-7 | 3.9e-7 | 2.7e-7 |",
      ],
      [
        ["gpt2-tiny"],
        "| gpt2-tiny (restored c_attn biases) | HuggingFace transformers 5.17 | 8.3e-7 | 9.5e-7 | 7.2e-7 |",
      ],
      [["gpt2-tiny-bias"], "| gpt2-tiny-bias | numpy | 2.4e-7 | 1.8e-7 | 1.5e-7 |"],
    ] as const
  ).map(([models, quote]): Figure => ({
    doc: "README.md",
    quote,
    cmds: models.map((m) => verify(m)),
    values: [
      ...Array<null>(quotedNumbers(quote).length - 3 * models.length).fill(null),
      ...errorColumns(models.length),
    ],
  })),
  {
    doc: "README.md",
    quote: "| mixtral-tiny (both expert layouts) | numpy | 5.4e-7 | 3.8e-7 | 2.1e-7 |",
    cmds: [verify("mixtral-tiny"), verify("mixtral-tiny-fused")],
    values: [prefillErr, decodeErr, fullErr].map((f) => same([verified(0, f), verified(1, f)])),
  },
  {
    doc: "README.md",
    quote: "software float, gives errors of the same size, 2.1e-7 to 1.4e-6",
    cmds: FIXTURES.map((m) => verify(m, " --target upmem --no-cooperation")),
    values: overRuns(errorsOf),
    slow: true,
  },
  {
    doc: "README.md",
    quote: "target's tolerance: 9.5e-7 on cpu, upmem, xpu and sram-pim, 2.3e-3 on hbm-pim (FP16)",
    cmds: ["", " --target upmem", " --target xpu", " --target sram-pim", " --target hbm-pim"].map((t) =>
      verify("gpt2-tiny", t),
    ),
    values: [same([0, 1, 2, 3].map((i) => verified(i, maxErr))), verified(4, maxErr)],
  },
  {
    doc: "README.md",
    quote:
      "logit errors 0.015 to 0.12 (prefill, decode and full sequence) and the reference's greedy tokens on every bundled model but llama-tiny, where 12 of 14 decisions agree; its two disagreements are reference near-ties (top-2 margins 0.0038 and 0.0147, below the INT8 error)",
    cmds: FIXTURES.map((m) => verify(m, " --weights int8")),
    values: [...overRuns(errorsOf), verified(0, agreed), verified(0, total), null, null],
  },
  {
    doc: "README.md",
    quote:
      "gives a full-sequence error of 0.037, still above those margins, so no INT8-weight scheme is guaranteed to keep them; `--activations int16` brings it to 0.037 (12/14 as well). INT8 per group (`--weights int8 --group-size N`, W8A8 or weight-only with `--activations f32`) does not either: weight-only with groups of 8 inputs still errs by 0.022 (13/14), and even groups of 2 by 0.011 (13/14)",
    cmds: [
      " --weights int8 --activations f32",
      " --weights int8 --activations int16",
      " --weights int8 --group-size 8 --activations f32",
      " --weights int8 --group-size 2 --activations f32",
    ].map((f) => verify("llama-tiny", f)),
    values: [
      verified(0, fullErr),
      verified(1, fullErr),
      verified(1, agreed),
      verified(1, total),
      null,
      verified(2, fullErr),
      verified(2, agreed),
      verified(2, total),
      null,
      verified(3, fullErr),
      verified(3, agreed),
      verified(3, total),
    ],
  },
  ...(
    [
      [" --weights int4", "INT4 gives full-sequence logit errors of 0.4 to 0.7 (4 to 13 of 14 tokens)"],
      [" --weights int2", "INT2 2.0 to 2.7 (0 to 7 of 14)"],
    ] as const
  ).map(([flags, quote]): Figure => ({
    doc: "README.md",
    quote,
    cmds: LOWBIT_MODELS.map((m) => verify(m, flags)),
    values: [...overRuns(fullErr), ...overRuns(agreed), overRuns(total)[1]],
  })),
  {
    doc: "README.md",
    quote: "FP16: logit errors 1.1e-3 to 4.7e-3 with every op PIM can run on PIM",
    cmds: FIXTURES.map((m) => verify(m, HBM_ALL_PIM)),
    values: overRuns(errorsOf),
    slow: true,
  },
  {
    doc: "docs/hbm-pim.md",
    quote:
      "put the logits within 4.7e-3 of the fp32 reference on the tiny models with every op PIM can run on PIM",
    cmds: FIXTURES.map((m) => verify(m, HBM_ALL_PIM)),
    values: [overRuns(errorsOf)[1]],
    slow: true,
  },
  // README: PIM-LLM's ablation, what the text reads from it.
  {
    doc: "README.md",
    quote: "fitted to the paper's CPU/BaseGEMM ratio 45.75 / 14.65 = 3.12, measured 3.13",
    cmds: [ABLATION("upmem-2048-pimllm")],
    values: [null, null, null, ablation(0, 1, (r) => r.speedup_vs_cpu)],
    slow: true,
  },
  {
    doc: "README.md",
    quote: "fitted to the paper's 27 % of BaseGEMM spent transposing, measured 26.4 %",
    cmds: [TRANSPOSES],
    values: [null, kernelShare(0, 1, "transpose")],
    slow: true,
  },
  {
    doc: "README.md",
    quote:
      "pipeline's **17.7x** over BaseGEMM (paper 14.65x, +20 %) and 55.2x over the CPU (45.75x, +21 %); pooling removes 76 % of the time left before it (paper: per-call DPU allocation 75 %)",
    cmds: [ABLATION("upmem-2048-pimllm")],
    values: [
      ablation(0, 6, (r) => r.speedup_vs_basegemm),
      null,
      pctOver(
        ablation(0, 6, (r) => r.speedup_vs_basegemm),
        14.65,
      ),
      ablation(0, 6, (r) => r.speedup_vs_cpu),
      null,
      pctOver(
        ablation(0, 6, (r) => r.speedup_vs_cpu),
        45.75,
      ),
      pctBelow(
        ratio(
          ablation(0, 6, (r) => r.seconds),
          ablation(0, 5, (r) => r.seconds),
        ),
        1,
      ),
      null,
    ],
    slow: true,
  },
  {
    doc: "README.md",
    quote:
      "runs this prefill in 0.67 s, 60x faster than BaseGEMM and 20x faster than the best DPU mapping (13.4 s without cooperation)",
    cmds: [ABLATION("upmem-2048")],
    values: [
      ablation(0, 0, (r) => r.seconds),
      ablation(0, 0, (r) => r.speedup_vs_basegemm),
      ratio(
        ablation(0, 4, (r) => r.seconds),
        ablation(0, 0, (r) => r.seconds),
      ),
      ablation(0, 4, (r) => r.seconds),
    ],
    slow: true,
  },

  // docs/lowbit.md: pimc verify on five tiny models.
  ...LOWBIT_MODELS.map((m, i): Figure => ({
    doc: "docs/lowbit.md",
    quote: [
      "| llama-tiny | 0.048, 12 | 0.039, 12 | 0.56, 4 | 0.56, 4 | 2.6, 0 |",
      "| qwen2-tiny | 0.049, 14 | 0.043, 14 | 0.43, 13 | 0.43, 13 | 2.7, 7 |",
      "| mistral-tiny | 0.070, 14 | 0.060, 14 | 0.69, 8 | 0.69, 8 | 2.5, 1 |",
      "| opt-tiny | 0.033, 14 | 0.027, 14 | 0.52, 12 | 0.51, 12 | 2.0, 2 |",
      "| mixtral-tiny | 0.030, 14 | 0.029, 13 | 0.49, 4 | 0.50, 4 | 2.4, 0 |",
    ][i]!,
    cmds: LOWBIT_FLAGS.map((f) => verify(m, f)),
    values: lowbitRow(LOWBIT_FLAGS.length),
  })),
  {
    doc: "docs/lowbit.md",
    quote:
      "INT8 keeps the reference's greedy tokens everywhere but llama-tiny (12/14), whose two other decisions are near-ties (top-2 margins 0.0038 and 0.0147) below any INT8 scheme's error: INT8 weights alone in groups of 2 still err by 0.011 and keep 13/14",
    cmds: [
      verify("llama-tiny", " --weights int8"),
      verify("llama-tiny", " --weights int8 --group-size 2 --activations f32"),
    ],
    values: [
      verified(0, agreed),
      verified(0, total),
      null,
      null,
      null,
      verified(1, fullErr),
      verified(1, agreed),
      verified(1, total),
    ],
  },
  // SAIL (docs/sram-pim.md): the configurations, per step and linear layers, and their speedups.
  ...(
    [
      [
        sail(W2A8),
        "| `--weights int2 --activations int8` (arrays) | 12.45 ms | 20.55 | 52.93  | 9.20      | 9.20  | 9.20  |",
      ],
      [
        sail(W8),
        "| `--weights int8` (CPU alone, W8A8)           | 35.69 ms | 43.85 | 126.45 | 32.44     | 32.50 | 82.72 |",
      ],
      [
        sail(W4),
        "| `--weights int4` (CPU alone, weight-only)    | 20.54 ms | 32.12 | 126.45 | 17.29     | 20.78 | 82.72 |",
      ],
    ] as const
  ).map(([cmd, quote]): Figure => ({ doc: "docs/sram-pim.md", quote, cmds: [cmd], values: sailRow(0) })),
  ...(
    [
      [
        W4A8,
        "",
        "| INT4 on the arrays, context 1024  | 1.74x   | 1.53x | 2.07x | 1.88x     | 1.88x | 4.79x |",
      ],
      [
        W2A8,
        "",
        "| INT2 on the arrays, context 1024  | 2.87x   | 2.13x | 2.39x | 3.52x     | 3.53x | 8.99x |",
      ],
      [
        W4A8,
        CTX128,
        "| INT4 on the arrays, context 128   | 1.83x   | 1.78x | 3.69x | 1.88x     | 1.88x | 4.79x |",
      ],
      [
        W2A8,
        CTX128,
        "| INT2 on the arrays, context 128   | 3.29x   | 3.05x | 5.53x | 3.52x     | 3.53x | 8.99x |",
      ],
    ] as const
  ).map(([weights, context, quote]): Figure => ({
    doc: "docs/sram-pim.md",
    quote,
    cmds: [sail(W8, context), sail(weights, context)],
    values: [null, ...sailVsCpu(0, 1)],
  })),
  {
    doc: "docs/sram-pim.md",
    quote:
      "the arrays gain 1.00x / 1.12x / 2.07x per step (INT4) and 1.65x / 1.56x / 2.39x (INT2) at context 1024",
    cmds: [sail(W4), SAIL, sail(W2A8)],
    values: [...BATCHES.map((b) => speedup(0, 1, b)), ...BATCHES.map((b) => speedup(0, 2, b)), null],
  },
  {
    doc: "docs/sram-pim.md",
    quote:
      "This model reaches 9.0x on the linear layers (INT2, batch 16: 9.20 ms against 82.72 ms), the closest configuration, i.e. 16 % below the published maximum, but only 2.1x to 5.5x per decode step at batch 16, because attention over the KV cache stays on the host (43.7 ms of the 61.0 ms step at batch 16, context 1024)",
    cmds: SAIL_STEPS,
    values: [...sailBest(), ...range(sailSteps([16])), null, busy(1, 16, "host"), ms(1, 16), null, null],
  },
  {
    doc: "docs/sram-pim.md",
    quote: "weight-only INT4 on the CPU (20.54 ms) is as fast as INT4 on the arrays (20.52 ms)",
    cmds: [sail(W4), SAIL],
    values: [ms(0, 1), ms(1, 1)],
  },
  {
    doc: "docs/sram-pim.md",
    quote:
      "(batch 16: 82.7 ms of linear layers on the CPU at 2.56 TFLOP/s peak, while the arrays still stream-bound take 9.2 ms)",
    cmds: [sail(W8), sail(W2A8)],
    values: [null, linearMs(0, 16), null, linearMs(1, 16)],
  },
  // SAIL's Llama-2-7B decode as bench prints it, and per layer.
  ...(
    [
      [1, "│     1 │           1 │ 20.516 ms │       49 │  3.248 ms │ 17.268 ms │"],
      [4, "│     4 │           4 │ 28.612 ms │      140 │ 11.344 ms │ 17.268 ms │"],
      [16, "│    16 │          16 │ 60.996 ms │      262 │ 43.728 ms │ 17.268 ms │"],
    ] as const
  ).map(([b, quote]): Figure => ({
    doc: "docs/sram-pim.md",
    quote,
    cmds: [SAIL],
    values: [null, null, ms(0, b), tokensPerS(0, b), busy(0, b, "host"), busy(0, b, "pim")],
  })),
  ...(
    [
      [
        "L*.gate_up",
        [MS, GIB, G],
        "│ L*.gate_up │ pim    │    32 │  7.517 ms │ 36.6% │ 1.43 GiB │ 5.77 G │ 3.76 │",
      ],
      [
        "L*.qkv",
        [MS, MIB, G],
        "│ L*.qkv     │ pim    │    32 │  4.210 ms │ 20.5% │  817 MiB │ 3.22 G │ 3.76 │",
      ],
      [
        "L*.down",
        [MS, MIB, G],
        "│ L*.down    │ pim    │    32 │  3.775 ms │ 18.4% │  732 MiB │ 2.89 G │ 3.76 │",
      ],
      [
        "L*.attn",
        [MS, MIB, M],
        "│ L*.attn    │ host   │    32 │  2.659 ms │ 13.0% │  513 MiB │  543 M │ 1.01 │",
      ],
      [
        "L*.o",
        [MS, MIB, G],
        "│ L*.o       │ pim    │    32 │  1.425 ms │  6.9% │  273 MiB │ 1.07 G │ 3.76 │",
      ],
      [
        "logits",
        [US, MIB, M],
        "│ logits     │ pim    │     1 │ 341.00 us │  1.7% │ 66.5 MiB │  262 M │ 3.76 │",
      ],
    ] as const
  ).map(([name, units, quote]): Figure => ({
    doc: "docs/sram-pim.md",
    quote,
    cmds: [SAIL],
    values: opRow(0, 1, name, units),
  })),
  ...(
    [
      [SAIL, 1, "| INT4, M = 1  | 2     | 233.9 us | 0.44 us | 38.0 us | 0.09 us    | 234.9 us |"],
      [SAIL, 16, "| INT4, M = 16 | 2     | 233.9 us | 0.44 us | 38.0 us | 1.38 us    | 234.9 us |"],
      [sail(W2A8), 1, "| INT2, M = 1  | 4     | 123.8 us | 0.22 us | 19.0 us | 0.09 us    | 124.8 us |"],
      [sail(W2A8), 16, "| INT2, M = 16 | 4     | 123.8 us | 0.22 us | 19.0 us | 1.38 us    | 124.8 us |"],
    ] as const
  ).map(([cmd, b, quote]): Figure => ({
    doc: "docs/sram-pim.md",
    quote,
    cmds: [cmd],
    values: [null, null, null, null, null, null, perCallUs(0, b, "L*.gate_up")],
  })),
  ...(
    [
      [
        SRAM_W4A8,
        `{"target":"sram-pim","prefill_max_abs_err":0.6745266616344452,"decode_max_abs_err":0.6047801375389099,"full_max_abs_err":0.5596991181373596,...}`,
      ],
      [
        CPU_W4A8,
        `{"target":"cpu","prefill_max_abs_err":0.6745266616344452,"decode_max_abs_err":0.6047801375389099,"full_max_abs_err":0.5596991181373596,...}`,
      ],
      [
        SRAM_F32,
        `{"target":"sram-pim","prefill_max_abs_err":0.0000010728836059570312,"decode_max_abs_err":8.344650268554688e-7,...,"passed":true}`,
      ],
    ] as const
  ).map(([cmd, quote]): Figure => ({
    doc: "docs/sram-pim.md",
    quote,
    cmds: [cmd],
    values: [prefillErr, decodeErr, fullErr].slice(0, quotedNumbers(quote).length).map((f) => verified(0, f)),
  })),
  // docs/lowbit.md: SAIL, and UPMEM's LUT kernels against its INT8 MAC kernels.
  {
    doc: "docs/lowbit.md",
    quote: "SAIL INT4 1.83x / 3.69x and INT2 3.29x / 5.53x over its host at batch 1 / 16",
    cmds: [sail(W8, CTX128), sail(W4A8, CTX128), sail(W2A8, CTX128)],
    values: [speedup(0, 1, 1), speedup(0, 1, 16), speedup(0, 2, 1), speedup(0, 2, 16), null, null],
  },
  {
    doc: "docs/lowbit.md",
    quote: "UPMEM INT8 7.46x, INT2 4.65x, INT4 2.93x at batch 1",
    cmds: [upmemDecode(W8, `${CTX128} --baselines`), upmemDecode(W2A8, CTX128), upmemDecode(W4A8, CTX128)],
    values: [...[0, 1, 2].map((i) => ratio(hostOnlyMs(0, 1), ms(i, 1))), null],
    slow: true,
  },
  {
    doc: "docs/lowbit.md",
    quote:
      "Here the arrays reach 9.0x on the linear layers (INT2, batch 16: 9.20 ms against the CPU's 82.7 ms), 16 % below that maximum, and 1.5x to 5.5x per decode step",
    cmds: SAIL_STEPS,
    values: [...sailBest(), ...range(sailSteps(BATCHES))],
  },
  {
    doc: "docs/lowbit.md",
    quote:
      "(the host is faster from batch 2 for the QKV projection, from batch 3 for the LM head), and from batch 4 every INT2 layer stays on the host (gate/up: host 35.6 ms against 65.0 ms on the DPUs per step)",
    cmds: [UPMEM_INT2],
    values: [
      placed(0, 1, "L*.qkv", (g) => fromBatch(g, isHost)),
      placed(0, 1, "logits", (g) => fromBatch(g, isHost)),
      null,
      placed(0, 4, "L*.gate_up", hostTime(MS)),
      placed(0, 4, "L*.gate_up", pimTime(MS)),
    ],
    slow: true,
  },
  {
    doc: "docs/lowbit.md",
    quote:
      "(`--no-cooperation --attention host`, batch 1) the linear layers' kernels take 26.0 ms with INT8 MAC, 67.3 ms with INT4 LUT and 31.3 ms with INT2 LUT",
    cmds: DPUS_ALONE_RUNS,
    values: [null, dpuMs(0, 1), dpuMs(1, 1), dpuMs(2, 1)],
    slow: true,
  },
  {
    doc: "docs/lowbit.md",
    quote:
      "the kernels take 26.0 ms with INT8 MAC, 31.3 ms with INT2 LUT and 67.3 ms with INT4 LUT (29.4 / 38.2 / 74.3 ms with the transfers)",
    cmds: DPUS_ALONE_RUNS,
    values: [
      dpuMs(0, 1),
      dpuMs(2, 1),
      dpuMs(1, 1),
      dpuWithTransfersMs(0, 1),
      dpuWithTransfersMs(2, 1),
      dpuWithTransfersMs(1, 1),
    ],
    slow: true,
  },
  // docs/hbm-pim.md: a unit per bank, AttAcc's split on an A100, attention on PIM.
  {
    doc: "docs/hbm-pim.md",
    quote:
      "8192 x 4096 takes half the MAC commands of the bank-pair organisation and 1.8x less time; ADD 1M 2,370 cycles instead of 3,380",
    cmds: [
      "kernel gemv 8192x4096 --system examples/systems/hbm-pim-64ch.pim",
      `kernel gemv 8192x4096 --system ${HBM_BANK_SYSTEM}`,
      `kernel add 1M --system ${HBM_BANK_SYSTEM}`,
      ADD,
    ],
    values: [null, null, ratio(cycles(0, "pim"), cycles(1, "pim")), cycles(2, "pim"), cycles(3, "pim")],
  },
  {
    doc: "docs/hbm-pim.md",
    quote:
      "at batch 1 and context 2048 the PIM units run attention in 0.80 ms per step where 32 heads keep 32 of the A100's 108 SMs busy for 2.0 ms",
    cmds: [A100_HBM],
    values: [
      null,
      null,
      placed(0, 1, "L*.attn", pimTime(MS)),
      null,
      null,
      null,
      placed(0, 1, "L*.attn", hostTime(MS)),
    ],
    slow: true,
  },
  {
    doc: "docs/hbm-pim.md",
    quote:
      "Llama-2-7B decode at context 1024: 0.36 ms of attention on PIM per step at batch 1 (host: 0.56 ms)",
    cmds: [HBM],
    values: [null, placed(0, 1, "L*.attn", pimTime(MS)), null, placed(0, 1, "L*.attn", hostTime(MS))],
    slow: true,
  },
  // docs/heterogeneous.md: AttAcc's attention, PAPI's alpha and what the text reads from the tables.
  {
    doc: "docs/heterogeneous.md",
    quote: "but attention on them runs 3.0x faster, not 9.8x",
    cmds: [A100_64, ATTACC_64],
    values: [ratio(opsMs(0, 64, ["L*.attn"]), opsMs(1, 64, ["L*.attn"])), null],
  },
  {
    doc: "docs/heterogeneous.md",
    quote:
      "8 tokens for the 8192 x 8192 weight, 10 for the 8192 x 22016 one, 9 for QKV, 8 for gate/up and the LM head",
    cmds: ["tune examples/llama-65b.pim --system examples/systems/a100-papi.pim"],
    values: [
      alpha(8192, 8192),
      null,
      null,
      alpha(8192, 22016),
      null,
      null,
      alpha(24576, 8192),
      alphaOthers([8192, 8192], [8192, 22016], [24576, 8192]),
    ],
    slow: true,
  },
  {
    doc: "docs/heterogeneous.md",
    quote: "(batch 4, S = 1: 1.9x / 2.2x over AttAcc's FC on the GPU)",
    cmds: PAPI_ALL,
    values: [null, null, papiVs(1, "llama-65b", 1, 4), papiVs(1, "gpt3-175b", 1, 4)],
    slow: true,
  },
  {
    doc: "docs/heterogeneous.md",
    quote: "(static, fixed at batch 4, loses up to 3.5x at batch 64)",
    cmds: PAPI_ALL,
    values: [null, (js) => Math.max(...papiRatios(js, 3)), null],
    slow: true,
  },
  {
    doc: "docs/heterogeneous.md",
    quote: "dominates (batch 64, S = 1 and 2) AttAcc's stronger attention stacks win (0.82x to 0.85x)",
    cmds: PAPI_ALL,
    values: [
      null,
      null,
      null,
      ...range(PAPI_MODELS.flatMap((m) => ([1, 2] as const).map((spec) => papiVs(1, m, spec, 64)))),
    ],
    slow: true,
  },
  {
    doc: "docs/heterogeneous.md",
    quote: "both then equal GPU-only, PAPI's FC placement adding 1.00x to 1.02x",
    cmds: PAPI_ALL,
    values: [...range(PAPI_MODELS.flatMap((m) => [4, 16, 64].map((b) => papiVs(1, m, 4, b))))],
    slow: true,
  },
  // NeuPIMs (docs/heterogeneous.md, README).
  {
    doc: "docs/heterogeneous.md",
    quote: "so overlapping them approaches a halving (1.64x at batch 512)",
    cmds: neupims(512),
    values: [speedup(1, 2, 512), null],
    slow: true,
  },
  {
    doc: "docs/heterogeneous.md",
    quote: "so NeuPIMs wins only from batch 256 (1.20x, 1.51x at 512)",
    cmds: neupims(512),
    values: [null, speedup(0, 2, 256), speedup(0, 2, 512), null],
    slow: true,
  },
  {
    doc: "README.md",
    quote: "`--sub-batches 2`: 1.64x over naive NPU + PIM at batch 512",
    cmds: neupims(512),
    values: [null, speedup(1, 2, 512), null],
    slow: true,
  },
  // Capacity (docs/hbm-pim.md, docs/xpu.md): what a step needs in each memory, by `compile --json`.
  {
    doc: "docs/hbm-pim.md",
    quote: "the reserved rows left out: 16.0 GiB on `hbm-pim-64ch.pim`",
    cmds: [GPT3_HBM],
    values: [memory(0, (m) => m.capacity / GIB)],
    slow: true,
  },
  {
    doc: "docs/hbm-pim.md",
    quote:
      "`hbm_pim_64ch: weights 325 GiB + KV cache 4.50 GiB = 330 GiB at batch 1 and 1025 cached tokens per sequence exceed the PIM banks (16.0 GiB)`",
    cmds: [GPT3_HBM],
    // The bound before placement: weights and KV cache against all the memories (no activations).
    values: [
      memory(0, (m) => m.weights / GIB),
      memory(0, (m) => m.kv_cache / GIB),
      memory(0, (m) => (m.weights + m.kv_cache) / GIB),
      null,
      null,
      memory(0, (m) => m.capacity / GIB),
    ],
    slow: true,
  },
  {
    doc: "docs/xpu.md",
    quote:
      "At batch 256 and context 1024 Llama-2-7B's KV cache alone is 128 GiB: the step does not fit the H100's 80 GB",
    cmds: [
      "compile examples/llama2-7b.pim --system examples/systems/h100.pim --phase decode --batch 256 --no-capacity-check",
    ],
    values: [null, null, memory(0, (m) => m.kv_cache / GIB), memory(0, (m) => m.capacity / G)],
  },
];
