import { describe, it, expect } from "vitest";
import { checkKernel, codeBytes, elemBytes, gridItems, runKernel, timeKernel } from "../targets/upmem/dpu.js";
import { ProgramError } from "../targets/upmem/errors.js";
import { gemmKernel as gemmKernelOf, kernelModel } from "../targets/upmem/gemm.js";
import type { Kernel, KernelStmt } from "../targets/upmem/program.js";
import { DEFAULT_SYSTEM, zUpmemSystem } from "../targets/upmem/system.js";
import { rng } from "./util.js";

const sys = DEFAULT_SYSTEM;
const sys350 = zUpmemSystem.parse({ frequency: 350e6 });

// Y[M, N] = X[M, K] . W[N, K]^T with M = S; tiles of TM x TN outputs, K in chunks of KC.
const [M, N, K, TM, TN, KC] = [8, 16, 64, 2, 4, 16];
const NK = K / KC;
const env = { B: 1, S: M, P: 0 };

function gemmKernel(tasklets: number, f32: boolean, double: boolean): Kernel {
  const eb = f32 ? 4 : 1;
  const dt = f32 ? "f32" : "i8";
  const wBase = `S*${K * eb}`;
  const yBase = `S*${K * eb} + ${N * K * eb}`;
  const xs = double ? 2 : 1;
  /** Reads chunk `kk + shift` (chunk `shift` outside the kk loops) of the X (xb) or W (wb) tile. */
  const read = (
    buf: "xb" | "wb",
    at: string | number,
    shift: number,
    async: boolean,
    inLoop = true,
  ): KernelStmt => {
    const [grid, rows, base] =
      buf === "xb" ? (["mi", TM, ""] as const) : (["ni", TN, `${wBase} + `] as const);
    const terms: [string, number][] = [[grid, rows * K * eb]];
    if (inLoop) terms.push(["kk", KC * eb]);
    return {
      op: "dma_read",
      buf,
      at,
      addr: { base: `${base}${shift * KC * eb}`, terms },
      rows,
      rowBytes: KC * eb,
      stride: K * eb,
      ...(async ? { async: true } : {}),
    };
  };
  const mac = (slot: string | number): KernelStmt => ({
    op: "mac",
    acc: "acc",
    accAt: 0,
    a: "xb",
    aAt: typeof slot === "number" ? slot * TM * KC : `${slot}*${TM * KC}`,
    b: "wb",
    bAt: typeof slot === "number" ? slot * TN * KC : `${slot}*${TN * KC}`,
    m: TM,
    n: TN,
    k: KC,
  });
  const single: KernelStmt[] = [
    { op: "loop", var: "kk", count: NK, body: [read("xb", 0, 0, false), read("wb", 0, 0, false), mac(0)] },
  ];
  // Prefetch chunk 0, then read chunk kk + 1 into the other slot while computing on chunk kk.
  const pipelined: KernelStmt[] = [
    read("xb", 0, 0, true, false),
    read("wb", 0, 0, true, false),
    {
      op: "loop",
      var: "kk",
      count: NK - 1,
      body: [
        { op: "dma_wait" },
        read("xb", `(kk+1)%2*${TM * KC}`, 1, true),
        read("wb", `(kk+1)%2*${TN * KC}`, 1, true),
        mac("kk%2"),
      ],
    },
    { op: "dma_wait" },
    mac((NK - 1) % 2),
  ];
  return {
    name: `gemm_${dt}${double ? "_db" : ""}`,
    summary: `gemm.${dt} ${M}x${N}x${K}`,
    tasklets,
    wram: [
      { name: "xb", dtype: dt, elems: xs * TM * KC },
      { name: "wb", dtype: dt, elems: xs * TN * KC },
      { name: "acc", dtype: f32 ? "f32" : "i32", elems: TM * TN },
    ],
    grid: [
      ["mi", `S/${TM}`],
      ["ni", N / TN],
    ],
    body: [
      { op: "fill", buf: "acc", at: 0, count: TM * TN, value: 0 },
      ...(double ? pipelined : single),
      {
        op: "dma_write",
        buf: "acc",
        at: 0,
        addr: {
          base: yBase,
          terms: [
            ["mi", TM * N * 4],
            ["ni", TN * 4],
          ],
        },
        rows: TM,
        rowBytes: TN * 4,
        stride: N * 4,
      },
    ],
  };
}

