/**
 * A Chrome / Perfetto trace of one pseudo-channel's DRAM commands (the slowest one of a kernel run):
 * one process per run, one track per bank of rank 0 (all-bank commands on the track of the bank that
 * stands for its parity), one for other ranks. Times in microseconds at tCK; a column command lasts
 * its burst on the data bus (BL / 2 cycles), the others one command slot.
 */
import { tracks, type TraceEvent } from "../../src/report/trace.js";
import type { CommandLog } from "./controller.js";
import { COMMANDS, type HbmPimSystem } from "./standard.js";

export interface TracedRun {
  readonly name: string;
  readonly log: CommandLog;
}

export function commandTrace(sys: HbmPimSystem, runs: readonly TracedRun[]): TraceEvent[] {
  const events: TraceEvent[] = [];
  const us = sys.timing.tCK * 1e6;
  runs.forEach((run, i) => {
    const pid = i + 1;
    events.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: run.name } });
    const track = tracks(events, pid);
    const { log } = run;
    for (let k = 0; k < log.length; k++) {
      const cmd = COMMANDS[log.cmd[k]!]!;
      const rank = log.rank[k]!;
      const bank = log.bg[k]! * sys.banks_per_group + log.bank[k]!;
      const tid =
        rank === 0 && cmd !== "REF"
          ? track(1 + bank, `bank group ${log.bg[k]} bank ${log.bank[k]}`)
          : track(100 + rank, `rank ${rank}`);
      const column = cmd === "RD" || cmd === "WR";
      events.push({
        name: column
          ? `${cmd} r${log.row[k]} c${log.col[k]}`
          : log.row[k]! >= 0
            ? `${cmd} r${log.row[k]}`
            : cmd,
        ph: "X",
        pid,
        tid,
        cat: cmd,
        ts: log.cycle[k]! * us,
        dur: (column ? sys.timing.BL / 2 : 1) * us,
        args: { cycle: log.cycle[k]!, ...(log.req[k]! >= 0 ? { request: log.req[k]! } : {}) },
      });
    }
  });
  return events;
}
