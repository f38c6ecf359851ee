/**
 * The device model of one UPMEM DPU running a `Kernel` (statement semantics: program.ts):
 *  - checkKernel: static checks (tasklets, WRAM and IRAM capacity, buffers, variables, dtypes, sizes
 *    that depend on B, S, P only);
 *  - runKernel: functional execution on the DPU's MRAM bytes. Work items run one after another in
 *    item order, each on its tasklet's private WRAM buffers, so results are deterministic;
 *  - timeKernel: a deterministic discrete-event timing model: the revolver pipeline as processor
 *    sharing (a tasklet issues at most one instruction every `issue_interval` cycles, the DPU at most
 *    one per cycle) and one FIFO DMA engine. It depends on the dimensions (env) only, never on data.
 */
import { ProgramError } from "./errors.js";
import { ExprError, checkExpr, evalExpr, exprVars, type Env } from "./expr.js";
import type { ElemType, IntExpr, Kernel, KernelStmt, MramAddr, WramBuffer } from "./program.js";
import { wramNeeded, type UpmemSystem } from "./system.js";

export interface KernelTiming {
  /** Cycles from launch until the last tasklet ends. */
  readonly cycles: number;
  readonly seconds: number;
  /** Instructions executed by all tasklets (compute, DMA overheads, loop overheads). */
  readonly instructions: number;
  readonly dmaBytes: number;
  readonly dmaCount: number;
  /** The cycle at which each tasklet ends (0 for tasklets without items). */
  readonly perTasklet: number[];
}

export function elemBytes(dtype: ElemType): number {
  return dtype === "i8" ? 1 : 4;
}

const DTYPES: readonly string[] = ["i8", "i32", "f32"];

function countStmts(body: readonly KernelStmt[]): number {
  let n = 0;
  for (const s of body) n += 1 + (s.op === "loop" ? countStmts(s.body) : 0);
  return n;
}

/** The modelled code size: 128 bytes of runtime plus 48 bytes per statement (loops count their bodies). */
export function codeBytes(k: Kernel): number {
  return 128 + 48 * countStmts(k.body);
}

/** Work items of a launch: the product of the grid counts (1 for an empty grid). */
export function gridItems(k: Kernel, env: Env): number {
  let n = 1;
  for (const c of gridCounts(k, env)) n *= c;
  return n;
}

function gridCounts(k: Kernel, env: Env): number[] {
  return k.grid.map(([v, c]) => {
    let x: number;
    try {
      x = evalExpr(c, env);
    } catch (e) {
      if (e instanceof ExprError) throw new ProgramError(`kernel ${k.name} grid ${v}: ${e.message}`);
      throw e;
    }
    if (!Number.isInteger(x) || x < 0)
      throw new ProgramError(`kernel ${k.name} grid ${v}: count ${x} is not a non-negative integer`);
    return x;
  });
}

// ---------------------------------------------------------------------------------------------
// Statement sites, errors and compiled expressions.

type Vars = Record<string, number>;
type Ev = (env: Vars) => number;
type Stmt<O extends KernelStmt["op"]> = Extract<KernelStmt, { op: O }>;

/** Where a statement is (`kernel gemm3 body[1].loop kc body[0] dma_read`) and the variables in scope. */
interface Site {
  readonly where: string;
  readonly vars: readonly string[];
}

function stmtLabel(prefix: string, i: number, s: KernelStmt): string {
  return `${prefix}body[${i}] ${s.op}${s.op === "loop" ? ` ${s.var}` : ""}`;
}

function childPrefix(prefix: string, i: number, s: Stmt<"loop">): string {
  return `${prefix}body[${i}].loop ${s.var} `;
}

function fail(site: Site, env: Vars | undefined, msg: string): never {
  const at =
    env && site.vars.length > 0 ? ` (at ${site.vars.map((v) => `${v}=${env[v] ?? "?"}`).join(", ")})` : "";
  throw new ProgramError(`${site.where}: ${msg}${at}`);
}

function compileExpr(site: Site, e: IntExpr, what: string): Ev {
  if (typeof e === "number") return () => e;
  return (env) => {
    try {
      return evalExpr(e, env);
    } catch (x) {
      if (x instanceof ExprError) fail(site, env, `${what}: ${x.message}`);
      throw x;
    }
  };
}

function compileInt(site: Site, e: IntExpr, what: string): Ev {
  const f = compileExpr(site, e, what);
  return (env) => {
    const x = f(env);
    if (!Number.isInteger(x)) fail(site, env, `${what} = ${x} is not an integer`);
    return x;
  };
}

function compileCount(site: Site, e: IntExpr, what: string): Ev {
  const f = compileExpr(site, e, what);
  return (env) => {
    const x = f(env);
    if (!Number.isInteger(x) || x < 0) fail(site, env, `${what} = ${x} is not a non-negative integer`);
    return x;
  };
}

function compileAddr(site: Site, a: MramAddr): Ev {
  const base = compileInt(site, a.base, "MRAM base");
  const terms = a.terms.map(([v, c]) => [v, compileInt(site, c, `MRAM coefficient of ${v}`)] as const);
  return (env) => {
    let x = base(env);
    for (const [v, c] of terms) x += (env[v] as number) * c(env);
    return x;
  };
}

/** Why a DMA row size is illegal, or undefined. */
function dmaSizeError(rb: number, sys: UpmemSystem): string | undefined {
  const d = sys.dma;
  if (!Number.isInteger(rb)) return `DMA size ${rb} B is not an integer`;
  if (rb < d.min_bytes) return `DMA size ${rb} B is below the minimum of ${d.min_bytes} B`;
  if (rb > d.max_bytes) return `DMA size ${rb} B exceeds the maximum of ${d.max_bytes} B`;
  if (rb % d.align !== 0) return `DMA size ${rb} B is not a multiple of ${d.align} B`;
  return undefined;
}

