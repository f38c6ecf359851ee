/**
 * What UPMEM's emulator reports of a call, in the forms pimc shows it: busy time per engine, the DPU
 * kernels' rows, and the Chrome / Perfetto trace (one process per call, a track per engine: the host
 * CPU, the host<->DPU link, and each DPU rank a command occupies).
 */
import { tracks, type TraceEvent } from "../../src/report/trace.js";
import type { Roof } from "../../src/report/plot.js";
import { hostFlops } from "../cpu/index.js";
import type { StepOp, StepPoint } from "../index.js";
import type { RunReport } from "./machine.js";
import type { Program } from "./program.js";

/** Busy seconds per category of command. */
export function breakdown(r: RunReport): Record<string, number> {
  const out: Record<string, number> = { host: 0, to_pim: 0, from_pim: 0, kernels: 0, setup: 0 };
  for (const c of r.commands) {
    const d = c.end - c.start;
    const k =
      c.kind === "host"
        ? "host"
        : c.kind === "push" || c.kind === "broadcast"
          ? "to_pim"
          : c.kind === "pull"
            ? "from_pim"
            : c.kind === "launch"
              ? "kernels"
              : "setup";
    out[k]! += d;
  }
  return out;
}

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

const HOST = 1;
const LINK = 2;
const RANK0 = 100;

/** The trace of some phase calls, one after the other on the time axis. */
export function traceEvents(reports: readonly RunReport[], dpusPerRank: number): TraceEvent[] {
  const events: TraceEvent[] = [];
  let offset = 0;
  reports.forEach((r, i) => {
    const pid = i + 1;
    const env = Object.entries(r.env)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    events.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: `${r.phase} (${env})` } });
    const thread = tracks(events, pid);
    for (const c of r.commands) {
      const base = {
        name: c.label,
        ph: "X" as const,
        pid,
        cat: c.kind,
        ts: (offset + c.start) * 1e6,
        dur: (c.end - c.start) * 1e6,
        args: {
          id: c.id,
          bytes: c.bytes,
          flops: c.flops,
          ...(c.dpus !== undefined ? { dpus: c.dpus } : {}),
          ...(c.kernel ? { cycles: c.kernel.cycles, instructions: c.kernel.instructions } : {}),
        },
      };
      if (c.engine === "host") events.push({ ...base, tid: thread(HOST, "host CPU") });
      else if (c.engine === "link") events.push({ ...base, tid: thread(LINK, "host <-> DPU link") });
      else {
        // DPU commands occupy every rank of their range.
        const first = c.firstDpu ?? 0;
        const count = Math.max(1, c.dpus ?? 1);
        const r0 = Math.floor(first / dpusPerRank);
        const r1 = Math.floor((first + count - 1) / dpusPerRank);
        for (let rank = r0; rank <= r1; rank++)
          events.push({ ...base, tid: thread(RANK0 + rank, `DPU rank ${rank}`) });
      }
    }
    offset += r.seconds;
  });
  return events;
}

export function traceJson(reports: readonly RunReport[], dpusPerRank: number): string {
  return JSON.stringify({ traceEvents: traceEvents(reports, dpusPerRank), displayTimeUnit: "ms" });
}

/** Commands of a report grouped into rows: host ops by opcode, transfers by kind, kernels by name. */
export function benchRows(r: RunReport, p: Program): StepOp[] {
  const rows = new Map<string, StepOp & { peak_fraction: number; atPeak: number }>();
  const h = p.system.host;
  for (const c of r.commands) {
    let name: string;
    let device: string;
    // Seconds the command would take at the device's peak (its roofline).
    let atPeak = 0;
    if (c.kind === "host") {
      name = c.label.replace(/^host /, "");
      device = "host";
      atPeak = Math.max(c.flops / hostFlops(h), c.bytes / h.memory_bandwidth);
    } else if (c.kind === "launch") {
      name = c.label.replace(/^launch /, "");
      device = `${c.dpus ?? 0} DPUs`;
      // A DPU's peak: one instruction per cycle, or its DMA engine streaming at 1 / beta bytes per cycle.
      const k = c.kernel!;
      atPeak = Math.max(k.instructions, k.dmaBytes * p.system.dma.beta) / p.system.frequency;
    } else if (c.kind === "alloc" || c.kind === "load") {
      // dpu_alloc / dpu_load: synchronous runtime calls on the host.
      name = c.kind;
      device = "host";
    } else {
      name = c.kind === "pull" ? "from PIM" : c.kind === "push" || c.kind === "broadcast" ? "to PIM" : c.kind;
      device = "link";
    }
    const key = `${device}\u0000${name}`;
    const row = rows.get(key) ?? {
      name,
      device,
      calls: 0,
      seconds: 0,
      bytes: 0,
      flops: 0,
      peak_fraction: 0,
      atPeak: 0,
    };
    row.calls++;
    row.seconds += c.end - c.start;
    row.bytes += c.bytes;
    row.flops += c.flops;
    row.atPeak += atPeak;
    rows.set(key, row);
  }
  return (
    [...rows.values()]
      // Transfers have no roof of their own (the link).
      .map(({ atPeak, peak_fraction: _, ...row }) =>
        row.device === "link" ? row : { ...row, peak_fraction: row.seconds > 0 ? atPeak / row.seconds : 0 },
      )
      .sort((a, b) => b.seconds - a.seconds)
  );
}

/** The roofs of the roofline plot, with the peaks `benchRows` measures `peak_fraction` against. */
export function benchRoofs(sys: Program["system"]): Roof[] {
  const dpuCycles = sys.dpus * sys.frequency;
  return [
    { device: "host", flops: hostFlops(sys.host), bandwidth: sys.host.memory_bandwidth },
    // Every DPU retiring one instruction per cycle, or its DMA engine streaming 1 / beta bytes per cycle.
    { device: `${sys.dpus} DPUs`, flops: dpuCycles, bandwidth: dpuCycles / sys.dma.beta, unit: "instr/s" },
  ];
}

/**
 * The DPU kernels of a step for the roofline in instructions: instructions and DMA bytes of every
 * DPU the kernel ran on, on the roof of the whole device (`benchRoofs`).
 */
export function dpuPoints(r: RunReport, sys: Program["system"]): StepPoint[] {
  return kernelRows(r).map((k) => ({
    name: k.kernel,
    device: `${sys.dpus} DPUs`,
    seconds: k.seconds,
    bytes: k.dma_bytes * k.dpus,
    flops: k.instructions * k.dpus,
  }));
}
