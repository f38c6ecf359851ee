/**
 * The structural validator of UPMEM programs: a zod schema for the whole Program, then the semantic
 * checks (names, references, expressions and their variables, MRAM regions, DPU ranges, kernel
 * legality where it is static, command dependencies, kernels loaded before they are launched).
 * Every failure is a one-line ProgramError `file: where: what`, with `where` a JSON path into the
 * program (`phases[0].commands[12] (launch)`). See docs/upmem.md for the rules.
 */
import { z } from "zod";
import "../../src/ir/ops/index.js";
import { zSymDim } from "../../src/ir/attrs.js";
import type { Attr } from "../../src/ir/module.js";
import { getOp, operandArity } from "../../src/ir/registry.js";
import { codeBytes, lutEntries, lutFormatError } from "./dpu.js";
import { ProgramError } from "./errors.js";
import { ExprError, evalExpr, exprVars } from "./expr.js";
import type {
  BlockMap,
  Command,
  DpuRange,
  ElemType,
  HostBuffer,
  HostConstant,
  IntExpr,
  Kernel,
  KernelStmt,
  MramAddr,
  MramImage,
  MramRegion,
  Phase,
  Program,
  StateBuffer,
  WramBuffer,
} from "./program.js";
import { wramNeeded, zUpmemSystem, type UpmemSystem } from "./system.js";

// ---------------------------------------------------------------------------------------------
// The schema.

const zName = z.string().min(1);
const zStorage = z.enum(["f16", "bf16"]);
const zIdent = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected an identifier");
const zNat = z.number().int().nonnegative();
const zPos = z.number().int().positive();
/** An IntExpr that is a size, a count or an offset (non-negative when a number). */
const zSize = z.union([zNat, z.string().min(1)]);
/** An IntExpr of any sign (address coefficients). */
const zExpr = z.union([z.number().int(), z.string().min(1)]);
const zElem = z.enum(["i8", "i32", "f32"]);

const zAttr: z.ZodType<Attr> = z.lazy(() =>
  z.union([z.number(), z.string(), z.boolean(), zSymDim, z.array(zAttr)]),
);

const zWramBuffer = z.strictObject({
  name: zIdent,
  dtype: zElem,
  elems: zPos,
  shared: z.boolean().optional(),
});

const zAddr = z.strictObject({ base: zSize, terms: z.array(z.tuple([zIdent, zExpr])) });

const zDma = {
  buf: zName,
  at: zSize,
  addr: zAddr,
  rows: zSize,
  rowBytes: zSize,
  stride: zExpr,
};

const zStmt: z.ZodType<KernelStmt> = z.lazy(() =>
  z.discriminatedUnion("op", [
    z.strictObject({ op: z.literal("loop"), var: zIdent, count: zSize, body: z.array(zStmt) }),
    z.strictObject({ op: z.literal("dma_read"), ...zDma, async: z.boolean().optional() }),
    z.strictObject({ op: z.literal("dma_write"), ...zDma }),
    z.strictObject({ op: z.literal("dma_wait") }),
    z.strictObject({ op: z.literal("fill"), buf: zName, at: zSize, count: zSize, value: z.number() }),
    z.strictObject({
      op: z.literal("mac"),
      acc: zName,
      accAt: zSize,
      a: zName,
      aAt: zSize,
      b: zName,
      bAt: zSize,
      m: zSize,
      n: zSize,
      k: zSize,
    }),
    z.strictObject({
      op: z.literal("vadd"),
      dst: zName,
      dstAt: zSize,
      src: zName,
      srcAt: zSize,
      count: zSize,
    }),
    z.strictObject({
      op: z.literal("lut_build"),
      table: zName,
      tableAt: zSize,
      x: zName,
      xAt: zSize,
      m: zSize,
      vectors: zSize,
      width: zPos,
      bits: zPos,
    }),
    z.strictObject({
      op: z.literal("lut_mac"),
      acc: zName,
      accAt: zSize,
      table: zName,
      tableAt: zSize,
      w: zName,
      wAt: zSize,
      wLd: zSize,
      m: zSize,
      n: zSize,
      vectors: zSize,
      width: zPos,
      bits: zPos,
    }),
    z.strictObject({ op: z.literal("instr"), count: zSize, what: z.string() }),
  ]),
);

const zKernel = z.strictObject({
  name: zName,
  params: z.array(zIdent).optional(),
  summary: z.string(),
  tasklets: zPos,
  wram: z.array(zWramBuffer),
  grid: z.array(z.tuple([zIdent, zSize])),
  body: z.array(zStmt),
});

