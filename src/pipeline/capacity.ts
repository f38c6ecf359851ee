/**
 * Capacity and position checks: what a compiled model needs in each memory of a system (weights at
 * their compiled precision, the KV cache of the workload, the peak of live activations) against
 * what the memory holds, and the tokens of a sequence against the model's positions.
 *
 * The contract with targets: a target reports its system's memories and their capacities, and for
 * each kind of data and the devices of the ops that use it, the memory that holds it
 * (`Target.memories`). Everything else is here: a new target adds a `memories` and touches no core
 * file. Targets without one are not checked.
 */
import { UserError } from "../errors.js";
import { dimEval, type DimEnv } from "../ir/dim.js";
import { isSsa, refName, type Module, type Op } from "../ir/module.js";
import { typeBytes, type TensorType } from "../ir/types.js";
import { bytes as fmtBytes } from "../report/format.js";
import type { ModelConfig } from "../frontend/config.js";
import type { Workload } from "../frontend/workload.js";

/** What lives in memory: the model's weights, the KV cache, the activations of a call. */
export type DataKind = "weights" | "kv" | "activations";

/** A memory of a system: its name in messages ("the PIM banks", "MRAM") and its capacity in bytes. */
export interface Memory {
  readonly name: string;
  readonly bytes: number;
}

/** A system's memories and where the target places data. */
export interface MemoryMap {
  readonly memories: readonly Memory[];
  /**
   * The name of the memory holding data of `kind` used by ops on `devices` (the ops' `device` and
   * `alt_device` attributes; empty: ops the partition did not place, which run on the home device).
   * undefined: the data lives in no memory of the map (it is not checked).
   */
  place(kind: DataKind, devices: ReadonlySet<string>): string | undefined;
  /**
   * Every datum lives in one of the memories whatever the placement (`place` never answers
   * undefined): then the data against all the memories together is a bound that holds before the
   * partition runs (totalCapacityProblem).
   */
  readonly holdsAll?: boolean;
}

/** Bytes of each kind in one memory. */
export interface MemoryUse {
  readonly memory: Memory;
  readonly weights: number;
  readonly kv: number;
  readonly activations: number;
}

/** Bytes of a value's type under the workload's dims; a dim the workload does not give is a UserError. */
function bytesOf(what: string, type: TensorType, env: DimEnv): number {
  try {
    return dimEval(typeBytes(type), env);
  } catch (e) {
    throw new UserError(`${what}: ${(e as Error).message} (a workload gives ${Object.keys(env).join(", ")})`);
  }
}

/** Devices an op may run on (its placement and, with dynamic placement, its alternative). */
function opDevices(op: Op): string[] {
  const out: string[] = [];
  if (typeof op.attrs.device === "string") out.push(op.attrs.device);
  if (typeof op.attrs.alt_device === "string") out.push(op.attrs.alt_device);
  return out;
}

/** The dimension values of each function under a workload: B, S, P and the cached length T = P + S. */
export function callEnvs(w: Workload): Record<"prefill" | "decode", DimEnv> {
  const pre = { B: w.batch, S: w.prompt, P: 0, T: w.prompt };
  const dec = { B: w.batch, S: w.speculation, P: w.context, T: w.context + w.speculation };
  return w.phase === "prefill" ? { prefill: pre, decode: pre } : { prefill: dec, decode: dec };
}

/** The cached tokens per sequence after a call of the workload's phase. */
export const cachedTokens = (w: Workload): number =>
  w.phase === "prefill" ? w.prompt : w.context + w.speculation;

/**
 * What the module needs in each memory of `map` under the workload: every weight once (in the memory
 * the devices of its users decide), the KV cache at B sequences of T cached tokens, and the largest
 * set of activations live at once during a call (results of ops on the memory's devices; the KV
 * cache's appends alias the cache and are not counted twice).
 */
