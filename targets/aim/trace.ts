/**
 * AiM instruction traces in the public AiM simulator's format (github.com/arkhadem/aim_simulator,
 * src/frontend/impl/memory_trace/aim_trace.cpp; the fields of each instruction in
 * src/base/request.h), and their timing on pimc's device model over every channel they address.
 *
 *   AiM <OP> <fields>       an instruction; OP with or without its "ISR_" prefix; its fields in the
 *                           order opsize, GPR_addr_0, GPR_addr_1, channel_mask, bank_index,
 *                           row_addr (only those OP takes: FIELDS); numbers decimal or 0x-hex
 *   W|R MEM <ch> <bank> <row>   a normal write / read of one burst on channel ch
 *   W CFR <addr> <data>     a configuration register (CFR 2: the activation function AF applies)
 *   W|R GPR <addr>          the host's registers (no DRAM command)
 *   # ...                   a comment
 *
 * A trace ends with `AiM EOC`. Channel masks name channel 31 - i by bit i (channel 0 is the top bit
 * of 32). SYNC and EOC wait for every command of every channel to complete, and the host resumes two
 * cycles later; RD_MAC and RD_AF for theirs, a cycle later (device.ts: fences).
 */
import { UserError } from "../../src/errors.js";
import { Channel, type AimCommand, type ChannelRun } from "./device.js";
import { BLOCKING, Expander, type AimInstr } from "./kernels.js";
import { AIM_COMMANDS, banksOf, type AimCmd, type AimSystem } from "./standard.js";

type Field = "opsize" | "gpr0" | "gpr1" | "mask" | "bank" | "row";

/** The fields each instruction takes, in the trace's order (request.h, AiMISRInfo). */
const FIELDS: Readonly<Record<string, readonly Field[]>> = {
  WR_SBK: ["gpr0", "mask", "bank", "row"],
  WR_ABK: ["gpr0", "mask", "row"],
  WR_GB: ["opsize", "gpr0", "mask"],
  WR_BIAS: ["gpr0", "mask"],
  RD_MAC: ["gpr0", "mask"],
  RD_AF: ["gpr0", "mask"],
  RD_SBK: ["gpr0", "mask", "bank", "row"],
  COPY_BKGB: ["opsize", "mask", "bank", "row"],
  COPY_GBBK: ["opsize", "mask", "bank", "row"],
  MAC_SBK: ["opsize", "mask", "bank", "row"],
  MAC_ABK: ["opsize", "mask", "row"],
  AF: ["mask"],
  EWMUL: ["opsize", "mask", "row"],
  EWADD: ["opsize", "gpr0", "gpr1"],
  SYNC: [],
  EOC: [],
};

/** Channels a mask names: bit i is channel 31 - i (the simulator's 32 channels). */
const MASK_CHANNELS = 32;

/** An instruction of a trace, the channels it goes to (all of them for SYNC and EOC). */
export interface TraceStep {
  readonly instr: AimInstr | { readonly op: "EOC" };
  readonly channels: readonly number[];
  /** Its line in the trace file. */
  readonly line: number;
}

/** Largest trace pimc reads: a whole decoder block's is a few hundred thousand lines. */
const MAX_LINES = 1 << 24;
export const MAX_TRACE_BYTES = 1 << 28;

