/**
 * The memory controller of one pseudo-channel, cycle by cycle, on the timing table of standard.ts.
 *
 * Requests (32-byte reads and writes at rank/bank group/bank/row/column) enter a queue of
 * `controller.queue_depth` at most one per cycle. Each cycle the controller issues at most one
 * command, by priority (DRAMSim2's first-ready FCFS as PIMSimulator configures it):
 *  1. refresh: once a rank's refresh is due, precharge its open banks, then REF when all are closed
 *     (column commands and activates of other requests may still go in between);
 *  2. the oldest queued request whose row is open and whose RD/WR the timing table allows;
 *  3. an ACT for the first queued request whose bank is closed;
 *  4. a PRE of an open bank that no queued request hits (eager precharge).
 * A request marked `barrier` issues only at the head of the queue and nothing behind it issues a
 * column command before it; steps 3 and 4 look no further than the first barrier after the head, so
 * the next group's rows open while the last request of a group waits.
 *
 * In all-bank modes (AB, AB-PIM; see pim.ts) a command to bank b of bank group 0 goes to every bank
 * of rank 0 with b's parity: its timing constraints apply at all of them (so consecutive column
 * commands are tCCD_L apart: they share bank groups), and the controller tracks them as one set.
 *
 * The result is the cycle of every command and the time the last request completes (a read when its
 * data has returned, RL + BL/2 after the RD; a write WL + BL/2 after the WR).
 */
import {
  CMD_INDEX,
  COMMANDS,
  HBM2_CONSTRAINTS,
  evalLatency,
  type Cmd,
  type Constraint,
  type HbmPimSystem,
  type Level,
} from "./standard.js";

export const RD = 0;
export const WR = 1;

/** A 32-byte access. `payload` indexes the kernel's data for it (functional execution). */
export interface Request {
  readonly kind: typeof RD | typeof WR;
  readonly rank: number;
  readonly bg: number;
  readonly bank: number;
  readonly row: number;
  readonly col: number;
  readonly barrier?: boolean;
  /** Enters the queue only once every earlier request has completed (a new phase of the host's). */
  readonly fence?: boolean;
}

/** Modes of rank 0 as the controller sees them (which banks a command reaches). */
export const SB = 0;
export const AB = 1;
export const AB_PIM = 2;

/**
 * Watches the command stream for mode changes (the device side of pim.ts does the same):
 * SB -> AB once ACTs to the ABMR row have reached banks 0 and 1 of bank groups 0 and 2; AB -> SB
 * when the SBMR row of banks 0 and 1 is precharged. AB <-> AB-PIM is a register write (pim.ts).
 */
export interface ModeWatcher {
  mode: number;
  onCommand(cmd: Cmd, rank: number, bg: number, bank: number, row: number, col: number, req: number): void;
}

export interface CommandLog {
  /** Per issued command: its index in COMMANDS, the cycle, rank, bank group, bank, row, column, request (-1 for ACT/PRE/REF). */
  readonly cmd: Uint8Array;
  readonly cycle: Float64Array;
  readonly rank: Uint8Array;
  readonly bg: Uint8Array;
  readonly bank: Uint8Array;
  readonly row: Int32Array;
  readonly col: Int32Array;
  readonly req: Int32Array;
  readonly length: number;
}

export interface ChannelTiming {
  /** Cycle at which the last request completed (the kernel's time on this pseudo-channel). */
  readonly cycles: number;
  /** Commands issued, by kind. */
  readonly counts: Readonly<Record<Cmd, number>>;
  readonly log: CommandLog;
}

interface Compiled {
  /** Per level, per `from` command: (to, latency) pairs, flat. */
  readonly plain: readonly (readonly Int32Array[])[];
  /** Window constraints (rank level): at most `n` of `from` per `lat` cycles before `to`. */
  readonly windows: readonly {
    readonly from: number;
    readonly to: number;
    readonly lat: number;
    readonly n: number;
  }[];
}

