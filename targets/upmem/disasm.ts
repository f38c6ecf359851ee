/**
 * The text listing of a UPMEM program (`pimc disasm`): header, host buffers, constants, states, MRAM
 * regions, images, every kernel as indented pseudo-assembly, then the setup and phase command lists.
 * Deterministic: the same program always gives the same text (object keys of limits and attributes
 * are sorted). The notation is described in docs/upmem.md.
 */
import { dimToString, type SymDim } from "../../src/ir/dim.js";
import type { Attr, Attrs } from "../../src/ir/module.js";
import type {
  BlockMap,
  Command,
  DpuRange,
  IntExpr,
  Kernel,
  KernelStmt,
  MramAddr,
  Program,
} from "./program.js";
import { codeBytes } from "./dpu.js";
import { kernelWramBytes } from "./validate.js";

/** A number in its shortest form: `1e-5` rather than `0.00001`. */
export function fmtNum(x: number): string {
  const plain = String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e21) return plain;
  const exp = x.toExponential().replace("e+", "e");
  return exp.length < plain.length ? exp : plain;
}

/** Bytes as `64 MiB`, `24 KiB` or `1000 B`. */
export function fmtBytes(n: number): string {
  if (n >= 2 ** 20 && n % 2 ** 20 === 0) return `${n / 2 ** 20} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

/** MRAM per DPU a program's regions take: resident weights, KV caches, and the X / Y / W buffers. */
export function mramUse(p: Program): { weights: number; caches: number; buffers: number; total: number } {
  const sum = (f: (name: string) => boolean): number =>
    p.regions.filter((r) => f(r.name)).reduce((s, r) => s + r.bytes, 0);
  const weights = sum((n) => n.startsWith("w:"));
  const caches = sum((n) => n.startsWith("kc:") || n.startsWith("vc:"));
  const total = p.regions.reduce((s, r) => Math.max(s, r.offset + r.bytes), 0);
  return { weights, caches, buffers: total - weights - caches, total };
}

/** `8.42 MiB` */
export const mib = (n: number): string => `${(n / 2 ** 20).toFixed(2)} MiB`;

/** "mram 8.42 of 64 MiB per DPU: weights ..., KV caches ..., buffers ..." */
export function mramLine(p: Program): string {
  const u = mramUse(p);
  return `${mib(u.total)} of ${fmtBytes(p.system.mram)} per DPU: weights ${mib(u.weights)}, KV caches ${mib(u.caches)}, buffers ${mib(u.buffers)}`;
}

/** An expression as an operand: bare when it is a number or a name, else parenthesised. */
const ex = (e: IntExpr): string => (typeof e === "number" || /^\w+$/.test(e) ? String(e) : `(${e})`);
/** An expression on its own. */
const ex0 = (e: IntExpr): string => String(e);

const fmtRange = (r: DpuRange): string => `dpus[${r.first}..${r.first + r.count - 1}]`;

function fmtAttr(a: Attr): string {
  if (typeof a === "number") return fmtNum(a);
  if (typeof a === "string") return JSON.stringify(a);
  if (typeof a === "boolean") return String(a);
  if (Array.isArray(a)) return `[${(a as readonly Attr[]).map(fmtAttr).join(", ")}]`;
  return dimToString(a as SymDim);
}

function fmtAttrs(attrs: Attrs): string {
  const keys = Object.keys(attrs).sort();
  return keys.length === 0 ? "" : `{${keys.map((k) => `${k}: ${fmtAttr(attrs[k]!)}`).join(", ")}}`;
}

function fmtAddr(a: MramAddr): string {
  const parts: string[] = [];
  if (a.base !== 0 || a.terms.length === 0) parts.push(ex0(a.base));
  for (const [v, c] of a.terms)
    parts.push(c === 1 ? v : typeof c === "number" || /^[\w*]+$/.test(c) ? `${c}*${v}` : `(${c})*${v}`);
  return `mram[${parts.join(" + ")}]`;
}

function fmtMap(m: BlockMap): string {
  return (
    `map ${ex(m.rows)}x${ex(m.cols)}/${ex(m.blockRows)}x${ex(m.blockCols)} ld=${ex0(m.ld)}` +
    ` blocks=${m.rowBlocks}x${m.colBlocks} every=${m.rowEvery},${m.colEvery}`
  );
}

/** Rows of cells as left-aligned columns, two spaces apart, indented by two. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) =>
    `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}`.trimEnd(),
  );
}

function stmtLines(ss: readonly KernelStmt[], indent: string, out: string[]): void {
  for (const s of ss) {
    switch (s.op) {
      case "loop":
        out.push(`${indent}loop ${s.var} < ${ex0(s.count)}:`);
        stmtLines(s.body, indent + "  ", out);
        break;
      case "dma_read":
        out.push(
          `${indent}dma_read ${s.buf}[${ex0(s.at)}] <- ${fmtAddr(s.addr)} rows=${ex0(s.rows)} bytes=${ex0(s.rowBytes)}` +
            ` stride=${ex0(s.stride)}${s.async ? " async" : ""}`,
        );
        break;
      case "dma_write":
        out.push(
          `${indent}dma_write ${fmtAddr(s.addr)} <- ${s.buf}[${ex0(s.at)}] rows=${ex0(s.rows)} bytes=${ex0(s.rowBytes)}` +
            ` stride=${ex0(s.stride)}`,
        );
        break;
      case "dma_wait":
        out.push(`${indent}dma_wait`);
        break;
      case "fill":
        out.push(`${indent}fill ${s.buf}[${ex0(s.at)}] = ${fmtNum(s.value)} count=${ex0(s.count)}`);
        break;
      case "mac":
        out.push(
          `${indent}mac ${s.acc}[${ex0(s.accAt)}] += ${s.a}[${ex0(s.aAt)}] * ${s.b}[${ex0(s.bAt)}]` +
            ` (m=${ex0(s.m)} n=${ex0(s.n)} k=${ex0(s.k)})`,
        );
        break;
      case "vadd":
        out.push(
          `${indent}vadd ${s.dst}[${ex0(s.dstAt)}] += ${s.src}[${ex0(s.srcAt)}] count=${ex0(s.count)}`,
        );
        break;
      case "lut_build":
        out.push(
          `${indent}lut_build ${s.table}[${ex0(s.tableAt)}] <- ${s.x}[${ex0(s.xAt)}]` +
            ` (m=${ex0(s.m)} vectors=${ex0(s.vectors)} width=${s.width} bits=${s.bits})`,
        );
        break;
      case "lut_mac":
        out.push(
          `${indent}lut_mac ${s.acc}[${ex0(s.accAt)}] += ${s.table}[${ex0(s.tableAt)}][${s.w}[${ex0(s.wAt)}] ld=${ex0(s.wLd)}]` +
            ` (m=${ex0(s.m)} n=${ex0(s.n)} vectors=${ex0(s.vectors)} width=${s.width} bits=${s.bits})`,
        );
        break;
      case "instr":
        out.push(`${indent}instr ${ex0(s.count)} ${JSON.stringify(s.what)}`);
        break;
    }
  }
}

function kernelLines(k: Kernel, p: Program, out: string[]): void {
  const bufs = k.wram.map((b) => `${b.name} ${b.dtype}[${b.elems}]${b.shared ? " shared" : ""}`).join(" ");
  const params = k.params && k.params.length > 0 ? ` params(${k.params.join(", ")})` : "";
  out.push(
    `kernel ${k.name}${params} ${JSON.stringify(k.summary)} tasklets=${k.tasklets} wram: ${bufs || "-"}`,
  );
  out.push(
    `  ; wram ${kernelWramBytes(k, p.system)} of ${p.system.wram} B, iram ${codeBytes(k)} of ${p.system.iram} B`,
  );
  out.push(
    k.grid.length === 0
      ? `  grid (one item)`
      : `  grid ${k.grid.map(([v, c]) => `${v}<${ex0(c)}`).join(", ")}`,
  );
  stmtLines(k.body, "  ", out);
}

function commandText(c: Command, p: Program): string {
  const at = (region: string, off: IntExpr): string => `${region}+${ex(off)}`;
  switch (c.kind) {
    case "alloc":
      return `alloc ${c.dpus} dpus`;
    case "upload": {
      const im = p.images.find((m) => m.name === c.image);
      return im
        ? `upload ${c.image} -> ${im.region} ${fmtRange(im.range)} ${im.bytesPerDpu} B/dpu`
        : `upload ${c.image}`;
    }
    case "load":
      return `load ${c.kernels.join(", ")} ${fmtRange(c.range)}`;
    case "push":
      return `push ${c.buffer} -> ${at(c.region, c.at)} ${fmtRange(c.range)} ${fmtMap(c.map)}`;
    case "broadcast":
      return `broadcast ${c.buffer} -> ${at(c.region, c.at)} ${fmtRange(c.range)} ${fmtMap(c.map)}`;
    case "pull":
      return `pull ${c.buffer} <- ${at(c.region, c.at)} ${fmtRange(c.range)} ${fmtMap(c.map)}${c.reduce ? " reduce" : ""}`;
    case "launch": {
      const a = c.args ?? {};
      const args = Object.keys(a)
        .sort()
        .map((k) => `${k}=${a[k]}`);
      return `launch ${c.kernel}${args.length > 0 ? `(${args.join(", ")})` : ""} ${fmtRange(c.range)}`;
    }
    case "host": {
      const global = new Set([...p.constants.map((x) => x.name), ...p.states.map((x) => x.name)]);
      const ins = c.inputs.map((n) => (global.has(n) ? `@${n}` : n)).join(", ");
      const outs = c.outputs.map((n) => (global.has(n) ? `@${n}` : n)).join(", ");
      const attrs = fmtAttrs(c.attrs);
      return `host ${c.opcode}(${ins}) -> ${outs}${attrs ? `  ${attrs}` : ""}`;
    }
    case "sync":
      return `sync`;
  }
}

function commandLines(cs: readonly Command[], p: Program, out: string[]): void {
  const w = Math.max(1, ...cs.map((c) => String(c.id).length));
  for (const c of cs) {
    const deps = c.deps.length > 0 ? `  deps ${c.deps.join(",")}` : "";
    out.push(`  ${String(c.id).padStart(w)} ${commandText(c, p)}${deps}`);
  }
}

/** The text listing of a program. */
export function disassemble(p: Program): string {
  const s = p.system;
  const out: string[] = [];
  out.push(`; pimc UPMEM program, format version ${p.version}`);
  out.push(`model ${p.model}`);
  out.push(`target ${p.target}`);
  out.push(
    `system ${s.dpus} DPUs (${Math.ceil(s.dpus / s.dpus_per_rank)} ranks x ${s.dpus_per_rank}), ` +
      `${fmtNum(s.frequency / 1e6)} MHz, ${s.max_tasklets} tasklets, MRAM ${fmtBytes(s.mram)}, ` +
      `WRAM ${fmtBytes(s.wram)}, IRAM ${fmtBytes(s.iram)}`,
  );
  const limits = Object.keys(p.limits)
    .sort()
    .map((k) => `${k}=${p.limits[k]}`);
  out.push(`limits ${limits.join(" ") || "-"}`);

  out.push("", `buffers (${p.buffers.length}):`);
  out.push(...table(p.buffers.map((b) => [b.name, `${b.dtype}[${b.shape.map(ex0).join(", ")}]`])));
  out.push("", `constants (${p.constants.length}):`);
  out.push(
    ...table(
      p.constants.map((c) => {
        const bytes = c.shape.reduce((a, b) => a * b, 1) * (c.dtype === "i8" ? 1 : 4);
        return [c.name, `${c.dtype}[${c.shape.join(", ")}]`, `${bytes} B${c.data ? "" : " (no data)"}`];
      }),
    ),
  );
  out.push("", `states (${p.states.length}):`);
  out.push(...table(p.states.map((x) => [x.name, `${x.dtype}[${x.shape.map(ex0).join(", ")}]`])));
  // A weight with a layout per phase has an image per layout, named WEIGHT/PHASES.
  const split = new Set(p.images.filter((m) => m.name.includes("/")).map((m) => m.name.split("/")[0]));
  const resident = new Set(p.images.map((m) => m.name.split("/")[0]));
  out.push(
    "",
    `mram ${mramLine(p)}; ${resident.size} resident weights, ${split.size} with a layout per phase`,
  );
  out.push("", `regions (${p.regions.length}):`);
  out.push(
    ...table(
      p.regions.map((r) => {
        const human = fmtBytes(r.bytes);
        return [
          r.name,
          `offset ${r.offset}`,
          `size ${r.bytes}`,
          human === `${r.bytes} B` ? "" : `(${human})`,
        ];
      }),
    ),
  );
  out.push("", `images (${p.images.length}):`);
  out.push(
    ...table(
      p.images.map((m) => [
        m.name,
        `-> ${m.region}`,
        fmtRange(m.range),
        `${m.bytesPerDpu} B/dpu`,
        m.data ? `data ${m.data.length} B` : "(no data)",
      ]),
    ),
  );
  for (const k of p.kernels) {
    out.push("");
    kernelLines(k, p, out);
  }
  out.push("", `setup:`);
  commandLines(p.setup, p, out);
  for (const ph of p.phases) {
    out.push(
      "",
      `phase ${ph.name} (inputs: ${ph.inputs.join(", ") || "-"}; outputs: ${ph.outputs.join(", ") || "-"}):`,
    );
    commandLines(ph.commands, p, out);
  }
  return out.join("\n") + "\n";
}
