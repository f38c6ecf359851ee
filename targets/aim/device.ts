/**
 * The AiM device model: a channel's commands issued in order (the AiM controller serves its
 * instructions strictly in order), each at the first cycle every rule of the standard allows
 * (AIM_RULES: the last command of each kind on the channel, or on the same bank), one command per
 * cycle. A kernel's time is the last command's completion.
 */
import { AIM_COMMANDS, AIM_RULES, completion, type AimCmd, type AimSystem } from "./standard.js";

export interface AimCommand {
  readonly cmd: AimCmd;
  /** The bank of a single-bank command. */
  readonly bank?: number;
}

export interface ChannelRun {
  readonly cycles: number;
  readonly counts: Readonly<Record<AimCmd, number>>;
  /** Cycles with a row open in some bank of the channel (active standby), of `cycles`. */
  readonly activeCycles: number;
  /** With `log`: every command and its issue cycle, in order. */
  readonly log?: readonly { readonly cmd: AimCmd; readonly at: number; readonly bank?: number }[];
}

const NCMD = AIM_COMMANDS.length;
const INDEX = Object.fromEntries(AIM_COMMANDS.map((c, i) => [c, i])) as Record<AimCmd, number>;

/** The rules by the command they constrain: [from index, latency, bank-scoped]. */
function compiled(sys: AimSystem): [number, number, boolean][][] {
  const by: [number, number, boolean][][] = AIM_COMMANDS.map(() => []);
  for (const r of AIM_RULES)
    for (const to of r.to)
      for (const from of r.from) by[INDEX[to]]!.push([INDEX[from], r.latency(sys.timing), r.bank === true]);
  return by;
}

/** Times one channel's command stream. */
export function runChannel(sys: AimSystem, commands: Iterable<AimCommand>, log = false): ChannelRun {
  const rules = compiled(sys);
  const banks = sys.bank_groups * sys.banks_per_group;
  // The last issue cycle of each command kind, on the channel and per bank (-Infinity: never).
  const last = new Float64Array(NCMD).fill(-Infinity);
  const lastBank = new Float64Array(NCMD * banks).fill(-Infinity);
  const counts = Object.fromEntries(AIM_COMMANDS.map((c) => [c, 0])) as Record<AimCmd, number>;
  let at = -1;
  let done = 0;
  const issued: { cmd: AimCmd; at: number; bank?: number }[] = [];
  // Open banks, for the active-standby cycles.
  const open = new Uint8Array(banks);
  let openCount = 0;
  let active = 0;
  let lastAt = 0;
  const set = (b: number, v: 0 | 1): void => {
    if (open[b] !== v) {
      openCount += v === 1 ? 1 : -1;
      open[b] = v;
    }
  };
  for (const c of commands) {
    const k = INDEX[c.cmd];
    let t = at + 1;
    for (const [from, lat, bank] of rules[k]!) {
      const prev = bank ? (c.bank === undefined ? -Infinity : lastBank[from * banks + c.bank]!) : last[from]!;
      if (prev + lat > t) t = prev + lat;
    }
    if (openCount > 0) active += t - lastAt;
    lastAt = t;
    if (c.cmd === "ACT16" || c.cmd === "PREA")
      for (let b = 0; b < banks; b++) set(b, c.cmd === "ACT16" ? 1 : 0);
    else if ((c.cmd === "ACT" || c.cmd === "PRE") && c.bank !== undefined)
      set(c.bank, c.cmd === "ACT" ? 1 : 0);
    at = t;
    last[k] = t;
    if (c.bank !== undefined) lastBank[k * banks + c.bank] = t;
    counts[c.cmd]++;
    if (log) issued.push({ cmd: c.cmd, at: t, ...(c.bank !== undefined ? { bank: c.bank } : {}) });
    done = Math.max(done, t + completion(c.cmd, sys.timing));
  }
  if (openCount > 0) active += done - lastAt;
  return { cycles: done, counts, activeCycles: active, ...(log ? { log: issued } : {}) };
}