const LEVEL_INDEX: Readonly<Record<Level, number>> = { pseudo_channel: 0, rank: 1, bank_group: 2, bank: 3 };
const NCMD = COMMANDS.length;
/** Longest window a constraint may have (ring buffer size). */
const MAX_WINDOW = 8;

const compiledMemo = new WeakMap<HbmPimSystem, Compiled>();

export function compileConstraints(
  sys: HbmPimSystem,
  table: readonly Constraint[] = HBM2_CONSTRAINTS,
): Compiled {
  const hit = table === HBM2_CONSTRAINTS ? compiledMemo.get(sys) : undefined;
  if (hit) return hit;
  const pairs = [0, 1, 2, 3].map(() => COMMANDS.map(() => [] as number[]));
  const windows: { from: number; to: number; lat: number; n: number }[] = [];
  for (const c of table) {
    const lat = evalLatency(c.latency, sys.timing);
    const l = LEVEL_INDEX[c.level];
    if (c.window !== undefined && (c.level !== "rank" || c.window < 1 || c.window > MAX_WINDOW))
      throw new Error(
        `constraint ${c.from.join("/")} -> ${c.to.join("/")}: windows of 1..${MAX_WINDOW} at rank level only`,
      );
    for (const f of c.from)
      for (const t of c.to) {
        if (c.window) windows.push({ from: CMD_INDEX[f], to: CMD_INDEX[t], lat, n: c.window });
        else pairs[l]![CMD_INDEX[f]]!.push(CMD_INDEX[t], lat);
      }
  }
  const out = { plain: pairs.map((l) => l.map((p) => Int32Array.from(p))), windows };
  if (table === HBM2_CONSTRAINTS) compiledMemo.set(sys, out);
  return out;
}

/** Grows typed arrays as commands are logged. */
class LogBuilder {
  n = 0;
  cmd = new Uint8Array(1024);
  cycle = new Float64Array(1024);
  rank = new Uint8Array(1024);
  bg = new Uint8Array(1024);
  bank = new Uint8Array(1024);
  row = new Int32Array(1024);
  col = new Int32Array(1024);
  req = new Int32Array(1024);
  push(
    cmd: number,
    cycle: number,
    rank: number,
    bg: number,
    bank: number,
    row: number,
    col: number,
    req: number,
  ): void {
    if (this.n === this.cmd.length) {
      const grow = <T extends Uint8Array | Float64Array | Int32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.cmd = grow(this.cmd);
      this.cycle = grow(this.cycle);
      this.rank = grow(this.rank);
      this.bg = grow(this.bg);
      this.bank = grow(this.bank);
      this.row = grow(this.row);
      this.col = grow(this.col);
      this.req = grow(this.req);
    }
    const i = this.n++;
    this.cmd[i] = cmd;
    this.cycle[i] = cycle;
    this.rank[i] = rank;
    this.bg[i] = bg;
    this.bank[i] = bank;
    this.row[i] = row;
    this.col[i] = col;
    this.req[i] = req;
  }
  done(): CommandLog {
    const n = this.n;
    return {
      cmd: this.cmd.subarray(0, n),
      cycle: this.cycle.subarray(0, n),
      rank: this.rank.subarray(0, n),
      bg: this.bg.subarray(0, n),
      bank: this.bank.subarray(0, n),
      row: this.row.subarray(0, n),
      col: this.col.subarray(0, n),
      req: this.req.subarray(0, n),
      length: n,
    };
  }
}

const CLOSED = -1;

/**
 * Runs `requests` (in order of arrival) through one pseudo-channel's controller. `watcher` tracks
 * the mode (which banks a command reaches); without one the channel stays in SB mode.
 */
