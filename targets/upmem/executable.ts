/**
 * An UPMEM program file loaded to run (the Target contract's `load`): decoded and validated, set up
 * once on the emulator (allocation, kernel load, weight upload), then each call emulated command by
 * command, reported as every target reports a call (busy engines, the DPU kernels' rows, a trace).
 */
import { UserError } from "../../src/errors.js";
import type { CallReport, Executable } from "../index.js";
import { decodeProgram, MAGIC } from "./codec.js";
import { disassemble } from "./disasm.js";
import { ProgramError } from "./errors.js";
import { UpmemMachine, type RunReport } from "./machine.js";
import { benchRoofs, benchRows, breakdown, dpuPoints, kernelRows, traceJson } from "./report.js";
import type { Program } from "./program.js";

const isUpmem = (bytes: Uint8Array): boolean =>
  bytes.length >= MAGIC.length && [...MAGIC].every((ch, i) => bytes[i] === ch.charCodeAt(0));

const report = (r: RunReport, p: Program): CallReport => {
  const ops = benchRows(r, p);
  return {
    phase: r.phase,
    env: r.env,
    seconds: r.seconds,
    busy: breakdown(r),
    rows: kernelRows(r).map((k) => ({ ...k })),
    ops,
    // Host ops on the host's roof, the kernels in DPU instructions on the DPUs' (benchRoofs).
    points: [...ops.filter((o) => o.device === "host"), ...dpuPoints(r, p.system)],
    native: r,
  };
};

/**
 * What the program does wrong while it runs (decoding checked its fields), or a call beyond its
 * limits: the one line names the file.
 */
function named<T>(file: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof UserError) || e.message.startsWith(`${file}: `)) throw e;
    throw e instanceof ProgramError
      ? new ProgramError(`${file}: ${e.message}`)
      : new UserError(`${file}: ${e.message}`);
  }
}

export function loadUpmem(bytes: Uint8Array, file: string): Executable | undefined {
  if (!isUpmem(bytes)) return undefined;
  const p = decodeProgram(bytes, file);
  return {
    target: "upmem",
    model: p.model,
    limits: p.limits,
    phases: p.phases.map((ph) => ({ name: ph.name, steps: ph.commands.length })),
    header: [
      `program   ${p.model} on upmem: ${p.system.dpus} DPUs at ${p.system.frequency / 1e6} MHz, ${p.kernels.length} kernels`,
    ],
    title: `${p.model} on upmem (${p.system.dpus} DPUs at ${p.system.frequency / 1e6} MHz)`,
    roofs: benchRoofs(p.system),
    engines: { host: "host", to_pim: "to PIM", from_pim: "from PIM", kernels: "DPU kernels" },
    columns: [
      { key: "kernel", head: "kernel", kind: "text" },
      { key: "launches", head: "launches", kind: "int", drop: true },
      { key: "dpus", head: "DPUs", kind: "int", drop: true },
      { key: "seconds", head: "time", kind: "seconds" },
      { key: "instructions", head: "instructions/DPU", kind: "int" },
      { key: "dma_bytes", head: "DMA bytes/DPU", kind: "int", drop: true },
    ],
    info: { dpus: p.system.dpus },
    native: p,
    disassemble: () => disassemble(p),
    open(opts = {}) {
      if ((opts.subBatches ?? 1) > 1)
        throw new UserError(
          "sub-batch interleaving needs a target that times ops from its device model (hbm-pim); an upmem program runs its commands as emitted",
        );
      let counting = false;
      const machine = new UpmemMachine(p, {
        functional: false,
        onCommand: () => void (counting && opts.onStep?.()),
      });
      const setup = named(file, () => report(machine.setup(), p));
      counting = true;
      return {
        setup,
        call: (phase, env) =>
          named(file, () => {
            machine.reset();
            return report(machine.run(phase, undefined, env).report, p);
          }),
      };
    },
    trace: (reports) =>
      traceJson(
        reports.map((c) => c.native as RunReport),
        p.system.dpus_per_rank,
      ),
  };
}
