/**
 * The UPMEM program: what the compiler emits and the emulator runs. See docs/upmem.md for the
 * documented semantics of every command and kernel statement.
 *
 * A program has a manifest (system, capacities, host buffers, MRAM regions, kernels) and, per phase
 * (prefill, decode), a list of commands with explicit dependencies and engines. Sizes and counts are
 * `IntExpr`s: integers or expressions over the run-time dimensions B (batch), S (tokens per call) and
 * P (tokens already cached), so one program serves every workload up to its capacities.
 */
import type { Attrs } from "../../src/ir/module.js";
import type { UpmemSystem } from "./system.js";

/** An integer, or an expression over B, S, P: + - * / (exact), // (floor), % , cdiv(a, b), min, max. */
export type IntExpr = number | string;

export type ElemType = "i8" | "i32" | "f32";

// ---------------------------------------------------------------------------------------------
// Kernels: the DPU side.

/** A WRAM buffer, allocated per tasklet (or once per DPU when `shared`). */
export interface WramBuffer {
  readonly name: string;
  readonly dtype: ElemType;
  readonly elems: number;
  readonly shared?: boolean;
}

/** A byte address in MRAM: base + sum of coef * loop variable (grid and loop variables). */
export interface MramAddr {
  readonly base: IntExpr;
  readonly terms: readonly (readonly [variable: string, coef: IntExpr])[];
}

export type KernelStmt =
  /** Sequential loop of the executing tasklet. */
  | {
      readonly op: "loop";
      readonly var: string;
      readonly count: IntExpr;
      readonly body: readonly KernelStmt[];
    }
  /**
   * MRAM -> WRAM: `rows` DMAs of `rowBytes` bytes, MRAM rows `stride` bytes apart, into buffer `buf` from
   * element `at` on, rows packed. `async` DMAs do not block the tasklet until a `dma_wait`.
   */
  | {
      readonly op: "dma_read";
      readonly buf: string;
      readonly at: IntExpr;
      readonly addr: MramAddr;
      readonly rows: IntExpr;
      readonly rowBytes: IntExpr;
      readonly stride: IntExpr;
      readonly async?: boolean;
    }
  /** WRAM -> MRAM, the mirror of dma_read (always blocking). */
  | {
      readonly op: "dma_write";
      readonly buf: string;
      readonly at: IntExpr;
      readonly addr: MramAddr;
      readonly rows: IntExpr;
      readonly rowBytes: IntExpr;
      readonly stride: IntExpr;
    }
  /** Waits for the tasklet's outstanding async DMAs. */
  | { readonly op: "dma_wait" }
  /** buf[at .. at+count) = value. */
  | {
      readonly op: "fill";
      readonly buf: string;
      readonly at: IntExpr;
      readonly count: IntExpr;
      readonly value: number;
    }
  /**
   * acc[accAt + i*n + j] += sum_t a[aAt + i*k + t] * b[bAt + j*k + t] for i < m, j < n, t < k:
   * i8 x i8 -> i32 (exact), or f32 (software float, rounded to fp32 after every multiply and add).
   */
  | {
      readonly op: "mac";
      readonly acc: string;
      readonly accAt: IntExpr;
      readonly a: string;
      readonly aAt: IntExpr;
      readonly b: string;
      readonly bAt: IntExpr;
      readonly m: IntExpr;
      readonly n: IntExpr;
      readonly k: IntExpr;
    }
  /** dst[dstAt + i] += src[srcAt + i] for i < count (i32 wrapping, or f32 rounded): vector add. */
  | {
      readonly op: "vadd";
      readonly dst: string;
      readonly dstAt: IntExpr;
      readonly src: string;
      readonly srcAt: IntExpr;
      readonly count: IntExpr;
    }
  /**
   * LUT-GEMV table build (SAIL / T-MAC style): for every row i < m and activation vector v < vectors
   * (x: i8, `width` inputs each, rows of vectors*width elements from xAt), the table of its dot products
   * with every pattern p of `width` signed `bits`-bit weights:
   * table[tableAt + (i*vectors + v)*E + p] = sum_u x[xAt + i*vectors*width + v*width + u] * (digit_u(p) - 2^(bits-1)),
   * E = 2^(bits*width), digit_u(p) = bits u*bits.. of p (i32 table, exact).
   */
  | {
      readonly op: "lut_build";
      readonly table: string;
      readonly tableAt: IntExpr;
      readonly x: string;
      readonly xAt: IntExpr;
      readonly m: IntExpr;
      readonly vectors: IntExpr;
      readonly width: number;
      readonly bits: number;
    }
  /**
   * LUT-GEMV lookups: acc[accAt + i*n + j] += sum_{v < vectors} table[tableAt + (i*vectors + v)*E + p(j, v)]
   * for i < m, j < n, where the packed weights of output j are the bytes from wAt + j*wLd (buffer w,
   * i8 holding raw bytes) and p(j, v) is their bit field v of bits*width bits (little-endian, fields
   * never cross bytes): the weights' offset-binary digits, which index the table.
   */
  | {
      readonly op: "lut_mac";
      readonly acc: string;
      readonly accAt: IntExpr;
      readonly table: string;
      readonly tableAt: IntExpr;
      readonly w: string;
      readonly wAt: IntExpr;
      readonly wLd: IntExpr;
      readonly m: IntExpr;
      readonly n: IntExpr;
      readonly vectors: IntExpr;
      readonly width: number;
      readonly bits: number;
    }
  /** A block of `count` instructions with no data effect (loop overheads, microbenchmarks). */
  | { readonly op: "instr"; readonly count: IntExpr; readonly what: string };

