/**
 * `pimc kernel <op> <size> [--system FILE]`: one HBM-PIM kernel on the emulator at DRAM-command level,
 * in PIM mode and streamed through the normal read path without PIM (the PIMSimulator benchmark):
 * cycles, time, commands per pseudo-channel and the speedup. `gemv NxK` (FP16 weights [N, K]),
 * `add|mul N`, `relu N` (N elements; K and M suffixes are powers of two: 1M = 1,048,576).
 */
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { loadDescription, selectSystem } from "../frontend/dsl/index.js";
import { validateSystem } from "../frontend/system.js";
import { int } from "../report/format.js";
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { RD, WR } from "../../targets/hbm-pim/controller.js";
import { runPimKernel, runStream, type KernelResult } from "../../targets/hbm-pim/device.js";
import {
  eltwiseKernel,
  eltwiseLayout,
  gemvKernel,
  gemvLayout,
  type PimKernel,
  type StreamPhase,
} from "../../targets/hbm-pim/kernels.js";
import {
  DEFAULT_SYSTEM,
  reservedRows,
  zHbmPimSystem,
  type HbmPimSystem,
} from "../../targets/hbm-pim/standard.js";
import { COMMANDS } from "../../targets/hbm-pim/standard.js";
import { ms } from "./sim.js";
import { writeFileAtomic } from "./io.js";
import { SYSTEM_KEY_LIMITS } from "../limits.js";
import { positiveIntUpTo } from "./options.js";
import { commandTrace } from "../../targets/hbm-pim/trace.js";

const OPS = ["gemv", "add", "mul", "relu"] as const;
type Op = (typeof OPS)[number];

/** 4096, 4K, 1M (powers of two). */
function count(v: string, what: string): number {
  const m = /^(\d+)([KkMm]?)$/.exec(v.trim());
  const x = m ? Number(m[1]) * (m[2] === "" ? 1 : /k/i.test(m[2]!) ? 1024 : 1024 * 1024) : NaN;
  if (!m || !Number.isSafeInteger(x) || x <= 0)
    throw new UserError(`${what}: expected a positive integer (K and M suffixes allowed), got "${v}"`);
  return x;
}

export function loadHbmSystem(spec: string | undefined): { sys: HbmPimSystem; name: string } {
  if (spec === undefined) return { sys: DEFAULT_SYSTEM, name: "hbm_pim_default" };
  const m = /^(.*?)(?::(\w+))?$/.exec(spec)!;
  const decl = selectSystem(loadDescription(m[1]!), m[2]);
  if (decl.target !== "hbm-pim")
    throw new UserError(`${m[1]}: system ${decl.name} is for target ${decl.target}, not hbm-pim`);
  return { sys: validateSystem(decl, zHbmPimSystem), name: decl.name };
}

/** Rows below the lowest reserved row (park, mode and register rows). */
const dataRows = (sys: HbmPimSystem): number => Math.min(...reservedRows(sys), sys.rows);

interface Plan {
  readonly what: string;
  readonly kernel: PimKernel;
  /** The same data through the normal path: phases of reads, then the result's writes. */
  readonly stream: StreamPhase[];
  /** FP16 operations of the kernel (for the rate). */
  readonly flops: number;
}

function plan(sys: HbmPimSystem, op: Op, size: string): Plan {
  if (op === "gemv") {
    const m = /^(\w+)x(\w+)$/i.exec(size.trim());
    if (!m) throw new UserError(`gemv: expected a size NxK (outputs x inputs), got "${size}"`);
    const n = count(m[1]!, "gemv N");
    const k = count(m[2]!, "gemv K");
    const l = gemvLayout(sys, n, k);
    if (l.row0 + l.rows > dataRows(sys))
      throw new UserError(
        `gemv ${n}x${k}: needs ${l.rows} rows per bank, more than the ${dataRows(sys)} below the reserved rows`,
      );
    const w = 2 * n * k;
    return {
      what: `gemv ${n}x${k} fp16`,
      kernel: gemvKernel(sys, l),
      stream: [
        { kind: RD, bytes: w, at: 0 },
        { kind: RD, bytes: 2 * k, at: w },
        { kind: WR, bytes: 2 * n, at: w + 2 * k, fence: true },
      ],
      flops: 2 * n * k,
    };
  }
  const n = count(size, op);
  const l = eltwiseLayout(sys, n);
  if (l.rows[2] + l.rowsPerOperand > dataRows(sys))
    throw new UserError(
      `${op} ${n}: needs ${3 * l.rowsPerOperand} rows per bank, more than the ${dataRows(sys)} below the reserved rows`,
    );
  const b = 2 * n;
  const inputs = op === "relu" ? 1 : 2;
  return {
    what: `${op} ${n} fp16`,
    kernel: eltwiseKernel(sys, op, l),
    stream: [
      { kind: RD, bytes: inputs * b, at: 0 },
      { kind: WR, bytes: b, at: inputs * b, fence: true },
    ],
    flops: op === "relu" ? 0 : n,
  };
}

