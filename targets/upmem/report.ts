/**
 * What UPMEM's emulator reports of a call, in the forms pimc shows it: busy time per engine, the DPU
 * kernels' rows, and the Chrome / Perfetto trace (one process per call, a track per engine: the host
 * CPU, the host<->DPU link, and each DPU rank a command occupies).
 */
import { tracks, type TraceEvent } from "../../src/report/trace.js";
import type { RunReport } from "./machine.js";

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
