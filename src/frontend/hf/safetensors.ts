/**
 * Reader of safetensors files: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping
 * tensor names to {dtype, shape, data_offsets} (plus an optional string->string "__metadata__"), then the
 * data section, row-major little-endian, offsets relative to its start. The whole header is validated
 * when the file is opened; tensor data is only read on demand.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { getFloat16 } from "@petamoriken/float16";
import { z } from "zod";
import { UserError } from "../../errors.js";
import { parseJson } from "../../guards.js";
import { zodMessage } from "../../ir/attrs.js";
import type { DType } from "../../ir/dtype.js";
import type { Tensor, TypedData } from "../../ir/tensor.js";

export interface SafetensorsEntry {
  readonly name: string;
  /** Our dtype; F64 tensors are read as f32 and so are listed as "f32". */
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Byte range in the data section. */
  readonly begin: number;
  readonly end: number;
  /** The dtype string of the file ("F32", "BF16", "F64", ...). */
  readonly fileDtype: string;
}

/** Supported file dtypes: our dtype and the element size in the file. */
const FILE_DTYPES: Record<string, { dtype: DType; bytes: number }> = {
  F32: { dtype: "f32", bytes: 4 },
  F16: { dtype: "f16", bytes: 2 },
  BF16: { dtype: "bf16", bytes: 2 },
  I8: { dtype: "i8", bytes: 1 },
  U8: { dtype: "u8", bytes: 1 },
  I32: { dtype: "i32", bytes: 4 },
  I64: { dtype: "i64", bytes: 8 },
  BOOL: { dtype: "bool", bytes: 1 },
  F64: { dtype: "f32", bytes: 8 },
};

const MAX_HEADER = 100_000_000;
const offset = z.number().int().nonnegative(); // zod 4's int() is limited to safe integers
const zEntry = z.strictObject({
  dtype: z.string(),
  shape: z.array(offset),
  data_offsets: z.tuple([offset, offset]),
});

/** A short one-line rendering of a JSON value for messages. */
const show = (x: unknown): string => {
  const s = JSON.stringify(x) ?? String(x);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
};
const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** Typed arrays view host-order bytes; every platform Node supports in practice is little-endian. */
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Where the bytes come from: `at(pos, len)` returns a fresh (aligned, owned) copy. */
type Source = { size: number; at(pos: number, len: number): Uint8Array };

