/**
 * `pimc compile <model>`: front end + IR verification, then a summary of the model and a per-op
 * table of flops, bytes and arithmetic intensity (Op/B) under a workload. Later issues add the pass
 * pipeline and a target's program as output.
 */
import { table } from "../report/table.js";
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { loadDescription, selectWorkload } from "../frontend/dsl/index.js";
import { defaultWorkload, workloadEnv, workloadFromDecl, type Workload } from "../frontend/workload.js";
import { funcCosts } from "../ir/cost.js";
import { dimEval } from "../ir/dim.js";
import { findFunc, type Module } from "../ir/module.js";
import { printModule } from "../ir/printer.js";
import { numel, typeBytes } from "../ir/types.js";
import { assertValid } from "../ir/verifier.js";
import { bytes, int, opb, si } from "../report/format.js";
import { loadForCli, writeFileAtomic } from "./io.js";
import { nonNegativeInt, positiveInt } from "./options.js";

export interface WorkloadFlags {
  workload?: string;
  phase?: "prefill" | "decode";
  batch?: number;
  prompt?: number;
  context?: number;
  speculation?: number;
}

/** The workload chosen by --workload and the override flags (see `pimc compile --help`). */
export function resolveWorkload(modelPath: string, o: WorkloadFlags): Workload {
  let w: Workload | undefined;
  if (o.workload !== undefined) {
    const m = /^(.*\.pim)(?::(\w+))?$/.exec(o.workload);
    if (m) w = workloadFromDecl(selectWorkload(loadDescription(m[1]!), m[2]));
    else if (modelPath.endsWith(".pim"))
      w = workloadFromDecl(selectWorkload(loadDescription(modelPath), o.workload));
    else
      throw new UserError(
        `--workload: "${o.workload}" is not a .pim file, and the model is not a description file`,
      );
  } else if (modelPath.endsWith(".pim")) {
    const desc = loadDescription(modelPath);
    const first = desc.workloads.find((x) => o.phase === undefined || x.phase === o.phase);
    if (first) w = workloadFromDecl(first);
  }
  w ??= defaultWorkload(o.phase ?? "decode");
  if (o.phase !== undefined && o.phase !== w.phase) w = { ...defaultWorkload(o.phase), name: w.name };
  return {
    ...w,
    ...(o.batch !== undefined ? { batch: o.batch } : {}),
    ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
    ...(o.context !== undefined ? { context: o.context } : {}),
    ...(o.speculation !== undefined ? { speculation: o.speculation } : {}),
  };
}

export function describeWorkload(w: Workload): string {
  return w.phase === "prefill"
    ? `${w.name}: prefill, batch ${w.batch}, prompt ${w.prompt} tokens`
    : `${w.name}: decode, batch ${w.batch}, context ${w.context}, ${w.speculation} token(s) per step`;
}

interface Row {
  name: string;
  opcode: string;
  count: number;
  flops: number;
  bytes: number;
}

/** Per-op costs of the workload's function, ops of identical layers grouped (`L*.q` = every layer's q). */
export function costRows(m: Module, w: Workload): Row[] {
  const f = findFunc(m, w.phase);
  if (!f) throw new UserError(`module has no ${w.phase} function`);
  const rows = new Map<string, Row>();
  for (const c of funcCosts(m, f, workloadEnv(w))) {
    const name = (c.op.results[0]?.name ?? c.op.opcode).replace(/^(L|kv\.)\d+\./, "$1*.");
    const key = `${name}\u0000${c.op.opcode}`;
    const r = rows.get(key) ?? { name, opcode: c.op.opcode, count: 0, flops: 0, bytes: 0 };
    r.count++;
    r.flops += c.flops;
    r.bytes += c.bytes;
    rows.set(key, r);
  }
  return [...rows.values()];
}

export function summary(m: Module, source: string, hasWeights: boolean): string[] {
  const a = m.attrs;
  const params = m.consts.reduce((s, c) => s + dimEval(numel(c.type), {}), 0);
  const paramBytes = m.consts.reduce((s, c) => s + dimEval(typeBytes(c.type), {}), 0);
  // A cache state is [B, H, T, D]: bytes per token per sequence = its size at B = T = 1.
  const kvPerToken = m.states.reduce((s, st) => s + dimEval(typeBytes(st.type), { B: 1, T: 1 }), 0);
  const arch =
    a.family !== undefined
      ? `${String(a.family)}: ${String(a.layers)} layers, hidden ${String(a.hidden)}, ${String(a.heads)} heads (${String(a.kv_heads)} kv), ffn ${String(a.ffn)}${a.experts !== undefined ? ` x ${String(a.experts)} experts (top ${String(a.top_k)})` : ""}, vocab ${String(a.vocab)}, ${String(a.dtype)}`
      : "custom graph";
  return [
    `model     ${m.name} (${arch})`,
    `weights   ${m.consts.length} tensors, ${si(params)} parameters, ${bytes(paramBytes)}${hasWeights ? ` from ${source}` : " (shape-only)"}`,
    `functions ${m.funcs.map((f) => `${f.name} ${f.body.length} ops`).join(", ")}`,
    `kv cache  ${m.states.length} tensors, ${bytes(kvPerToken)} per token per sequence`,
  ];
}

export function compileCommand() {
  return new Command("compile")
    .description("compile a model and print its summary and per-op costs under a workload")
    .argument("<model>", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option("--workload <name>", "a workload block of the model's file, or FILE.pim[:NAME]")
    .addOption(new Option("--phase <phase>", "prefill or decode").choices(["prefill", "decode"] as const))
    .option("--batch <n>", "sequences per step", positiveInt)
    .option("--prompt <n>", "prefill: tokens per sequence", positiveInt)
    .option("--context <n>", "decode: tokens already in the KV cache", nonNegativeInt)
    .option("--speculation <n>", "decode: tokens per step", positiveInt)
    .option("-o, --output <file>", "write the compiled IR to a file (.pimir)")
    .option("--json", "print one JSON object instead of tables")
    .action((path, opts) => {
      const model = loadForCli(path, opts.model);
      assertValid(model.module);
      const w = resolveWorkload(path, opts);
      const rows = costRows(model.module, w);
      const total = rows.reduce((s, r) => ({ flops: s.flops + r.flops, bytes: s.bytes + r.bytes }), {
        flops: 0,
        bytes: 0,
      });
      if (opts.output !== undefined) writeFileAtomic(opts.output, printModule(model.module));
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({ model: model.module.name, workload: w, ops: rows, total_flops: total.flops, total_bytes: total.bytes })}\n`,
        );
        return;
      }
      const t = table(
        ["op", "kind", "count", "flops", "bytes", "Op/B"],
        ["left", "left", "right", "right", "right", "right"],
      );
      for (const r of rows)
        t.push([r.name, r.opcode, String(r.count), si(r.flops), bytes(r.bytes), opb(r.flops, r.bytes)]);
      t.push([
        "total",
        "",
        int(rows.reduce((s, r) => s + r.count, 0)),
        si(total.flops),
        bytes(total.bytes),
        opb(total.flops, total.bytes),
      ]);
      const lines = [
        ...summary(model.module, model.source, model.weights.names().length > 0),
        `workload  ${describeWorkload(w)}`,
        t.toString(),
        "",
      ];
      process.stdout.write(lines.join("\n"));
    });
}