function checkRange(site: Site, env: Vars, buf: WramBuffer, at: number, len: number, what: string): void {
  if (len > 0 && (at < 0 || at + len > buf.elems))
    fail(
      site,
      env,
      `${what} elements [${at}, ${at + len}) are outside WRAM buffer ${buf.name} (${buf.elems} elements)`,
    );
}

// ---------------------------------------------------------------------------------------------
// Validated statement arguments, shared by the functional and the timing models.

interface Ctx {
  readonly k: Kernel;
  readonly sys: UpmemSystem;
  readonly bufs: ReadonlyMap<string, WramBuffer>;
  readonly index: ReadonlyMap<string, number>;
  /** MRAM size for bounds checks (the MRAM array's length, or sys.mram when timing). */
  readonly mramBytes: number;
}

function bufOf(ctx: Ctx, site: Site, name: string): WramBuffer {
  return ctx.bufs.get(name) ?? fail(site, undefined, `unknown WRAM buffer ${name}`);
}

interface DmaArgs {
  rows: number;
  rowBytes: number;
  stride: number;
  /** MRAM byte address of row 0. */
  addr: number;
  /** WRAM byte offset in the buffer of row 0. */
  off: number;
}

/** A validated DMA (sizes, alignment, MRAM and WRAM ranges), or undefined when it has no rows. */
function compileDma(
  ctx: Ctx,
  site: Site,
  s: Stmt<"dma_read"> | Stmt<"dma_write">,
): (env: Vars) => DmaArgs | undefined {
  const buf = bufOf(ctx, site, s.buf);
  const eb = elemBytes(buf.dtype);
  const bufBytes = buf.elems * eb;
  const at = compileInt(site, s.at, "at");
  const rowsE = compileCount(site, s.rows, "rows");
  const rbE = compileExpr(site, s.rowBytes, "rowBytes");
  const strideE = compileInt(site, s.stride, "stride");
  const addrE = compileAddr(site, s.addr);
  const { sys, mramBytes } = ctx;
  const align = sys.dma.align;
  const out: DmaArgs = { rows: 0, rowBytes: 0, stride: 0, addr: 0, off: 0 };
  return (env) => {
    const rows = rowsE(env);
    if (rows === 0) return undefined;
    const rb = rbE(env);
    const bad = dmaSizeError(rb, sys);
    if (bad !== undefined) fail(site, env, bad);
    const stride = strideE(env);
    const addr = addrE(env);
    const off = at(env) * eb;
    if (off % 8 !== 0 || (rows > 1 && rb % 8 !== 0))
      fail(site, env, `WRAM byte offset ${off} in buffer ${buf.name} is not 8-byte aligned`);
    if (off < 0 || off + rows * rb > bufBytes)
      fail(
        site,
        env,
        `WRAM bytes [${off}, ${off + rows * rb}) are outside buffer ${buf.name} (${bufBytes} B)`,
      );
    if (addr % align !== 0) fail(site, env, `MRAM address ${addr} is not ${align}-byte aligned`);
    if (rows > 1 && stride % align !== 0)
      fail(site, env, `MRAM row stride ${stride} is not a multiple of ${align} B`);
    const lo = addr + Math.min(0, (rows - 1) * stride);
    const hi = addr + Math.max(0, (rows - 1) * stride) + rb;
    if (lo < 0 || hi > mramBytes)
      fail(site, env, `MRAM bytes [${lo}, ${hi}) are outside MRAM [0, ${mramBytes})`);
    out.rows = rows;
    out.rowBytes = rb;
    out.stride = stride;
    out.addr = addr;
    out.off = off;
    return out;
  };
}

interface MacArgs {
  m: number;
  n: number;
  k: number;
  accAt: number;
  aAt: number;
  bAt: number;
}

function compileMac(ctx: Ctx, site: Site, s: Stmt<"mac">): (env: Vars) => MacArgs {
  const acc = bufOf(ctx, site, s.acc);
  const a = bufOf(ctx, site, s.a);
  const b = bufOf(ctx, site, s.b);
  const [mE, nE, kE] = [
    compileCount(site, s.m, "m"),
    compileCount(site, s.n, "n"),
    compileCount(site, s.k, "k"),
  ];
  const accE = compileInt(site, s.accAt, "accAt");
  const aE = compileInt(site, s.aAt, "aAt");
  const bE = compileInt(site, s.bAt, "bAt");
  const out: MacArgs = { m: 0, n: 0, k: 0, accAt: 0, aAt: 0, bAt: 0 };
  return (env) => {
    const m = mE(env);
    const n = nE(env);
    const k = kE(env);
    const accAt = accE(env);
    const aAt = aE(env);
    const bAt = bE(env);
    checkRange(site, env, acc, accAt, m * n, "acc");
    checkRange(site, env, a, aAt, k > 0 ? m * k : 0, "a");
    checkRange(site, env, b, bAt, k > 0 ? n * k : 0, "b");
    out.m = m;
    out.n = n;
    out.k = k;
    out.accAt = accAt;
    out.aAt = aAt;
    out.bAt = bAt;
    return out;
  };
}

interface VaddArgs {
  dstAt: number;
  srcAt: number;
  count: number;
}

function compileVadd(ctx: Ctx, site: Site, s: Stmt<"vadd">): (env: Vars) => VaddArgs {
  const dst = bufOf(ctx, site, s.dst);
  const src = bufOf(ctx, site, s.src);
  const dE = compileInt(site, s.dstAt, "dstAt");
  const sE = compileInt(site, s.srcAt, "srcAt");
  const cE = compileCount(site, s.count, "count");
  const out: VaddArgs = { dstAt: 0, srcAt: 0, count: 0 };
  return (env) => {
    const count = cE(env);
    const dstAt = dE(env);
    const srcAt = sE(env);
    checkRange(site, env, dst, dstAt, count, "dst");
    checkRange(site, env, src, srcAt, count, "src");
    out.dstAt = dstAt;
    out.srcAt = srcAt;
    out.count = count;
    return out;
  };
}