export function kernelCommand() {
  return new Command("kernel")
    .description(
      "run one HBM-PIM kernel (gemv NxK, add|mul|relu N) at DRAM-command level, with PIM and streamed without it",
    )
    .argument("<op>", `kernel: ${OPS.join(", ")}`)
    .argument("<size>", "gemv: NxK (outputs x inputs); element-wise: N (e.g. 1M = 2^20)")
    .option(
      "--system <file>",
      "hbm-pim system description FILE.pim[:NAME] (default: PIMSimulator's 64 pseudo-channels)",
    )
    .option(
      "--detailed",
      "time every pseudo-channel's controller (default: one, identical ones fast-forwarded)",
    )
    .option("--no-baseline", "skip the non-PIM run")
    .option(
      "--channels <n>",
      "pseudo-channels (overrides the system's)",
      positiveIntUpTo(SYSTEM_KEY_LIMITS.pseudo_channels!),
    )
    .option("--trace <file>", "write a Chrome/Perfetto trace of one pseudo-channel's DRAM commands")
    .option("--json", "print one JSON object")
    .action((opArg, size, o) => {
      if (!(OPS as readonly string[]).includes(opArg))
        throw new UserError(`unknown kernel "${opArg}" (available: ${OPS.join(", ")})`);
      const op = opArg as Op;
      const loaded = loadHbmSystem(o.system);
      const sys =
        o.channels === undefined
          ? loaded.sys
          : zHbmPimSystem.parse({ ...loaded.sys, pseudo_channels: o.channels });
      const name =
        o.channels === undefined ? loaded.name : `${loaded.name} with ${o.channels} pseudo-channels`;
      const p = plan(sys, op, size);
      const t0 = performance.now();
      // Every pseudo-channel's controller is timed with --detailed (one step each); else one or a few.
      const bar = progress();
      let pim, base;
      try {
        const run = { detailed: o.detailed === true, onChannel: () => bar.tick() };
        if (o.detailed) bar.start(sys.pseudo_channels * (o.baseline === false ? 1 : 2));
        bar.label(`timing ${p.what} with PIM`);
        pim = runPimKernel(sys, p.kernel, run);
        bar.label(`timing ${p.what} without PIM`);
        base = o.baseline === false ? undefined : runStream(sys, p.stream, run);
      } finally {
        bar.stop();
      }
      const wall = (performance.now() - t0) / 1e3;
      if (o.trace !== undefined) {
        const runs = [
          { name: `${p.what}, PIM`, log: pim.log },
          ...(base ? [{ name: `${p.what}, non-PIM`, log: base.log }] : []),
        ];
        writeFileAtomic(
          o.trace,
          JSON.stringify({ traceEvents: commandTrace(sys, runs), displayTimeUnit: "ns" }),
        );
      }
      const row = (r: KernelResult) => ({
        cycles: r.cycles,
        seconds: r.seconds,
        commands: r.counts,
        controllers_timed: r.timed,
        ...(r.perChannel ? { per_channel: r.perChannel } : {}),
      });
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({
            kernel: p.what,
            system: name,
            pseudo_channels: sys.pseudo_channels,
            pim: row(pim),
            ...(base ? { non_pim: row(base), speedup: base.cycles / pim.cycles } : {}),
            emulation_seconds: wall,
          })}\n`,
        );
        return;
      }
      const units = sys.pseudo_channels * sys.pim.units;
      const lines = [
        `kernel   ${p.what} on ${name}: ${sys.pseudo_channels} pseudo-channels, ${units} PIM units, tCK ${sys.timing.tCK * 1e9} ns`,
        `         ${p.kernel.summary}; CRF ${p.kernel.crf.length} instructions`,
      ];
      const t = table(
        ["mode", "cycles", "time", ...COMMANDS, "GFLOP/s"],
        ["left", ...new Array<"right">(8).fill("right")],
        { drop: ["GFLOP/s", ...COMMANDS] },
      );
      const add = (label: string, r: KernelResult, flops: number) =>
        t.push([
          label,
          int(r.cycles),
          ms(r.seconds),
          ...COMMANDS.map((c) => int(r.counts[c])),
          flops > 0 ? (flops / r.seconds / 1e9).toFixed(1) : "-",
        ]);
      add("PIM", pim, p.flops);
      if (base) add("non-PIM", base, 0);
      lines.push(t.toString());
      if (base) lines.push(`speedup  ${(base.cycles / pim.cycles).toFixed(2)}x with PIM`);
      lines.push(
        `emulated in ${ms(wall)} (${pim.timed + (base?.timed ?? 0)} controllers timed${o.detailed ? ", detailed" : ""}); commands per pseudo-channel`,
      );
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}
