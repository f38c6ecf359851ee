/**
 * `pimc sim <program>`: runs a program file of any target in time (or prints it with --disasm)
 * through the Target contract's `load` (targets/index.ts, Executable): latency per phase call, busy
 * time per engine, and the rows of what took the time (UPMEM: the DPU kernels; the others: the ops).
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import type { CallReport, ReportColumn } from "../../targets/index.js";
import { loadProgram, runProgram } from "../driver/run.js";
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { energyJson, energyLine } from "../report/energy.js";
import { writeFileAtomic } from "./io.js";
import { bytes, int, ms, si } from "../report/format.js";
import { WORKLOAD_LIMITS as W } from "../limits.js";
import { nonNegativeIntUpTo, positiveIntUpTo } from "./options.js";

export { ms };

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
    .option("--json", "print one JSON object")
    .option("--trace <file>", "write a Chrome/Perfetto trace (trace-event JSON) of the calls to FILE")
    .action(async (path, o) => {
      const exe = await loadProgram(path);
      if (o.disasm) {
        process.stdout.write(exe.disassemble());
        return;
      }
      const phases = exe.phases.filter((x) => o.phase === undefined || x.name === o.phase);
      if (phases.length === 0) throw new UserError(`${path}: the program has no ${o.phase} phase`);
      const calls = simCalls(
        phases.map((ph) => ph.name),
        exe.limits,
        o,
      );
      // One bar step per step of each call (the setup's are not counted).
      const bar = progress();
      let run;
      try {
        bar.start(phases.reduce((n, ph) => n + ph.steps, 0));
        run = runProgram(exe, calls, {
          onStep: () => bar.tick(),
          onCall: (phase) => bar.label(`running ${phase}`),
        });
      } finally {
        bar.stop();
      }
      const tokens = (c: CallReport): number => (c.env.B ?? 1) * (c.env.S ?? 1);
      if (o.trace !== undefined)
        writeFileAtomic(o.trace, exe.trace([...(run.setup ? [run.setup] : []), ...run.calls]));
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({
            program: path,
            model: exe.model,
            target: exe.target,
            ...exe.info,
            ...(run.setup ? { setup_seconds: run.setup.seconds } : {}),
            phases: run.calls.map((c) => ({
              phase: c.phase,
              env: c.env,
              seconds: c.seconds,
              tokens_per_second: tokens(c) / c.seconds,
              ...(c.energy ? { energy: energyJson(c.energy, tokens(c), c.seconds) } : {}),
              busy: c.busy,
              rows: c.rows,
            })),
          })}\n`,
        );
        return;
      }
      const lines = [...exe.header];
      if (run.setup) lines.push(`setup     ${ms(run.setup.seconds)} once`);
      const show: Record<ReportColumn["kind"], (v: string | number) => string> = {
        text: String,
        int: (v) => int(Number(v)),
        seconds: (v) => ms(Number(v)),
        bytes: (v) => bytes(Number(v)),
        si: (v) => si(Number(v)),
      };
      for (const c of run.calls) {
        const e = c.env;
        const busy = Object.entries(exe.engines)
          .filter(([k]) => c.busy[k] !== undefined)
          .map(([k, label]) => `${label} ${ms(c.busy[k]!)}`);
        lines.push(
          `${c.phase.padEnd(9)} B=${e.B} S=${e.S} P=${e.P}: ${ms(c.seconds)} per call, ${int(Math.round(tokens(c) / c.seconds))} tokens/s`,
          `          busy: ${busy.join(", ")}`,
          ...(c.energy ? [`          energy: ${energyLine(c.energy, tokens(c), c.seconds)}`] : []),
        );
        const t = table(
          exe.columns.map((col) => col.head),
          exe.columns.map((col) => (col.kind === "text" ? "left" : "right")),
          { drop: exe.columns.filter((col) => col.drop).map((col) => col.head) },
        );
        for (const r of c.rows.slice(0, 12))
          t.push(exe.columns.map((col) => show[col.kind](r[col.key] ?? "")));
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
