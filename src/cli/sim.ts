/**
 * `pimc sim <program>`: runs a compiled UPMEM program on the emulator in time (or prints it with
 * --disasm): latency per phase call, the breakdown into host compute, transfers and DPU kernels, and
 * the kernels' table.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { disassemble } from "../../targets/upmem/disasm.js";
import { ProgramError } from "../../targets/upmem/errors.js";
import type { RunReport } from "../../targets/upmem/machine.js";
import { breakdown, readProgramFile, simulate, simulateIr, timingRows as opRows } from "../driver/run.js";
import type { IrProgram } from "../exec/ir-program.js";
import { printModule } from "../ir/printer.js";
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { timingTraceJson, traceJson } from "../report/trace.js";
import { writeFileAtomic } from "./io.js";
import { bytes, int, ms, si } from "../report/format.js";
import { WORKLOAD_LIMITS as W } from "../limits.js";
import { nonNegativeIntUpTo, positiveIntUpTo } from "./options.js";

export { ms };

export interface KernelRow {
  kernel: string;
  launches: number;
  dpus: number;
  seconds: number;
  cycles: number;
  instructions: number;
  dma_bytes: number;
}

export function kernelRows(r: RunReport): KernelRow[] {
  const rows = new Map<string, KernelRow>();
  for (const c of r.commands) {
    if (c.kind !== "launch" || !c.kernel) continue;
    const row = rows.get(c.label) ?? {
      kernel: c.label.replace(/^launch /, ""),
      launches: 0,
      dpus: c.dpus ?? 0,
      seconds: 0,
      cycles: 0,
      instructions: 0,
      dma_bytes: 0,
    };
    row.launches++;
    row.seconds += c.end - c.start;
    row.cycles += c.kernel.cycles;
    row.instructions += c.kernel.instructions;
    row.dma_bytes += c.kernel.dmaBytes;
    rows.set(c.label, row);
  }
  return [...rows.values()].sort((a, b) => b.seconds - a.seconds);
}

export function simCommand() {
  return new Command("sim")
    .description("run a compiled program on the emulator (timing) and report where the time goes")
    .argument("<program>", "program file written by `pimc compile -o`")
    .option("--disasm", "print the program as text instead of running it")
    .addOption(
      new Option("--phase <phase>", "the phase to run (default: each)").choices(["prefill", "decode"]),
    )
    .option("--batch <n>", "sequences per call (default: the program's limit)", positiveIntUpTo(W.batch))
    .option(
      "--seq <n>",
      "tokens per call (default: the program's limit for prefill, 1 for decode)",
      positiveIntUpTo(W.prompt),
    )
    .option(
      "--context <n>",
      "decode: tokens already cached (default: as many as the program allows)",
      nonNegativeIntUpTo(W.context),
    )
    .option("--detailed", "time every DPU of every launch instead of one per launch")
    .option("--json", "print one JSON object")
    .option("--trace <file>", "write a Chrome/Perfetto trace (trace-event JSON) of the calls to FILE")
    .action(async (path, o) => {
      const file = readProgramFile(path);
      if (file.kind === "ir") {
        await simIr(path, file.ir, o);
        return;
      }
      const p = file.program;
      if (o.disasm) {
        process.stdout.write(disassemble(p));
        return;
      }
      const bar = progress();
      const lim = p.limits;
      const phases = p.phases.filter((x) => o.phase === undefined || x.name === o.phase);
      if (phases.length === 0) throw new UserError(`${path}: the program has no ${o.phase} phase`);
      // One step per command of each phase run (the setup's commands are not counted).
      let setup, results;
      const calls = simCalls(
        phases.map((ph) => ph.name),
        lim,
        o,
      );
      try {
        bar.start(phases.reduce((n, ph) => n + ph.commands.length, 0));
        const run = simulate(p, calls, {
          detailed: o.detailed === true,
          onCommand: () => bar.tick(),
          onCall: (phase) => bar.label(`emulating ${phase}${o.detailed ? " (every DPU)" : ""}`),
        });
        setup = run.setup;
        results = run.calls.map((report, i) => ({ report, tokens: calls[i]!.env.B * calls[i]!.env.S }));
      } catch (e) {
        // What the program does wrong while it runs (decoding checked its fields), or a call beyond
        // its limits: the line names the file.
        if (!(e instanceof UserError) || e.message.startsWith(`${path}: `)) throw e;
        throw e instanceof ProgramError
          ? new ProgramError(`${path}: ${e.message}`)
          : new UserError(`${path}: ${e.message}`);
      } finally {
        bar.stop();
      }
      if (o.trace !== undefined)
        writeFileAtomic(o.trace, traceJson([setup, ...results.map((x) => x.report)], p.system.dpus_per_rank));
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({
            program: path,
            model: p.model,
            dpus: p.system.dpus,
            detailed: o.detailed === true,
            setup_seconds: setup.seconds,
            phases: results.map(({ report, tokens }) => ({
              phase: report.phase,
              env: report.env,
              seconds: report.seconds,
              tokens_per_second: tokens / report.seconds,
              busy: breakdown(report),
              kernels: kernelRows(report),
            })),
          })}\n`,
        );
        return;
      }
      const lines = [
        `program   ${p.model} on upmem: ${p.system.dpus} DPUs at ${p.system.frequency / 1e6} MHz, ${p.kernels.length} kernels`,
        `setup     ${ms(setup.seconds)} once (alloc, kernel load, weight upload)`,
      ];
      for (const { report, tokens } of results) {
        const b = breakdown(report);
        const e = report.env;
        lines.push(
          `${report.phase.padEnd(9)} B=${e.B} S=${e.S} P=${e.P}: ${ms(report.seconds)} per call, ${int(Math.round(tokens / report.seconds))} tokens/s`,
          `          busy: host ${ms(b.host!)}, to PIM ${ms(b.to_pim!)}, from PIM ${ms(b.from_pim!)}, DPU kernels ${ms(b.kernels!)}`,
        );
        const t = table(
          ["kernel", "launches", "DPUs", "time", "instructions/DPU", "DMA bytes/DPU"],
          ["left", "right", "right", "right", "right", "right"],
          { drop: ["DPUs", "launches", "DMA bytes/DPU"] },
        );
        for (const k of kernelRows(report).slice(0, 12))
          t.push([
            k.kernel,
            String(k.launches),
            String(k.dpus),
            ms(k.seconds),
            int(k.instructions),
            int(k.dma_bytes),
          ]);
        lines.push(t.toString());
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}

/** The calls `pimc sim` runs: each phase of the program (or --phase) at the options' sizes, else its limits. */
function simCalls(
  phases: readonly string[],
  lim: { readonly B?: number; readonly S?: number; readonly T?: number },
  o: { batch?: number; seq?: number; context?: number },
): { phase: string; env: { B: number; S: number; P: number } }[] {
  return phases.map((phase) => {
    const B = o.batch ?? lim.B ?? 1;
    const S = o.seq ?? (phase === "decode" ? 1 : (lim.S ?? 1));
    const P = phase === "decode" ? (o.context ?? Math.max(0, (lim.T ?? S) - S)) : 0;
    return { phase, env: { B, S, P } };
  });
}