export function footprint(module: Module, map: MemoryMap, w: Workload): MemoryUse[] {
  const use = new Map(map.memories.map((m) => [m.name, { memory: m, weights: 0, kv: 0, activations: 0 }]));
  const add = (kind: DataKind, devices: ReadonlySet<string>, n: number): void => {
    const name = map.place(kind, devices);
    const u = name === undefined ? undefined : use.get(name);
    if (u) u[kind] += n;
  };
  // The devices using each constant and state, over every function.
  const users = new Map<string, Set<string>>();
  const aliasOf = new Map<string, string>(); // kv_append result -> its state
  for (const f of module.funcs)
    for (const op of f.body) {
      if (op.opcode === "kv_append" && op.operands[0]?.startsWith("@"))
        for (const r of op.results) aliasOf.set(r.name, refName(op.operands[0]));
      for (const ref of op.operands) {
        const name = isSsa(ref) ? aliasOf.get(refName(ref)) : refName(ref);
        if (name === undefined) continue;
        const s = users.get(name) ?? new Set<string>();
        for (const d of opDevices(op)) s.add(d);
        users.set(name, s);
      }
    }
  const none = new Set<string>();
  for (const c of module.consts) add("weights", users.get(c.name) ?? none, bytesOf(`@${c.name}`, c.type, {}));
  const env = callEnvs(w)[w.phase];
  for (const s of module.states) add("kv", users.get(s.name) ?? none, bytesOf(`@${s.name}`, s.type, env));
  // Activations: the peak over each function of the bytes live at once, per memory.
  const peak = new Map<string, number>();
  for (const f of module.funcs) {
    const fenv = callEnvs(w)[f.name === "prefill" ? "prefill" : "decode"];
    const last = new Map<string, number>();
    f.body.forEach((op, i) => {
      for (const ref of op.operands) if (isSsa(ref)) last.set(refName(ref), i);
    });
    for (const r of f.results) last.set(refName(r), f.body.length);
    const live = new Map<string, number>();
    const ends: { at: number; memory: string; n: number }[] = [];
    f.body.forEach((op, i) => {
      if (op.opcode !== "kv_append") {
        const memory = map.place("activations", new Set(opDevices(op)));
        if (memory !== undefined)
          for (const r of op.results) {
            const n = bytesOf(`%${r.name}`, r.type, fenv);
            live.set(memory, (live.get(memory) ?? 0) + n);
            ends.push({ at: last.get(r.name) ?? i, memory, n });
          }
      }
      for (const [m, n] of live) peak.set(m, Math.max(peak.get(m) ?? 0, n));
      for (let k = ends.length - 1; k >= 0; k--)
        if (ends[k]!.at <= i) {
          live.set(ends[k]!.memory, live.get(ends[k]!.memory)! - ends[k]!.n);
          ends.splice(k, 1);
        }
    });
  }
  for (const [m, n] of peak) {
    const u = use.get(m);
    if (u) u.activations = Math.max(u.activations, n);
  }
  return [...use.values()];
}