interface FillArgs {
  at: number;
  count: number;
}

function compileFill(ctx: Ctx, site: Site, s: Stmt<"fill">): (env: Vars) => FillArgs {
  const buf = bufOf(ctx, site, s.buf);
  const aE = compileInt(site, s.at, "at");
  const cE = compileCount(site, s.count, "count");
  const out: FillArgs = { at: 0, count: 0 };
  return (env) => {
    const count = cE(env);
    const at = aE(env);
    checkRange(site, env, buf, at, count, "fill");
    out.at = at;
    out.count = count;
    return out;
  };
}

// ---------------------------------------------------------------------------------------------
// Static checks.

/** The expressions a statement reads (not its children's). */
function stmtExprs(s: KernelStmt): IntExpr[] {
  switch (s.op) {
    case "loop":
      return [s.count];
    case "dma_read":
    case "dma_write":
      return [s.at, s.rows, s.rowBytes, s.stride, s.addr.base, ...s.addr.terms.map(([, c]) => c)];
    case "dma_wait":
      return [];
    case "fill":
      return [s.at, s.count];
    case "mac":
      return [s.accAt, s.aAt, s.bAt, s.m, s.n, s.k];
    case "vadd":
      return [s.dstAt, s.srcAt, s.count];
    case "lut_build":
      return [s.tableAt, s.xAt, s.m, s.vectors];
    case "lut_mac":
      return [s.accAt, s.tableAt, s.wAt, s.wLd, s.m, s.n, s.vectors];
    case "instr":
      return [s.count];
  }
}

/** The variables a statement reads (not its children's), including MRAM address term variables. */
function stmtVars(s: KernelStmt): string[] {
  const out = stmtExprs(s).flatMap(exprVars);
  if (s.op === "dma_read" || s.op === "dma_write") out.push(...s.addr.terms.map(([v]) => v));
  return out;
}

/**
 * Static checks of a kernel: tasklets, WRAM buffers and capacity, code size, grid and loop variables,
 * buffer names and dtypes, expressions, and DMA sizes and counts that depend on env (B, S, P) only.
 * Throws a one-line ProgramError naming the kernel and the statement.
 */
export function checkKernel(k: Kernel, sys: UpmemSystem, env: Env): void {
  const where = `kernel ${k.name}`;
  const bad = (msg: string): never => {
    throw new ProgramError(`${where}: ${msg}`);
  };
  const T = k.tasklets;
  if (!Number.isInteger(T) || T < 1 || T > sys.max_tasklets)
    bad(`${T} tasklets; the DPU runs 1 to ${sys.max_tasklets}`);

  const bufs = new Map<string, WramBuffer>();
  let private_ = 0;
  let shared = 0;
  for (const b of k.wram) {
    if (bufs.has(b.name)) bad(`duplicate WRAM buffer ${b.name}`);
    if (!DTYPES.includes(b.dtype)) bad(`WRAM buffer ${b.name} has unknown dtype ${String(b.dtype)}`);
    if (!Number.isInteger(b.elems) || b.elems < 0)
      bad(`WRAM buffer ${b.name} has ${b.elems} elements (not a non-negative integer)`);
    bufs.set(b.name, b);
    if (b.shared) shared += b.elems * elemBytes(b.dtype);
    else private_ += b.elems * elemBytes(b.dtype);
  }
  const stack = sys.stack_per_tasklet;
  const wram = wramNeeded(sys, T, private_, shared);
  if (wram > sys.wram)
    bad(
      `WRAM overflow: ${T} tasklets x (${private_} B buffers + ${stack} B stack) + ${shared} B shared = ${wram} B > ${sys.wram} B`,
    );
  const code = codeBytes(k);
  if (code > sys.iram)
    bad(`code size ${code} B (${countStmts(k.body)} statements) exceeds IRAM (${sys.iram} B)`);

  const scope = new Set(Object.keys(env));
  const known = (v: string): boolean => Object.hasOwn(env, v);
  /** The value of e when it reads env variables only. */
  const staticValue = (e: IntExpr): number | undefined => {
    if (typeof e === "number") return e;
    if (!exprVars(e).every(known)) return undefined;
    try {
      return evalExpr(e, env);
    } catch {
      return undefined;
    }
  };
  for (const [v, c] of k.grid) {
    if (scope.has(v)) bad(`grid variable ${v} is already bound`);
    try {
      checkExpr(c);
    } catch (e) {
      if (e instanceof ExprError) bad(`grid ${v}: ${e.message}`);
      throw e;
    }
    for (const u of exprVars(c)) if (!known(u)) bad(`grid ${v}: unbound variable ${u} in "${c}"`);
    scope.add(v);
  }
  gridCounts(k, env);

  const walk = (body: readonly KernelStmt[], prefix: string, scope: ReadonlySet<string>): void => {
    body.forEach((s, i) => {
      const site: Site = { where: `${where} ${stmtLabel(prefix, i, s)}`, vars: [] };
      const no = (msg: string): never => fail(site, undefined, msg);
      const buf = (name: string): WramBuffer => bufs.get(name) ?? no(`unknown WRAM buffer ${name}`);
      const count = (what: string, e: IntExpr): number | undefined => {
        const x = staticValue(e);
        if (x !== undefined && (!Number.isInteger(x) || x < 0))
          no(`${what} = ${x} is not a non-negative integer`);
        return x;
      };
      if (!STMT_OPS.includes(s.op)) no(`unknown statement op ${String(s.op)}`);
      for (const e of stmtExprs(s)) {
        try {
          checkExpr(e);
        } catch (x) {
          if (x instanceof ExprError) no(x.message);
          throw x;
        }
      }
      for (const v of stmtVars(s)) if (!scope.has(v)) no(`unbound variable ${v}`);
      switch (s.op) {
        case "loop": {
          if (scope.has(s.var)) no(`loop variable ${s.var} is already bound`);
          count("count", s.count);
          walk(s.body, childPrefix(prefix, i, s), new Set([...scope, s.var]));
          break;
        }
        case "dma_read":
        case "dma_write": {
          buf(s.buf);
          const rows = count("rows", s.rows);
          const rb = staticValue(s.rowBytes);
          if (rows !== 0 && rb !== undefined) {
            const msg = dmaSizeError(rb, sys);
            if (msg !== undefined) no(msg);
          }
          break;
        }
        case "dma_wait":
          break;
        case "fill":
          buf(s.buf);
          count("count", s.count);
          break;
        case "mac": {
          const [acc, a, b] = [buf(s.acc), buf(s.a), buf(s.b)];
          const types = `${acc.dtype} += ${a.dtype} x ${b.dtype}`;
          if (types !== "i32 += i8 x i8" && types !== "f32 += f32 x f32")
            no(`unsupported dtypes ${types} (i32 += i8 x i8 or f32 += f32 x f32)`);
          count("m", s.m);
          count("n", s.n);
          count("k", s.k);
          break;
        }
        case "vadd": {
          const [dst, src] = [buf(s.dst), buf(s.src)];
          if (dst.dtype !== src.dtype || dst.dtype === "i8")
            no(`unsupported dtypes ${dst.dtype} += ${src.dtype} (i32 += i32 or f32 += f32)`);
          count("count", s.count);
          break;
        }
        case "lut_build":
        case "lut_mac": {
          const why = lutFormatError(s.bits, s.width);
          if (why) no(why);
          count("m", s.m);
          count("vectors", s.vectors);
          if (s.op === "lut_build") {
            const [t, x] = [buf(s.table), buf(s.x)];
            if (t.dtype !== "i32" || x.dtype !== "i8")
              no(`unsupported dtypes table ${t.dtype}, x ${x.dtype} (i32 table from i8 activations)`);
          } else {
            const [acc, t, w] = [buf(s.acc), buf(s.table), buf(s.w)];
            if (acc.dtype !== "i32" || t.dtype !== "i32" || w.dtype !== "i8")
              no(
                `unsupported dtypes ${acc.dtype} += ${t.dtype}[${w.dtype}] (i32 += i32 table indexed by i8 packed weights)`,
              );
            count("n", s.n);
          }
          break;
        }
        case "instr":
          count("count", s.count);
          break;
      }
    });
  };
  walk(k.body, "", scope);
}