function fileSource(path: string): Source {
  const withFd = <T>(f: (fd: number) => T): T => {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new UserError(
        `${path}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
    try {
      return f(fd);
    } finally {
      closeSync(fd);
    }
  };
  return {
    size: withFd((fd) => fstatSync(fd).size),
    at: (pos, len) =>
      withFd((fd) => {
        const out = new Uint8Array(len);
        for (let got = 0; got < len;) {
          const n = readSync(fd, out, got, len - got, pos + got);
          if (n === 0)
            throw new UserError(
              `${path}: file ended at byte ${pos + got}, expected ${pos + len} (was it modified?)`,
            );
          got += n;
        }
        return out;
      }),
  };
}

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly metadata: Readonly<Record<string, string>>,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    private readonly src: Source,
    /** File offset of the data section (8 + header length). */
    private readonly dataStart: number,
  ) {}

  /** Opens `path` and validates its header; tensor data is read by `read`/`readF32`. */
  static open(path: string): SafetensorsFile {
    return SafetensorsFile.parse(fileSource(path), path);
  }

  static fromBuffer(buf: Uint8Array, label: string): SafetensorsFile {
    // A copy via the constructor: Buffer#slice would return a view into Node's shared pool.
    const at = (pos: number, len: number) => new Uint8Array(buf.subarray(pos, pos + len));
    return SafetensorsFile.parse({ size: buf.length, at }, label);
  }

  private static parse(src: Source, label: string): SafetensorsFile {
    function fail(msg: string): never {
      throw new UserError(`${label}: ${msg}`);
    }
    if (src.size < 8)
      fail(`not a safetensors file: ${src.size} bytes, shorter than the 8-byte header length`);
    const n64 = new DataView(src.at(0, 8).buffer).getBigUint64(0, true);
    if (n64 === 0n) fail("safetensors header length is 0");
    if (n64 > BigInt(MAX_HEADER)) fail(`safetensors header length ${n64} is larger than ${MAX_HEADER} bytes`);
    const n = Number(n64);
    if (n > src.size - 8)
      fail(`safetensors header length ${n} exceeds the ${src.size - 8} bytes after the length`);

    let text = "";
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(src.at(8, n));
    } catch {
      fail("safetensors header is not valid UTF-8");
    }
    const header = parseJson(text, `${label}: safetensors header`);
    if (!isObject(header)) fail("safetensors header is not a JSON object");

    const dataSize = src.size - 8 - n;
    let metadata: Record<string, string> = {};
    const entries = new Map<string, SafetensorsEntry>();
    // Object key order is insertion order except for integer-like names, which JS lists first.
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") {
        if (!isObject(raw)) fail("field __metadata__: expected an object of strings");
        for (const [k, v] of Object.entries(raw))
          if (typeof v !== "string")
            fail(`field __metadata__[${JSON.stringify(k)}]: expected a string, got ${show(v)}`);
        metadata = raw as Record<string, string>;
        continue;
      }
      const where = `tensor ${JSON.stringify(name)}`; // JSON quoting keeps odd names on one line
      if (!isObject(raw)) fail(`${where}: expected an object, got ${show(raw)}`);
      const p = zEntry.safeParse(raw);
      if (!p.success) fail(`${where}: ${zodMessage(p.error, "field")}`);
      const {
        dtype: fileDtype,
        shape,
        data_offsets: [begin, end],
      } = p.data;
      if (begin > end) fail(`${where}: data_offsets [${begin}, ${end}] begin after end`);
      const ft = Object.hasOwn(FILE_DTYPES, fileDtype) ? FILE_DTYPES[fileDtype] : undefined;
      if (!ft) fail(`${where}: unsupported dtype "${fileDtype}"`);
      // BigInt: the product of a bogus shape may exceed the safe integer range.
      const need = shape.reduce((a, d) => a * BigInt(d), BigInt(ft.bytes));
      const span = end - begin;
      const what = `shape [${shape.join(", ")}] of ${fileDtype}`;
      if (need !== BigInt(span)) fail(`${where}: ${what} needs ${need} bytes but data_offsets span ${span}`);
      if (end > dataSize) {
        const detail = `data_offsets end at ${end}, data section has ${dataSize}`;
        fail(`${where}: truncated: file has ${src.size} bytes but needs ${8 + n + end} (${detail})`);
      }
      entries.set(name, { name, dtype: ft.dtype, shape, begin, end, fileDtype });
    }

    // Overlaps: after sorting by begin, a range overlaps iff it starts before the furthest end so far.
    const sorted = [...entries.values()].filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
    let last: SafetensorsEntry | undefined;
    const q = JSON.stringify;
    for (const e of sorted) {
      if (last && e.begin < last.end)
        fail(
          `tensor ${q(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap those of ` +
            `tensor ${q(last.name)} [${last.begin}, ${last.end}]`,
        );
      if (!last || e.end > last.end) last = e;
    }
    return new SafetensorsFile(label, metadata, entries, src, 8 + n);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw new UserError(`${this.path}: no tensor ${JSON.stringify(name)} in the file`);
    return e;
  }

  /** Raw bytes of a tensor as a typed array of the file dtype (F64 as Float64Array). */
  private raw(e: SafetensorsEntry): TypedData | Float64Array {
    const bytes = this.src.at(this.dataStart + e.begin, e.end - e.begin);
    const size = FILE_DTYPES[e.fileDtype]!.bytes;
    if (!HOST_LE && size > 1)
      for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
    const b = bytes.buffer;
    switch (e.fileDtype) {
      case "F32":
        return new Float32Array(b);
      case "F16":
      case "BF16":
        return new Uint16Array(b);
      case "I8":
        return new Int8Array(b);
      case "I32":
        return new Int32Array(b);
      case "I64":
        return new BigInt64Array(b);
      case "F64":
        return new Float64Array(b);
      default: // U8, BOOL
        return bytes;
    }
  }

  /**
   * Reads one tensor with its own dtype: F32 -> Float32Array, F16/BF16 -> Uint16Array of bit patterns,
   * I8 -> Int8Array, U8/BOOL -> Uint8Array, I32 -> Int32Array, I64 -> BigInt64Array. F64 has no dtype of
   * ours and is returned narrowed to f32, as `readF32` does.
   */
  read(name: string): Tensor {
    const e = this.entry(name);
    if (e.fileDtype === "F64") return this.readF32(name);
    return { dtype: e.dtype, shape: [...e.shape], data: this.raw(e) as TypedData };
  }

  /** Reads one tensor converted to f32 (halves widened exactly, F64 rounded, integers converted). */
  readF32(name: string): Tensor {
    const e = this.entry(name);
    const raw = this.raw(e);
    let out: Float32Array;
    if (e.fileDtype === "F32") out = raw as Float32Array;
    else if (e.fileDtype === "F16") {
      const t = f16Table();
      out = Float32Array.from(raw as Uint16Array, (h) => t[h]!);
    } else if (e.fileDtype === "BF16") {
      // A bf16 is the high half of a float32.
      const u = Uint32Array.from(raw as Uint16Array, (h) => h << 16);
      out = new Float32Array(u.buffer);
    } else if (raw instanceof BigInt64Array) out = Float32Array.from(raw, (v) => Number(v));
    else out = Float32Array.from(raw as ArrayLike<number>);
    return { dtype: "f32", shape: [...e.shape], data: out };
  }
}

/** All 65536 f16 bit patterns as f32, built on first use. */
let F16_TABLE: Float32Array | undefined;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    const v = new DataView(new ArrayBuffer(2));
    for (let h = 0; h < 65536; h++) {
      v.setUint16(0, h, true);
      F16_TABLE[h] = getFloat16(v, 0, true);
    }
  }
  return F16_TABLE;
}