const zRange = z.strictObject({ first: zNat, count: zPos });

const zMap = z.strictObject({
  rows: zSize,
  cols: zSize,
  blockRows: zSize,
  blockCols: zSize,
  ld: zSize,
  rowEvery: zPos,
  rowBlocks: zPos,
  colEvery: zPos,
  colBlocks: zPos,
});

const cmd = { id: zNat, deps: z.array(zNat) };
const xfer = { buffer: zName, range: zRange, region: zName, at: zSize, map: zMap };

const zCommand = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("alloc"), dpus: zPos, ...cmd }),
  z.strictObject({ kind: z.literal("upload"), image: zName, ...cmd }),
  z.strictObject({ kind: z.literal("load"), kernels: z.array(zName), range: zRange, ...cmd }),
  z.strictObject({ kind: z.literal("push"), ...xfer, ...cmd }),
  z.strictObject({ kind: z.literal("broadcast"), ...xfer, ...cmd }),
  z.strictObject({ kind: z.literal("pull"), ...xfer, reduce: z.boolean().optional(), ...cmd }),
  z.strictObject({
    kind: z.literal("launch"),
    kernel: zName,
    range: zRange,
    args: z.record(zIdent, z.number().int()).optional(),
    ...cmd,
  }),
  z.strictObject({
    kind: z.literal("host"),
    opcode: zName,
    attrs: z.record(z.string(), zAttr),
    inputs: z.array(zName),
    outputs: z.array(zName).min(1),
    ...cmd,
  }),
  z.strictObject({ kind: z.literal("sync"), ...cmd }),
]);

const zProgram = z.strictObject({
  version: z.literal(1),
  target: z.literal("upmem"),
  model: z.string(),
  system: zUpmemSystem,
  limits: z.record(z.string(), zNat),
  buffers: z.array(
    z.strictObject({ name: zName, dtype: zElem, shape: z.array(zSize), storage: zStorage.optional() }),
  ),
  constants: z.array(
    z.strictObject({
      name: zName,
      dtype: z.enum(["f32", "i8"]),
      shape: z.array(zNat),
      data: z.union([z.instanceof(Float32Array), z.instanceof(Int8Array)]).optional(),
      storage: zStorage.optional(),
    }),
  ),
  states: z.array(
    z.strictObject({
      name: zName,
      dtype: z.literal("f32"),
      shape: z.array(zSize),
      storage: zStorage.optional(),
    }),
  ),
  regions: z.array(z.strictObject({ name: zName, offset: zNat, bytes: zPos })),
  kernels: z.array(zKernel),
  images: z.array(
    z.strictObject({
      name: zName,
      region: zName,
      range: zRange,
      bytesPerDpu: zNat,
      data: z.instanceof(Uint8Array).optional(),
    }),
  ),
  setup: z.array(zCommand),
  phases: z.array(
    z.strictObject({
      name: zName,
      inputs: z.array(zName),
      outputs: z.array(zName),
      commands: z.array(zCommand),
    }),
  ),
});

// Compile-time checks that the schema describes exactly the Program type: its output is assignable to
// Program, and every object has the same fields (so a field added to program.ts must be added here).
const _check: z.ZodType<Program> = zProgram;
void _check;
type SameKeys<A, B> = [Exclude<keyof A, keyof B> | Exclude<keyof B, keyof A>] extends [never] ? true : false;
type SameKeysBy<A, B, D extends string> = {
  [K in A[D & keyof A] & string]: SameKeys<Extract<A, Record<D, K>>, Extract<B, Record<D, K>>>;
}[A[D & keyof A] & string];
type Out<T extends z.ZodType> = z.output<T>;
type Elem<T> = T extends readonly (infer E)[] ? E : never;
type POut = Out<typeof zProgram>;
type KOut = Elem<POut["kernels"]>;
type COut = Elem<POut["setup"]>;
type Stmt = Extract<Elem<KOut["body"]>, { op: string }>;
const sameKeys = <_ extends true>(): void => undefined;
sameKeys<SameKeys<Program, POut>>();
sameKeys<SameKeys<Kernel, KOut>>();
sameKeys<SameKeys<WramBuffer, Elem<KOut["wram"]>>>();
sameKeys<SameKeys<MramAddr, Extract<Stmt, { op: "dma_read" }>["addr"]>>();
sameKeys<SameKeysBy<KernelStmt, Stmt, "op">>();
sameKeys<SameKeysBy<Command, COut, "kind">>();
sameKeys<SameKeys<BlockMap, Extract<COut, { kind: "push" }>["map"]>>();
sameKeys<SameKeys<DpuRange, Extract<COut, { kind: "launch" }>["range"]>>();
sameKeys<SameKeys<Phase, Elem<POut["phases"]>>>();
sameKeys<SameKeys<HostBuffer, Elem<POut["buffers"]>>>();
sameKeys<SameKeys<HostConstant, Elem<POut["constants"]>>>();
sameKeys<SameKeys<StateBuffer, Elem<POut["states"]>>>();
sameKeys<SameKeys<MramRegion, Elem<POut["regions"]>>>();
sameKeys<SameKeys<MramImage, Elem<POut["images"]>>>();