const STMT_OPS: readonly string[] = [
  "loop",
  "dma_read",
  "dma_write",
  "dma_wait",
  "fill",
  "mac",
  "vadd",
  "lut_build",
  "lut_mac",
  "instr",
];

/** Why a LUT format is illegal: bits 2 or 4, fields of bits x width bits dividing a byte. */
export function lutFormatError(bits: number, width: number): string | undefined {
  if (bits !== 2 && bits !== 4) return `LUT weights of ${bits} bits (2 or 4)`;
  if (!Number.isInteger(width) || width < 1 || 8 % (bits * width) !== 0)
    return `LUT vectors of ${width} weights of ${bits} bits do not divide a byte`;
  return undefined;
}

/** Entries of one LUT-GEMV table: 2^(bits x width). */
export const lutEntries = (bits: number, width: number): number => 2 ** (bits * width);

interface LutArgs {
  m: number;
  n: number;
  vectors: number;
  accAt: number;
  tableAt: number;
  xAt: number;
  wAt: number;
  wLd: number;
}

/** Validated arguments of lut_build and lut_mac (element ranges of every buffer they touch). */
function compileLut(ctx: Ctx, site: Site, s: Stmt<"lut_build"> | Stmt<"lut_mac">): (env: Vars) => LutArgs {
  const E = lutEntries(s.bits, s.width);
  const table = bufOf(ctx, site, s.table);
  const mE = compileCount(site, s.m, "m");
  const vE = compileCount(site, s.vectors, "vectors");
  const tE = compileInt(site, s.tableAt, "tableAt");
  const out: LutArgs = { m: 0, n: 0, vectors: 0, accAt: 0, tableAt: 0, xAt: 0, wAt: 0, wLd: 0 };
  if (s.op === "lut_build") {
    const x = bufOf(ctx, site, s.x);
    const xE = compileInt(site, s.xAt, "xAt");
    return (env) => {
      out.m = mE(env);
      out.vectors = vE(env);
      out.tableAt = tE(env);
      out.xAt = xE(env);
      checkRange(site, env, table, out.tableAt, out.m * out.vectors * E, "table");
      checkRange(site, env, x, out.xAt, out.m * out.vectors * s.width, "x");
      return out;
    };
  }
  const acc = bufOf(ctx, site, s.acc);
  const w = bufOf(ctx, site, s.w);
  const nE = compileCount(site, s.n, "n");
  const aE = compileInt(site, s.accAt, "accAt");
  const wE = compileInt(site, s.wAt, "wAt");
  const ldE = compileCount(site, s.wLd, "wLd");
  const rowBytes = (vectors: number): number => Math.ceil((vectors * s.width * s.bits) / 8);
  return (env) => {
    out.m = mE(env);
    out.n = nE(env);
    out.vectors = vE(env);
    out.tableAt = tE(env);
    out.accAt = aE(env);
    out.wAt = wE(env);
    out.wLd = ldE(env);
    checkRange(site, env, acc, out.accAt, out.m * out.n, "acc");
    if (out.m > 0 && out.vectors > 0) {
      checkRange(site, env, table, out.tableAt, out.m * out.vectors * E, "table");
      if (out.n > 0) checkRange(site, env, w, out.wAt, (out.n - 1) * out.wLd + rowBytes(out.vectors), "w");
    }
    return out;
  };
}