/** Parses a trace for `sys`'s channels, banks and rows; bad lines are a UserError naming file:line:col. */
export function parseAimTrace(text: string, file: string, sys: AimSystem): TraceStep[] {
  const channels = Math.min(sys.channels, MASK_CHANNELS);
  const banks = banksOf(sys);
  const lines = text.split(/\r?\n/);
  if (lines.length > MAX_LINES) throw new UserError(`${file}: more than ${MAX_LINES} lines`);
  const steps: TraceStep[] = [];
  let afm = 0;
  let ended = false;
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n]!;
    const tokens = raw
      .trim()
      .split(/\s+/)
      .filter((t) => t.length > 0);
    if (tokens.length === 0 || tokens[0]!.startsWith("#")) continue;
    const at = (i: number): string => `${file}:${n + 1}:${raw.indexOf(tokens[i]!) + 1}`;
    if (ended) throw new UserError(`${at(0)}: after the trace's EOC`);
    const num = (i: number, what: string): number => {
      const t = tokens[i];
      if (t === undefined) throw new UserError(`${file}:${n + 1}: missing ${what}`);
      const v = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t.slice(2), 16) : /^-?\d+$/.test(t) ? Number(t) : NaN;
      if (!Number.isSafeInteger(v)) throw new UserError(`${at(i)}: ${what} must be a number, got "${t}"`);
      return v;
    };
    const bounded = (i: number, what: string, max: number): number => {
      const v = num(i, what);
      if (v < 0 || v > max) throw new UserError(`${at(i)}: ${what} ${v} out of range 0..${max}`);
      return v;
    };
    const kind = tokens[0]!;
    if (kind === "W" || kind === "R") {
      const region = tokens[1];
      if (region === "CFR") {
        if (kind === "W" && num(2, "CFR address") === 2) afm = bounded(3, "activation function", 7);
      } else if (region === "MEM") {
        const ch = bounded(2, "channel", channels - 1);
        const bank = bounded(3, "bank", banks - 1);
        const row = bounded(4, "row", sys.rows - 1);
        steps.push({
          instr: { op: kind === "W" ? "WR_SBK" : "RD_SBK", bank, row },
          channels: [ch],
          line: n + 1,
        });
      } else if (region !== "GPR")
        throw new UserError(`${at(1)}: expected MEM, CFR or GPR after ${kind}, got "${region ?? ""}"`);
      continue;
    }
    if (kind !== "AiM") throw new UserError(`${at(0)}: expected AiM, W, R or #, got "${kind}"`);
    const op = (tokens[1] ?? "").replace(/^ISR_/, "");
    const fields = FIELDS[op];
    if (!fields) {
      const known = Object.keys(FIELDS).join(", ");
      throw new UserError(
        `${tokens[1] ? at(1) : `${file}:${n + 1}`}: unknown AiM instruction "${op}" (known: ${known})`,
      );
    }
    if (tokens.length - 2 !== fields.length)
      throw new UserError(
        `${at(0)}: AiM ${op} takes ${fields.length} fields (${fields.join(", ") || "none"}), got ${tokens.length - 2}`,
      );
    const f: Partial<Record<Field, number>> = {};
    const limit: Record<Exclude<Field, "mask" | "opsize">, number> = {
      gpr0: 1 << 30,
      gpr1: 1 << 30,
      bank: banks - 1,
      row: sys.rows - 1,
    };
    fields.forEach((name, i) => {
      f[name] =
        name === "mask"
          ? num(i + 2, "channel mask")
          : name === "opsize"
            ? num(i + 2, "opsize")
            : bounded(i + 2, name, limit[name]);
    });
    let targets: number[] = [];
    if (f.mask !== undefined) {
      const mask = BigInt(f.mask);
      if (f.mask <= 0 || f.mask >= 2 ** MASK_CHANNELS)
        throw new UserError(`${at(fields.indexOf("mask") + 2)}: channel mask must name channels of 32`);
      for (let c = 0; c < MASK_CHANNELS; c++)
        if ((mask >> BigInt(MASK_CHANNELS - 1 - c)) & 1n) targets.push(c);
      const over = targets.find((c) => c >= channels);
      if (over !== undefined)
        throw new UserError(
          `${at(fields.indexOf("mask") + 2)}: channel ${over} past the system's ${channels}`,
        );
    }
    if (op === "SYNC" || op === "EOC") targets = [...Array(channels).keys()];
    const opsize = f.opsize === undefined ? 1 : f.opsize === -1 ? 1 : f.opsize;
    if (opsize < 1 || opsize > 1 << 16)
      throw new UserError(`${at(2)}: opsize ${opsize} out of range 1..65536`);
    const bank = f.bank ?? 0;
    const row = f.row ?? 0;
    const instr: AimInstr | { op: "EOC" } = ((): AimInstr | { op: "EOC" } => {
      switch (op) {
        case "WR_GB":
          return { op, opsize };
        case "WR_BIAS":
        case "RD_MAC":
        case "RD_AF":
        case "EWADD":
        case "SYNC":
        case "EOC":
          return { op };
        case "AF":
          return { op, table: afm };
        case "MAC_ABK":
        case "EWMUL":
          return { op, opsize, row };
        case "WR_ABK":
          return { op, row };
        case "MAC_SBK":
        case "COPY_BKGB":
        case "COPY_GBBK":
          return { op, opsize, bank, row };
        default:
          return { op: op as "RD_SBK" | "WR_SBK", bank, row };
      }
    })();
    if (op === "EOC") ended = true;
    steps.push({ instr, channels: targets, line: n + 1 });
  }
  if (!ended) throw new UserError(`${file}: no AiM EOC at the end of the trace`);
  return steps;
}