// ---------------------------------------------------------------------------------------------
// Helpers.

/** `phases[0].commands[12].map.ld` from a zod path. */
export function fmtPath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const k of path) s += typeof k === "number" ? `[${k}]` : s === "" ? String(k) : `.${String(k)}`;
  return s || "program";
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function zodWhat(issue: z.core.$ZodIssue, root: unknown): string {
  if (issue.code === "unrecognized_keys")
    return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
  if (issue.code === "invalid_union" && "discriminator" in issue && issue.discriminator) {
    const v = valueAt(root, issue.path);
    const opts = (issue as { options?: unknown[] }).options ?? [];
    const what =
      v === undefined
        ? `missing "${issue.discriminator}"`
        : `unknown ${issue.discriminator} ${JSON.stringify(v)}`;
    return `${what} (expected one of ${opts.join(", ")})`;
  }
  return issue.message.replace(/^Invalid input: /, "");
}

const ELEM_BYTES: Record<ElemType, number> = { i8: 1, i32: 4, f32: 4 };
const HOST_VARS: ReadonlySet<string> = new Set(["B", "S", "P"]);
const STATE_VARS: ReadonlySet<string> = new Set(["B", "S", "P", "T"]);
/** Names grid and loop variables may not take. */
const RESERVED: ReadonlySet<string> = new Set(["B", "S", "P", "T", "cdiv", "min", "max"]);

/**
 * WRAM bytes a kernel takes: its private buffers and stack per tasklet, plus its shared buffers once
 * (the formula of dpu.ts checkKernel).
 */
export function kernelWramBytes(k: Kernel, sys: UpmemSystem): number {
  let priv = 0;
  let shared = 0;
  for (const b of k.wram) {
    if (b.shared) shared += b.elems * ELEM_BYTES[b.dtype];
    else priv += b.elems * ELEM_BYTES[b.dtype];
  }
  return wramNeeded(sys, k.tasklets, priv, shared);
}

type Fail = (where: string, what: string) => never;

/** Per-DPU sets of loaded kernels, as sorted disjoint segments [start, end). */
interface Seg {
  readonly start: number;
  readonly end: number;
  readonly kernels: ReadonlySet<string>;
}

function applyLoad(segs: readonly Seg[], r: DpuRange, kernels: ReadonlySet<string>): Seg[] {
  const end = r.first + r.count;
  const out: Seg[] = [];
  for (const s of segs) {
    if (s.end <= r.first || s.start >= end) out.push(s);
    else {
      if (s.start < r.first) out.push({ start: s.start, end: r.first, kernels: s.kernels });
      if (s.end > end) out.push({ start: end, end: s.end, kernels: s.kernels });
    }
  }
  out.push({ start: r.first, end, kernels });
  return out.sort((a, b) => a.start - b.start);
}

/** The first DPU of the range where `kernel` is not loaded, or undefined. */
function notLoadedAt(segs: readonly Seg[], r: DpuRange, kernel: string): number | undefined {
  const end = r.first + r.count;
  let pos = r.first;
  for (const s of segs) {
    if (s.end <= pos) continue;
    if (s.start > pos || !s.kernels.has(kernel)) return pos;
    pos = s.end;
    if (pos >= end) return undefined;
  }
  return pos;
}

const fmtRange = (r: DpuRange): string => `dpus[${r.first}..${r.first + r.count - 1}]`;

// ---------------------------------------------------------------------------------------------
// The semantic checks.

class Checker {
  readonly buffers = new Map<string, Program["buffers"][number]>();
  readonly constants = new Set<string>();
  readonly states = new Set<string>();
  readonly regions = new Map<string, Program["regions"][number]>();
  readonly kernels = new Map<string, Kernel>();
  readonly images = new Set<string>();
  /** DPUs commands may use: the alloc's count, else the system's. */
  dpus: number;

  constructor(
    readonly p: Program,
    readonly fail: Fail,
  ) {
    this.dpus = p.system.dpus;
  }

