/** The UPMEM program's binary form, validator and disassembly, on a hand-built int8 GEMV program. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeProgram, encodeProgram } from "../targets/upmem/codec.js";
import { disassemble } from "../targets/upmem/disasm.js";
import { ProgramError } from "../targets/upmem/errors.js";
import type { Command, Kernel, Program } from "../targets/upmem/program.js";
import { DEFAULT_SYSTEM } from "../targets/upmem/system.js";
import { validateProgram } from "../targets/upmem/validate.js";

interface GemvOptions {
  /** DPUs (the K dimension is split over them: KtileGEMM). */
  readonly dk: number;
  /** Columns of W per DPU (a multiple of 8). */
  readonly kb: number;
  /** Rows of W (even). */
  readonly n: number;
  /** Largest B*S. */
  readonly mMax: number;
  readonly tasklets: number;
  readonly seed: number;
}

const BASE: GemvOptions = { dk: 2, kb: 8, n: 8, mMax: 4, tasklets: 2, seed: 1 };

/** Deterministic pseudo-random bytes. */
function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/**
 * y[M, n] = x[M, K] . W[n, K]^T with K = dk * kb, W int8 split over K (DPU d holds W[:, d*kb ..]):
 * the host quantizes x, pushes column blocks, launches, pulls the partial sums with reduce, dequantizes.
 */