/**
 * Steps written in the AiM simulator's trace format (what parseAimTrace reads), ending with `AiM
 * EOC`: a program pimc built, for the public simulator or `pimc kernel trace`. Channels past the
 * 32 a mask names are a UserError.
 */
export function formatAimTrace(steps: readonly TraceStep[]): string {
  const out: string[] = [];
  let afm = 0;
  for (const { instr, channels } of steps) {
    if (instr.op === "EOC") break;
    const over = channels.find((c) => c >= MASK_CHANNELS);
    if (over !== undefined)
      throw new UserError(`channel ${over}: an AiM trace's channel masks name ${MASK_CHANNELS} channels`);
    if (instr.op === "WR_SBK" || instr.op === "RD_SBK") {
      const kind = instr.op === "WR_SBK" ? "W" : "R";
      for (const c of channels) out.push(`${kind} MEM ${c} ${instr.bank} ${instr.row}`);
      continue;
    }
    if (instr.op === "AF" && (instr.table ?? 0) !== afm) {
      afm = instr.table ?? 0;
      out.push(`W CFR 2 ${afm}`);
    }
    let mask = 0n;
    for (const c of channels) mask |= 1n << BigInt(MASK_CHANNELS - 1 - c);
    const value: Record<Field, string> = {
      opsize: "opsize" in instr ? String(instr.opsize) : "1",
      gpr0: "0",
      gpr1: "0",
      mask: `0x${mask.toString(16).padStart(MASK_CHANNELS / 4, "0")}`,
      bank: "bank" in instr ? String(instr.bank) : "0",
      row: "row" in instr ? String(instr.row) : "0",
    };
    out.push(["AiM", instr.op, ...FIELDS[instr.op]!.map((f) => value[f])].join(" "));
  }
  out.push("AiM EOC");
  return `${out.join("\n")}\n`;
}

export interface TraceRun {
  /** Cycles until every channel finished (the last EOC's barrier). */
  readonly cycles: number;
  /** Commands over every channel. */
  readonly counts: Readonly<Record<AimCmd, number>>;
  /** Instructions by opcode. */
  readonly instructions: Readonly<Record<string, number>>;
  /** Each channel's run (channels the trace addresses). */
  readonly channels: ReadonlyMap<number, ChannelRun>;
}

/** Requests a controller's buffer holds (Ramulator 2's ReqBuffer: 32, and one more). */
const BUFFER = 33;
/** Commands that open or close rows, or switch modes: a request's steps before its own command. */
const PREREQUISITE: ReadonlySet<AimCmd> = new Set(["TMOD", "PREA", "ACT16", "ACT", "PRE"]);
const CONVENTIONAL: ReadonlySet<string> = new Set(["RD_SBK", "WR_SBK"]);

/** A channel's controller: its timing, its expander, and when its buffers' requests left them. */
interface Controller {
  readonly ch: Channel;
  readonly ex: Expander;
  /** When each AiM request / normal read or write left its buffer (issued), in order. */
  readonly aimLeft: number[];
  readonly rwLeft: number[];
  readonly normal: Normals;
}

/** A normal read or write in a controller: in its read/write buffer, or active (its row opened). */
interface NormalRequest {
  readonly cmd: "RD" | "WR";
  readonly bank: number;
  readonly row: number;
  readonly arrive: number;
  active: boolean;
}