  /** Checks that `e` parses and reads only variables in `vars`. */
  expr(e: IntExpr, vars: ReadonlySet<string>, where: string, allowed = "B, S, P"): void {
    if (typeof e === "number") return;
    let used: string[];
    try {
      used = exprVars(e);
    } catch (err) {
      if (err instanceof ExprError) this.fail(where, err.message);
      throw err;
    }
    for (const v of used)
      if (!vars.has(v))
        this.fail(where, `expression "${e}" uses unknown variable ${v} (allowed: ${allowed})`);
  }

  /** The value of an expression without variables, else undefined. */
  static constant(e: IntExpr): number | undefined {
    if (typeof e === "number") return e;
    if (exprVars(e).length > 0) return undefined;
    try {
      return evalExpr(e, {});
    } catch {
      return undefined;
    }
  }

  range(r: DpuRange, where: string): void {
    if (r.first + r.count > this.dpus)
      this.fail(
        where,
        `${fmtRange(r)} is outside the ${this.dpus} DPUs ${this.dpus === this.p.system.dpus ? "of the system" : "allocated"}`,
      );
  }

  /** Checks that the names of `xs` are unique (in `seen` too, when given). */
  unique(
    xs: readonly { readonly name: string }[],
    list: string,
    what: string,
    seen = new Map<string, string>(),
  ): void {
    xs.forEach(({ name }, i) => {
      const prev = seen.get(name);
      if (prev !== undefined) this.fail(`${list}[${i}]`, `duplicate ${what} "${name}" (also ${prev})`);
      seen.set(name, `${list}[${i}]`);
    });
  }

  run(): void {
    const p = this.p;
    const sys = p.system;
    // One namespace for host buffers, constants and states.
    const host = new Map<string, string>();
    this.unique(p.buffers, "buffers", "host name", host);
    this.unique(p.constants, "constants", "host name", host);
    this.unique(p.states, "states", "host name", host);
    this.unique(p.regions, "regions", "region");
    this.unique(p.kernels, "kernels", "kernel");
    this.unique(p.images, "images", "image");
    this.unique(p.phases, "phases", "phase");
    for (const b of p.buffers) this.buffers.set(b.name, b);
    for (const c of p.constants) this.constants.add(c.name);
    for (const s of p.states) this.states.add(s.name);
    for (const r of p.regions) this.regions.set(r.name, r);
    for (const k of p.kernels) this.kernels.set(k.name, k);
    for (const m of p.images) this.images.add(m.name);

    p.buffers.forEach((b, i) =>
      b.shape.forEach((d, j) => this.expr(d, HOST_VARS, `buffers[${i}].shape[${j}]`)),
    );
    p.states.forEach((s, i) =>
      s.shape.forEach((d, j) => this.expr(d, STATE_VARS, `states[${i}].shape[${j}]`, "B, S, P, T")),
    );
    p.constants.forEach((c, i) => {
      const n = c.shape.reduce((a, b) => a * b, 1);
      if (!c.data) return;
      const got = c.data instanceof Float32Array ? "f32" : "i8";
      if (got !== c.dtype) this.fail(`constants[${i}].data`, `${got} data for a constant of type ${c.dtype}`);
      if (c.data.length !== n)
        this.fail(
          `constants[${i}].data`,
          `has ${c.data.length} elements, shape [${c.shape.join(", ")}] needs ${n}`,
        );
    });

    // MRAM regions: aligned, inside MRAM, disjoint.
    p.regions.forEach((r, i) => {
      const where = `regions[${i}] (${r.name})`;
      if (r.offset % 8 !== 0) this.fail(where, `offset ${r.offset} is not 8-byte aligned`);
      if (r.bytes % 8 !== 0) this.fail(where, `size ${r.bytes} is not a multiple of 8 bytes`);
      if (r.offset + r.bytes > sys.mram)
        this.fail(
          where,
          `[${r.offset}, ${r.offset + r.bytes}) does not fit in the ${sys.mram} bytes of MRAM`,
        );
    });
    const sorted = p.regions.map((r, i) => ({ r, i })).sort((a, b) => a.r.offset - b.r.offset);
    for (let j = 1; j < sorted.length; j++) {
      const a = sorted[j - 1]!;
      const b = sorted[j]!;
      if (a.r.offset + a.r.bytes > b.r.offset)
        this.fail(
          `regions[${b.i}] (${b.r.name})`,
          `[${b.r.offset}, ${b.r.offset + b.r.bytes}) overlaps region "${a.r.name}" [${a.r.offset}, ${a.r.offset + a.r.bytes})`,
        );
    }

    p.kernels.forEach((k, i) => this.kernel(k, `kernels[${i}]`));

    // The DPU allocation: at most one, in setup.
    const allocs = p.setup.filter((c) => c.kind === "alloc");
    if (allocs.length > 1) this.fail(`setup`, `${allocs.length} alloc commands (at most one)`);
    const alloc = allocs[0];
    if (alloc?.kind === "alloc") {
      const i = p.setup.indexOf(alloc);
      if (alloc.dpus > sys.dpus)
        this.fail(`setup[${i}] (alloc)`, `allocates ${alloc.dpus} DPUs, the system has ${sys.dpus}`);
      this.dpus = alloc.dpus;
    }

    p.images.forEach((m, i) => {
      const where = `images[${i}] (${m.name})`;
      const r = this.regions.get(m.region);
      if (!r) this.fail(where, `unknown region "${m.region}"`);
      this.range(m.range, where);
      if (m.bytesPerDpu > r.bytes)
        this.fail(
          where,
          `${m.bytesPerDpu} bytes per DPU do not fit in region "${r.name}" (${r.bytes} bytes)`,
        );
      if (m.data && m.data.length !== m.range.count * m.bytesPerDpu)
        this.fail(
          where,
          `data has ${m.data.length} bytes, ${m.range.count} DPUs x ${m.bytesPerDpu} bytes need ${m.range.count * m.bytesPerDpu}`,
        );
    });

    const afterSetup = this.commands(p.setup, "setup", []);
    p.phases.forEach((ph, i) => {
      const where = `phases[${i}] (${ph.name})`;
      ph.inputs.forEach((n, j) => {
        if (!this.buffers.has(n)) this.fail(`${where}.inputs[${j}]`, `unknown host buffer "${n}"`);
      });
      ph.outputs.forEach((n, j) => {
        if (!this.buffers.has(n)) this.fail(`${where}.outputs[${j}]`, `unknown host buffer "${n}"`);
      });
      this.commands(ph.commands, `phases[${i}].commands`, afterSetup);
    });
  }

