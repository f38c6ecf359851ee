/**
 * The binary form of a UPMEM program (`.pimx`), documented in docs/upmem.md:
 *
 *   offset 0   8 bytes   magic "PIMCUPM\0"
 *          8   u32 LE    format version (1)
 *         12   u32 LE    manifest length L in bytes
 *         16   L bytes   manifest: the Program as JSON (UTF-8, keys sorted), with every typed array
 *                        (images[].data, constants[].data) replaced by {offset, length} into the data
 *                        section
 *              zeros     to the next multiple of 8: the data section starts there
 *              blobs     images' data then constants' data in program order, each at the next 8-byte
 *                        aligned offset of the data section (zero padding); the file ends with the
 *                        last blob
 *
 * Constants are stored as their element bytes: f32 little-endian, i8 as is. Encoding is deterministic
 * (sorted keys, fixed blob order), so encode(decode(encode(p))) is byte-identical to encode(p).
 * encodeProgram does not validate; decodeProgram checks the layout and then validates the program.
 */
import { jsonDepth, jsonSyntaxMessage, MAX_NESTING_DEPTH } from "../../src/guards.js";
import { ProgramError } from "./errors.js";
import type { Program } from "./program.js";
import { fmtPath, validateProgram } from "./validate.js";

export const MAGIC = "PIMCUPM\0";
export const FORMAT_VERSION = 1;
const HEADER = 16;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/**
 * JSON with object keys sorted and undefined members dropped; throws on non-finite numbers. The path
 * (for the error messages) is one stack, pushed and popped: manifests have hundreds of thousands of
 * nodes, and a path copied per node was most of the encoder's time.
 */
function canonicalJson(root: unknown): string {
  const path: PropertyKey[] = [];
  const walk = (v: unknown): string => {
    if (typeof v === "number") {
      if (!Number.isFinite(v))
        throw new Error(`cannot encode the non-finite number ${v} at ${fmtPath(path)}`);
      return JSON.stringify(v);
    }
    if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
    if (ArrayBuffer.isView(v)) throw new Error(`internal: typed array at ${fmtPath(path)} in the manifest`);
    const parts: string[] = [];
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        parts.push(walk(v[i]));
        path.pop();
      }
      return `[${parts.join(",")}]`;
    }
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o).sort()) {
      if (o[k] === undefined) continue;
      path.push(k);
      parts.push(`${JSON.stringify(k)}:${walk(o[k])}`);
      path.pop();
    }
    return `{${parts.join(",")}}`;
  };
  return walk(root);
}

/** The little-endian bytes of a typed array (a view when the host is little-endian). */
function leBytes(a: Float32Array | Int8Array | Uint8Array): Uint8Array {
  if (!(a instanceof Float32Array)) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  a.forEach((x, i) => dv.setFloat32(i * 4, x, true));
  return out;
}

function f32FromLe(bytes: Uint8Array): Float32Array {
  const copy = new Uint8Array(bytes); // a plain copy with its own buffer (bytes may be a Node Buffer)
  if (LITTLE_ENDIAN) return new Float32Array(copy.buffer, 0, copy.length / 4);
  const dv = new DataView(copy.buffer);
  return Float32Array.from({ length: copy.length / 4 }, (_, i) => dv.getFloat32(i * 4, true));
}

interface BlobRef {
  readonly offset: number;
  readonly length: number;
}

