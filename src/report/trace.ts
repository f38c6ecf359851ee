/**
 * Chrome / Perfetto trace export (the JSON trace-event format: https://docs.google.com/document/d/
 * 1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU): one process per phase call, one track (thread) per
 * engine. Times in microseconds; events are complete events (`ph: "X"`) with their bytes and flops
 * as args. Targets with an emulator trace their own engines (UPMEM: targets/upmem/report.ts); calls
 * timed op by op (a device or cost model) are traced here, a track per device, and where the target
 * models energy each op's joules in its args and a power counter (`ph: "C"`, watts) per call.
 */
import type { CallTiming } from "../../targets/index.js";

export interface TraceEvent {
  readonly name: string;
  readonly ph: "X" | "M" | "C";
  readonly pid: number;
  readonly tid: number;
  readonly ts?: number;
  readonly dur?: number;
  readonly cat?: string;
  readonly args?: Readonly<Record<string, string | number>>;
}

/**
 * Names tracks (threads) of process `pid` as they are first used: returns a function that pushes
 * the track's name and sort index once and gives back its id.
 */
export function tracks(events: TraceEvent[], pid: number): (tid: number, name: string) => number {
  const named = new Set<number>();
  return (tid, name) => {
    if (!named.has(tid)) {
      named.add(tid);
      events.push({ name: "thread_name", ph: "M", pid, tid, args: { name } });
      events.push({ name: "thread_sort_index", ph: "M", pid, tid, args: { sort_index: tid } });
    }
    return tid;
  };
}

/**
 * The trace of calls timed op by op (a device model's or a cost model's CallTiming): one process per
 * call, one track per device, the ops one after the other as the timing adds them up.
 */
export function timingTraceEvents(
  calls: readonly {
    readonly phase: string;
    readonly env: Readonly<Record<string, number>>;
    readonly timing: CallTiming;
  }[],
): TraceEvent[] {
  const events: TraceEvent[] = [];
  let offset = 0;
  calls.forEach(({ phase, env, timing }, i) => {
    const pid = i + 1;
    const dims = Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    events.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: `${phase} (${dims})` } });
    const thread = tracks(events, pid);
    const ids = new Map<string, number>();
    let t = offset;
    for (const o of timing.ops) {
      const id = ids.get(o.device) ?? ids.size + 1;
      ids.set(o.device, id);
      const name = o.op.results[0]?.name ?? o.op.opcode;
      events.push({
        name,
        ph: "X",
        pid,
        tid: thread(id, o.device),
        cat: o.op.opcode,
        ts: t * 1e6,
        dur: o.seconds * 1e6,
        args: { bytes: o.bytes, flops: o.flops, ...(o.joules !== undefined ? { joules: o.joules } : {}) },
      });
      // The power of each op while it runs (ops run one after the other), back to 0 after the call.
      if (o.joules !== undefined && o.seconds > 0)
        events.push({
          name: "power",
          ph: "C",
          pid,
          tid: 0,
          ts: t * 1e6,
          args: { watts: o.joules / o.seconds },
        });
      t += o.seconds;
    }
    if (timing.energy) events.push({ name: "power", ph: "C", pid, tid: 0, ts: t * 1e6, args: { watts: 0 } });
    offset += timing.seconds;
  });
  return events;
}

export function timingTraceJson(calls: Parameters<typeof timingTraceEvents>[0]): string {
  return JSON.stringify({ traceEvents: timingTraceEvents(calls), displayTimeUnit: "ms" });
}
