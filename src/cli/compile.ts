/**
 * `pimc compile <model>`: front end + IR verification, then a summary of the model and a per-op
 * table of flops, bytes and arithmetic intensity (Op/B) under a workload. Later issues add the pass
 * pipeline and a target's program as output.
 */
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { workloadEnv, type Workload } from "../frontend/workload.js";
import type { PassContext } from "../pipeline/pass.js";
import { withPipelineFlags } from "./pipeline.js";
import { checkFits, compileModel, type PipelineFlags } from "../driver/compile.js";
import { emitProgram } from "../driver/run.js";
import { checkPositions, describeUse, footprint } from "../pipeline/capacity.js";
import { resolveWorkload, withWorkloadFlags, type WorkloadFlags } from "./workload-flags.js";
import { describeWorkload } from "../frontend/workload.js";
import { funcCosts } from "../ir/cost.js";
import { dimEval } from "../ir/dim.js";
import { findFunc, type Module } from "../ir/module.js";
import { printModule } from "../ir/printer.js";
import { numel, typeBytes } from "../ir/types.js";
import { assertValid } from "../ir/verifier.js";
import { bytes, int, layerGroupName, opb, si } from "../report/format.js";
import { loadForCli, warn, writeFileAtomic } from "./io.js";
import { explainStep, placementJson, placementLines, referenceSystem } from "./placement.js";

interface Row {
  name: string;
  opcode: string;
  device?: string;
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
    const name = layerGroupName(c.op);
    const device = typeof c.op.attrs.device === "string" ? c.op.attrs.device : undefined;
    const key = `${name}\u0000${c.op.opcode}\u0000${device ?? ""}`;
    const r = rows.get(key) ?? {
      name,
      opcode: c.op.opcode,
      ...(device !== undefined ? { device } : {}),
      count: 0,
      flops: 0,
      bytes: 0,
    };
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

/** The pass report as lines: `fuse-qkv: 32 qkv groups fused, 32 fused weights`. */
export function reportLines(ctx: PassContext): string[] {
  return [...ctx.report].map(
    ([pass, r]) =>
      `${pass}: ${Object.entries(r)
        .map(([k, v]) => `${int(v)} ${k}`)
        .join(", ")}`,
  );
}

export function compileCommand() {
  const cmd = new Command("compile")
    .description(
      "compile a model for a target and print its summary, the passes' report and per-op costs under a workload",
    )
    .argument("<model>", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option(
      "-o, --output <file>",
      "write the target's program (binary; `pimc sim` runs it), or the compiled IR when FILE ends in .pimir or the target has no code generator",
    )
    .option("--json", "print one JSON object instead of tables");
  return withPipelineFlags(withWorkloadFlags(cmd), 2).action(async (path, o) => {
    const opts = o as typeof o & PipelineFlags & WorkloadFlags;
    const model = loadForCli(path, opts.model);
    assertValid(model.module);
    const w = resolveWorkload(path, opts, model.config?.max_positions);
    checkPositions(model, w);
    // The passes on a progress bar, unless they print the IR on the same terminal.
    const printing = opts.printBefore.length > 0 || opts.printAfter.length > 0 || opts.printAfterAll;
    const bar = progress();
    let compiled;
    try {
      compiled = await compileModel(model, printing ? opts : { ...opts, progress: bar }, w, 2, true);
    } finally {
      bar.stop();
    }
    const { module, ctx, target, system } = compiled;
    checkFits(model, { module, target, system }, w, { ...opts, warn });
    // What each memory of the system holds under the workload (checked above).
    const map = target.memories?.(system);
    const memories = map ? footprint(module, map, w) : [];
    const rows = costRows(module, w);
    // Where the layers run and why (systems with a choice of device).
    const reference = (await referenceSystem(opts)).costModel;
    const placement =
      reference.devices.length > 1 ? explainStep({ module, ctx }, w, reference, opts) : undefined;
    const total = rows.reduce((s, r) => ({ flops: s.flops + r.flops, bytes: s.bytes + r.bytes }), {
      flops: 0,
      bytes: 0,
    });
    let programLines: string[] = [];
    // Targets with code generation lower the model (shape-only without -o): what the program holds.
    // The others' program file is the compiled IR with its system (-o FILE.pimir: the IR alone).
    if ((target.emit || opts.output !== undefined) && !opts.output?.endsWith(".pimir")) {
      const out = emitProgram(model, { module, ctx, target, system }, w, {
        shapeOnly: opts.output === undefined,
      });
      programLines = out.lines;
      if (opts.output !== undefined) {
        writeFileAtomic(opts.output, out.bytes);
        programLines.push(`          written to ${opts.output} (${bytes(out.bytes.length)})`);
      }
    } else if (opts.output !== undefined) writeFileAtomic(opts.output, printModule(module));
    if (opts.json) {
      const report = Object.fromEntries(ctx.report);
      process.stdout.write(
        `${JSON.stringify({ model: module.name, target: target.name, system: system.name, workload: w, passes: ctx.ran, report, program: programLines, ops: rows, total_flops: total.flops, total_bytes: total.bytes, memories: memories.map((u) => ({ memory: u.memory.name, capacity: u.memory.bytes, weights: u.weights, kv_cache: u.kv, activations: u.activations })), ...(placement ? placementJson(placement) : {}) })}\n`,
      );
      return;
    }
    const withDevice = rows.some((r) => r.device !== undefined);
    const t = table(
      ["op", "kind", ...(withDevice ? ["device"] : []), "count", "flops", "bytes", "Op/B"],
      ["left", "left", ...(withDevice ? (["left"] as const) : []), "right", "right", "right", "right"],
      { drop: ["count", "bytes", "flops"] },
    );
    for (const r of rows)
      t.push([
        r.name,
        r.opcode,
        ...(withDevice ? [r.device ?? ""] : []),
        String(r.count),
        si(r.flops),
        bytes(r.bytes),
        opb(r.flops, r.bytes),
      ]);
    t.push([
      "total",
      "",
      ...(withDevice ? [""] : []),
      int(rows.reduce((s, r) => s + r.count, 0)),
      si(total.flops),
      bytes(total.bytes),
      opb(total.flops, total.bytes),
    ]);
    const lines = [
      ...summary(module, model.source, model.weights.names().length > 0),
      `target    ${target.name} (system ${system.name}), passes ${ctx.ran.join(", ") || "none"}`,
      ...reportLines(ctx).map((l) => `          ${l}`),
      ...programLines,
      `workload  ${describeWorkload(w)}`,
      ...memories.map(
        (u) =>
          `memory    ${u.memory.name}: ${describeUse(u) || "nothing"} of ${bytes(u.memory.bytes)} (${((100 * (u.weights + u.kv + u.activations)) / u.memory.bytes).toFixed(1)}%)`,
      ),
      t.toString(),
      ...(placement ? placementLines([placement], reference) : []),
      "",
    ];
    process.stdout.write(lines.join("\n"));
  });
}