  kernel(k: Kernel, where: string): void {
    const sys = this.p.system;
    if (k.tasklets > sys.max_tasklets)
      this.fail(where, `kernel "${k.name}" uses ${k.tasklets} tasklets, the DPUs have ${sys.max_tasklets}`);
    const bufs = new Map<string, WramBuffer>();
    this.unique(k.wram, `${where}.wram`, "WRAM buffer");
    for (const b of k.wram) bufs.set(b.name, b);
    const wram = kernelWramBytes(k, sys);
    if (wram > sys.wram)
      this.fail(
        where,
        `kernel "${k.name}" needs ${wram} bytes of WRAM (buffers and stacks), the DPUs have ${sys.wram}`,
      );
    const iram = codeBytes(k);
    if (iram > sys.iram)
      this.fail(where, `kernel "${k.name}" needs ${iram} bytes of IRAM, the DPUs have ${sys.iram}`);
    const scope = new Set(HOST_VARS);
    (k.params ?? []).forEach((v, i) => {
      if (RESERVED.has(v) || scope.has(v))
        this.fail(`${where}.params[${i}]`, `parameter "${v}" is reserved or repeated`);
      scope.add(v);
    });
    const outer = new Set(scope);
    const allowed = [...outer].join(", ");
    k.grid.forEach(([v, count], i) => {
      this.expr(count, outer, `${where}.grid[${i}]`, allowed);
      if (RESERVED.has(v) || scope.has(v))
        this.fail(`${where}.grid[${i}]`, `grid variable "${v}" is reserved or repeated`);
      scope.add(v);
    });
    this.stmts(k.body, `${where}.body`, scope, bufs);
  }