function gemvProgram(o: GemvOptions = BASE): Program {
  const { dk, kb, n, mMax } = o;
  const k = dk * kb;
  const wBytes = n * kb;
  const regions = [
    { name: "weights", offset: 0, bytes: wBytes },
    { name: "acts", offset: wBytes, bytes: mMax * kb },
    { name: "out", offset: wBytes + mMax * kb, bytes: mMax * n * 4 },
  ];
  const chunk = (n / 2) * kb;
  const kernel: Kernel = {
    name: "gemv0",
    params: ["w"],
    summary: `gemv.i8 1x${n}x${kb} ktile`,
    tasklets: o.tasklets,
    wram: [
      { name: "x", dtype: "i8", elems: kb },
      { name: "w", dtype: "i8", elems: n * kb },
      { name: "acc", dtype: "i32", elems: n },
    ],
    grid: [["i", "B*S"]],
    body: [
      { op: "fill", buf: "acc", at: 0, count: n, value: 0 },
      {
        op: "dma_read",
        buf: "x",
        at: 0,
        addr: { base: regions[1]!.offset, terms: [["i", kb]] },
        rows: 1,
        rowBytes: kb,
        stride: kb,
      },
      {
        op: "loop",
        var: "kc",
        count: 2,
        body: [
          {
            op: "dma_read",
            buf: "w",
            at: `${chunk}*kc`,
            addr: { base: "w", terms: [["kc", chunk]] },
            rows: 1,
            rowBytes: chunk,
            stride: chunk,
            async: true,
          },
        ],
      },
      { op: "dma_wait" },
      { op: "mac", acc: "acc", accAt: 0, a: "x", aAt: 0, b: "w", bAt: 0, m: 1, n, k: kb },
      { op: "instr", count: 4, what: "loop overhead" },
      {
        op: "dma_write",
        buf: "acc",
        at: 0,
        addr: { base: regions[2]!.offset, terms: [["i", n * 4]] },
        rows: 1,
        rowBytes: n * 4,
        stride: n * 4,
      },
    ],
  };
  const range = { first: 0, count: dk };
  const setup: Command[] = [
    { id: 0, deps: [], kind: "alloc", dpus: dk },
    { id: 1, deps: [0], kind: "load", kernels: ["gemv0"], range },
    { id: 2, deps: [0], kind: "upload", image: "w_img" },
  ];
  const commands: Command[] = [
    {
      id: 0,
      deps: [],
      kind: "host",
      opcode: "rms_norm",
      attrs: { eps: 1e-5 },
      inputs: ["x", "norm_w"],
      outputs: ["xn"],
    },
    { id: 1, deps: [0], kind: "host", opcode: "quantize", attrs: {}, inputs: ["xn"], outputs: ["xq", "xs"] },
    {
      id: 2,
      deps: [1],
      kind: "push",
      buffer: "xq",
      range,
      region: "acts",
      at: 0,
      map: {
        rows: "B*S",
        cols: k,
        blockRows: "B*S",
        blockCols: kb,
        ld: kb,
        rowEvery: 1,
        rowBlocks: 1,
        colEvery: 1,
        colBlocks: dk,
      },
    },
    { id: 3, deps: [2], kind: "launch", kernel: "gemv0", range, args: { w: 0 } },
    {
      id: 4,
      deps: [3],
      kind: "pull",
      buffer: "acc",
      range,
      region: "out",
      at: 0,
      map: {
        rows: "B*S",
        cols: n,
        blockRows: "B*S",
        blockCols: n,
        ld: n,
        rowEvery: 1,
        rowBlocks: 1,
        colEvery: 1,
        colBlocks: 1,
      },
      reduce: true,
    },
    {
      id: 5,
      deps: [4],
      kind: "host",
      opcode: "dequantize",
      attrs: {},
      inputs: ["acc", "xs", "w_scale"],
      outputs: ["y"],
    },
    { id: 6, deps: [], kind: "sync" },
  ];
  const wScale = Float32Array.from({ length: n }, (_, i) => 0.01 * (i + 1));
  const normW = Float32Array.from({ length: k }, (_, i) => 1 + i / 64);
  return {
    version: 1,
    target: "upmem",
    model: "gemv-test",
    system: DEFAULT_SYSTEM,
    limits: { B: mMax, S: 1, P: 16 },
    buffers: [
      { name: "x", dtype: "f32", shape: ["B*S", k] },
      { name: "xn", dtype: "f32", shape: ["B*S", k] },
      { name: "xq", dtype: "i8", shape: ["B*S", k] },
      { name: "xs", dtype: "f32", shape: ["B*S"] },
      { name: "acc", dtype: "i32", shape: ["B*S", n] },
      { name: "y", dtype: "f32", shape: ["B*S", n] },
    ],
    constants: [
      { name: "norm_w", dtype: "f32", shape: [k], data: normW },
      { name: "w_scale", dtype: "f32", shape: [n], data: wScale },
      { name: "lut", dtype: "i8", shape: [3], data: Int8Array.from([-1, 0, 1]) },
      { name: "shape_only", dtype: "f32", shape: [2, 2] },
    ],
    states: [{ name: "kv", dtype: "f32", shape: ["B", 2, "T", 4] }],
    regions,
    kernels: [kernel],
    images: [
      { name: "w_img", region: "weights", range, bytesPerDpu: wBytes, data: bytesOf(dk * wBytes, o.seed) },
    ],
    setup,
    phases: [{ name: "decode", inputs: ["x"], outputs: ["y"], commands }],
  };
}

type Mutable<T> = { -readonly [K in keyof T]: Mutable<T[K]> };
/** A deep copy of the program to corrupt. */
const mutable = (p: Program): Mutable<Program> => structuredClone(p) as Mutable<Program>;

/** Re-encodes a file with its manifest edited (the data section kept as is). */
interface BlobRef {
  offset: number;
  length: number;
}
interface Manifest {
  images: { data: BlobRef | number[] }[];
  constants: { data: BlobRef }[];
}

function editManifest(bytes: Uint8Array, edit: (m: Manifest) => void): Uint8Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = dv.getUint32(12, true);
  const m = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + len))) as Manifest;
  edit(m);
  const data = bytes.subarray(Math.ceil((16 + len) / 8) * 8);
  const json = new TextEncoder().encode(JSON.stringify(m));
  const start = Math.ceil((16 + json.length) / 8) * 8;
  const out = new Uint8Array(start + data.length);
  out.set(bytes.subarray(0, 16));
  new DataView(out.buffer).setUint32(12, json.length, true);
  out.set(json, 16);
  out.set(data, start);
  return out;
}

