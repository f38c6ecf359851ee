/**
 * pimc as a library: load a model, compile it for a system, time a step of a workload, write and
 * simulate a program file, verify against HuggingFace's logits. The CLI's commands are shells over
 * the same functions (src/driver/). docs/api.md shows them at work; its example runs in the tests.
 */
import { checkPositions, footprint, type MemoryUse } from "./pipeline/capacity.js";
import { allFlags, checkFits, compileModel, type CompileFlags, type Compiled } from "./driver/compile.js";
import { emitProgram, timeStep, type Step } from "./driver/run.js";
import { loadModel } from "./frontend/load.js";
import type { LoadedModel } from "./frontend/hf/import.js";
import { workloadFrom, type Workload } from "./frontend/workload.js";
import { writeFileAtomic } from "./fsutil.js";
import { requestsFrom } from "./frontend/requests.js";
import type { Request, ServeMetrics, ServeResult } from "./exec/serve.js";
import { serveTrace } from "./driver/serve.js";
import { tuneModel } from "./driver/tune.js";
import type { TuneReport } from "../targets/index.js";
import { WORKLOAD_LIMITS } from "./limits.js";
import { UserError } from "./errors.js";

export { UserError };
export { loadModel } from "./frontend/load.js";
export type { LoadedModel } from "./frontend/hf/import.js";
export { workloadFrom, type Workload } from "./frontend/workload.js";
export { printModule } from "./ir/printer.js";
export { parseModule } from "./ir/parser.js";
export type { Module, Op } from "./ir/module.js";
export { verify, type VerifyOptions, type VerifyResult } from "./driver/verify.js";
export { loadProgram, loadProgramBytes, runProgram, type Step } from "./driver/run.js";
export type { IrProgram } from "./exec/ir-program.js";
export { allTargets, getTarget } from "../targets/index.js";
export type {
  CallReport,
  CallTiming,
  Executable,
  ReportColumn,
  SystemModel,
  Target,
  TuneReport,
} from "../targets/index.js";
export type { MemoryUse } from "./pipeline/capacity.js";
export { poissonRequests, readRequests, requestsFrom } from "./frontend/requests.js";
export type { Request, RequestResult, ServeMetrics, ServeResult } from "./exec/serve.js";

/**
 * How to compile: the CLI's flags as fields (`weights: "int8"`, `cooperation: false`,
 * `dynamicPlacement: true`, `capacityCheck: false`, ...; see `pimc compile --help`), and the workload
 * the model is compiled and checked for (default: decode, batch 1, context 1024).
 */
export interface CompileOptions extends Omit<CompileFlags, "system" | "progress"> {
  readonly workload?: Partial<Workload>;
}

/** A compiled model: the IR after the target's pipeline, the target and system, and what it needs where. */
export interface CompiledModel extends Compiled {
  readonly model: LoadedModel;
  readonly workload: Workload;
  /** What the model needs in each memory of the system under the workload (empty: not checked). */
  readonly memories: readonly MemoryUse[];
  /** The options it was compiled with (`time` checks other workloads against the memories as they say). */
  readonly options: CompileFlags;
}

/**
 * Compiles `model` (a loaded model, or a path as `pimc` takes it: a .pim description, a HuggingFace
 * folder, a .pimir module) for `system` (a .pim system file, `FILE.pim:NAME` for one of several;
 * undefined: the target's default system, `options.target` or cpu). Checks the workload's positions
 * and the system's memories as `pimc compile` does (UserError naming the memory, unless
 * `capacityCheck: false`).
 */
export async function compile(
  model: LoadedModel | string,
  system?: string,
  options: CompileOptions = {},
): Promise<CompiledModel> {
  const m = typeof model === "string" ? loadModel(model) : model;
  const { workload, ...rest } = options;
  const w = workloadFrom(workload ?? {}, m.config?.max_positions);
  checkPositions(m, w);
  const flags = allFlags({ ...rest, ...(system !== undefined ? { system } : {}) });
  const c = await compileModel(m, flags, w, 2, true);
  checkFits(m, c, w, flags);
  const map = c.target.memories?.(c.system);
  return { ...c, model: m, workload: w, memories: map ? footprint(c.module, map, w) : [], options: flags };
}

