/**
 * Target registry. Every folder here with an `index` module that default-exports a Target is a
 * target, found by name at run time: adding a target touches no core file.
 */
import { readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { UserError } from "../src/errors.js";
import type { SystemDecl } from "../src/frontend/dsl/index.js";
import type { LoadedModel } from "../src/frontend/hf/import.js";
import type { Tensor } from "../src/ir/tensor.js";
import type { CostModel } from "../src/pipeline/cost-model.js";
import type { DimEnv } from "../src/ir/dim.js";
import type { Module, Op } from "../src/ir/module.js";
import type { Pass, PassOptions } from "../src/pipeline/pass.js";
import type { MemoryMap } from "../src/pipeline/capacity.js";
import type { Workload } from "../src/frontend/workload.js";
import type { CompileFlags } from "../src/driver/compile.js";
import type { OpRow } from "../src/driver/run.js";
import type { OpPoint, Roof } from "../src/report/plot.js";

/** Runs a compiled model function by function, keeping the KV cache between calls. */
export interface FunctionalRunner {
  reset(): void;
  run(func: string, inputs: readonly Tensor[]): Tensor[];
}

/** A validated system description of a target: its devices' costs and what its passes need. */
export interface SystemModel {
  readonly name: string;
  readonly costModel: CostModel;
  /** Options for the passes (e.g. the weight layouts the devices want), by pass name. */
  readonly passOptions: PassOptions;
  /** The target's own validated description (its schema's output). */
  readonly config?: unknown;
  /** How the system is used (the choices it was created with). */
  readonly options?: SystemOptions;
  /** The description file it was made from and its system block (program files carry it). */
  readonly source?: { readonly file: string; readonly name: string; readonly text: string };
}

/** Choices about how a system is used (not what it is). */
export interface SystemOptions {
  /** Place each GEMM on the host or the PIM device by comparing both (default); false: PIM whenever it can. */
  readonly cooperation?: boolean;
  /** Where attention runs: by the cost model (default), or forced to the PIM device or the host. */
  readonly attention?: "auto" | "pim" | "host";
  /** Values of the target's own flags (Target.flags), by key; checked by checkTargetFlags. */
  readonly targetFlags?: TargetFlagValues;
}

/** Values of a target's flags by key: a switch's boolean, or one of an option's choices. */
export type TargetFlagValues = Readonly<Record<string, string | boolean>>;

/**
 * A command-line flag a target declares (its lowering's choices, e.g. UPMEM's `--no-pooling`): the
 * compiling commands accept it, `--help` lists it when the command names that target (--target or
 * --system), and its value reaches the target's `system()` as `SystemOptions.targetFlags[key]`.
 */
export interface TargetFlag {
  /** Its key in targetFlags (the flag in camelCase without `no-`: `pooling`, `attentionReduce`). */
  readonly key: string;
  /** As commander declares it: a switch (`--base-gemm`, `--no-pooling`: false) or `--name <value>`. */
  readonly flags: string;
  readonly description: string;
  /** The values of a `--name <value>` flag. */
  readonly choices?: readonly string[];
}

/** One configuration of a target's ablation (`pimc bench --ablation`): a label and what it changes. */
export interface AblationStep {
  readonly label: string;
  /** Flags over the command's own: CPU/PIM cooperation and the target's flags. */
  readonly flags: Pick<CompileFlags, "cooperation" | "targetFlags">;
  /** Passes disabled on top of the command's. */
  readonly disable?: readonly string[];
}

export interface EmitOptions extends PrepareOptions {
  /** No weight data: a program for timing only. */
  readonly shapeOnly: boolean;
}

/** Sizes a compiled program must serve (programs with static memory plans lay out for these). */
export interface PrepareOptions {
  /** Largest batch, tokens per call, and cached tokens after a call. */
  readonly limits?: { readonly B: number; readonly S: number; readonly T: number };
  /** Workload dims per function (e.g. for tile selection). */
  readonly envs?: Readonly<Record<string, DimEnv>>;
  /** Calls of each function per request (e.g. prefill 1, decode 128): how to weigh phases that compete. */
  readonly mix?: Readonly<Record<string, number>>;
}

/**
 * Joules, in all and per part (the target's parts: DRAM array, I/O, PIM units, host, ...); a target
 * may name its parts (`P`).
 */
export interface Energy<P extends string = string> {
  readonly joules: number;
  readonly breakdown: Readonly<Record<P, number>>;
}

/** The time of one call of a function, op by op (targets that time without a program emulator). */
export interface CallTiming {
  readonly seconds: number;
  /** Seconds per device. */
  readonly busy: Readonly<Record<string, number>>;
  readonly ops: readonly {
    readonly op: Op;
    readonly device: string;
    readonly seconds: number;
    readonly flops: number;
    readonly bytes: number;
    /** Its energy, where the target models energy. */
    readonly joules?: number;
  }[];
  /** The call's energy, where the target models energy (docs/energy.md). */
  readonly energy?: Energy;
}

/** How `pimc sim` shows a column of a report's rows. */
export interface ReportColumn {
  readonly key: string;
  readonly head: string;
  /** text (left-aligned), a count, seconds, bytes, or a number with an SI prefix. */
  readonly kind: "text" | "int" | "seconds" | "bytes" | "si";
  /** Dropped first when the terminal is narrow (`--wide` keeps it). */
  readonly drop?: boolean;
}

/** An op (kernel, transfer) of a step as `pimc bench` tables it: its calls, time and work on a device. */
export interface StepOp extends OpRow {
  /** Fraction of its device's peak it reached (against the executable's `roofs`), where known. */
  readonly peak_fraction?: number;
}

/** A point of the roofline plot (its batch added by bench): work in the unit of its device's roof. */
export type StepPoint = Omit<OpPoint, "batch">;

/** One call of a program as every target reports it (`pimc sim`, the library's `loadProgram`). */
export interface CallReport {
  readonly phase: string;
  readonly env: Readonly<Record<string, number>>;
  readonly seconds: number;
  /** Busy seconds per engine (the executable's `engines` name them). */
  readonly busy: Readonly<Record<string, number>>;
  /** What took the time (kernels, ops), slowest first, keyed by the executable's `columns`. */
  readonly rows: readonly Readonly<Record<string, string | number>>[];
  /** The call's ops, kernels and transfers grouped by name and device, slowest first (`pimc bench`). */
  readonly ops?: readonly StepOp[];
  /** The roofline plot's points of the call (on the executable's `roofs`). */
  readonly points?: readonly StepPoint[];
  /** The call's energy, where the target models energy (docs/energy.md). */
  readonly energy?: Energy;
  /** The target's own report of the call (UPMEM: its RunReport), for target-specific consumers. */
  readonly native?: unknown;
}

/** A program file loaded to run: what `pimc sim` needs of any target's program. */
export interface Executable {
  readonly target: string;
  readonly model: string;
  /** The sizes it was compiled for (calls default to them). */
  readonly limits: { readonly B?: number; readonly S?: number; readonly T?: number };
  /** Its functions (phases) and the steps a call of each takes (for a progress bar). */
  readonly phases: readonly { readonly name: string; readonly steps: number }[];
  /** Lines saying what the program is and where it runs. */
  readonly header: readonly string[];
  /** One line naming the model and the machine (bench's model line, the plot's title). */
  readonly title: string;
  /** The roofs of its devices, for the roofline plot and the ops' `peak_fraction`. */
  readonly roofs?: readonly Roof[];
  /** Labels of the engines of `busy`, in the order to show them. */
  readonly engines: Readonly<Record<string, string>>;
  readonly columns: readonly ReportColumn[];
  /** Fields `pimc sim --json` adds (e.g. the DPU count). */
  readonly info: Readonly<Record<string, string | number | boolean>>;
  /** The target's own decoded program (UPMEM: its Program), for target-specific consumers. */
  readonly native?: unknown;
  /** The program as text (`pimc sim --disasm`). */
  disassemble(): string;
  /**
   * Starts running it (timing only, no data): its setup runs once, then each `call` of a function
   * under `env`. `onStep` after each step of a call (its `phases[].steps`, for a progress bar).
   * Options a target lacks are a UserError.
   */
  open(opts?: {
    readonly onStep?: () => void;
    /** Calls split into sub-batches whose host and PIM work overlap (NeuPIMs), where the target can. */
    readonly subBatches?: number;
  }): {
    readonly setup?: CallReport;
    call(phase: string, env: DimEnv): CallReport;
  };
  /** Some calls (after the setup, when it has one) as a Chrome/Perfetto trace (trace-event JSON). */
  trace(reports: readonly CallReport[]): string;
}

/** How `pimc kernel` runs one kernel: the exact mode, the reference run, a progress bar. */
export interface KernelOptions {
  /** Also the same data moved without PIM (the device's plain read and write path). */
  readonly baseline: boolean;
  /** Channels overriding the system's (HBM-PIM: pseudo-channels); targets without channels refuse it. */
  readonly channels?: number;
  /** Ranks overriding the system's (HBM-PIM); targets without ranks refuse it. */
  readonly ranks?: number;
  /**
   * The memory controller's refresh policy overriding the system's (HBM-PIM: "jedec", "deferred" as
   * PIMSimulator's controller does it, "off"); targets without one refuse it.
   */
  readonly refresh?: string;
  /** Progress: `start(steps)` when it knows them, a tick per step, a label per run. */
  readonly progress: {
    start(total: number): void;
    tick(): void;
    label(text: string): void;
  };
}

/** What `pimc kernel` prints: its lines, its JSON object, and a trace of the runs on request. */
export interface KernelReport {
  readonly lines: readonly string[];
  readonly json: Readonly<Record<string, unknown>>;
  /** The runs as a Chrome / Perfetto trace (trace-event JSON). */
  trace(): string;
  /**
   * The kernel's program in the device's own input format, for the device's own simulator (aim: an
   * AiM simulator trace); absent where the target writes none.
   */
  program?(): string;
}

/** `pimc kernel`: one of the target's PIM kernels run alone on its device model (PIMSimulator's benchmark). */
export interface KernelRunner {
  /** The kernels by name. */
  readonly ops: readonly string[];
  /** How a size is written, for `<size>`'s help (e.g. `gemv: NxK; element-wise: N`). */
  readonly sizes: string;
  /** Runs `op` of `size` on the system. Bad ops, sizes or options are a UserError. */
  run(system: SystemModel, op: string, size: string, opts: KernelOptions): KernelReport;
}

/** What `pimc tune` asks of a target's tuner. */
export interface TuneOptions {
  /** Also search the whole space of choices (the oracle), not only the target's pick. */
  readonly exhaustive: boolean;
  /** With `exhaustive`: prune the search (branch-and-bound). */
  readonly prune: boolean;
  /** The functions whose ops to tune (default: every one). */
  readonly phases?: readonly ("prefill" | "decode")[];
  /** Progress: before each of `count` items (`label` says which). */
  readonly onItem?: (i: number, count: number, label: string) => void;
}

/** What `pimc tune` prints: its text lines and its JSON object. */
export interface TuneReport {
  readonly lines: readonly string[];
  readonly json: Readonly<Record<string, unknown>>;
}

export interface Target {
  readonly name: string;
  readonly summary: string;
  /** Flags of this target's own (its lowering's choices); absent: none. */
  readonly flags?: readonly TargetFlag[];
  /**
   * `pimc bench --ablation`: the published optimizations added to a naive mapping one at a time
   * (UPMEM: PIM-LLM's), each step timed on the device model beside the host alone.
   */
  readonly ablation?: { readonly title: string; readonly steps: readonly AblationStep[] };
  /**
   * How the target prices energy, when its calls report it (CallTiming / CallReport `energy`): one
   * line for `pimc list targets` and people (docs/energy.md).
   */
  readonly energy?: string;
  /**
   * Watts the system draws while it runs nothing (its memories' standby), by the parts of its energy
   * breakdown: what `serve` charges between steps. Absent: the target models no idle power.
   */
  idlePower?(system: SystemModel): Readonly<Record<string, number>>;
  /** `pimc verify`'s default accepted logit error for targets that compute in reduced precision (FP16). */
  readonly tolerance?: number;
  /** The default pass pipeline (pass names, in order: the shared passes/ and the target's own). */
  readonly pipeline: readonly string[];
  /** The target's own passes (its lowering's stages), named in its pipeline or lowering. */
  readonly passes?: readonly Pass[];
  /**
   * Passes after the pipeline that lower the placed module to the target's dialect, the module its
   * `emit` encodes op by op. compile runs them under the same instruments (--print-after-all,
   * --verify-each, --dump-ir see every stage) and returns their result as `lowered`; what analyses
   * read (placement, capacity, baselines) is the placed `module` before them.
   */
  readonly lowering?: readonly string[];
  /** Validates a `system` block of this target; without one, the target's default system. */
  system(decl?: SystemDecl, opts?: SystemOptions): SystemModel;
  /** Compiles `model` (after the pipeline) and returns a runner that executes it functionally. */
  prepare(model: LoadedModel, system: SystemModel, opts?: PrepareOptions): FunctionalRunner;
  /**
   * The system's memories (PIM banks, MRAM, an xPU's HBM, host DRAM) with their capacities, and which
   * holds the weights, KV cache and activations of ops on each device: what compile, bench and serve
   * check a model and workload against (src/pipeline/capacity.ts). Targets without one are not checked.
   */
  memories?(system: SystemModel): MemoryMap;
  /**
   * Code generation: the program file for `model` (after the pipeline), and lines describing it.
   * Targets without one run the IR directly (compile -o writes the IR).
   */
  emit?(model: LoadedModel, system: SystemModel, opts: EmitOptions): { bytes: Uint8Array; lines: string[] };
  /**
   * Loads a program file `emit` wrote, to run it (undefined: the bytes are not this target's
   * format). Targets without `emit` have the compiled IR as their program (src/exec/ir-program.ts).
   */
  load?(bytes: Uint8Array, file: string): Executable | undefined;
  /**
   * `pimc tune`: the target's own tuner (UPMEM: the Tile-Selector against the emulator). Without
   * one, tune reports where each linear layer moves between the host and the PIM device by tokens
   * per step (PAPI's alpha, src/driver/tune.ts), for systems that have both.
   */
  tune?(model: LoadedModel, flags: CompileFlags, w: Workload, opts: TuneOptions): Promise<TuneReport>;
  /** `pimc kernel`: its PIM kernels run one at a time (absent: the target has none to run alone). */
  readonly kernel?: KernelRunner;
  /**
   * Times one call of `func` of a compiled module under `env` from the target's device model, without
   * data. `subBatches` > 1: the batch split into sub-batches whose host and PIM work overlap
   * (NeuPIMs); targets whose devices cannot overlap reject it.
   */
  timeCall?(
    module: Module,
    system: SystemModel,
    func: string,
    env: DimEnv,
    opts?: { readonly subBatches?: number },
  ): CallTiming;
}

const here = dirname(fileURLToPath(import.meta.url));
let cache: Map<string, Target> | undefined;

export async function allTargets(): Promise<Map<string, Target>> {
  if (cache) return cache;
  const found = new Map<string, Target>();
  const dirs = readdirSync(here, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  for (const d of dirs) {
    const file = ["index.js", "index.ts"].map((f) => join(here, d, f)).find((f) => existsSync(f));
    if (!file) continue;
    const mod = (await import(pathToFileURL(file).href)) as { default?: Target };
    if (mod.default) found.set(mod.default.name, mod.default);
  }
  cache = found;
  return found;
}

/** A flag's name as typed: `--no-pooling`, `--attention-reduce`. */
export const flagName = (f: TargetFlag): string => f.flags.split(/[ =]/)[0]!;

/**
 * Checks the values of target flags against `target`'s declarations. A flag of another target, or
 * a value a flag does not take, fails with one line naming the flag.
 */
export async function checkTargetFlags(target: Target, values: TargetFlagValues | undefined): Promise<void> {
  for (const [key, v] of Object.entries(values ?? {})) {
    const f = target.flags?.find((x) => x.key === key);
    if (!f) {
      const owners = [...(await allTargets()).values()].filter((t) => t.flags?.some((x) => x.key === key));
      const name = owners[0] ? flagName(owners[0].flags!.find((x) => x.key === key)!) : `"${key}"`;
      throw new UserError(
        `${name} is not an option of target ${target.name}` +
          (owners.length > 0 ? ` (only of ${owners.map((t) => t.name).join(", ")})` : ""),
      );
    }
    if (f.choices ? typeof v !== "string" || !f.choices.includes(v) : typeof v !== "boolean")
      throw new UserError(
        `${flagName(f)}: expected ${f.choices ? f.choices.join(", ") : "true or false"}, got ${JSON.stringify(v)}`,
      );
  }
}

export async function getTarget(name: string): Promise<Target> {
  const all = await allTargets();
  const t = all.get(name);
  if (!t) throw new UserError(`unknown target "${name}" (available: ${[...all.keys()].join(", ")})`);
  return t;
}