/**
 * `pimc sim` of a target without code generation: its program is the compiled IR and its system,
 * each call timed by the target's device model (or its cost model), as `pimc bench` times a step.
 */
async function simIr(
  path: string,
  ir: IrProgram,
  o: {
    disasm?: boolean;
    phase?: string;
    batch?: number;
    seq?: number;
    context?: number;
    detailed?: boolean;
    json?: boolean;
    trace?: string;
  },
): Promise<void> {
  const where = ir.system ? `${ir.system.name} (${ir.system.file})` : "its default system";
  if (o.disasm) {
    process.stdout.write(`// ${ir.model} for ${ir.target} on ${where}\n${printModule(ir.module)}`);
    return;
  }
  if (o.detailed)
    throw new UserError(
      `--detailed times every DPU of an UPMEM program; ${path} is a ${ir.target} program, timed by its device model`,
    );
  const phases = ir.module.funcs.map((f) => f.name).filter((n) => o.phase === undefined || n === o.phase);
  if (phases.length === 0) throw new UserError(`${path}: the program has no ${o.phase} phase`);
  const calls = simCalls(phases, ir.limits, o);
  const { target, system, calls: timings } = await simulateIr(ir, calls);
  const results = calls.map((c, i) => ({ ...c, timing: timings[i]!, tokens: c.env.B * c.env.S }));
  if (o.trace !== undefined)
    writeFileAtomic(
      o.trace,
      timingTraceJson(results.map((r) => ({ phase: r.phase, env: r.env, timing: r.timing }))),
    );
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({
        program: path,
        model: ir.model,
        target: target.name,
        system: system.name,
        phases: results.map(({ phase, env, timing, tokens }) => ({
          phase,
          env,
          seconds: timing.seconds,
          tokens_per_second: tokens / timing.seconds,
          busy: timing.busy,
          ops: opRows(timing),
        })),
      })}\n`,
    );
    return;
  }
  const lines = [`program   ${ir.model} on ${target.name} (${where}): ${target.summary}`];
  for (const { phase, env, timing, tokens } of results) {
    const busy = Object.entries(timing.busy).map(([d, s]) => `${d} ${ms(s)}`);
    lines.push(
      `${phase.padEnd(9)} B=${env.B} S=${env.S} P=${env.P}: ${ms(timing.seconds)} per call, ${int(Math.round(tokens / timing.seconds))} tokens/s`,
      `          busy: ${busy.join(", ")}`,
    );
    const t = table(
      ["op", "device", "calls", "time", "flops", "bytes"],
      ["left", "left", "right", "right", "right", "right"],
      {
        drop: ["calls", "flops", "bytes"],
      },
    );
    for (const r of opRows(timing).slice(0, 12))
      t.push([r.name, r.device, int(r.calls), ms(r.seconds), si(r.flops), bytes(r.bytes)]);
    lines.push(t.toString());
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}