  stmts(
    ss: readonly KernelStmt[],
    where: string,
    scope: Set<string>,
    bufs: ReadonlyMap<string, WramBuffer>,
  ): void {
    const dma = this.p.system.dma;
    const allowed = (): string => [...scope].join(", ");
    ss.forEach((s, i) => {
      const at = `${where}[${i}] (${s.op})`;
      const ex = (e: IntExpr, field: string): void => this.expr(e, scope, `${at}.${field}`, allowed());
      const buf = (name: string, field: string): WramBuffer => {
        const b = bufs.get(name);
        if (!b) this.fail(`${at}.${field}`, `unknown WRAM buffer "${name}"`);
        return b;
      };
      /** Static bounds check of elements [start, start + count) of a buffer, when both are constant. */
      const bounds = (b: WramBuffer, start: IntExpr, count: IntExpr | number, field: string): void => {
        const s0 = Checker.constant(start);
        const n = Checker.constant(count);
        if (s0 !== undefined && n !== undefined && s0 + n > b.elems)
          this.fail(
            `${at}.${field}`,
            `elements [${s0}, ${s0 + n}) are outside WRAM buffer "${b.name}" (${b.elems} elements)`,
          );
      };
      switch (s.op) {
        case "loop": {
          ex(s.count, "count");
          if (RESERVED.has(s.var) || scope.has(s.var))
            this.fail(at, `loop variable "${s.var}" is reserved or already in scope`);
          scope.add(s.var);
          this.stmts(s.body, `${at}.body`, scope, bufs);
          scope.delete(s.var);
          break;
        }
        case "dma_read":
        case "dma_write": {
          const b = buf(s.buf, "buf");
          for (const f of ["at", "rows", "rowBytes", "stride"] as const) ex(s[f], f);
          this.addr(s.addr, `${at}.addr`, scope, allowed());
          const rows = Checker.constant(s.rows);
          if (rows === 0) break; // a DMA without rows does nothing
          const rowBytes = Checker.constant(s.rowBytes);
          if (rowBytes !== undefined) {
            if (rowBytes < dma.min_bytes || rowBytes > dma.max_bytes || rowBytes % dma.align !== 0)
              this.fail(
                `${at}.rowBytes`,
                `a DMA moves ${dma.min_bytes}..${dma.max_bytes} bytes, a multiple of ${dma.align}; got ${rowBytes}`,
              );
          }
          const stride = Checker.constant(s.stride);
          if (stride !== undefined && rows !== undefined && rows > 1 && stride % dma.align !== 0)
            this.fail(`${at}.stride`, `MRAM stride ${stride} is not a multiple of ${dma.align}`);
          const e = ELEM_BYTES[b.dtype];
          const start = Checker.constant(s.at);
          if (start !== undefined && (start * e) % 8 !== 0)
            this.fail(
              `${at}.at`,
              `WRAM address ${b.name}[${start}] (byte ${start * e}) is not 8-byte aligned`,
            );
          if (
            start !== undefined &&
            rows !== undefined &&
            rowBytes !== undefined &&
            start * e + rows * rowBytes > b.elems * e
          )
            this.fail(
              at,
              `${rows} x ${rowBytes} bytes from ${b.name}[${start}] overflow WRAM buffer "${b.name}" (${b.elems * e} bytes)`,
            );
          break;
        }
        case "dma_wait":
          break;
        case "fill": {
          const b = buf(s.buf, "buf");
          ex(s.at, "at");
          ex(s.count, "count");
          bounds(b, s.at, s.count, "count");
          if (b.dtype !== "f32" && !Number.isInteger(s.value))
            this.fail(`${at}.value`, `${s.value} is not an integer (buffer "${b.name}" is ${b.dtype})`);
          if (b.dtype === "i8" && (s.value < -128 || s.value > 127))
            this.fail(`${at}.value`, `${s.value} does not fit in i8`);
          if (b.dtype === "i32" && (s.value < -(2 ** 31) || s.value >= 2 ** 31))
            this.fail(`${at}.value`, `${s.value} does not fit in i32`);
          break;
        }
        case "mac": {
          const acc = buf(s.acc, "acc");
          const a = buf(s.a, "a");
          const b = buf(s.b, "b");
          for (const f of ["accAt", "aAt", "bAt", "m", "n", "k"] as const) ex(s[f], f);
          const ok =
            (acc.dtype === "i32" && a.dtype === "i8" && b.dtype === "i8") ||
            (acc.dtype === "f32" && a.dtype === "f32" && b.dtype === "f32");
          if (!ok)
            this.fail(
              at,
              `mac needs i32 += i8 x i8 or f32 += f32 x f32, got ${acc.dtype} += ${a.dtype} x ${b.dtype}`,
            );
          const [m, n, k] = [Checker.constant(s.m), Checker.constant(s.n), Checker.constant(s.k)];
          if (m !== undefined && n !== undefined) bounds(acc, s.accAt, m * n, "accAt");
          if (m !== undefined && k !== undefined) bounds(a, s.aAt, m * k, "aAt");
          if (n !== undefined && k !== undefined) bounds(b, s.bAt, n * k, "bAt");
          break;
        }
        case "vadd": {
          const d = buf(s.dst, "dst");
          const src = buf(s.src, "src");
          for (const f of ["dstAt", "srcAt", "count"] as const) ex(s[f], f);
          if (d.dtype !== src.dtype || d.dtype === "i8")
            this.fail(at, `vadd needs i32 += i32 or f32 += f32, got ${d.dtype} += ${src.dtype}`);
          bounds(d, s.dstAt, s.count, "dstAt");
          bounds(src, s.srcAt, s.count, "srcAt");
          break;
        }
        case "lut_build":
        case "lut_mac": {
          const why = lutFormatError(s.bits, s.width);
          if (why) this.fail(at, why);
          const E = lutEntries(s.bits, s.width);
          const table = buf(s.table, "table");
          for (const f of ["tableAt", "m", "vectors"] as const) ex(s[f], f);
          const [m, v] = [Checker.constant(s.m), Checker.constant(s.vectors)];
          if (m !== undefined && v !== undefined) bounds(table, s.tableAt, m * v * E, "tableAt");
          if (s.op === "lut_build") {
            const x = buf(s.x, "x");
            ex(s.xAt, "xAt");
            if (table.dtype !== "i32" || x.dtype !== "i8")
              this.fail(at, `lut_build needs an i32 table from i8 x, got ${table.dtype} from ${x.dtype}`);
            if (m !== undefined && v !== undefined) bounds(x, s.xAt, m * v * s.width, "xAt");
          } else {
            const acc = buf(s.acc, "acc");
            const w = buf(s.w, "w");
            for (const f of ["accAt", "wAt", "wLd", "n"] as const) ex(s[f], f);
            if (acc.dtype !== "i32" || table.dtype !== "i32" || w.dtype !== "i8")
              this.fail(
                at,
                `lut_mac needs i32 += i32 table[i8 weights], got ${acc.dtype} += ${table.dtype}[${w.dtype}]`,
              );
            const n = Checker.constant(s.n);
            if (m !== undefined && n !== undefined) bounds(acc, s.accAt, m * n, "accAt");
          }
          break;
        }
        case "instr":
          ex(s.count, "count");
          break;
      }
    });
  }