/**
 * Times one step of a workload (default: the one `c` was compiled for; fields given replace its
 * own) on the compiled model: the program emulated, for targets that generate one (`report`), or the
 * ops timed by the target's device model (`timing`). `subBatches`: NeuPIMs' sub-batch interleaving.
 */
export function time(
  c: CompiledModel,
  workload: Partial<Workload> = {},
  opts: { readonly subBatches?: number } = {},
): Step {
  const w = workloadFrom({ ...c.workload, ...workload });
  checkPositions(c.model, w);
  checkFits(c.model, c, w, c.options);
  return timeStep(c.model, c, w, opts);
}

/**
 * The program file of a compiled model, laid out for the compiled workload: the target's own for
 * targets that generate code (UPMEM: DPU kernels and host commands), the compiled IR with its system
 * for the others. `shapeOnly`: no weight data (a program for timing only). `lines` describe it as
 * `pimc compile -o` prints them.
 */
export function emit(
  c: CompiledModel,
  opts: { readonly shapeOnly?: boolean } = {},
): { bytes: Uint8Array; lines: string[] } {
  return emitProgram(c.model, c, c.workload, opts);
}

/** Writes `emit(c)`'s program to `path` (atomically) and returns its description lines. */
export function writeProgram(
  c: CompiledModel,
  path: string,
  opts: { readonly shapeOnly?: boolean } = {},
): string[] {
  const out = emit(c, opts);
  writeFileAtomic(path, out.bytes);
  return out.lines;
}

/**
 * Serves a request trace (an array of `{ arrival, prompt, output }`, `readRequests(file)` or
 * `poissonRequests({...})`) on `model` compiled for `system` as `pimc serve` does: each phase compiled
 * once with dynamic placement, continuous (default) or static batching of at most `maxBatch`
 * (default 32) sequences, admission control for the KV cache. Each request's times (`result`), the
 * throughput and TTFT / TBT percentiles (`metrics`) and the KV-cache room (`kvTokens`).
 */
export async function serve(
  model: LoadedModel | string,
  system: string | undefined,
  trace: readonly Request[],
  options: Omit<CompileOptions, "workload"> & {
    readonly batching?: "continuous" | "static";
    readonly maxBatch?: number;
  } = {},
): Promise<{ result: ServeResult; metrics: ServeMetrics; kvTokens: number }> {
  const m = typeof model === "string" ? loadModel(model) : model;
  const { batching = "continuous", maxBatch = 32, ...rest } = options;
  if (batching !== "continuous" && batching !== "static")
    throw new UserError(`batching: expected continuous or static, got ${String(batching)}`);
  if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > WORKLOAD_LIMITS.batch)
    throw new UserError(
      `maxBatch: expected a positive integer up to ${WORKLOAD_LIMITS.batch}, got ${maxBatch}`,
    );
  const flags = allFlags({ ...rest, ...(system !== undefined ? { system } : {}) });
  return serveTrace(m, flags, requestsFrom(trace, "the trace"), { batching, maxBatch });
}

/**
 * Tunes `model` for `system` as `pimc tune` does: the target's own tuner (UPMEM: the Tile-Selector
 * on every GEMM shape against the emulator; `exhaustive`: against the best legal tiling too), else
 * PAPI's alpha per linear layer on a system with a host and a PIM device. Its report's `json` is
 * `pimc tune --json`'s object, `lines` its text.
 */
export async function tune(
  model: LoadedModel | string,
  system: string | undefined,
  options: CompileOptions & {
    readonly exhaustive?: boolean;
    readonly prune?: boolean;
    readonly phases?: readonly ("prefill" | "decode")[];
  } = {},
): Promise<TuneReport> {
  const m = typeof model === "string" ? loadModel(model) : model;
  const { workload, exhaustive = false, prune = true, phases, ...rest } = options;
  const w = workloadFrom(workload ?? {}, m.config?.max_positions);
  const flags = allFlags({ ...rest, ...(system !== undefined ? { system } : {}) });
  const opts = { exhaustive, prune, ...(phases ? { phases } : {}) };
  return (await tuneModel(m, flags, w, opts)).report;
}