const yOff = (eb: number): number => M * K * eb + N * K * eb;

function i8Mram(seed: number): { mram: Uint8Array; x: Int8Array; w: Int8Array } {
  const r = rng(seed);
  const mram = new Uint8Array(yOff(1) + M * N * 4 + 64);
  const x = new Int8Array(mram.buffer, 0, M * K);
  const w = new Int8Array(mram.buffer, M * K, N * K);
  for (let i = 0; i < x.length; i++) x[i] = Math.floor(r() * 256) - 128;
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(r() * 256) - 128;
  return { mram, x, w };
}

function f32Mram(seed: number): { mram: Uint8Array; x: Float32Array; w: Float32Array } {
  const r = rng(seed);
  const mram = new Uint8Array(yOff(4) + M * N * 4 + 64);
  const x = new Float32Array(mram.buffer, 0, M * K);
  const w = new Float32Array(mram.buffer, M * K * 4, N * K);
  for (let i = 0; i < x.length; i++) x[i] = r() * 2 - 1;
  for (let i = 0; i < w.length; i++) w[i] = r() * 2 - 1;
  return { mram, x, w };
}

describe("upmem dpu: functional model", () => {
  it("elemBytes, gridItems and codeBytes", () => {
    expect([elemBytes("i8"), elemBytes("i32"), elemBytes("f32")]).toEqual([1, 4, 4]);
    const k = gemmKernel(16, false, false);
    expect(gridItems(k, env)).toBe((M / TM) * (N / TN));
    expect(gridItems({ ...k, grid: [] }, env)).toBe(1);
    // fill, loop, 3 loop statements, dma_write
    expect(codeBytes(k)).toBe(128 + 48 * 6);
    expect(() => checkKernel(k, sys, env)).not.toThrow();
  });

  for (const tasklets of [1, 5, 16])
    it(`int8 GEMM equals a JS triple loop with ${tasklets} tasklets`, () => {
      const { mram, x, w } = i8Mram(tasklets);
      runKernel(gemmKernel(tasklets, false, false), sys, mram, env);
      const y = new Int32Array(mram.buffer, yOff(1), M * N);
      const ref = new Int32Array(M * N);
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let t = 0; t < K; t++) s += x[i * K + t]! * w[j * K + t]!;
          ref[i * N + j] = s;
        }
      expect(Array.from(y)).toEqual(Array.from(ref));
      expect(ref.some((v) => v !== 0)).toBe(true);
    });

  it("f32 GEMM is within 1e-5 relative of a float64 reference", () => {
    for (const tasklets of [1, 5, 16]) {
      const { mram, x, w } = f32Mram(100 + tasklets);
      runKernel(gemmKernel(tasklets, true, false), sys, mram, env);
      const y = new Float32Array(mram.buffer, yOff(4), M * N);
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          let scale = 0;
          for (let t = 0; t < K; t++) {
            s += x[i * K + t]! * w[j * K + t]!;
            scale += Math.abs(x[i * K + t]! * w[j * K + t]!);
          }
          expect(Math.abs(y[i * N + j]! - s)).toBeLessThanOrEqual(1e-5 * scale);
        }
    }
  });

  it("double-buffered GEMMs (async dma_read + dma_wait) give identical results", () => {
    for (const f32 of [false, true])
      for (const tasklets of [1, 5, 16]) {
        const a = f32 ? f32Mram(7).mram : i8Mram(7).mram;
        const b = a.slice();
        runKernel(gemmKernel(tasklets, f32, false), sys, a, env);
        runKernel(gemmKernel(tasklets, f32, true), sys, b, env);
        expect(b).toEqual(a);
      }
  });

  it("vadd wraps i32, rounds f32; fill, shared buffers and persistent WRAM", () => {
    const k: Kernel = {
      name: "acc",
      summary: "running sums",
      tasklets: 2,
      wram: [
        { name: "v", dtype: "i32", elems: 2 },
        { name: "one", dtype: "i32", elems: 2 },
        { name: "tot", dtype: "i32", elems: 2, shared: true },
      ],
      grid: [["i", 5]],
      body: [
        { op: "fill", buf: "one", at: 0, count: 2, value: 1 },
        { op: "vadd", dst: "v", dstAt: 0, src: "one", srcAt: 0, count: 2 },
        { op: "vadd", dst: "tot", dstAt: 0, src: "one", srcAt: 0, count: 2 },
        {
          op: "dma_write",
          buf: "v",
          at: 0,
          addr: { base: 0, terms: [["i", 8]] },
          rows: 1,
          rowBytes: 8,
          stride: 8,
        },
        {
          op: "dma_write",
          buf: "tot",
          at: 0,
          addr: { base: 64, terms: [] },
          rows: 1,
          rowBytes: 8,
          stride: 8,
        },
      ],
    };
    const mram = new Uint8Array(128);
    runKernel(k, sys, mram, {});
    const out = new Int32Array(mram.buffer);
    // Tasklet 0 runs items 0, 2, 4 and tasklet 1 items 1, 3: private sums grow per tasklet.
    expect(Array.from(out.subarray(0, 10))).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
    expect(Array.from(out.subarray(16, 18))).toEqual([5, 5]);

    const wrap: Kernel = {
      name: "wrap",
      summary: "",
      tasklets: 1,
      wram: [
        { name: "a", dtype: "i32", elems: 2 },
        { name: "f", dtype: "f32", elems: 2 },
      ],
      grid: [],
      body: [
        { op: "fill", buf: "a", at: 0, count: 2, value: 2 ** 31 - 1 },
        { op: "vadd", dst: "a", dstAt: 0, src: "a", srcAt: 1, count: 1 },
        { op: "fill", buf: "f", at: 0, count: 1, value: 1 },
        { op: "fill", buf: "f", at: 1, count: 1, value: 2 ** -30 },
        { op: "vadd", dst: "f", dstAt: 0, src: "f", srcAt: 1, count: 1 },
        { op: "dma_write", buf: "a", at: 0, addr: { base: 0, terms: [] }, rows: 1, rowBytes: 8, stride: 8 },
        { op: "dma_write", buf: "f", at: 0, addr: { base: 8, terms: [] }, rows: 1, rowBytes: 8, stride: 8 },
      ],
    };
    const m2 = new Uint8Array(16);
    runKernel(wrap, sys, m2, {});
    expect(new Int32Array(m2.buffer, 0, 1)[0]).toBe(-2);
    expect(new Float32Array(m2.buffer, 8, 1)[0]).toBe(1);
  });
});