const FILE = "prog.pimx";
const decodeError = (bytes: Uint8Array): string => {
  try {
    decodeProgram(bytes, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(ProgramError);
    return (e as Error).message;
  }
  throw new Error("decodeProgram accepted a corrupt file");
};
const invalid = (edit: (p: Mutable<Program>) => void): string => {
  const p = mutable(gemvProgram());
  edit(p);
  return decodeError(encodeProgram(p as Program));
};

describe("UPMEM program codec", () => {
  it("round-trips byte-identically and structurally", () => {
    const p = gemvProgram();
    expect(validateProgram(p, FILE)).toEqual(p);
    const bytes = encodeProgram(p);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe("PIMCUPM\0");
    const q = decodeProgram(bytes, FILE);
    expect(q).toEqual(p);
    expect(q.constants[0]!.data).toBeInstanceOf(Float32Array);
    expect(q.constants[2]!.data).toBeInstanceOf(Int8Array);
    expect(q.constants[3]!.data).toBeUndefined();
    expect(q.images[0]!.data).toBeInstanceOf(Uint8Array);
    expect(encodeProgram(q)).toEqual(bytes);
    expect(disassemble(q)).toBe(disassemble(p));
  });

  it("decodes from a Node Buffer that is a view into a larger pool", () => {
    const bytes = encodeProgram(gemvProgram());
    const pool = Buffer.alloc(bytes.length + 24);
    pool.set(bytes, 24);
    const q = decodeProgram(pool.subarray(24), FILE);
    expect(q).toEqual(gemvProgram());
    expect(q.images[0]!.data!.buffer.byteLength).toBe(q.images[0]!.data!.length);
  });

  it("lays out the header, the manifest and 8-byte aligned blobs", () => {
    const bytes = encodeProgram(gemvProgram());
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    expect(dv.getUint32(8, true)).toBe(1);
    const len = dv.getUint32(12, true);
    const m = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + len)));
    expect(m.images[0].data).toEqual({ offset: 0, length: 128 });
    expect(m.constants[0].data).toEqual({ offset: 128, length: 64 });
    expect(m.constants[1].data).toEqual({ offset: 192, length: 32 });
    expect(m.constants[2].data).toEqual({ offset: 224, length: 3 });
    expect(bytes.length).toBe(Math.ceil((16 + len) / 8) * 8 + 227);
    // f32 little-endian
    const start = Math.ceil((16 + len) / 8) * 8;
    expect(new DataView(bytes.buffer, bytes.byteOffset).getFloat32(start + 192, true)).toBeCloseTo(0.01);
  });

  it("disassembles into a readable listing", () => {
    const text = disassemble(gemvProgram());
    expect(text).toContain("model gemv-test");
    expect(text).toMatch(
      /system 2048 DPUs \(32 ranks x 64\), 450 MHz, 24 tasklets, MRAM 64 MiB, WRAM 64 KiB, IRAM 24 KiB/,
    );
    expect(text).toContain("limits B=4 P=16 S=1");
    expect(text).toMatch(/^ {2}xq +i8\[B\*S, 16\]$/m);
    expect(text).toMatch(/^ {2}w_scale +f32\[8\] +32 B$/m);
    expect(text).toMatch(/^ {2}kv +f32\[B, 2, T, 4\]$/m);
    expect(text).toMatch(/^ {2}acts +offset 64 +size 32/m);
    expect(text).toMatch(/^ {2}w_img +-> weights +dpus\[0\.\.1\] +64 B\/dpu +data 128 B$/m);
    expect(text).toContain(
      'kernel gemv0 params(w) "gemv.i8 1x8x8 ktile" tasklets=2 wram: x i8[8] w i8[64] acc i32[8]',
    );
    expect(text).toContain("  grid i<B*S\n");
    expect(text).toContain("  fill acc[0] = 0 count=8\n");
    expect(text).toContain("  dma_read x[0] <- mram[64 + 8*i] rows=1 bytes=8 stride=8\n");
    expect(text).toContain(
      "  loop kc < 2:\n    dma_read w[32*kc] <- mram[w + 32*kc] rows=1 bytes=32 stride=32 async\n",
    );
    expect(text).toContain("  mac acc[0] += x[0] * w[0] (m=1 n=8 k=8)\n");
    expect(text).toContain("  dma_write mram[96 + 32*i] <- acc[0] rows=1 bytes=32 stride=32\n");
    expect(text).toContain('  instr 4 "loop overhead"\n');
    expect(text).toContain("setup:\n  0 alloc 2 dpus\n  1 load gemv0 dpus[0..1]  deps 0\n");
    expect(text).toContain("  2 upload w_img -> weights dpus[0..1] 64 B/dpu  deps 0\n");
    expect(text).toContain("phase decode (inputs: x; outputs: y):");
    expect(text).toContain("  0 host rms_norm(x, @norm_w) -> xn  {eps: 1e-5}\n");
    expect(text).toContain("  1 host quantize(xn) -> xq, xs  deps 0\n");
    expect(text).toContain(
      "  2 push xq -> acts+0 dpus[0..1] map (B*S)x16/(B*S)x8 ld=8 blocks=1x2 every=1,1  deps 1\n",
    );
    expect(text).toContain("  3 launch gemv0(w=0) dpus[0..1]  deps 2\n");
    expect(text).toContain(
      "  4 pull acc <- out+0 dpus[0..1] map (B*S)x8/(B*S)x8 ld=8 blocks=1x1 every=1,1 reduce  deps 3\n",
    );
    expect(text).toContain("  5 host dequantize(acc, xs, @w_scale) -> y  deps 4\n");
    expect(text).toContain("  6 sync\n");
  });

  describe("rejects corrupt files", () => {
    const good = (): Uint8Array => encodeProgram(gemvProgram());

    it("bad magic", () => {
      const b = good();
      b[0] = 0x58;
      expect(decodeError(b)).toMatch(/^prog\.pimx: not a pimc UPMEM program \(bad magic bytes\)$/);
      expect(decodeError(new TextEncoder().encode("{}"))).toMatch(/bad magic/);
    });

    it("truncated", () => {
      const b = good();
      expect(decodeError(b.subarray(0, b.length - 5))).toMatch(/^prog\.pimx: truncated file/);
      expect(decodeError(b.subarray(0, 12))).toMatch(/truncated file \(12 bytes/);
      expect(decodeError(b.subarray(0, 100))).toMatch(/truncated file .*manifest ends/);
    });

    it("unsupported version", () => {
      const b = good();
      new DataView(b.buffer).setUint32(8, 7, true);
      expect(decodeError(b)).toMatch(/unsupported format version 7/);
    });

    it("trailing garbage", () => {
      const b = good();
      const c = new Uint8Array(b.length + 3);
      c.set(b);
      expect(decodeError(c)).toMatch(/trailing garbage \(3 bytes/);
    });

    it("manifest not JSON", () => {
      const b = good();
      b[16] = 0x41;
      expect(decodeError(b)).toMatch(/manifest is not JSON/);
    });

    it("blob references out of range, misaligned or of the wrong length", () => {
      expect(
        decodeError(editManifest(good(), (m) => ((m.images[0]!.data as BlobRef).offset = 1 << 20))),
      ).toMatch(/^prog\.pimx: images\[0\]\.data: blob \[1048576, 1048704\) is out of range/);
      expect(decodeError(editManifest(good(), (m) => (m.constants[1]!.data.offset = 196)))).toMatch(
        /constants\[1\]\.data: blob offset 196 is not 8-byte aligned/,
      );
      expect(decodeError(editManifest(good(), (m) => (m.constants[0]!.data.length = 60)))).toMatch(
        /constants\[0\]\.data: blob has 60 bytes, f32\[16\] needs 64/,
      );
      expect(decodeError(editManifest(good(), (m) => (m.constants[1]!.data.offset = 128)))).toMatch(
        /constants\[1\]\.data: blob at offset 128, expected 192/,
      );
      expect(decodeError(editManifest(good(), (m) => (m.images[0]!.data = [0, 128])))).toMatch(
        /bad blob reference/,
      );
    });

    it("unknown kernel in a launch", () => {
      expect(invalid((p) => ((p.phases[0]!.commands[3] as { kernel: string }).kernel = "gemm9"))).toBe(
        'prog.pimx: phases[0].commands[3] (launch): unknown kernel "gemm9"',
      );
    });

    it("launch arguments that do not match the kernel's parameters", () => {
      expect(invalid((p) => ((p.phases[0]!.commands[3] as { args?: object }).args = undefined))).toMatch(
        /commands\[3\] \(launch\): missing argument w of kernel "gemv0"/,
      );
      expect(invalid((p) => ((p.phases[0]!.commands[3] as { args?: object }).args = { w: 0, v: 1 }))).toMatch(
        /commands\[3\] \(launch\)\.args: kernel "gemv0" has no parameter v/,
      );
      expect(invalid((p) => ((p.kernels[0]! as { params: string[] }).params = ["w", "i"]))).toMatch(
        /kernels\[0\]\.grid\[0\]: grid variable "i" is reserved or repeated/,
      );
    });

    it("a launch before the kernel is loaded", () => {
      expect(invalid((p) => ((p.setup[1] as { range: object }).range = { first: 0, count: 1 }))).toMatch(
        /commands\[3\] \(launch\): kernel "gemv0" is not loaded on DPU 1 of dpus\[0\.\.1\]/,
      );
    });

    it("a dependency on a later command", () => {
      expect(invalid((p) => (p.phases[0]!.commands[1]!.deps = [3]))).toMatch(
        /^prog\.pimx: phases\[0\]\.commands\[1\] \(host\): dependency 3 is not an earlier command of this list$/,
      );
      expect(invalid((p) => (p.setup[2]!.id = 1))).toMatch(
        /setup\[2\] \(upload #1\): duplicate command id 1/,
      );
    });

    it("a region past the end of MRAM", () => {
      expect(invalid((p) => (p.regions[2]!.offset = DEFAULT_SYSTEM.mram - 64))).toMatch(
        /^prog\.pimx: regions\[2\] \(out\): \[67108800, 67108928\) does not fit in the 67108864 bytes of MRAM$/,
      );
    });

    it("overlapping and misaligned regions", () => {
      expect(invalid((p) => (p.regions[1]!.offset = 32))).toMatch(
        /regions\[1\] \(acts\): \[32, 64\) overlaps region "weights" \[0, 64\)/,
      );
      expect(invalid((p) => (p.regions[1]!.offset = 68))).toMatch(
        /regions\[1\] \(acts\): offset 68 is not 8-byte aligned/,
      );
    });

    it("an unknown host opcode", () => {
      expect(invalid((p) => ((p.phases[0]!.commands[0] as { opcode: string }).opcode = "rms_normm"))).toMatch(
        /phases\[0\]\.commands\[0\] \(host\): unknown host opcode "rms_normm"/,
      );
    });

    it("an expression with an unknown variable", () => {
      expect(invalid((p) => (p.buffers[0]!.shape[0] = "B*Q"))).toMatch(
        /^prog\.pimx: buffers\[0\]\.shape\[0\]: expression "B\*Q" uses unknown variable Q \(allowed: B, S, P\)$/,
      );
      expect(invalid((p) => ((p.kernels[0]!.body[4] as { m: string }).m = "j"))).toMatch(
        /kernels\[0\]\.body\[4\] \(mac\)\.m: expression "j" uses unknown variable j \(allowed: B, S, P, w, i\)/,
      );
      expect(invalid((p) => (p.buffers[0]!.shape[0] = "B*"))).toMatch(/buffers\[0\]\.shape\[0\]: .*"B\*"/);
    });

    it("schema violations with their JSON path", () => {
      expect(invalid((p) => ((p.phases[0]!.commands[2] as { kind: string }).kind = "shove"))).toMatch(
        /phases\[0\]\.commands\[2\]\.kind: unknown kind "shove"/,
      );
      expect(invalid((p) => ((p.regions[0] as { extra?: number }).extra = 1))).toMatch(
        /regions\[0\]: unknown field "extra"/,
      );
      expect(invalid((p) => (p.kernels[0]!.tasklets = 1.5))).toMatch(/kernels\[0\]\.tasklets: expected int/);
    });

    it("duplicate names", () => {
      expect(invalid((p) => (p.states[0]!.name = "w_scale"))).toMatch(
        /^prog\.pimx: states\[0\]: duplicate host name "w_scale" \(also constants\[1\]\)$/,
      );
      expect(invalid((p) => (p.kernels[0]!.wram[1]!.name = "x"))).toMatch(
        /kernels\[0\]\.wram\[1\]: duplicate WRAM buffer "x"/,
      );
    });

    it("illegal kernels and transfers", () => {
      expect(invalid((p) => (p.kernels[0]!.tasklets = 64))).toMatch(/uses 64 tasklets, the DPUs have 24/);
      expect(invalid((p) => ((p.kernels[0]!.wram[1] as { elems: number }).elems = 40000))).toMatch(
        /needs \d+ bytes of WRAM/,
      );
      expect(invalid((p) => ((p.kernels[0]!.body[1] as { rowBytes: number }).rowBytes = 12))).toMatch(
        /body\[1\] \(dma_read\)\.rowBytes: a DMA moves 8\.\.2048 bytes, a multiple of 8; got 12/,
      );
      expect(invalid((p) => ((p.kernels[0]!.body[1] as { buf: string }).buf = "z"))).toMatch(
        /body\[1\] \(dma_read\)\.buf: unknown WRAM buffer "z"/,
      );
      expect(
        invalid((p) => ((p.phases[0]!.commands[2] as { range: object }).range = { first: 2047, count: 2 })),
      ).toMatch(/dpus\[2047\.\.2048\] is outside the 2 DPUs allocated/);
      expect(invalid((p) => ((p.phases[0]!.commands[2] as { buffer: string }).buffer = "nothing"))).toMatch(
        /\.buffer: unknown host buffer "nothing"/,
      );
      expect(invalid((p) => (p.images[0]!.bytesPerDpu = 32))).toMatch(
        /images\[0\] \(w_img\): data has 128 bytes/,
      );
    });
  });

  it("round-trips random valid variations", () => {
    const options = fc.record({
      dk: fc.integer({ min: 1, max: 8 }),
      kb: fc.integer({ min: 1, max: 8 }).map((x) => 8 * x),
      n: fc.integer({ min: 1, max: 8 }).map((x) => 2 * x),
      mMax: fc.integer({ min: 1, max: 64 }),
      tasklets: fc.integer({ min: 1, max: 24 }),
      seed: fc.integer({ min: 0, max: 1000 }),
    });
    fc.assert(
      fc.property(
        options,
        fc.dictionary(fc.constantFrom("B", "S", "P", "T"), fc.nat(1 << 20)),
        (o, limits) => {
          const p = { ...gemvProgram(o), limits };
          const bytes = encodeProgram(p);
          const q = decodeProgram(bytes, FILE);
          expect(q).toEqual(p);
          expect(encodeProgram(q)).toEqual(bytes);
        },
      ),
      { numRuns: 60 },
    );
  });
});
