/**
 * The AiM device model: each channel's commands issued in order (the AiM controller serves its
 * instructions strictly in order), each at the first cycle every rule of the standard allows
 * (AIM_RULES: the last command of each kind on the channel, or on the same bank), one command per
 * cycle. A blocking instruction (RD_MAC, RD_AF, SYNC, the end of a trace) is a fence: the host's DMA
 * sends nothing more to any channel until it has completed on all of its channels, and resumes the
 * cycle after (the AiM simulator's aim_DRAM_system.cpp). A kernel's time is the last completion.
 */
import { AIM_COMMANDS, AIM_RULES, completion, type AimCmd, type AimSystem } from "./standard.js";

export interface AimCommand {
  readonly cmd: AimCmd;
  /** The bank of a single-bank command. */
  readonly bank?: number;
  /**
   * A TMOD's next command: the controller switches mode for a request whose command is ready, so
   * the switch waits for the rules of the command after it too.
   */
  readonly ahead?: AimCommand;
  /** The same command this many times in a row (an instruction's columns); default 1. */
  readonly repeat?: number;
}

/** A blocking instruction's end: later commands wait until the channel is done, plus a cycle. */
export const FENCE = { fence: true } as const;
export type AimStep = AimCommand | typeof FENCE;

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

/**
 * The rules by the command they constrain, per system timing: for each command, [from, latency]
 * pairs on the channel and on the same bank (the largest latency of each pair), its completion
 * latency, and what it does to the banks' rows.
 */
interface Compiled {
  readonly channel: Int32Array[];
  readonly bank: Int32Array[];
  readonly completion: Int32Array;
  /** 1: every bank opens, 2: every bank closes, 3: its bank opens, 4: its bank closes. */
  readonly rows: Uint8Array;
  /** Cycles between a command and the same command again: on the channel, and on the same bank. */
  readonly again: Int32Array;
  readonly againBank: Int32Array;
}
const compiledRules = new WeakMap<AimSystem["timing"], Compiled>();
function compiled(sys: AimSystem): Compiled {
  let c = compiledRules.get(sys.timing);
  if (!c) {
    const pairs = (bank: boolean): Int32Array[] =>
      AIM_COMMANDS.map((to) => {
        const worst = new Map<number, number>();
        for (const r of AIM_RULES)
          if ((r.bank === true) === bank && r.to.includes(to))
            for (const from of r.from)
              worst.set(INDEX[from], Math.max(worst.get(INDEX[from]) ?? -Infinity, r.latency(sys.timing)));
        return Int32Array.from([...worst].flat());
      });
    const effect: Partial<Record<AimCmd, number>> = { ACT16: 1, PREA: 2, WRA16: 2, ACT: 3, PRE: 4 };
    const channel = pairs(false);
    const bank = pairs(true);
    const self = (p: Int32Array, k: number): number => {
      let v = 1;
      for (let i = 0; i < p.length; i += 2) if (p[i] === k) v = Math.max(v, p[i + 1]!);
      return v;
    };
    c = {
      channel,
      bank,
      again: Int32Array.from(AIM_COMMANDS.map((_, k) => self(channel[k]!, k))),
      againBank: Int32Array.from(AIM_COMMANDS.map((_, k) => self(bank[k]!, k))),
      completion: Int32Array.from(AIM_COMMANDS.map((k) => completion(k, sys.timing))),
      rows: Uint8Array.from(AIM_COMMANDS.map((k) => effect[k] ?? 0)),
    };
    compiledRules.set(sys.timing, c);
  }
  return c;
}

/** One channel's timing state: the last issue of each command kind, per bank, and open banks. */
export class Channel {
  private readonly rules: Compiled;
  private readonly banks: number;
  private readonly last = new Float64Array(NCMD).fill(-Infinity);
  private readonly lastBank: Float64Array;
  private readonly counts = new Float64Array(NCMD);
  private readonly open: Uint8Array;
  private readonly issued: { cmd: AimCmd; at: number; bank?: number }[] | undefined;
  private openCount = 0;
  private active = 0;
  private lastAt = 0;
  /** The last command's issue cycle. */
  at = -1;
  /** The cycle every command issued so far has completed by. */
  done = 0;

  constructor(sys: AimSystem, log = false) {
    this.rules = compiled(sys);
    this.banks = sys.bank_groups * sys.banks_per_group;
    this.lastBank = new Float64Array(NCMD * this.banks).fill(-Infinity);
    this.open = new Uint8Array(this.banks);
    this.issued = log ? [] : undefined;
  }