/** The binary form of a program (see the file comment). */
export function encodeProgram(p: Program): Uint8Array {
  const blobs: { offset: number; bytes: Uint8Array }[] = [];
  let size = 0;
  const ref = (a: Float32Array | Int8Array | Uint8Array): BlobRef => {
    const bytes = leBytes(a);
    const offset = align8(size);
    size = offset + bytes.length;
    blobs.push({ offset, bytes });
    return { offset, length: bytes.length };
  };
  const manifest = {
    ...p,
    images: p.images.map((m) => (m.data ? { ...m, data: ref(m.data) } : m)),
    constants: p.constants.map((c) => (c.data ? { ...c, data: ref(c.data) } : c)),
  };
  const json = new TextEncoder().encode(canonicalJson(manifest));
  if (json.length > 0xffffffff) throw new Error(`the manifest is too large (${json.length} bytes)`);
  const dataStart = align8(HEADER + json.length);
  const out = new Uint8Array(dataStart + size);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < MAGIC.length; i++) out[i] = MAGIC.charCodeAt(i);
  dv.setUint32(8, FORMAT_VERSION, true);
  dv.setUint32(12, json.length, true);
  out.set(json, HEADER);
  for (const b of blobs) out.set(b.bytes, dataStart + b.offset);
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Reads a program from its binary form; throws ProgramError `file: problem` for any defect. */
export function decodeProgram(bytes: Uint8Array, file: string): Program {
  const fail = (what: string): never => {
    throw new ProgramError(`${file}: ${what}`);
  };
  for (let i = 0; i < Math.min(MAGIC.length, bytes.length); i++)
    if (bytes[i] !== MAGIC.charCodeAt(i)) fail(`not a pimc UPMEM program (bad magic bytes)`);
  if (bytes.length < HEADER) fail(`truncated file (${bytes.length} bytes, the header alone has ${HEADER})`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== FORMAT_VERSION)
    fail(`unsupported format version ${version} (this pimc reads version ${FORMAT_VERSION})`);
  const len = dv.getUint32(12, true);
  const dataStart = align8(HEADER + len);
  if (HEADER + len > bytes.length)
    fail(`truncated file (${bytes.length} bytes, the manifest ends at byte ${HEADER + len})`);
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(HEADER, HEADER + len));
  } catch {
    fail(`the manifest is not valid UTF-8`);
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    fail(`the manifest is not JSON (${jsonSyntaxMessage(e, text)})`);
  }
  if (jsonDepth(m) > MAX_NESTING_DEPTH)
    fail(`the manifest nests deeper than ${MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH)`);
  if (!isObject(m)) return fail(`the manifest is not a JSON object`);

  // The blob references, in the order encodeProgram lays them out.
  interface Slot {
    readonly where: string;
    readonly owner: Record<string, unknown>;
    readonly ref: BlobRef;
    readonly kind: "u8" | "i8" | "f32";
  }
  const slots: Slot[] = [];
  const collect = (list: unknown, name: "images" | "constants"): void => {
    if (!Array.isArray(list)) return;
    list.forEach((owner, i) => {
      if (!isObject(owner) || owner.data === undefined) return;
      const where = `${name}[${i}].data`;
      const r = owner.data;
      const nat = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
      if (!isObject(r) || Object.keys(r).length !== 2 || !nat(r.offset) || !nat(r.length))
        fail(`${where}: bad blob reference ${JSON.stringify(r)} (expected {offset, length})`);
      const ref = r as unknown as BlobRef;
      if (ref.offset % 8 !== 0) fail(`${where}: blob offset ${ref.offset} is not 8-byte aligned`);
      let kind: Slot["kind"] = "u8";
      if (name === "constants") {
        kind = owner.dtype === "i8" ? "i8" : "f32";
        const shape = owner.shape;
        if (Array.isArray(shape) && shape.every((d) => typeof d === "number")) {
          const need = (shape as number[]).reduce((a, b) => a * b, 1) * (kind === "i8" ? 1 : 4);
          if (ref.length !== need)
            fail(
              `${where}: blob has ${ref.length} bytes, ${String(owner.dtype)}[${shape.join(", ")}] needs ${need}`,
            );
        } else if (kind === "f32" && ref.length % 4 !== 0)
          fail(`${where}: blob of ${ref.length} bytes is not a whole number of f32`);
      }
      slots.push({ where, owner, ref, kind });
    });
  };
  collect(m.images, "images");
  collect(m.constants, "constants");

  let end = 0;
  const expected = slots.map((s) => {
    const off = align8(end);
    end = off + s.ref.length;
    return off;
  });
  const dataBytes = bytes.length - dataStart;
  const canonical = slots.every((s, i) => s.ref.offset === expected[i]);
  if (canonical && dataBytes < end)
    fail(`truncated file (${bytes.length} bytes, the data section ends at byte ${dataStart + end})`);
  slots.forEach((s, i) => {
    const { offset, length } = s.ref;
    if (offset + length > dataBytes)
      fail(
        `${s.where}: blob [${offset}, ${offset + length}) is out of range (the data section has ${Math.max(0, dataBytes)} bytes)`,
      );
    if (offset !== expected[i])
      fail(`${s.where}: blob at offset ${offset}, expected ${expected[i]} (blobs are packed in order)`);
  });
  if (dataBytes > end) fail(`trailing garbage (${dataBytes - end} bytes after the data section)`);

  for (const s of slots) {
    const raw = bytes.subarray(dataStart + s.ref.offset, dataStart + s.ref.offset + s.ref.length);
    s.owner.data =
      s.kind === "u8"
        ? new Uint8Array(raw)
        : s.kind === "i8"
          ? new Int8Array(new Uint8Array(raw).buffer)
          : f32FromLe(raw);
  }
  return validateProgram(m, file);
}