/** "weights 326 GiB + KV cache 4.50 GiB + activations 12.0 MiB" (kinds with no bytes left out). */
export function describeUse(u: MemoryUse): string {
  const parts: [string, number][] = [
    ["weights", u.weights],
    ["KV cache", u.kv],
    ["activations", u.activations],
  ];
  return parts
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${fmtBytes(n)}`)
    .join(" + ");
}

const total = (u: MemoryUse): number => u.weights + u.kv + u.activations;

/**
 * The first memory the module under the workload overflows, as a one-line message (`hbm_pim_64ch:
 * weights 326 GiB + KV cache 4.50 GiB = 331 GiB at batch 1 and 1025 cached tokens per sequence
 * exceed the PIM banks (16.0 GiB)`), or undefined.
 */
export function capacityProblem(
  system: string,
  module: Module,
  map: MemoryMap,
  w: Workload,
): string | undefined {
  const over = footprint(module, map, w).find((u) => total(u) > u.memory.bytes);
  if (!over) return undefined;
  return `${system}: ${describeUse(over)} = ${fmtBytes(total(over))} at batch ${w.batch} and ${cachedTokens(w)} cached tokens per sequence exceed ${over.memory.name} (${fmtBytes(over.memory.bytes)})`;
}

/**
 * The bound that holds before placement, for maps that hold all data (`holdsAll`): the module's
 * weights and KV cache under the workload (which placement does not change) against every memory
 * together. No placement fits a model that fails it, so a model that cannot fit fails before the
 * cost models run; capacityProblem, after placement, is the exact check (activations included).
 */
export function totalCapacityProblem(
  system: string,
  module: Module,
  map: MemoryMap,
  w: Workload,
): string | undefined {
  if (map.holdsAll !== true || map.memories.length === 0) return undefined;
  const bytes = map.memories.reduce((s, m) => s + m.bytes, 0);
  const all: Memory = { name: "all", bytes };
  const [f] = footprint(module, { memories: [all], place: () => all.name }, w);
  const u = { ...f!, activations: 0 };
  if (total(u) <= bytes) return undefined;
  const each = map.memories.map((m) => `${m.name} (${fmtBytes(m.bytes)})`);
  const memories = each.length === 1 ? each[0]! : `${each.join(" and ")} together (${fmtBytes(bytes)})`;
  return `${system}: ${describeUse(u)} = ${fmtBytes(total(u))} at batch ${w.batch} and ${cachedTokens(w)} cached tokens per sequence exceed ${memories}`;
}

/** The model's position limit and the name of the field that sets it. */
function positionLimit(config: ModelConfig | undefined): { max: number; field: string } | undefined {
  if (!config) return undefined;
  return { max: config.max_positions, field: "max_positions" };
}

/**
 * The tokens one sequence of the workload holds (prefill: the prompt; decode: the cached context
 * and the step's tokens), checked against the model's positions.
 */
export function positionProblem(
  model: { readonly module: Module; readonly config?: ModelConfig },
  w: Workload,
): string | undefined {
  const lim = positionLimit(model.config);
  if (!lim) return undefined;
  const n = cachedTokens(w);
  if (n <= lim.max) return undefined;
  const what =
    w.phase === "prefill"
      ? `a prompt of ${n} tokens needs`
      : `context ${w.context} + ${w.speculation} token(s) per step need`;
  return `${model.module.name}: ${what} ${n} positions; the model has ${lim.max} (${lim.field}; max_position_embeddings in config.json)`;
}

export function checkPositions(
  model: { readonly module: Module; readonly config?: ModelConfig },
  w: Workload,
): void {
  const p = positionProblem(model, w);
  if (p !== undefined) throw new UserError(p);
}

/**
 * A request's positions (prompt + generated tokens) against the model's limit: the message, or
 * undefined when it fits.
 */
export function requestPositionProblem(
  model: { readonly module: Module; readonly config?: ModelConfig },
  prompt: number,
  output: number,
): string | undefined {
  const lim = positionLimit(model.config);
  if (!lim || prompt + output <= lim.max) return undefined;
  return `${model.module.name}: prompt ${prompt} + output ${output} tokens need ${prompt + output} positions; the model has ${lim.max} (${lim.field}; max_position_embeddings in config.json)`;
}

/**
 * A system whose data all lives in one memory (a CPU's DRAM, a GPU's HBM that its Logic-PIM also
 * reads); no memory to check when its capacity is not given.
 */
export function singleMemory(name: string, bytes: number | undefined): MemoryMap {
  return {
    memories: bytes === undefined ? [] : [{ name, bytes }],
    place: () => (bytes === undefined ? undefined : name),
    holdsAll: bytes !== undefined,
  };
}

/**
 * Cached tokens (summed over the sequences of a batch) the memories holding the KV cache have room
 * for beside the weights and the activations of the largest steps (`steps`: workloads whose
 * activations are reserved, e.g. a full decode batch and the longest prefill); Infinity when no
 * checked memory holds the cache. Undefined when not even one token fits (capacityProblem says why).
 */
export function kvTokenBudget(
  module: Module,
  map: MemoryMap,
  steps: readonly Workload[],
): number | undefined {
  const one: Workload = {
    name: "one token",
    phase: "decode",
    batch: 1,
    prompt: 1,
    context: 0,
    speculation: 1,
    output: 1,
  };
  const perToken = footprint(module, map, one);
  const uses = steps.map((w) => footprint(module, map, w));
  let budget = Infinity;
  perToken.forEach((u, i) => {
    if (u.kv === 0) return;
    const activations = Math.max(0, ...uses.map((s) => s[i]!.activations));
    budget = Math.min(budget, Math.floor((u.memory.bytes - u.weights - activations) / u.kv));
  });
  return budget >= 1 ? budget : undefined;
}