  private set(b: number, v: 0 | 1): void {
    if (this.open[b] !== v) {
      this.openCount += v === 1 ? 1 : -1;
      this.open[b] = v;
    }
  }

  /** The first cycle from `t` the rules allow command `k` (on `bank`, for single-bank rules). */
  private ready(k: number, bank: number | undefined, t: number): number {
    const ch = this.rules.channel[k]!;
    for (let i = 0; i < ch.length; i += 2) {
      const v = this.last[ch[i]!]! + ch[i + 1]!;
      if (v > t) t = v;
    }
    if (bank !== undefined) {
      const bk = this.rules.bank[k]!;
      for (let i = 0; i < bk.length; i += 2) {
        const v = this.lastBank[bk[i]! * this.banks + bank]! + bk[i + 1]!;
        if (v > t) t = v;
      }
    }
    return t;
  }

  /** Cycles between the issues of a repeated command `c` (after the first: only its own rules bind). */
  stride(c: AimCommand): number {
    const k = INDEX[c.cmd];
    return Math.max(this.rules.again[k]!, c.bank !== undefined ? this.rules.againBank[k]! : 1);
  }

  /** The first cycle from `from` (and after the last command) the rules allow `c` to issue. */
  earliest(c: AimCommand, from = 0): number {
    let t = this.ready(INDEX[c.cmd], c.bank, Math.max(this.at + 1, from));
    if (c.ahead) t = this.ready(INDEX[c.ahead.cmd], c.ahead.bank, t);
    return t;
  }

  /**
   * Issues `c` (`repeat` times) at the first cycle its rules allow, not before `notBefore`; returns
   * the first issue's cycle (the others follow every `stride(c)` cycles).
   */
  issue(c: AimCommand, notBefore = 0): number {
    const first = this.once(c, notBefore);
    const n = c.repeat ?? 1;
    if (n > 1) {
      // Every other rule held at the first issue and still holds; the command's own rules set the pace.
      const k = INDEX[c.cmd];
      const step = this.stride(c);
      const t = first + (n - 1) * step;
      if (this.openCount > 0) this.active += t - this.lastAt;
      this.lastAt = t;
      this.at = t;
      this.last[k] = t;
      if (c.bank !== undefined) this.lastBank[k * this.banks + c.bank] = t;
      this.counts[k]! += n - 1;
      if (this.issued)
        for (let i = 1; i < n; i++)
          this.issued.push({
            cmd: c.cmd,
            at: first + i * step,
            ...(c.bank !== undefined ? { bank: c.bank } : {}),
          });
      const end = t + this.rules.completion[k]!;
      if (end > this.done) this.done = end;
    }
    return first;
  }

  private once(c: AimCommand, notBefore: number): number {
    const k = INDEX[c.cmd];
    let t = this.ready(k, c.bank, this.at + 1 > notBefore ? this.at + 1 : notBefore);
    if (c.ahead) t = this.ready(INDEX[c.ahead.cmd], c.ahead.bank, t);
    if (this.openCount > 0) this.active += t - this.lastAt;
    this.lastAt = t;
    switch (this.rules.rows[k]) {
      case 1:
      case 2:
        for (let b = 0; b < this.banks; b++) this.set(b, this.rules.rows[k] === 1 ? 1 : 0);
        break;
      case 3:
      case 4:
        if (c.bank !== undefined) this.set(c.bank, this.rules.rows[k] === 3 ? 1 : 0);
        break;
    }
    this.at = t;
    this.last[k] = t;
    if (c.bank !== undefined) this.lastBank[k * this.banks + c.bank] = t;
    this.counts[k]!++;
    this.issued?.push({ cmd: c.cmd, at: t, ...(c.bank !== undefined ? { bank: c.bank } : {}) });
    const end = t + this.rules.completion[k]!;
    if (end > this.done) this.done = end;
    return t;
  }

  result(): ChannelRun {
    const active = this.active + (this.openCount > 0 ? this.done - this.lastAt : 0);
    return {
      cycles: this.done,
      counts: Object.fromEntries(AIM_COMMANDS.map((c, i) => [c, this.counts[i]!])) as Record<AimCmd, number>,
      activeCycles: active,
      ...(this.issued ? { log: this.issued } : {}),
    };
  }
}

/** Times one channel's command stream (fences: the next command waits for the channel to finish). */
export function runChannel(sys: AimSystem, steps: Iterable<AimStep>, log = false): ChannelRun {
  const ch = new Channel(sys, log);
  let fence = 0;
  for (const s of steps) {
    if ("fence" in s) fence = ch.done + 1;
    else ch.issue(s, fence);
  }
  return ch.result();
}