  addr(a: MramAddr, where: string, scope: ReadonlySet<string>, allowed: string): void {
    const align = this.p.system.dma.align;
    this.expr(a.base, scope, `${where}.base`, allowed);
    const base = Checker.constant(a.base);
    if (base !== undefined && base % align !== 0)
      this.fail(`${where}.base`, `MRAM address ${base} is not ${align}-byte aligned`);
    a.terms.forEach(([v, coef], i) => {
      if (!scope.has(v)) this.fail(`${where}.terms[${i}]`, `unknown variable ${v} (allowed: ${allowed})`);
      this.expr(coef, scope, `${where}.terms[${i}]`, allowed);
      const c = Checker.constant(coef);
      if (c !== undefined && c % align !== 0)
        this.fail(
          `${where}.terms[${i}]`,
          `coefficient ${c} of ${v} is not a multiple of ${align} (unaligned MRAM addresses)`,
        );
    });
  }

  /** Checks a command list; returns the loaded kernels after it. */
  commands(cs: readonly Command[], where: string, loaded: readonly Seg[]): readonly Seg[] {
    const ids = new Set<number>();
    let segs = loaded;
    const sys = this.p.system;
    cs.forEach((c, i) => {
      const at = `${where}[${i}] (${c.kind}${c.id !== i ? ` #${c.id}` : ""})`;
      for (const d of c.deps) {
        if (d === c.id) this.fail(at, `depends on itself`);
        if (!ids.has(d)) this.fail(at, `dependency ${d} is not an earlier command of this list`);
      }
      if (new Set(c.deps).size !== c.deps.length) this.fail(at, `repeated dependency`);
      if (ids.has(c.id)) this.fail(at, `duplicate command id ${c.id}`);
      ids.add(c.id);
      switch (c.kind) {
        case "alloc": // in a phase: per-call allocation (no resource pooling)
          break;
        case "upload":
          if (!this.images.has(c.image)) this.fail(at, `unknown image "${c.image}"`);
          break;
        case "load": {
          this.range(c.range, at);
          let code = 0;
          for (const k of c.kernels) {
            const kd = this.kernels.get(k);
            if (!kd) this.fail(at, `unknown kernel "${k}"`);
            code += codeBytes(kd);
          }
          if (new Set(c.kernels).size !== c.kernels.length) this.fail(at, `a kernel is loaded twice`);
          if (code > sys.iram)
            this.fail(at, `the kernels need ${code} bytes of IRAM, the DPUs have ${sys.iram}`);
          segs = applyLoad(segs, c.range, new Set(c.kernels));
          break;
        }
        case "launch": {
          const k = this.kernels.get(c.kernel);
          if (!k) this.fail(at, `unknown kernel "${c.kernel}"`);
          this.range(c.range, at);
          const params = k.params ?? [];
          const args = c.args ?? {};
          for (const a of Object.keys(args))
            if (!params.includes(a)) this.fail(`${at}.args`, `kernel "${k.name}" has no parameter ${a}`);
          for (const v of params)
            if (!(v in args)) this.fail(at, `missing argument ${v} of kernel "${k.name}"`);
          const d = notLoadedAt(segs, c.range, c.kernel);
          if (d !== undefined)
            this.fail(
              at,
              `kernel "${c.kernel}" is not loaded on DPU ${d} of ${fmtRange(c.range)} by an earlier load`,
            );
          break;
        }
        case "push":
        case "broadcast":
        case "pull":
          this.transfer(c, at);
          break;
        case "host": {
          const def = getOp(c.opcode);
          if (!def) this.fail(at, `unknown host opcode "${c.opcode}"`);
          const { min, max } = operandArity(def);
          if (c.inputs.length < min || c.inputs.length > max)
            this.fail(
              at,
              `${c.opcode} takes ${min === max ? min : `${min}..${max === Infinity ? "" : max}`} inputs, got ${c.inputs.length}`,
            );
          c.inputs.forEach((n, j) => {
            if (!this.buffers.has(n) && !this.constants.has(n) && !this.states.has(n))
              this.fail(`${at}.inputs[${j}]`, `unknown host buffer, constant or state "${n}"`);
          });
          c.outputs.forEach((n, j) => {
            if (this.constants.has(n)) this.fail(`${at}.outputs[${j}]`, `writes constant "${n}"`);
            if (!this.buffers.has(n) && !this.states.has(n))
              this.fail(`${at}.outputs[${j}]`, `unknown host buffer or state "${n}"`);
          });
          break;
        }
        case "sync":
          break;
      }
    });
    return segs;
  }