function makeCtx(k: Kernel, sys: UpmemSystem, mramBytes: number): Ctx {
  return {
    k,
    sys,
    bufs: new Map(k.wram.map((b) => [b.name, b])),
    index: new Map(k.wram.map((b, i) => [b.name, i])),
    mramBytes,
  };
}

/** Calls `f(item)` for items first, first + every, ... with env holding their grid variables. */
function forItems(
  k: Kernel,
  env: Env,
  first: number,
  every: number,
  e: Vars,
  f: (item: number) => void,
): void {
  const counts = gridCounts(k, env);
  const names = k.grid.map(([v]) => v);
  let n = 1;
  for (const c of counts) n *= c;
  for (let item = first; item < n; item += every) {
    let r = item;
    for (let d = counts.length - 1; d >= 0; d--) {
      const c = counts[d] as number;
      e[names[d] as string] = r % c;
      r = Math.floor(r / c);
    }
    f(item);
  }
}

// ---------------------------------------------------------------------------------------------
// Functional model.

interface Buf {
  readonly bytes: number;
  readonly u8: Uint8Array;
  readonly i8: Int8Array;
  readonly i32: Int32Array;
  readonly f32: Float32Array;
}

function newBuf(b: WramBuffer): Buf {
  const bytes = b.elems * elemBytes(b.dtype);
  const ab = new ArrayBuffer(Math.ceil(bytes / 8) * 8);
  return {
    bytes,
    u8: new Uint8Array(ab),
    i8: new Int8Array(ab),
    i32: new Int32Array(ab),
    f32: new Float32Array(ab),
  };
}

type RunFn = (env: Vars, bufs: readonly Buf[], mram: Uint8Array) => void;

function compileRun(ctx: Ctx, body: readonly KernelStmt[], prefix: string, vars: readonly string[]): RunFn[] {
  return body.map((s, i): RunFn => {
    const site: Site = { where: `kernel ${ctx.k.name} ${stmtLabel(prefix, i, s)}`, vars };
    const idx = (name: string): number => ctx.index.get(name) as number;
    switch (s.op) {
      case "loop": {
        const count = compileCount(site, s.count, "count");
        const inner = compileRun(ctx, s.body, childPrefix(prefix, i, s), [...vars, s.var]);
        const v = s.var;
        return (env, bufs, mram) => {
          const c = count(env);
          for (let it = 0; it < c; it++) {
            env[v] = it;
            for (const f of inner) f(env, bufs, mram);
          }
        };
      }
      case "dma_read":
      case "dma_write": {
        const dma = compileDma(ctx, site, s);
        const b = idx(s.buf);
        const read = s.op === "dma_read";
        return (env, bufs, mram) => {
          const d = dma(env);
          if (d === undefined) return;
          const w = (bufs[b] as Buf).u8;
          const { rows, rowBytes: rb, stride } = d;
          if (stride === rb) {
            const len = rows * rb;
            if (read) w.set(mram.subarray(d.addr, d.addr + len), d.off);
            else mram.set(w.subarray(d.off, d.off + len), d.addr);
            return;
          }
          for (let r = 0; r < rows; r++) {
            const m = d.addr + r * stride;
            const o = d.off + r * rb;
            if (read) w.set(mram.subarray(m, m + rb), o);
            else mram.set(w.subarray(o, o + rb), m);
          }
        };
      }
      case "dma_wait":
        return () => {};
      case "instr":
        return () => {};
      case "fill": {
        const args = compileFill(ctx, site, s);
        const b = idx(s.buf);
        const dtype = (ctx.bufs.get(s.buf) as WramBuffer).dtype;
        const value = s.value;
        return (env, bufs) => {
          const { at, count } = args(env);
          if (count === 0) return;
          const buf = bufs[b] as Buf;
          const arr = dtype === "i8" ? buf.i8 : dtype === "i32" ? buf.i32 : buf.f32;
          arr.fill(value, at, at + count);
        };
      }
      case "mac": {
        const args = compileMac(ctx, site, s);
        const [ci, ai, bi] = [idx(s.acc), idx(s.a), idx(s.b)];
        if ((ctx.bufs.get(s.acc) as WramBuffer).dtype === "i32")
          return (env, bufs) => {
            const { m, n, k, accAt, aAt, bAt } = args(env);
            const C = (bufs[ci] as Buf).i32;
            const A = (bufs[ai] as Buf).i8;
            const B = (bufs[bi] as Buf).i8;
            for (let r = 0; r < m; r++) {
              const ao = aAt + r * k;
              for (let c = 0; c < n; c++) {
                const bo = bAt + c * k;
                let sum = 0;
                for (let t = 0; t < k; t++) sum += (A[ao + t] as number) * (B[bo + t] as number);
                const x = accAt + r * n + c;
                C[x] = (C[x] as number) + sum; // stored modulo 2^32, as on the DPU
              }
            }
          };
        return (env, bufs) => {
          const { m, n, k, accAt, aAt, bAt } = args(env);
          const C = (bufs[ci] as Buf).f32;
          const A = (bufs[ai] as Buf).f32;
          const B = (bufs[bi] as Buf).f32;
          const fr = Math.fround;
          for (let r = 0; r < m; r++) {
            const ao = aAt + r * k;
            for (let c = 0; c < n; c++) {
              const bo = bAt + c * k;
              const x = accAt + r * n + c;
              let acc = C[x] as number;
              for (let t = 0; t < k; t++) acc = fr(acc + fr((A[ao + t] as number) * (B[bo + t] as number)));
              C[x] = acc;
            }
          }
        };
      }
      case "lut_build": {
        const args = compileLut(ctx, site, s);
        const [ti, xi] = [idx(s.table), idx(s.x)];
        const { bits, width } = s;
        const E = lutEntries(bits, width);
        const levels = 1 << bits;
        const lo = -(levels >> 1);
        return (env, bufs) => {
          const { m, vectors, tableAt, xAt } = args(env);
          const T = (bufs[ti] as Buf).i32;
          const X = (bufs[xi] as Buf).i8;
          for (let v = 0; v < m * vectors; v++) {
            const at = tableAt + v * E;
            const xo = xAt + v * width;
            for (let p = 0; p < E; p++) {
              let x = 0;
              let rest = p;
              for (let u = 0; u < width; u++) {
                x += (X[xo + u] as number) * ((rest % levels) + lo);
                rest = (rest - (rest % levels)) / levels;
              }
              T[at + p] = x;
            }
          }
        };
      }
      case "lut_mac": {
        const args = compileLut(ctx, site, s);
        const [ci, ti, wi] = [idx(s.acc), idx(s.table), idx(s.w)];
        const fb = s.bits * s.width;
        const E = lutEntries(s.bits, s.width);
        const mask = E - 1;
        const perByte = 8 / fb;
        return (env, bufs) => {
          const { m, n, vectors, accAt, tableAt, wAt, wLd } = args(env);
          const C = (bufs[ci] as Buf).i32;
          const T = (bufs[ti] as Buf).i32;
          const W = (bufs[wi] as Buf).u8;
          for (let i = 0; i < m; i++)
            for (let j = 0; j < n; j++) {
              let sum = 0;
              const wo = wAt + j * wLd;
              const to = tableAt + i * vectors * E;
              // Byte by byte, its fields in order (the last byte may hold fewer vectors).
              for (let v = 0, at = wo; v < vectors; at++) {
                const byte = W[at] as number;
                for (let f = 0; f < perByte && v < vectors; f++, v++)
                  sum += T[to + v * E + ((byte >> (f * fb)) & mask)] as number;
              }
              const x = accAt + i * n + j;
              C[x] = (C[x] as number) + sum;
            }
        };
      }
      case "vadd": {
        const args = compileVadd(ctx, site, s);
        const [di, si] = [idx(s.dst), idx(s.src)];
        const f32 = (ctx.bufs.get(s.dst) as WramBuffer).dtype === "f32";
        return (env, bufs) => {
          const { dstAt, srcAt, count } = args(env);
          const d = f32 ? (bufs[di] as Buf).f32 : (bufs[di] as Buf).i32;
          const src = f32 ? (bufs[si] as Buf).f32 : (bufs[si] as Buf).i32;
          // Typed-array stores round to fp32 (one rounding of the exact double sum) or wrap mod 2^32.
          for (let x = 0; x < count; x++)
            d[dstAt + x] = (d[dstAt + x] as number) + (src[srcAt + x] as number);
        };
      }
    }
  });
}