export interface Kernel {
  readonly name: string;
  /** Names of the parameters a launch binds (see the launch command). */
  readonly params?: readonly string[];
  /** What the kernel is, for people (`gemm.i8 1x16x512`). */
  readonly summary: string;
  readonly tasklets: number;
  readonly wram: readonly WramBuffer[];
  /**
   * The work items: every combination of the grid variables (first varies slowest), dealt to tasklets
   * round-robin (item i to tasklet i mod tasklets); `body` runs once per item.
   */
  readonly grid: readonly (readonly [variable: string, count: IntExpr])[];
  readonly body: readonly KernelStmt[];
}

// ---------------------------------------------------------------------------------------------
// The host side.

/**
 * The model's element type of a float tensor the host holds as f32 (f16 / bf16 checkpoints): host
 * ops on it are timed as moving that many bytes, as the model's CPU code would, while the emulator
 * computes in f32.
 */
export type Storage = "f16" | "bf16";

/** A tensor in host memory. Shapes are IntExprs (e.g. ["B*S", 4096]). */
export interface HostBuffer {
  readonly name: string;
  readonly dtype: "f32" | "i32" | "i8";
  readonly shape: readonly IntExpr[];
  readonly storage?: Storage;
}

/** A region of every DPU's MRAM: [offset, offset + bytes), 8-byte aligned. */
export interface MramRegion {
  readonly name: string;
  readonly offset: number;
  readonly bytes: number;
}

/** A contiguous range of DPUs [first, first + count). */
export interface DpuRange {
  readonly first: number;
  readonly count: number;
}

/**
 * How a host buffer maps to the DPUs of a range in a push or pull. The buffer is viewed as a
 * [rows, cols] matrix of elements and cut into blocks of [blockRows, blockCols]. DPU d (0-based in
 * the range) holds block (rowOf(d), colOf(d)) with
 *   rowOf(d) = floor(d / rowEvery) mod rowBlocks,   colOf(d) = floor(d / colEvery) mod colBlocks,
 * stored row-major at `region + at` with `ld` elements per row. Elements outside the buffer are zeros
 * on push and dropped on pull; when several DPUs hold the same block, `pull` with `reduce` adds them.
 * Examples (docs/upmem.md): weight rows split over D DPUs: rowEvery 1, rowBlocks D, colBlocks 1;
 * a dn x dk grid (d = i*dk + j): rowEvery dk, rowBlocks dn, colEvery 1, colBlocks dk.
 */
export interface BlockMap {
  readonly rows: IntExpr;
  readonly cols: IntExpr;
  readonly blockRows: IntExpr;
  readonly blockCols: IntExpr;
  readonly ld: IntExpr;
  readonly rowEvery: number;
  readonly rowBlocks: number;
  readonly colEvery: number;
  readonly colBlocks: number;
}

export type Command = CommandBody & {
  readonly id: number;
  /** Commands that must finish before this one starts. */
  readonly deps: readonly number[];
};