export function runChannel(
  sys: HbmPimSystem,
  requests: readonly Request[],
  watcher?: ModeWatcher,
): ChannelTiming {
  const t = sys.timing;
  const { plain, windows } = compileConstraints(sys);
  const ranks = sys.ranks;
  const bgs = sys.bank_groups;
  const bpg = sys.banks_per_group;
  const banksPerRank = bgs * bpg;
  const nBanks = ranks * banksPerRank;
  // Earliest cycle of each command at each node: pseudo-channel, ranks, bank groups, banks.
  const next = [
    new Float64Array(NCMD),
    new Float64Array(ranks * NCMD),
    new Float64Array(ranks * bgs * NCMD),
    new Float64Array(nBanks * NCMD),
  ];
  // The last `n` ACT times per rank for window constraints (ring buffers).
  const ring = new Float64Array(ranks * windows.length * MAX_WINDOW).fill(-Infinity);
  const ringAt = new Int32Array(ranks * windows.length);
  const openRow = new Int32Array(nBanks).fill(CLOSED);
  const nextRefresh = new Float64Array(ranks);
  for (let r = 0; r < ranks; r++) nextRefresh[r] = (t.tREFI * (r + 1)) / ranks;
  const refreshing = new Uint8Array(ranks);
  const doRefresh = sys.controller.refresh !== false && t.tREFI > 0;
  // PIMSimulator's refresh (docs/hbm-pim.md): rows keep opening while a refresh waits, the REF goes
  // out the cycle after the rank's last PRE (no tRP), and one refresh waits at a time: a rank falling
  // due replaces the one still waiting, whose refresh is lost.
  const deferred = sys.controller.refresh === "deferred";
  const counts = Object.fromEntries(COMMANDS.map((c) => [c, 0])) as Record<Cmd, number>;
  const log = new LogBuilder();
  const mode = (): number => watcher?.mode ?? SB;

  // The banks a command to (rank, bg, bank) reaches: itself, or in all-bank modes every bank of rank
  // 0 with the bank's parity (units on bank pairs) or every bank of rank 0 (a unit per bank). Each
  // set has a key (keyOf) and a list of bank ids made once; touch points `touched` at the list of
  // the command's set and returns its length. REF reaches every bank of its rank (refreshSets).
  const nKeys = nBanks + 2;
  const sets: Int32Array[] = Array.from({ length: nBanks }, (_, id) => Int32Array.of(id));
  for (let parity = 0; parity < 2; parity++) {
    const ids: number[] = [];
    const step = sys.pim.banks_per_unit === 1 ? 1 : 2;
    for (let g = 0; g < bgs; g++)
      for (let b = step === 1 ? 0 : parity; b < bpg; b += step) ids.push(g * bpg + b);
    sets.push(Int32Array.from(ids));
  }
  const refreshSets = Array.from({ length: ranks }, (_, r) =>
    Int32Array.from({ length: banksPerRank }, (_, i) => r * banksPerRank + i),
  );
  const keyAB = (bank: number): number => nBanks + (sys.pim.banks_per_unit === 1 ? 0 : bank % 2);
  let touched = sets[0]!;
  const touchKey = (key: number): number => {
    touched = sets[key]!;
    return touched.length;
  };
  /**
   * The banks a precharge of bank (rank, bg, bank) reaches: in all-bank modes its set when every
   * bank of the set has the same row open (a row the set opened), else the bank alone (a row opened
   * before the mode changed, as the SB -> AB sequence's last ACT leaves one).
   */
  const touchPre = (rank: number, bg: number, bank: number): number => {
    const own = (rank * bgs + bg) * bpg + bank;
    if (rank !== 0 || mode() === SB) return touchKey(own);
    const n = touchKey(keyAB(bank));
    return rowOf(n) === openRow[own] ? n : touchKey(own);
  };

  const [next0, next1, next2, next3] = next as [Float64Array, Float64Array, Float64Array, Float64Array];
  const rankOfId = Int32Array.from({ length: nBanks }, (_, id) => Math.floor(id / banksPerRank));
  const bgOfId = Int32Array.from({ length: nBanks }, (_, id) => Math.floor(id / bpg));
  const windowTo = COMMANDS.map((_, cmd) =>
    windows.map((w, i) => [w, i] as const).filter(([w]) => w.to === cmd),
  );
  const earliest = (cmd: number, n: number): number => {
    let e = next0[cmd]!;
    let lastBg = -1;
    let lastRank = -1;
    const ws = windowTo[cmd]!;
    for (let i = 0; i < n; i++) {
      const id = touched[i]!;
      const b = next3[id * NCMD + cmd]!;
      if (b > e) e = b;
      const g = bgOfId[id]!;
      if (g !== lastBg) {
        const x = next2[g * NCMD + cmd]!;
        if (x > e) e = x;
        lastBg = g;
      }
      const r = rankOfId[id]!;
      if (r !== lastRank) {
        const x = next1[r * NCMD + cmd]!;
        if (x > e) e = x;
        for (let k = 0; k < ws.length; k++) {
          const [w, wi] = ws[k]!;
          const base = (r * windows.length + wi) * MAX_WINDOW;
          const x2 =
            ring[base + ((ringAt[r * windows.length + wi]! - w.n + MAX_WINDOW) % MAX_WINDOW)]! + w.lat;
          if (x2 > e) e = x2;
        }
        lastRank = r;
      }
    }
    return e;
  };
  /**
   * Whether `cmd` may issue at cycle c; when not, the cycle it may is a candidate for the next event
   * (cycles where nothing can issue are skipped).
   */
  let horizon = Infinity;
  const ready = (cmd: number, n: number, c: number): boolean => {
    const e = earliest(cmd, n);
    if (e <= c) return true;
    if (e < horizon) horizon = e;
    return false;
  };
  const apply = (arr: Float64Array, pairs: Int32Array, node: number, c: number): void => {
    for (let k = 0; k < pairs.length; k += 2) {
      const at = node * NCMD + pairs[k]!;
      const v = c + pairs[k + 1]!;
      if (arr[at]! < v) arr[at] = v;
    }
  };
  const issue = (cmd: number, n: number, c: number): void => {
    apply(next0, plain[0]![cmd]!, 0, c);
    const p1 = plain[1]![cmd]!;
    const p2 = plain[2]![cmd]!;
    const p3 = plain[3]![cmd]!;
    let lastBg = -1;
    let lastRank = -1;
    for (let i = 0; i < n; i++) {
      const id = touched[i]!;
      apply(next3, p3, id, c);
      const g = bgOfId[id]!;
      if (g !== lastBg) apply(next2, p2, g, c);
      lastBg = g;
      const r = rankOfId[id]!;
      if (r !== lastRank) {
        apply(next1, p1, r, c);
        for (let wi = 0; wi < windows.length; wi++) {
          if (windows[wi]!.from !== cmd) continue;
          const k = r * windows.length + wi;
          ring[k * MAX_WINDOW + ringAt[k]!] = c;
          ringAt[k] = (ringAt[k]! + 1) % MAX_WINDOW;
        }
      }
      lastRank = r;
    }
    counts[COMMANDS[cmd]!]++;
  };
  /** The open row of the touched banks: CLOSED when all closed, -2 when they differ. */
  const rowOf = (n: number): number => {
    const r = openRow[touched[0]!]!;
    for (let i = 1; i < n; i++) if (openRow[touched[i]!] !== r) return -2;
    return r;
  };
  const setRow = (n: number, row: number): void => {
    for (let i = 0; i < n; i++) openRow[touched[i]!] = row;
  };
  const anyOpen = (n: number): boolean => {
    for (let i = 0; i < n; i++) if (openRow[touched[i]!] !== CLOSED) return true;
    return false;
  };

  // The requests as typed arrays (the loops below read them every cycle).
  const nReq = requests.length;
  const rKind = new Uint8Array(nReq);
  const rRank = new Uint8Array(nReq);
  const rBg = new Uint8Array(nReq);
  const rBank = new Uint8Array(nReq);
  const rRow = new Int32Array(nReq);
  const rCol = new Int32Array(nReq);
  const rBarrier = new Uint8Array(nReq);
  const rFence = new Uint8Array(nReq);
  // Each request's set keys in SB mode and in the all-bank modes (keyOf).
  const rKeySB = new Int32Array(nReq);
  const rKeyAB = new Int32Array(nReq);
  requests.forEach((q, i) => {
    rKind[i] = q.kind;
    rRank[i] = q.rank;
    rBg[i] = q.bg;
    rBank[i] = q.bank;
    rRow[i] = q.row;
    rCol[i] = q.col;
    rBarrier[i] = q.barrier ? 1 : 0;
    rFence[i] = q.fence ? 1 : 0;
    rKeySB[i] = (q.rank * bgs + q.bg) * bpg + q.bank;
    // In all-bank modes the kernels address bank group 0's banks; a command to another bank group
    // (the SB -> AB sequence's last write, issued after the mode changed) reaches its bank alone.
    rKeyAB[i] = q.rank === 0 && q.bg === 0 ? keyAB(q.bank) : rKeySB[i]!;
  });
  // Whether the scan under way is in an all-bank mode (the mode changes only when a command issues,
  // which ends a scan).
  let ab = false;
  const reqKey = (x: number): number => (ab ? rKeyAB[x]! : rKeySB[x]!);
  const depth = sys.controller.queue_depth;
  const queue: number[] = [];
  let admitted = 0;
  let done = 0;
  let finish = 0;
  const rl = t.RL + t.BL / 2;
  const wl = t.WL + t.BL / 2;
  const cmdRD = CMD_INDEX.RD;
  const cmdWR = CMD_INDEX.WR;
  const cmdACT = CMD_INDEX.ACT;
  const cmdPRE = CMD_INDEX.PRE;
  const cmdREF = CMD_INDEX.REF;

  const record = (
    cmd: number,
    c: number,
    rank: number,
    bg: number,
    bank: number,
    row: number,
    col: number,
    req: number,
  ) => {
    log.push(cmd, c, rank, bg, bank, row, col, req);
    watcher?.onCommand(COMMANDS[cmd]!, rank, bg, bank, row, col, req);
  };

  /** Index in the queue of the first barrier after the head (queue.length when none). */
  let barriers = 0;
  const barrierLimit = (): number => {
    if (barriers === 0 || (barriers === 1 && rBarrier[queue[0]!])) return queue.length;
    for (let i = 1; i < queue.length; i++) if (rBarrier[queue[i]!]) return i;
    return queue.length;
  };

  const tryRefresh = (c: number): boolean => {
    for (let r = 0; r < ranks; r++) {
      if (!refreshing[r]) continue;
      // Precharge an open bank of the rank (in all-bank modes, rank 0's banks by parity set).
      for (let id = r * banksPerRank; id < (r + 1) * banksPerRank; id++) {
        if (openRow[id] === CLOSED) continue;
        const g = bgOfId[id]! % bgs;
        const n = touchPre(r, g, id % bpg);
        if (ready(cmdPRE, n, c)) {
          const row = openRow[id]!;
          issue(cmdPRE, n, c);
          setRow(n, CLOSED);
          record(cmdPRE, c, r, g, id % bpg, row, -1, -1);
          return true;
        }
      }
      let open = false;
      for (let id = r * banksPerRank; id < (r + 1) * banksPerRank; id++)
        if (openRow[id] !== CLOSED) open = true;
      if (open) continue;
      // REF reaches every bank of the rank.
      touched = refreshSets[r]!;
      if (deferred || ready(cmdREF, banksPerRank, c)) {
        issue(cmdREF, banksPerRank, c);
        record(cmdREF, c, r, 0, 0, -1, -1, -1);
        refreshing[r] = 0;
        if (!deferred) nextRefresh[r] = nextRefresh[r]! + t.tREFI;
        return true;
      }
    }
    return false;
  };

  /** Accesses to one address stay in order. */
  const earlierSameAddress = (i: number, x: number): boolean => {
    for (let j = 0; j < i; j++) {
      const y = queue[j]!;
      if (
        rCol[y] === rCol[x] &&
        rRow[y] === rRow[x] &&
        rBank[y] === rBank[x] &&
        rBg[y] === rBg[x] &&
        rRank[y] === rRank[x]
      )
        return true;
    }
    return false;
  };

  /**
   * A lower bound of the cycle any `cmd` may issue at (pseudo-channel and rank constraints): when it
   * is later than c, no request needs to be looked at.
   */
  const blocked = (cmd: number, c: number): boolean => {
    let r = Infinity;
    for (let k = 0; k < ranks; k++) r = Math.min(r, next1[k * NCMD + cmd]!);
    const e = Math.max(next0[cmd]!, r);
    if (e <= c) return false;
    if (e < horizon) horizon = e;
    return true;
  };

  // What a scan of the queue learns about a set of banks (its open row, whether a command may issue
  // there) holds for every queued request reaching the same set until a command issues: each scan
  // takes a new stamp and asks once per set. A set's key: the bank in SB mode; in all-bank modes
  // rank 0's banks of a parity (or all of them, a unit per bank).
  let stamp = 0;
  const keyStamp = new Int32Array(nKeys);
  const keyRow = new Int32Array(nKeys);
  /** Per key and command (RD, WR, ACT): -1 not asked yet in this scan, else 0 or 1. */
  const keyReady = new Int8Array(nKeys * 3);
  /** The key of request x, its row and readiness asked afresh when the scan has not seen the key. */
  const visit = (x: number): number => {
    const key = reqKey(x);
    if (keyStamp[key] !== stamp) {
      keyStamp[key] = stamp;
      keyRow[key] = rowOf(touchKey(key));
      keyReady[key * 3] = keyReady[key * 3 + 1] = keyReady[key * 3 + 2] = -1;
    }
    return key;
  };
  /** Whether `cmd` (slot 0 RD, 1 WR, 2 ACT) may issue at c at request x's banks, asked once per key. */
  const readyAt = (x: number, key: number, cmd: number, slot: number, c: number): boolean => {
    let r = keyReady[key * 3 + slot]!;
    if (r < 0) {
      const n = touchKey(key);
      r = (slot === 2 ? !anyOpen(n) && ready(cmd, n, c) : ready(cmd, n, c)) ? 1 : 0;
      keyReady[key * 3 + slot] = r;
    }
    return r === 1;
  };

  const tryColumn = (c: number): boolean => {
    if (blocked(cmdRD, c) && blocked(cmdWR, c)) return false;
    // Behind a barrier at the head nothing else issues.
    const end = queue.length > 0 && rBarrier[queue[0]!] ? 1 : queue.length;
    stamp++;
    ab = mode() !== SB;
    for (let i = 0; i < end; i++) {
      const x = queue[i]!;
      if (rBarrier[x] && i > 0) break;
      const key = visit(x);
      if (keyRow[key] !== rRow[x]) continue;
      const rd = rKind[x] === RD;
      const cmd = rd ? cmdRD : cmdWR;
      if (!readyAt(x, key, cmd, rd ? 0 : 1, c) || earlierSameAddress(i, x)) continue;
      const n = touchKey(key);
      issue(cmd, n, c);
      queue.splice(i, 1);
      if (rBarrier[x]) barriers--;
      record(cmd, c, rRank[x]!, rBg[x]!, rBank[x]!, rRow[x]!, rCol[x]!, x);
      finish = Math.max(finish, c + (rd ? rl : wl));
      done++;
      return true;
    }
    return false;
  };

  const tryActivate = (c: number, limit: number): boolean => {
    if (blocked(cmdACT, c)) return false;
    stamp++;
    ab = mode() !== SB;
    for (let i = 0; i < limit; i++) {
      const x = queue[i]!;
      // A rank waiting for its refresh opens no rows (JEDEC's rule; not PIMSimulator's).
      if (refreshing[rRank[x]!] && !deferred) continue;
      // Only where every bank the ACT reaches is closed.
      const key = visit(x);
      if (!readyAt(x, key, cmdACT, 2, c)) continue;
      const n = touchKey(key);
      issue(cmdACT, n, c);
      setRow(n, rRow[x]!);
      record(cmdACT, c, rRank[x]!, rBg[x]!, rBank[x]!, rRow[x]!, -1, -1);
      return true;
    }
    return false;
  };

  // Banks whose open row a queued request (up to and including the first barrier after the head) hits.
  const hit = new Uint8Array(nBanks);
  const tryPrecharge = (c: number, limit: number): boolean => {
    // Only when an open bank may be precharged now is it worth finding which ones are still wanted.
    let any = false;
    for (let id = 0; id < nBanks && !any; id++) {
      if (openRow[id] === CLOSED) continue;
      const e = Math.max(
        next3[id * NCMD + cmdPRE]!,
        next2[bgOfId[id]! * NCMD + cmdPRE]!,
        next1[rankOfId[id]! * NCMD + cmdPRE]!,
        next0[cmdPRE]!,
      );
      if (e <= c) any = true;
      else if (e < horizon) horizon = e;
    }
    if (!any) return false;
    hit.fill(0);
    // Requests to the set and row just marked mark nothing new (runs of columns in one row).
    let lastKey = -1;
    let lastRow = -1;
    ab = mode() !== SB;
    for (let i = 0; i <= limit && i < queue.length; i++) {
      const x = queue[i]!;
      const key = reqKey(x);
      if (key === lastKey && rRow[x] === lastRow) continue;
      lastKey = key;
      lastRow = rRow[x]!;
      const n = touchKey(key);
      for (let j = 0; j < n; j++) if (openRow[touched[j]!] === rRow[x]) hit[touched[j]!] = 1;
    }
    for (let id = 0; id < nBanks; id++) {
      const row = openRow[id]!;
      if (row === CLOSED || hit[id]) continue;
      const r = rankOfId[id]!;
      const g = bgOfId[id]! % bgs;
      const n = touchPre(r, g, id % bpg);
      if (!ready(cmdPRE, n, c)) continue;
      issue(cmdPRE, n, c);
      setRow(n, CLOSED);
      record(cmdPRE, c, r, g, id % bpg, row, -1, -1);
      return true;
    }
    return false;
  };

  for (let c = 0; done < requests.length; c++) {
    horizon = Infinity;
    const fenced = admitted < nReq && rFence[admitted] === 1;
    if (
      admitted < requests.length &&
      queue.length < depth &&
      (!fenced || (done === admitted && c >= finish))
    ) {
      if (rBarrier[admitted]) barriers++;
      queue.push(admitted++);
    }
    if (doRefresh)
      for (let r = 0; r < ranks; r++) {
        if (c < nextRefresh[r]!) continue;
        if (deferred) {
          // The countdown restarts at the request; the channel's one waiting slot takes this rank.
          nextRefresh[r] = nextRefresh[r]! + t.tREFI;
          refreshing.fill(0);
        }
        refreshing[r] = 1;
      }
    if (doRefresh && tryRefresh(c)) continue;
    const limit = barrierLimit();
    if (tryColumn(c) || tryActivate(c, limit) || tryPrecharge(c, limit)) continue;
    // Nothing could issue: skip to the next cycle where something may (a timing constraint expires,
    // a refresh falls due, a request may enter the queue).
    if (admitted < requests.length && queue.length < depth) {
      if (!fenced) continue;
      if (done === admitted) horizon = Math.min(horizon, Math.max(finish, c + 1));
    }
    if (doRefresh)
      for (let r = 0; r < ranks; r++)
        if (deferred || !refreshing[r]) horizon = Math.min(horizon, nextRefresh[r]!);
    if (horizon === Infinity) {
      if (queue.length === 0 && admitted >= requests.length) break;
      throw new Error(`internal: the controller is stuck at cycle ${c} with ${queue.length} queued requests`);
    }
    if (horizon > c + 1) c = Math.ceil(horizon) - 1;
  }
  return { cycles: finish, counts, log: log.done() };
}