describe("upmem dpu: errors", () => {
  const tiny = (body: KernelStmt[], over: Partial<Kernel> = {}): Kernel => ({
    name: "t",
    summary: "",
    tasklets: 1,
    wram: [{ name: "b", dtype: "i8", elems: 4096 }],
    grid: [["i", 2]],
    body,
    ...over,
  });
  const read = (rowBytes: number, base: number | string = 0, extra: object = {}): KernelStmt => ({
    op: "dma_read",
    buf: "b",
    at: 0,
    addr: { base, terms: [["i", 8]] },
    rows: 1,
    rowBytes,
    stride: rowBytes,
    ...extra,
  });
  const mram = (): Uint8Array => new Uint8Array(8192);
  const throwsRun = (k: Kernel, re: RegExp, m = mram()): void => {
    expect(() => runKernel(k, sys, m, env)).toThrow(ProgramError);
    expect(() => runKernel(k, sys, m, env)).toThrow(re);
  };

  it("WRAM overflow", () => {
    const k = tiny([], { tasklets: 2, wram: [{ name: "b", dtype: "i32", elems: 8000 }] });
    // 2 x (32000 + 512) = 65024 B fits in 64 KiB; a third tasklet does not.
    expect(() => checkKernel(k, sys, env)).not.toThrow();
    const over = { ...k, tasklets: 3 };
    expect(() => checkKernel(over, sys, env)).toThrow(ProgramError);
    expect(() => checkKernel(over, sys, env)).toThrow(
      /^kernel t: WRAM overflow: 3 tasklets x \(32000 B buffers \+ 512 B stack\) \+ 0 B shared = 97536 B > 65536 B$/,
    );
    expect(() => runKernel(over, sys, mram(), env)).toThrow(/WRAM overflow/);
    // Shared buffers count once.
    const s = tiny([], { tasklets: 16, wram: [{ name: "b", dtype: "i32", elems: 12000, shared: true }] });
    expect(() => checkKernel(s, sys, env)).not.toThrow();
    expect(() => checkKernel({ ...s, wram: [{ ...s.wram[0]!, shared: false }] }, sys, env)).toThrow(
      /WRAM overflow: 16 tasklets x \(48000 B buffers/,
    );
  });

  it("too many tasklets, duplicate and unknown buffers, IRAM, unbound variables", () => {
    expect(() => checkKernel(tiny([], { tasklets: 25 }), sys, env)).toThrow(
      /kernel t: 25 tasklets; the DPU runs 1 to 24/,
    );
    expect(() => checkKernel(tiny([], { tasklets: 0 }), sys, env)).toThrow(ProgramError);
    expect(() =>
      checkKernel(
        tiny([], {
          wram: [
            { name: "b", dtype: "i8", elems: 8 },
            { name: "b", dtype: "i8", elems: 8 },
          ],
        }),
        sys,
        env,
      ),
    ).toThrow(/duplicate WRAM buffer b/);
    const nested = tiny([
      { op: "instr", count: 1, what: "x" },
      { op: "loop", var: "kc", count: 2, body: [{ ...read(8), buf: "nope" } as KernelStmt] },
    ]);
    expect(() => checkKernel(nested, sys, env)).toThrow(
      /^kernel t body\[1\]\.loop kc body\[0\] dma_read: unknown WRAM buffer nope$/,
    );
    const many = tiny(Array.from({ length: 600 }, (): KernelStmt => ({ op: "instr", count: 1, what: "x" })));
    expect(() => checkKernel(many, sys, env)).toThrow(
      /code size 28928 B \(600 statements\) exceeds IRAM \(24576 B\)/,
    );
    expect(() => checkKernel(tiny([{ op: "instr", count: "j*2", what: "x" }]), sys, env)).toThrow(
      /body\[0\] instr: unbound variable j/,
    );
    expect(() => checkKernel(tiny([{ op: "loop", var: "i", count: 2, body: [] }]), sys, env)).toThrow(
      /loop variable i is already bound/,
    );
    const badMac = tiny([
      { op: "mac", acc: "b", accAt: 0, a: "b", aAt: 0, b: "b", bAt: 0, m: 1, n: 1, k: 1 },
    ]);
    expect(() => checkKernel(badMac, sys, env)).toThrow(/unsupported dtypes i8 \+= i8 x i8/);
    const unknown = tiny([{ op: "nop" } as unknown as KernelStmt]);
    expect(() => checkKernel(unknown, sys, env)).toThrow(
      /^kernel t body\[0\] nop: unknown statement op nop$/,
    );
  });

  it("unaligned DMA size and MRAM address", () => {
    throwsRun(tiny([read(12)]), /^kernel t body\[0\] dma_read: DMA size 12 B is not a multiple of 8 B$/);
    throwsRun(tiny([read(8, 4)]), /body\[0\] dma_read: MRAM address 4 is not 8-byte aligned \(at i=0\)/);
    throwsRun(
      tiny([{ ...read(8), at: 3 } as KernelStmt]),
      /WRAM byte offset 3 in buffer b is not 8-byte aligned/,
    );
    throwsRun(tiny([read(4)]), /DMA size 4 B is below the minimum of 8 B/);
  });

  it("DMA larger than 2048 B", () => {
    throwsRun(tiny([read(4096)]), /DMA size 4096 B exceeds the maximum of 2048 B/);
    // Only known at run time (depends on the loop variable).
    const k = tiny([
      { op: "loop", var: "j", count: 3, body: [{ ...read(8), rowBytes: "1024*(j+1)" } as KernelStmt] },
    ]);
    expect(() => checkKernel(k, sys, env)).not.toThrow();
    throwsRun(
      k,
      /body\[0\]\.loop j body\[0\] dma_read: DMA size 3072 B exceeds the maximum of 2048 B \(at i=0, j=2\)/,
    );
    expect(() => timeKernel(k, sys, env)).toThrow(/3072 B exceeds/);
  });

  it("MRAM out of bounds and WRAM ranges", () => {
    throwsRun(tiny([read(8, 8184)]), /MRAM bytes \[8192, 8200\) are outside MRAM \[0, 8192\) \(at i=1\)/);
    throwsRun(tiny([read(8, -8)]), /outside MRAM/);
    throwsRun(
      tiny([{ ...read(2048), rows: 3, stride: 2048 } as KernelStmt]),
      /WRAM bytes \[0, 6144\) are outside buffer b \(4096 B\)/,
    );
    throwsRun(
      tiny([{ op: "fill", buf: "b", at: 4000, count: 100, value: 0 }]),
      /fill elements \[4000, 4100\) are outside WRAM buffer b/,
    );
    throwsRun(tiny([{ op: "instr", count: "S-9", what: "x" }]), /count = -1 is not a non-negative integer/);
  });
});

/** A kernel whose items each read `s` bytes from MRAM. */
function streamKernel(s: number, tasklets: number, items: number): Kernel {
  return {
    name: "stream",
    summary: `stream ${s} B`,
    tasklets,
    wram: [{ name: "b", dtype: "i8", elems: 2048 }],
    grid: [["i", items]],
    body: [
      {
        op: "dma_read",
        buf: "b",
        at: 0,
        addr: { base: 0, terms: [["i", s]] },
        rows: 1,
        rowBytes: s,
        stride: s,
      },
    ],
  };
}

function instrKernel(tasklets: number): Kernel {
  return {
    name: "arith",
    summary: "instructions",
    tasklets,
    wram: [],
    grid: [["i", tasklets * 8]],
    body: [{ op: "instr", count: 1000, what: "alu" }],
  };
}

function vaddKernel(dtype: "i32" | "f32", count: number, reps: number): Kernel {
  return {
    name: "vadd",
    summary: `vadd.${dtype}`,
    tasklets: 16,
    wram: [
      { name: "a", dtype, elems: 256 },
      { name: "b", dtype, elems: 256 },
    ],
    grid: [["i", 16 * reps]],
    body: [{ op: "vadd", dst: "a", dstAt: 0, src: "b", srcAt: 0, count }],
  };
}

describe("upmem dpu: timing calibration (PrIM)", () => {
  it("MRAM read bandwidth follows s / (77 + 0.5 s) cycles and reaches ~628 MB/s at 2048 B", () => {
    const measured: string[] = [];
    for (let s = 8; s <= 2048; s *= 2) {
      const r = timeKernel(streamKernel(s, 16, 1024), sys350, {});
      const bw = r.dmaBytes / r.seconds;
      const model = (s / (77 + 0.5 * s)) * 350e6;
      measured.push(`${s}: ${(bw / 1e6).toFixed(1)} MB/s`);
      expect(r.dmaCount).toBe(1024);
      expect(r.dmaBytes).toBe(1024 * s);
      expect(Math.abs(bw / model - 1)).toBeLessThan(0.1);
      if (s === 2048) expect(Math.abs(bw / 628e6 - 1)).toBeLessThan(0.1);
    }
    console.log(`MRAM read bandwidth at 350 MHz, 16 tasklets: ${measured.join(", ")}`);
  });

  it("the pipeline saturates at 11 tasklets", () => {
    const ipc: number[] = [];
    for (let t = 1; t <= 24; t++) {
      const r = timeKernel(instrKernel(t), sys, {});
      expect(r.instructions).toBe(t * 8 * 1000);
      ipc.push(r.instructions / r.cycles);
    }
    for (let t = 1; t <= 11; t++) expect(Math.abs(ipc[t - 1]! / (t / 11) - 1)).toBeLessThan(0.1);
    for (let t = 11; t <= 24; t++) expect(Math.abs(ipc[t - 1]! - 1)).toBeLessThan(0.1);
    expect(ipc[10]).toBeGreaterThanOrEqual(0.9);
    expect(ipc[7]).toBeCloseTo(8 / 11, 3);
    console.log(`instructions per cycle by tasklets: ${ipc.map((x) => x.toFixed(3)).join(" ")}`);
  });

  it("vadd throughput: ~58.6 M int32 adds/s and ~4.9 M float adds/s at 350 MHz, 16 tasklets", () => {
    const i32 = timeKernel(vaddKernel("i32", 256, 64), sys350, {});
    const f32 = timeKernel(vaddKernel("f32", 256, 8), sys350, {});
    const i32Rate = (16 * 64 * 256) / i32.seconds;
    const f32Rate = (16 * 8 * 256) / f32.seconds;
    expect(Math.abs(i32Rate / 58.6e6 - 1)).toBeLessThan(0.1);
    expect(Math.abs(f32Rate / 4.9e6 - 1)).toBeLessThan(0.1);
    console.log(
      `vadd: ${(i32Rate / 1e6).toFixed(2)} M i32 adds/s, ${(f32Rate / 1e6).toFixed(2)} M f32 adds/s`,
    );
  });

  it("is deterministic and independent of data", () => {
    const k = gemmKernel(5, false, true);
    const a = timeKernel(k, sys, env);
    const { mram } = i8Mram(3);
    runKernel(k, sys, mram, env);
    const b = timeKernel(k, sys, env);
    expect(b).toEqual(a);
    expect(a.perTasklet).toHaveLength(5);
    expect(a.cycles).toBe(Math.max(...a.perTasklet));
    expect(a.seconds).toBeCloseTo(a.cycles / sys.frequency, 15);
    // 16 items, 4 chunks: 2 + 4 rows read per chunk, 2 rows written per item.
    expect(a.dmaCount).toBe(16 * (NK * (TM + TN) + TM));
    // Tasklets without items end at 0.
    const idle = timeKernel({ ...k, tasklets: 20 }, sys, env);
    expect(idle.perTasklet.slice(16)).toEqual([0, 0, 0, 0]);
  });

  it("blocking vs async DMA, contiguous splitting and loop overheads", () => {
    // One tasklet: double buffering overlaps DMAs with the macs.
    const single = timeKernel(gemmKernel(1, false, false), sys, env);
    const double = timeKernel(gemmKernel(1, false, true), sys, env);
    expect(double.cycles).toBeLessThan(single.cycles);
    // A contiguous 3-row read of 2048 B rows: 3 DMAs; 5 KiB contiguous (rows of 1024 B): 3 DMAs.
    const k = (rows: number, rowBytes: number, stride: number): Kernel => ({
      ...streamKernel(8, 1, 1),
      wram: [{ name: "b", dtype: "i8", elems: 8192 }],
      body: [{ op: "dma_read", buf: "b", at: 0, addr: { base: 0, terms: [] }, rows, rowBytes, stride }],
    });
    expect(timeKernel(k(5, 1024, 1024), sys, {}).dmaCount).toBe(3);
    expect(timeKernel(k(5, 1024, 2048), sys, {}).dmaCount).toBe(5);
    // 1 tasklet, blocking: 10 instructions (110 cycles) + 77 + 0.5 * 1024 cycles per DMA.
    const one = timeKernel(k(1, 1024, 1024), sys, {});
    expect(one.cycles).toBeCloseTo(110 + 77 + 512, 6);
    // Loops: 2 instructions per iteration, folded when the body does not depend on the variable.
    const loop: Kernel = {
      ...instrKernel(1),
      grid: [],
      body: [
        { op: "loop", var: "j", count: 1000, body: [{ op: "instr", count: 3, what: "x" }] },
        { op: "loop", var: "j", count: 10, body: [{ op: "instr", count: "j", what: "x" }] },
      ],
    };
    expect(timeKernel(loop, sys, {}).instructions).toBe(5000 + 20 + 45);
  });

  it("times a 100k-action kernel quickly", () => {
    const k = streamKernel(64, 16, 100_000);
    timeKernel(k, sys, {});
    const t0 = performance.now();
    const r = timeKernel(k, sys, {});
    const ms = performance.now() - t0;
    expect(r.dmaCount).toBe(100_000);
    console.log(`timeKernel: 100k DMAs (200k actions), 16 tasklets: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(500);
  });
});

describe("a K split inside the DPU (Tile.ks)", () => {
  // X [2, 512] i8 at 0, W [4, 512] i8 at parameter w, Y [2, ks x 4] i32 partial tiles at 8192.
  const shape = { m: 2, n: 4, k: 512, dtype: "i8" as const };
  const tiling = { dm: 1, dn: 1, dk: 1, tasklets: 8, tm: 2, tn: 2, tk: 64, double: false };
  const W = 4096;
  const Y = 8192;
  const fill = (): { mram: Uint8Array; x: Int8Array; w: Int8Array } => {
    const r = rng(11);
    const mram = new Uint8Array(16384);
    const x = new Int8Array(mram.buffer, 0, 2 * 512);
    const w = new Int8Array(mram.buffer, W, 4 * 512);
    for (let i = 0; i < x.length; i++) x[i] = Math.floor(r() * 256) - 128;
    for (let i = 0; i < w.length; i++) w[i] = Math.floor(r() * 256) - 128;
    return { mram, x, w };
  };

  it("computes partial tiles over consecutive chunks that add up to the GEMM over the run-time K", () => {
    const ks = 4;
    // K = 448 at run time: 7 chunks of 64 in slices of 2, 2, 2 and 1.
    const k = gemmKernelOf({
      name: "g",
      shape,
      tiling: { ...tiling, ks },
      mExpr: 2,
      xOff: 0,
      yOff: Y,
      kExpr: "P",
    });
    expect(k.grid).toEqual([
      ["i", 1],
      ["j", 2],
      ["ks", ks],
    ]);
    const { mram, x, w } = fill();
    runKernel(k, sys, mram, { P: 448, w: W });
    const y = new Int32Array(mram.buffer, Y, 2 * ks * 4);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++) {
        let total = 0;
        for (let s = 0; s < ks; s++) {
          let want = 0;
          for (let t = s * 128; t < Math.min((s + 1) * 128, 448); t++)
            want += x[i * 512 + t]! * w[j * 512 + t]!;
          expect(y[i * ks * 4 + s * 4 + j]).toBe(want);
          total += want;
        }
        let full = 0;
        for (let t = 0; t < 448; t++) full += x[i * 512 + t]! * w[j * 512 + t]!;
        expect(total).toBe(full);
      }
  });

  it("keeps the tasklets busy when a DPU has few output tiles, and the model follows the emulator", () => {
    const time = (ks: number) => {
      const t = { ...tiling, ...(ks > 1 ? { ks } : {}) };
      const k = gemmKernelOf({ name: "g", shape, tiling: t, mExpr: 2, xOff: 0, yOff: Y });
      return { emulated: timeKernel(k, sys, { w: W }).cycles, model: kernelModel(shape, t, sys)(t) };
    };
    const one = time(1);
    const eight = time(8);
    expect(eight.emulated).toBeLessThan(one.emulated / 2.5);
    for (const r of [one, eight]) expect(Math.abs(r.model / r.emulated - 1)).toBeLessThan(0.1);
  });
});