/**
 * A controller's normal reads and writes, scheduled as the simulator's controller does
 * (AiM_dram_controller.cpp `schedule_request`, the FR-FCFS scheduler): each cycle the oldest request
 * of the active buffer (its row opened) whose command is ready, else the oldest ready one of the
 * read/write buffer, a precharge never closing a row an active request waits for. A request leaves
 * the read/write buffer when its row is opened for it or its command issues.
 */
class Normals {
  private readonly queue: NormalRequest[] = [];
  /** Requests in the read/write buffer (not yet active). */
  buffered = 0;

  constructor(
    private readonly ch: Channel,
    private readonly ex: Expander,
    private readonly left: number[],
  ) {}

  get empty(): boolean {
    return this.queue.length === 0;
  }

  add(r: NormalRequest): void {
    this.queue.push(r);
    this.buffered++;
  }

  /** The command `r` needs next, or undefined when it would close a row an active request needs. */
  private next(r: NormalRequest): AimCommand | undefined {
    const open = this.ex.rows[r.bank];
    if (r.active || open === r.row) return { cmd: r.cmd, bank: r.bank };
    if (open === undefined) return { cmd: "ACT", bank: r.bank };
    return this.queue.some((q) => q.active && q.bank === r.bank) ? undefined : { cmd: "PRE", bank: r.bank };
  }

  /**
   * Issues the commands the controller issues before cycle `until` (`once`: only the first);
   * returns whether it issued any.
   */
  advance(until: number, once = false): boolean {
    let issued = false;
    while (this.queue.length > 0) {
      let best: { r: NormalRequest; cmd: AimCommand; at: number } | undefined;
      for (const r of this.queue) {
        if (r.arrive >= until) continue;
        const cmd = this.next(r);
        if (!cmd) continue;
        // A normal command after register mode takes a TMOD first.
        const c: AimCommand = this.ex.registerMode ? { cmd: "TMOD", ahead: cmd } : cmd;
        const at = this.ch.earliest(c, r.arrive);
        // The earliest ready; at the same cycle an active request first, then the oldest.
        if (
          !best ||
          at < best.at ||
          (at === best.at && r.active && !best.r.active) ||
          (at === best.at && r.active === best.r.active && r.arrive < best.r.arrive)
        )
          best = { r, cmd: c, at };
      }
      if (!best || best.at >= until || (once && issued)) return issued;
      const { r, cmd } = best;
      const t = this.ch.issue(cmd, best.at);
      issued = true;
      if (cmd.cmd === "TMOD") {
        this.ex.registerMode = false;
        continue;
      }
      if (cmd.cmd === "PRE") this.ex.rows[r.bank] = undefined;
      else if (cmd.cmd === "ACT") {
        this.ex.rows[r.bank] = r.row;
        r.active = true;
        this.left.push(t);
        this.buffered--;
      } else {
        if (!r.active) {
          this.left.push(t);
          this.buffered--;
        }
        this.queue.splice(this.queue.indexOf(r), 1);
      }
    }
    return issued;
  }
}

/**
 * Times a trace on `sys` as the AiM simulator's host DMA and controllers serve it: the DMA takes one
 * instruction (line) per cycle and hands each channel its requests (one per column; a normal read
 * or write is one); a controller's buffer holds 33 requests, and takes AiM requests only while it
 * holds no normal reads or writes and the other way round, so the DMA waits for room before the
 * next line; each channel issues its AiM requests' commands in order and its normal reads and writes
 * first-ready first-come-first-served (Normals). A blocking instruction (RD_MAC, RD_AF, SYNC, EOC)
 * holds every later line until it completed on all its channels.
 */