/**
 * Runs a kernel on one DPU: `mram` is the DPU's MRAM (little-endian bytes), updated in place. Items run
 * in order 0..n-1, item i on tasklet i mod tasklets with that tasklet's WRAM buffers (zero at launch,
 * kept across the tasklet's items; `shared` buffers are one per DPU). Throws ProgramError on illegal
 * DMAs, out-of-buffer accesses and the static errors of checkKernel.
 */
export function runKernel(k: Kernel, sys: UpmemSystem, mram: Uint8Array, env: Env): void {
  kernelRunner(k, sys, mram.length, env)(mram);
}

/**
 * runKernel for every DPU of a launch: checks and compiles the kernel once, then runs it on each
 * DPU's MRAM of `mramBytes` bytes given to the returned function. The WRAM buffers are allocated
 * once and zeroed at each run (a launch on 2048 DPUs would otherwise allocate tens of thousands).
 */
export function kernelRunner(
  k: Kernel,
  sys: UpmemSystem,
  mramBytes: number,
  env: Env,
): (mram: Uint8Array) => void {
  checkKernel(k, sys, env);
  const ctx = makeCtx(k, sys, mramBytes);
  const body = compileRun(
    ctx,
    k.body,
    "",
    k.grid.map(([v]) => v),
  );
  const shared = k.wram.map((b) => (b.shared ? newBuf(b) : undefined));
  const perTasklet: Buf[][] = [];
  /** Whether tasklet t's buffers were zeroed in this run. */
  const fresh = new Uint8Array(k.tasklets);
  const e: Vars = { ...env };
  return (mram) => {
    if (mram.length !== mramBytes)
      throw new Error(`kernelRunner: an MRAM of ${mram.length} B, compiled for ${mramBytes} B`);
    for (const b of shared) b?.u8.fill(0);
    fresh.fill(0);
    forItems(k, env, 0, 1, e, (item) => {
      const t = item % k.tasklets;
      let bufs = perTasklet[t];
      if (bufs === undefined) bufs = perTasklet[t] = k.wram.map((b, i) => shared[i] ?? newBuf(b));
      else if (fresh[t] === 0) for (let i = 0; i < bufs.length; i++) if (!shared[i]) bufs[i]!.u8.fill(0);
      fresh[t] = 1;
      for (const f of body) f(e, bufs, mram);
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Timing model.

const A_READ = 0;
const A_ASYNC = 1;
const A_WRITE = 2;
const A_WAIT = 3;
const A_END = 4;

/** A tasklet's actions: each is a compute segment (instructions) followed by an event. */
class Actions {
  instr = new Float64Array(64);
  kind = new Uint8Array(64);
  bytes = new Float64Array(64);
  n = 0;
  pending = 0;
  instructions = 0;
  dmaBytes = 0;
  dmaCount = 0;

  compute(x: number): void {
    this.pending += x;
    this.instructions += x;
  }

  event(kind: number, bytes: number): void {
    if (this.n === this.kind.length) {
      const grow = <A extends Float64Array | Uint8Array>(a: A, make: (n: number) => A): A => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.instr = grow(this.instr, (n) => new Float64Array(n));
      this.kind = grow(this.kind, (n) => new Uint8Array(n));
      this.bytes = grow(this.bytes, (n) => new Float64Array(n));
    }
    this.instr[this.n] = this.pending;
    this.kind[this.n] = kind;
    this.bytes[this.n] = bytes;
    this.n++;
    this.pending = 0;
    if (kind <= A_WRITE) {
      this.dmaBytes += bytes;
      this.dmaCount++;
    }
  }
}

/**
 * Tasklet t's action list, emptied: the lists are reused from one timeKernel to the next (timing is
 * synchronous), as the machine's `detailed` option (tests) times thousands of DPUs a launch.
 */
const actionPool: Actions[] = [];
function actionLists(t: number): Actions {
  const a = (actionPool[t] ??= new Actions());
  a.n = 0;
  a.pending = 0;
  a.instructions = 0;
  a.dmaBytes = 0;
  a.dmaCount = 0;
  return a;
}

interface TNode {
  readonly emit: (env: Vars, out: Actions) => void;
  /** Instructions of a compute-only statement (no DMA, no dma_wait inside). */
  readonly cost?: Ev;
  /** Variables the statement and its children read. */
  readonly free: ReadonlySet<string>;
}

function compileTime(
  ctx: Ctx,
  body: readonly KernelStmt[],
  prefix: string,
  vars: readonly string[],
): TNode[] {
  const { isa, dma } = ctx.sys;
  return body.map((s, i): TNode => {
    const site: Site = { where: `kernel ${ctx.k.name} ${stmtLabel(prefix, i, s)}`, vars };
    const free = new Set(stmtVars(s));
    const computeNode = (cost: Ev): TNode => ({ emit: (env, out) => out.compute(cost(env)), cost, free });
    switch (s.op) {
      case "loop": {
        const count = compileCount(site, s.count, "count");
        const inner = compileTime(ctx, s.body, childPrefix(prefix, i, s), [...vars, s.var]);
        const v = s.var;
        const bodyFree = new Set(inner.flatMap((n) => [...n.free]));
        for (const u of bodyFree) if (u !== v) free.add(u);
        const costs = inner.map((n) => n.cost);
        if (costs.every((c) => c !== undefined)) {
          const cs = costs as Ev[];
          const invariant = !bodyFree.has(v);
          const once = (env: Vars): number => {
            let x = 2;
            for (const c of cs) x += c(env);
            return x;
          };
          return computeNode((env) => {
            const c = count(env);
            if (c === 0) return 0;
            if (invariant) return c * once(env);
            let x = 0;
            for (let it = 0; it < c; it++) {
              env[v] = it;
              x += once(env);
            }
            return x;
          });
        }
        return {
          emit: (env, out) => {
            const c = count(env);
            for (let it = 0; it < c; it++) {
              env[v] = it;
              out.compute(2);
              for (const n of inner) n.emit(env, out);
            }
          },
          free,
        };
      }
      case "dma_read":
      case "dma_write": {
        const args = compileDma(ctx, site, s);
        const kind = s.op === "dma_write" ? A_WRITE : s.async ? A_ASYNC : A_READ;
        const chunk = Math.max(dma.align, Math.floor(dma.max_bytes / dma.align) * dma.align);
        const ovh = isa.dma_overhead;
        return {
          emit: (env, out) => {
            const d = args(env);
            if (d === undefined) return;
            if (d.stride === d.rowBytes && d.rows > 1) {
              for (let left = d.rows * d.rowBytes; left > 0; left -= chunk) {
                out.compute(ovh);
                out.event(kind, Math.min(left, chunk));
              }
            } else {
              for (let r = 0; r < d.rows; r++) {
                out.compute(ovh);
                out.event(kind, d.rowBytes);
              }
            }
          },
          free,
        };
      }
      case "dma_wait":
        return { emit: (_env, out) => out.event(A_WAIT, 0), free };
      case "instr": {
        const count = compileCount(site, s.count, "count");
        return computeNode(count);
      }
      case "fill": {
        const args = compileFill(ctx, site, s);
        const eb = elemBytes((ctx.bufs.get(s.buf) as WramBuffer).dtype);
        return computeNode((env) => Math.ceil((args(env).count * eb) / 8));
      }
      case "mac": {
        const args = compileMac(ctx, site, s);
        const perMac = (ctx.bufs.get(s.acc) as WramBuffer).dtype === "f32" ? isa.mac_f32 : isa.mac_i8;
        return computeNode((env) => {
          const { m, n, k } = args(env);
          return m * n * (k * perMac + isa.dot_overhead);
        });
      }
      case "vadd": {
        const args = compileVadd(ctx, site, s);
        const per = (ctx.bufs.get(s.dst) as WramBuffer).dtype === "f32" ? isa.add_f32 : isa.add_i32;
        return computeNode((env) => args(env).count * per);
      }
      case "lut_build": {
        const args = compileLut(ctx, site, s);
        const per = lutBuildInstr(isa, s.bits, s.width);
        return computeNode((env) => {
          const { m, vectors } = args(env);
          return m * vectors * per;
        });
      }
      case "lut_mac": {
        const args = compileLut(ctx, site, s);
        const per = lutLookupInstr(isa, s.bits, s.width);
        return computeNode((env) => {
          const { m, n, vectors } = args(env);
          return m * n * (vectors * per + isa.dot_overhead);
        });
      }
    }
  });
}

type Isa = UpmemSystem["isa"];

/** Instructions to build one activation vector's table. */
export const lutBuildInstr = (isa: Isa, bits: number, width: number): number =>
  lutEntries(bits, width) * isa.lut_entry + isa.lut_vector;

/** Instructions per lookup (one more when the weights' fields are narrower than a byte). */
export const lutLookupInstr = (isa: Isa, bits: number, width: number): number =>
  isa.lut_lookup + (bits * width < 8 ? isa.lut_extract : 0);

const COMPUTING = 0;
const SLEEPING = 1;
const READY = 2;
const DONE = 3;

/**
 * Runs the tasklets' action lists: compute segments share the pipeline (processor sharing: with c
 * tasklets computing, each progresses min(1/issue_interval, 1/c) instructions per cycle), DMAs go
 * through one FIFO engine whose completion times are known at issue. Events at the same time are
 * handled in tasklet order. Returns each tasklet's end cycle.
 */
function simulate(lists: readonly Actions[], sys: UpmemSystem): number[] {
  const T = lists.length;
  const interval = sys.pipeline.issue_interval;
  const { read_alpha, write_alpha, beta } = sys.dma;
  const phase = new Uint8Array(T);
  const pc = new Int32Array(T);
  /** 1 when the compute segment of action pc has run. */
  const computed = new Uint8Array(T);
  /** Virtual time at which a computing tasklet finishes its segment. */
  const vEnd = new Float64Array(T);
  const wake = new Float64Array(T);
  /** Completion of the tasklet's last async DMA. */
  const pending = new Float64Array(T);
  const end = new Array<number>(T).fill(0);
  let t = 0;
  /** Virtual time: instructions executed so far by any tasklet that has been computing throughout. */
  let V = 0;
  let engineFree = 0;
  let computing = 0;
  let done = 0;

  const dmaEnd = (alpha: number, bytes: number): number => {
    engineFree = Math.max(t, engineFree) + alpha + beta * bytes;
    return engineFree;
  };
  /** Tasklet j goes on at time t until it computes, sleeps or ends. */
  const step = (j: number): void => {
    const L = lists[j] as Actions;
    for (;;) {
      const a = pc[j] as number;
      if (computed[j] === 0) {
        computed[j] = 1;
        const n = L.instr[a] as number;
        if (n > 0) {
          phase[j] = COMPUTING;
          vEnd[j] = V + n;
          computing++;
          return;
        }
      }
      const kind = L.kind[a] as number;
      if (kind === A_END) {
        if ((pending[j] as number) > t) {
          phase[j] = SLEEPING;
          wake[j] = pending[j] as number;
        } else {
          phase[j] = DONE;
          end[j] = t;
          done++;
        }
        return;
      }
      pc[j] = a + 1;
      computed[j] = 0;
      if (kind === A_READ || kind === A_WRITE) {
        phase[j] = SLEEPING;
        wake[j] = dmaEnd(kind === A_READ ? read_alpha : write_alpha, L.bytes[a] as number);
        return;
      }
      if (kind === A_ASYNC) {
        pending[j] = Math.max(pending[j] as number, dmaEnd(read_alpha, L.bytes[a] as number));
      } else if ((pending[j] as number) > t) {
        // A_WAIT
        phase[j] = SLEEPING;
        wake[j] = pending[j] as number;
        return;
      }
    }
  };

  for (let j = 0; j < T; j++) step(j);
  while (done < T) {
    let minV = Infinity;
    let minW = Infinity;
    for (let j = 0; j < T; j++) {
      if (phase[j] === COMPUTING) minV = Math.min(minV, vEnd[j] as number);
      else if (phase[j] === SLEEPING) minW = Math.min(minW, wake[j] as number);
    }
    const rate = computing > 0 ? Math.min(1 / interval, 1 / computing) : 0;
    const tc = computing > 0 ? t + (minV - V) / rate : Infinity;
    if (tc <= minW) {
      t = tc;
      V = minV;
    } else {
      V += (minW - t) * rate;
      t = minW;
    }
    const eps = 1e-9 * Math.max(1, V);
    for (let j = 0; j < T; j++) {
      if (phase[j] === COMPUTING && (vEnd[j] as number) <= V + eps) {
        phase[j] = READY;
        computing--;
        step(j);
      } else if (phase[j] === SLEEPING && (wake[j] as number) <= t) {
        phase[j] = READY;
        step(j);
      }
    }
  }
  return end;
}

/**
 * The time one DPU takes to run a kernel, from the dimensions in env only (never from data). Each
 * tasklet runs its items' statements in order as compute segments and DMAs; see `simulate`.
 */
export function timeKernel(k: Kernel, sys: UpmemSystem, env: Env): KernelTiming {
  return kernelTimer(k, sys, env)();
}

/** timeKernel for every DPU of a launch (the machine's `detailed` option, tests): checks and compiles the kernel once. */
export function kernelTimer(k: Kernel, sys: UpmemSystem, env: Env): () => KernelTiming {
  checkKernel(k, sys, env);
  const ctx = makeCtx(k, sys, sys.mram);
  const body = compileTime(
    ctx,
    k.body,
    "",
    k.grid.map(([v]) => v),
  );
  const e: Vars = { ...env };
  return () => {
    const lists: Actions[] = [];
    for (let t = 0; t < k.tasklets; t++) {
      const out = actionLists(t);
      forItems(k, env, t, k.tasklets, e, () => {
        for (const n of body) n.emit(e, out);
      });
      out.event(A_END, 0);
      lists.push(out);
    }
    const perTasklet = simulate(lists, sys);
    const cycles = Math.max(0, ...perTasklet);
    let instructions = 0;
    let dmaBytes = 0;
    let dmaCount = 0;
    for (const L of lists) {
      instructions += L.instructions;
      dmaBytes += L.dmaBytes;
      dmaCount += L.dmaCount;
    }
    return { cycles, seconds: cycles / sys.frequency, instructions, dmaBytes, dmaCount, perTasklet };
  };
}
