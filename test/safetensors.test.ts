import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsFile } from "../src/frontend/hf/safetensors.js";
import { buildFile, bytesOf, expectUserError, rawFile, type Spec } from "./util.js";

const dir = mkdtempSync(join(tmpdir(), "pimc-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let count = 0;
function writeTemp(bytes: Uint8Array): string {
  const p = join(dir, `t${count++}.safetensors`);
  writeFileSync(p, bytes);
  return p;
}

describe("safetensors round trip", () => {
  const tensors: Record<string, Spec> = {
    f32: { dtype: "F32", shape: [2, 2], bytes: bytesOf(new Float32Array([1, -2.5, 0.125, 3e10])) },
    // 1.5 = 0x3e00, -2 = 0xc000, 65504 = 0x7bff (max), 2^-24 = 0x0001 (smallest subnormal)
    f16: { dtype: "F16", shape: [4], bytes: bytesOf(new Uint16Array([0x3e00, 0xc000, 0x7bff, 0x0001])) },
    // 1.5 = 0x3fc0, -2 = 0xc000, 3.140625 = 0x4049
    bf16: { dtype: "BF16", shape: [3], bytes: bytesOf(new Uint16Array([0x3fc0, 0xc000, 0x4049])) },
    i8: { dtype: "I8", shape: [3], bytes: bytesOf(new Int8Array([-128, 0, 127])) },
    u8: { dtype: "U8", shape: [3], bytes: new Uint8Array([0, 7, 255]) },
    bool: { dtype: "BOOL", shape: [2], bytes: new Uint8Array([1, 0]) },
    i32: { dtype: "I32", shape: [1, 3], bytes: bytesOf(new Int32Array([-5, 0, 123456])) },
    i64: { dtype: "I64", shape: [2], bytes: bytesOf(new BigInt64Array([-3n, 1n << 40n])) },
    f64: { dtype: "F64", shape: [2], bytes: bytesOf(new Float64Array([0.5, -1e300])) },
    scalar: { dtype: "F32", shape: [], bytes: bytesOf(new Float32Array([42])) },
    empty: { dtype: "F32", shape: [0, 4], bytes: new Uint8Array(0) },
  };
  // Start the data at an odd offset so that the reader has to copy into aligned buffers.
  const names = Object.keys(tensors);
  const odd: Record<string, Spec> = {
    pad: { dtype: "U8", shape: [1], bytes: new Uint8Array([9]) },
    ...tensors,
  };
  const path = writeTemp(buildFile(odd, { format: "pt" }));

  for (const [how, open] of [
    ["open", () => SafetensorsFile.open(path)],
    ["fromBuffer", () => SafetensorsFile.fromBuffer(buildFile(odd, { format: "pt" }), "mem.safetensors")],
  ] as const) {
    it(`${how}: header, metadata and entries in order`, () => {
      const f = open();
      expect(f.path).toBe(how === "open" ? path : "mem.safetensors");
      expect(f.metadata).toEqual({ format: "pt" });
      expect([...f.entries.keys()]).toEqual(["pad", ...names]);
      expect(f.has("f16")).toBe(true);
      expect(f.has("nope")).toBe(false);
      expect(f.entries.get("f32")).toMatchObject({ dtype: "f32", shape: [2, 2], begin: 1, end: 17 });
      expect(f.entries.get("f64")).toMatchObject({ dtype: "f32", fileDtype: "F64", shape: [2] });
    });

    it(`${how}: read returns each tensor in its own dtype`, () => {
      const f = open();
      const r = (n: string) => f.read(n);
      expect(r("f32")).toEqual({
        dtype: "f32",
        shape: [2, 2],
        data: new Float32Array([1, -2.5, 0.125, 3e10]),
      });
      expect(r("f16")).toEqual({
        dtype: "f16",
        shape: [4],
        data: new Uint16Array([0x3e00, 0xc000, 0x7bff, 1]),
      });
      expect(r("bf16")).toEqual({
        dtype: "bf16",
        shape: [3],
        data: new Uint16Array([0x3fc0, 0xc000, 0x4049]),
      });
      expect(r("i8")).toEqual({ dtype: "i8", shape: [3], data: new Int8Array([-128, 0, 127]) });
      expect(r("u8")).toEqual({ dtype: "u8", shape: [3], data: new Uint8Array([0, 7, 255]) });
      expect(r("bool")).toEqual({ dtype: "bool", shape: [2], data: new Uint8Array([1, 0]) });
      expect(r("i32")).toEqual({ dtype: "i32", shape: [1, 3], data: new Int32Array([-5, 0, 123456]) });
      expect(r("i64")).toEqual({ dtype: "i64", shape: [2], data: new BigInt64Array([-3n, 1n << 40n]) });
      // F64 has no dtype of ours: read narrows it to f32.
      expect(r("f64")).toEqual({ dtype: "f32", shape: [2], data: new Float32Array([0.5, -Infinity]) });
      expect(r("scalar")).toEqual({ dtype: "f32", shape: [], data: new Float32Array([42]) });
      expect(r("empty")).toEqual({ dtype: "f32", shape: [0, 4], data: new Float32Array(0) });
    });

    it(`${how}: readF32 converts every dtype`, () => {
      const f = open();
      const r = (n: string) => {
        const t = f.readF32(n);
        expect(t.dtype).toBe("f32");
        expect(t.data).toBeInstanceOf(Float32Array);
        expect(t.shape).toEqual(f.entries.get(n)!.shape);
        return [...(t.data as Float32Array)];
      };
      expect(r("f32")).toEqual([1, -2.5, 0.125, Math.fround(3e10)]);
      expect(r("f16")).toEqual([1.5, -2, 65504, 2 ** -24]);
      expect(r("bf16")).toEqual([1.5, -2, 3.140625]);
      expect(r("i8")).toEqual([-128, 0, 127]);
      expect(r("u8")).toEqual([0, 7, 255]);
      expect(r("bool")).toEqual([1, 0]);
      expect(r("i32")).toEqual([-5, 0, 123456]);
      expect(r("i64")).toEqual([-3, 2 ** 40]);
      expect(r("f64")).toEqual([0.5, -Infinity]);
      expect(r("scalar")).toEqual([42]);
      expect(r("empty")).toEqual([]);
    });
  }

  it("returns fresh copies", () => {
    const f = SafetensorsFile.open(path);
    const a = f.read("f32").data as Float32Array;
    a[0] = 99;
    expect((f.read("f32").data as Float32Array)[0]).toBe(1);
  });

  it("fromBuffer of a Node Buffer (a view into a shared pool)", () => {
    // Small Buffers live at an offset inside a shared ArrayBuffer.
    const b = Buffer.from(
      buildFile({ x: { dtype: "I32", shape: [2], bytes: bytesOf(new Int32Array([7, -8])) } }),
    );
    const f = SafetensorsFile.fromBuffer(readFileSync(writeTemp(b)), "buf.safetensors");
    expect(f.read("x").data).toEqual(new Int32Array([7, -8]));
    expect([...(f.readF32("x").data as Float32Array)]).toEqual([7, -8]);
  });

  it("accepts padding after the last tensor", () => {
    const good = buildFile({ x: { dtype: "U8", shape: [2], bytes: new Uint8Array([1, 2]) } });
    const padded = new Uint8Array(good.length + 5);
    padded.set(good);
    expect(SafetensorsFile.fromBuffer(padded, "pad.safetensors").read("x").data).toEqual(
      new Uint8Array([1, 2]),
    );
  });

  it("accepts a header with trailing spaces and no tensors", () => {
    const f = SafetensorsFile.fromBuffer(rawFile(undefined, undefined, "{}     "), "empty.safetensors");
    expect(f.entries.size).toBe(0);
    expect(f.metadata).toEqual({});
  });
});

describe("safetensors validation", () => {
  const L = "bad.safetensors";
  const f32x = (shape: number[], offsets: [number, number]) => ({
    dtype: "F32",
    shape,
    data_offsets: offsets,
  });
  const fromHeader =
    (header: unknown, dataBytes = 64) =>
    () =>
      SafetensorsFile.fromBuffer(rawFile(header, new Uint8Array(dataBytes)), L);

  it("file shorter than 8 bytes", () => {
    expectUserError(() => SafetensorsFile.fromBuffer(new Uint8Array(5), L), L, "5 bytes");
    expectUserError(() => SafetensorsFile.open(writeTemp(new Uint8Array(3))), "t", ".safetensors", "3 bytes");
  });

  it("missing file", () => {
    expectUserError(
      () => SafetensorsFile.open(join(dir, "absent.safetensors")),
      "absent.safetensors",
      "ENOENT",
    );
  });

  it("header length 0", () => {
    expectUserError(() => SafetensorsFile.fromBuffer(new Uint8Array(16), L), L, "header length is 0");
  });

  it("header length beyond the file", () => {
    const b = rawFile({});
    new DataView(b.buffer).setBigUint64(0, 1000n, true);
    expectUserError(() => SafetensorsFile.fromBuffer(b, L), L, "header length 1000");
  });

  it("absurd header length", () => {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigUint64(0, 1n << 62n, true);
    expectUserError(() => SafetensorsFile.fromBuffer(b, L), L, "header length", "larger than");
  });

  it("header not JSON", () => {
    expectUserError(
      () => SafetensorsFile.fromBuffer(rawFile(undefined, undefined, "{not json"), L),
      L,
      "JSON",
    );
  });

  it("header not UTF-8", () => {
    const b = rawFile(undefined, undefined, '{"a":1}');
    b[10] = 0xff;
    expectUserError(() => SafetensorsFile.fromBuffer(b, L), L, "UTF-8");
  });

  it("header not an object", () => {
    expectUserError(fromHeader([1, 2]), L, "not a JSON object");
    expectUserError(fromHeader(null), L, "not a JSON object");
  });

  it("entry not an object", () => {
    expectUserError(fromHeader({ w: 5 }), L, 'tensor "w"', "expected an object");
  });

  it("entry with a missing, extra or mistyped field", () => {
    expectUserError(fromHeader({ w: { dtype: "F32", shape: [1] } }), L, 'tensor "w"', "data_offsets");
    expectUserError(fromHeader({ w: { ...f32x([1], [0, 4]), extra: 1 } }), L, 'tensor "w"', "extra");
    expectUserError(fromHeader({ w: { ...f32x([1], [0, 4]), dtype: 3 } }), L, 'tensor "w"', "dtype");
  });

  it("bad shape", () => {
    expectUserError(fromHeader({ w: f32x([-1], [0, 4]) }), L, 'tensor "w"', "shape");
    expectUserError(fromHeader({ w: f32x([1.5], [0, 4]) }), L, 'tensor "w"', "shape");
    expectUserError(fromHeader({ w: { ...f32x([1], [0, 4]), shape: "1" } }), L, 'tensor "w"', "shape");
  });

  it("bad data_offsets", () => {
    expectUserError(fromHeader({ w: f32x([1], [0, 4, 8] as never) }), L, 'tensor "w"', "data_offsets");
    expectUserError(fromHeader({ w: f32x([1], [-4, 0]) }), L, 'tensor "w"', "data_offsets");
    expectUserError(fromHeader({ w: f32x([1], [2 ** 60, 2 ** 60 + 4]) }), L, 'tensor "w"', "data_offsets");
    expectUserError(fromHeader({ w: f32x([0], [8, 4]) }), L, 'tensor "w"', "data_offsets [8, 4]");
  });

  it("bad __metadata__", () => {
    expectUserError(fromHeader({ __metadata__: { format: 1 } }), L, "__metadata__", "format");
    expectUserError(fromHeader({ __metadata__: "pt" }), L, "__metadata__");
  });

  it("unsupported dtype", () => {
    for (const dt of ["F8_E4M3", "U16", "XYZ", "f32", "toString"])
      expectUserError(
        fromHeader({ w: { dtype: dt, shape: [1], data_offsets: [0, 1] } }),
        L,
        'tensor "w"',
        `"${dt}"`,
      );
  });

  it("byte size disagreeing with data_offsets", () => {
    expectUserError(
      fromHeader({ "lm_head.weight": f32x([128, 64], [0, 32764]) }, 40000),
      `${L}: tensor "lm_head.weight": shape [128, 64] of F32 needs 32768 bytes but data_offsets span 32764`,
    );
    // A shape whose byte size exceeds the safe integer range must not compare equal by rounding.
    expectUserError(fromHeader({ w: f32x([2 ** 40, 2 ** 40], [0, 0]) }), L, 'tensor "w"', "needs");
  });

  it("truncated data", () => {
    const header = { a: f32x([4], [0, 16]), b: f32x([4], [16, 32]) };
    const full = rawFile(header, new Uint8Array(32));
    const cut = full.subarray(0, full.length - 6);
    const p = writeTemp(cut);
    expectUserError(
      () => SafetensorsFile.open(p),
      p,
      'tensor "b"',
      "truncated",
      `file has ${cut.length} bytes but needs ${full.length}`,
    );
  });

  it("overlapping tensors", () => {
    const header = { a: f32x([4], [0, 16]), b: f32x([2], [24, 32]), c: f32x([4], [12, 28]) };
    expectUserError(fromHeader(header, 32), L, 'tensor "a"', 'tensor "c"', "overlap");
    // Containment is an overlap too, and empty tensors overlap nothing.
    const nested = { big: f32x([8], [0, 32]), z: f32x([0], [8, 8]), small: f32x([1], [20, 24]) };
    expectUserError(fromHeader(nested, 32), L, 'tensor "big"', 'tensor "small"');
    expect(() => fromHeader({ z: f32x([0], [8, 8]), w: f32x([4], [0, 16]) }, 32)()).not.toThrow();
  });

  it("read of an unknown tensor", () => {
    const f = SafetensorsFile.fromBuffer(
      buildFile({ x: { dtype: "U8", shape: [1], bytes: new Uint8Array(1) } }),
      L,
    );
    expectUserError(() => f.read("y"), L, 'tensor "y"');
    expectUserError(() => f.readF32("y"), L, 'tensor "y"');
  });
});

describe("safetensors fixtures", () => {
  it("reads test/fixtures/llama-tiny", () => {
    const f = SafetensorsFile.open("test/fixtures/llama-tiny/model.safetensors");
    expect(f.entries.size).toBe(21);
    expect(f.entries.get("lm_head.weight")).toMatchObject({
      dtype: "f32",
      fileDtype: "F32",
      shape: [128, 64],
    });
    const norm = f.readF32("model.norm.weight");
    expect(norm.shape).toEqual([64]);
    expect(norm.data.length).toBe(64);
    expect([...(norm.data as Float32Array)].every(Number.isFinite)).toBe(true);
  });

  it("reads every tensor of test/fixtures/gpt2-tiny", () => {
    const f = SafetensorsFile.open("test/fixtures/gpt2-tiny/model.safetensors");
    for (const [name, e] of f.entries)
      expect(f.readF32(name).data.length).toBe(e.shape.reduce((a, b) => a * b, 1));
  });
});