export function runAimTrace(sys: AimSystem, steps: readonly TraceStep[], log = false): TraceRun {
  const banks = banksOf(sys);
  const state = new Map<number, Controller>();
  const of = (c: number): Controller => {
    let s = state.get(c);
    if (!s) {
      const ch = new Channel(sys, log);
      const ex = new Expander(banks);
      const rwLeft: number[] = [];
      s = { ch, ex, aimLeft: [], rwLeft, normal: new Normals(ch, ex, rwLeft) };
      state.set(c, s);
    }
    return s;
  };
  const instructions: Record<string, number> = {};
  let fence = 0;
  // When the DMA may take the next line.
  let next = 0;
  for (const { instr, channels } of steps) {
    instructions[instr.op] = (instructions[instr.op] ?? 0) + 1;
    const at = Math.max(fence, next);
    if (instr.op === "EOC" || instr.op === "SYNC") {
      // Served once every earlier command has completed on every channel; the host hears of it
      // two cycles later (the simulator's controller and DMA callbacks).
      for (const s of state.values()) s.normal.advance(Infinity);
      fence = Math.max(at, ...[...state.values()].map((s) => s.ch.done)) + 2;
      next = fence;
      continue;
    }
    const rw = CONVENTIONAL.has(instr.op);
    let sent = at;
    for (const c of channels) {
      const s = of(c);
      if (rw) {
        // A normal request enters when the read/write buffer has room and no AiM request waits.
        const { normal } = s;
        let enter = Math.max(at, s.aimLeft.length > 0 ? s.aimLeft[s.aimLeft.length - 1]! + 1 : 0);
        normal.advance(enter);
        while (normal.buffered >= BUFFER) {
          const before = s.rwLeft.length;
          if (!normal.advance(Infinity, true)) break;
          if (s.rwLeft.length > before) enter = Math.max(enter, s.rwLeft[s.rwLeft.length - 1]! + 1);
        }
        const i = instr as Extract<AimInstr, { op: "RD_SBK" | "WR_SBK" }>;
        normal.add({
          cmd: i.op === "RD_SBK" ? "RD" : "WR",
          bank: i.bank,
          row: i.row,
          arrive: enter,
          active: false,
        });
        sent = Math.max(sent, enter);
        if (s.rwLeft.length > 8 * BUFFER) s.rwLeft.splice(0, s.rwLeft.length - BUFFER);
        continue;
      }
      // AiM requests wait for the normal ones to leave (the controllers never mix them).
      s.normal.advance(Infinity);
      const mine = s.aimLeft;
      const clear = s.rwLeft.length > 0 ? s.rwLeft[s.rwLeft.length - 1]! + 1 : 0;
      let pending: AimCommand[] = [];
      for (const step of s.ex.expand(instr)) {
        if ("fence" in step) continue;
        pending.push(step);
        if (PREREQUISITE.has(step.cmd)) continue;
        // A request enters the buffer once it has room, and the normal requests' buffer is empty;
        // its commands issue from then. (A repeated command is as many requests.)
        const room = (): number => (mine.length >= BUFFER ? mine[mine.length - BUFFER]! + 1 : 0);
        const enter = Math.max(at, room(), clear);
        let own = -1;
        for (const cmd of pending) own = s.ch.issue(cmd, enter);
        const stride = s.ch.stride(step);
        const n = step.repeat ?? 1;
        for (let i = 0; i < n; i++) {
          sent = Math.max(sent, i === 0 ? enter : Math.max(at, room(), clear));
          // An AiM request leaves its buffer when its own command issues.
          mine.push(own + i * stride);
        }
        // Only the last BUFFER leave times matter: keep memory bounded on long traces.
        if (mine.length > 8 * BUFFER) mine.splice(0, mine.length - BUFFER);
        pending = [];
      }
    }
    next = sent + 1;
    if (BLOCKING.has(instr.op)) fence = Math.max(fence, ...channels.map((c) => of(c).ch.done + 1));
  }
  const runs = new Map([...state].map(([c, s]) => [c, s.ch.result()]));
  const counts = Object.fromEntries(AIM_COMMANDS.map((c) => [c, 0])) as Record<AimCmd, number>;
  for (const r of runs.values()) for (const c of AIM_COMMANDS) counts[c] += r.counts[c];
  return {
    cycles: Math.max(fence, ...[...runs.values()].map((r) => r.cycles)),
    counts,
    instructions,
    channels: runs,
  };
}