export type CommandBody =
  /** dpu_alloc: reserve `dpus` DPUs (resource pooling: once per program). */
  | { readonly kind: "alloc"; readonly dpus: number }
  /** Copies an MRAM image of the program (weights in PIM layout) into the DPUs' MRAM. */
  | { readonly kind: "upload"; readonly image: string }
  /** dpu_load: load the named kernels' code into the IRAM of a DPU range. */
  | { readonly kind: "load"; readonly kernels: readonly string[]; readonly range: DpuRange }
  /** Parallel host -> DPU transfer: a different block of `buffer` to each DPU (equal sizes). */
  | {
      readonly kind: "push";
      readonly buffer: string;
      readonly range: DpuRange;
      readonly region: string;
      readonly at: IntExpr;
      readonly map: BlockMap;
    }
  /** The same bytes of `buffer` (all of it, as `map` with a 1x1 grid) to every DPU of the range. */
  | {
      readonly kind: "broadcast";
      readonly buffer: string;
      readonly range: DpuRange;
      readonly region: string;
      readonly at: IntExpr;
      readonly map: BlockMap;
    }
  /** Parallel DPU -> host transfer, the mirror of push. With `reduce`, blocks of the same place add up. */
  | {
      readonly kind: "pull";
      readonly buffer: string;
      readonly range: DpuRange;
      readonly region: string;
      readonly at: IntExpr;
      readonly map: BlockMap;
      readonly reduce?: boolean;
    }
  /**
   * Runs `kernel` on every DPU of the range; the launch ends when the slowest DPU ends. `args` bind
   * the kernel's parameters (variables its expressions use besides B, S, P, grid and loop variables),
   * e.g. the MRAM offset of the weight block, so one kernel serves every layer.
   */
  | {
      readonly kind: "launch";
      readonly kernel: string;
      readonly range: DpuRange;
      readonly args?: Readonly<Record<string, number>>;
    }
  /**
   * A host computation: an IR op (registry opcode and attributes) on host buffers, constants or
   * states (one namespace), run with the reference kernels and timed by the host CPU model. An op
   * with a state operand (kv_append) replaces that state with its first result.
   */
  | {
      readonly kind: "host";
      readonly opcode: string;
      readonly attrs: Attrs;
      readonly inputs: readonly string[];
      readonly outputs: readonly string[];
    }
  /** Waits for everything before it (a barrier). */
  | { readonly kind: "sync" };

export type Engine = "host" | "link" | "dpus";

/** The engine a command occupies. */
export function engineOf(c: CommandBody): Engine {
  switch (c.kind) {
    case "push":
    case "broadcast":
    case "pull":
    case "upload":
      return "link";
    case "launch":
      return "dpus";
    // dpu_alloc and dpu_load are synchronous calls of the host thread.
    case "load":
    case "alloc":
    case "host":
    case "sync":
      return "host";
  }
}

export interface Phase {
  readonly name: string;
  /** Host buffers bound to the phase's inputs (token ids) and outputs (logits), in order. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly commands: readonly Command[];
}

/** A per-DPU image of constant data (weights) in MRAM. */
export interface MramImage {
  readonly name: string;
  readonly region: string;
  readonly range: DpuRange;
  /** Bytes per DPU (the same for each DPU of the range). */
  readonly bytesPerDpu: number;
  /** Concatenated per-DPU bytes (count x bytesPerDpu); absent for shape-only programs. */
  readonly data?: Uint8Array;
}

/** A constant in host memory: f32 (i8 for quantized weights the host multiplies itself). */
export interface HostConstant {
  readonly name: string;
  readonly dtype: "f32" | "i8";
  readonly shape: readonly number[];
  /** Absent in shape-only programs. */
  readonly data?: Float32Array | Int8Array;
  readonly storage?: Storage;
}

/** A KV-cache state kept in host memory between phase calls; T is the number of cached tokens. */
export interface StateBuffer {
  readonly name: string;
  readonly dtype: "f32";
  readonly shape: readonly IntExpr[];
  readonly storage?: Storage;
}

export interface Program {
  readonly version: 1;
  readonly target: "upmem";
  readonly model: string;
  readonly system: UpmemSystem;
  /** Largest values of B, S and P + S the program was laid out for. */
  readonly limits: Readonly<Record<string, number>>;
  readonly buffers: readonly HostBuffer[];
  /** Host constants (norm weights, embedding tables, scales, weights of host GEMMs), logical layout. */
  readonly constants: readonly HostConstant[];
  readonly states: readonly StateBuffer[];
  readonly regions: readonly MramRegion[];
  readonly kernels: readonly Kernel[];
  readonly images: readonly MramImage[];
  /** Setup (alloc, load, weight transfers) runs once, before the first phase call. */
  readonly setup: readonly Command[];
  readonly phases: readonly Phase[];
}