  transfer(c: Extract<Command, { kind: "push" | "broadcast" | "pull" }>, at: string): void {
    // Pushes may send constants too (weights sent at every call when there is no pooling).
    const b =
      this.buffers.get(c.buffer) ??
      (c.kind === "pull" ? undefined : this.p.constants.find((x) => x.name === c.buffer));
    if (!b) this.fail(`${at}.buffer`, `unknown host buffer "${c.buffer}"`);
    const r = this.regions.get(c.region);
    if (!r) this.fail(`${at}.region`, `unknown region "${c.region}"`);
    this.range(c.range, at);
    this.expr(c.at, HOST_VARS, `${at}.at`);
    const m: BlockMap = c.map;
    for (const f of ["rows", "cols", "blockRows", "blockCols", "ld"] as const)
      this.expr(m[f], HOST_VARS, `${at}.map.${f}`);
    if (c.kind === "broadcast" && (m.rowBlocks !== 1 || m.colBlocks !== 1))
      this.fail(`${at}.map`, `a broadcast sends one block (rowBlocks and colBlocks must be 1)`);
    if (c.kind === "pull" && c.reduce && b.dtype === "i8") this.fail(at, `pull with reduce of an i8 buffer`);
    const off = Checker.constant(c.at);
    if (off !== undefined && off % 8 !== 0) this.fail(`${at}.at`, `MRAM offset ${off} is not 8-byte aligned`);
    const [br, bc, ld] = [
      Checker.constant(m.blockRows),
      Checker.constant(m.blockCols),
      Checker.constant(m.ld),
    ];
    if (bc !== undefined && ld !== undefined && ld < bc)
      this.fail(`${at}.map.ld`, `ld ${ld} is smaller than blockCols ${bc}`);
    if (off !== undefined && br !== undefined && bc !== undefined && ld !== undefined && br > 0) {
      const bytes = ((br - 1) * ld + bc) * ELEM_BYTES[b.dtype];
      if (off + bytes > r.bytes)
        this.fail(
          at,
          `a block of ${bytes} bytes at offset ${off} overflows region "${r.name}" (${r.bytes} bytes)`,
        );
    }
  }
}

/**
 * Checks that `p` is a well-formed UPMEM program and returns it typed (system defaults filled in).
 * Throws ProgramError `file: where: what` on the first problem found.
 */
export function validateProgram(p: unknown, file: string): Program {
  const fail: Fail = (where, what) => {
    throw new ProgramError(`${file}: ${where}: ${what}`);
  };
  const r = zProgram.safeParse(p);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    fail(fmtPath(issue.path), zodWhat(issue, p));
  }
  const prog: Program = r.data;
  new Checker(prog, fail).run();
  return prog;
}
