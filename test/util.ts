/** Shared test helpers: temporary folders, safetensors files, one-line user errors, running pimc. */
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import { main } from "../src/cli/main.js";
import { UserError } from "../src/errors.js";
import { SafetensorsFile } from "../src/frontend/hf/safetensors.js";

/** A temporary folder removed after the test file. */
export function tempDir(prefix = "pimc-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Spec {
  dtype: string;
  shape: number[];
  /** Raw little-endian bytes of the tensor. */
  bytes: Uint8Array;
}

/** Serializes a header object and a data section: 8-byte LE length, JSON, data. */
export function rawFile(
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  headerText?: string,
): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** A well-formed file with tensors laid out back to back in the given order. */
export function buildFile(tensors: Record<string, Spec>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  const data = new Uint8Array(off);
  off = 0;
  for (const t of Object.values(tensors)) {
    data.set(t.bytes, off);
    off += t.bytes.length;
  }
  return rawFile(header, data);
}

export const bytesOf = (a: ArrayBufferView): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Expects `f` to throw a one-line UserError containing every part; returns the message. */
export function expectUserError(f: () => unknown, ...parts: string[]): string {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as UserError).message;
  expect(msg).not.toContain("\n");
  for (const p of parts) expect(msg).toContain(p);
  return msg;
}

export const LLAMA_TINY = "test/fixtures/llama-tiny";

export interface VariantEdit {
  config?: (c: Record<string, unknown>) => void;
  tensors?: (t: Record<string, Spec>) => void;
}

let variants = 0;

/** A copy of a fixture checkpoint (llama-tiny by default) under `dir`, with its config and tensors edited. */
export function llamaVariant(dir: string, edit: VariantEdit, from = LLAMA_TINY): string {
  const out = join(dir, `variant${variants++}`);
  mkdirSync(out);
  const cfg = JSON.parse(readFileSync(join(from, "config.json"), "utf8")) as Record<string, unknown>;
  edit.config?.(cfg);
  writeFileSync(join(out, "config.json"), JSON.stringify(cfg));
  writeFileSync(join(out, "reference.json"), readFileSync(join(from, "reference.json")));
  const st = SafetensorsFile.open(join(from, "model.safetensors"));
  const tensors: Record<string, Spec> = {};
  for (const e of st.entries.values())
    tensors[e.name] = { dtype: "F32", shape: [...e.shape], bytes: bytesOf(st.read(e.name).data) };
  edit.tensors?.(tensors);
  writeFileSync(join(out, "model.safetensors"), buildFile(tensors));
  return out;
}

export interface PimcResult {
  code: number;
  stdout: string;
  stderr: string;
}

type Write = typeof process.stdout.write;

/** A `write` that appends to `sink` and reports success, as a stream's write does. */
function capture(sink: string[]): Write {
  return ((chunk: string | Uint8Array, enc?: unknown, cb?: unknown): boolean => {
    sink.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    const done = typeof enc === "function" ? enc : cb;
    if (typeof done === "function") (done as () => void)();
    return true;
  }) as Write;
}

let running = false;

/**
 * `pimc ...args` run in this process: `main(argv)` from the sources with stdout and stderr captured
 * (vitest.config sets NO_COLOR). Calls must not overlap (the streams are swapped for the call).
 */
export async function pimc(...args: string[]): Promise<PimcResult> {
  if (running) throw new Error("pimc(): calls must not overlap (await each one)");
  running = true;
  const out: string[] = [];
  const err: string[] = [];
  const { write: outWrite } = process.stdout;
  const { write: errWrite } = process.stderr;
  process.exitCode = undefined;
  process.stdout.write = capture(out);
  process.stderr.write = capture(err);
  const t0 = performance.now();
  try {
    const code = await main(args);
    // PIMC_TEST_LOG=FILE: one JSON line per command (argv, milliseconds), to find the suite's costly ones.
    if (process.env.PIMC_TEST_LOG)
      appendFileSync(process.env.PIMC_TEST_LOG, `${JSON.stringify({ ms: performance.now() - t0, args })}\n`);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
    process.exitCode = undefined;
    running = false;
  }
}

/** `node` running the `pimc` bin from the TypeScript sources (test/ts-hooks.mjs; no build needed). */
export const PIMC_BIN = [process.execPath, "--import", "./test/ts-register.mjs", "src/cli/bin.ts"];

/**
 * The `pimc` bin run as a user runs it, in a child process, without colours. For the few end-to-end
 * checks of the bin itself only (test/bin.test.ts: exit codes, pipes); everything else uses `pimc`.
 */
export function pimcE2E(...args: string[]): PimcResult {
  const r = spawnSync(PIMC_BIN[0]!, [...PIMC_BIN.slice(1), ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A deterministic PRNG (mulberry32): numbers in [0, 1). */
export { mulberry32 as rng } from "../src/rng.js";

/** One decode or prefill step of `pimc bench --json`. */
export interface BenchStep {
  batch: number;
  seconds: number;
  busy: Record<string, number>;
  ops: { name: string; device: string; seconds: number }[];
  /** Where the target models energy (docs/energy.md). */
  energy?: { joules: number; per_token_j: number; breakdown: Record<string, number> };
}

/** `pimc bench <model> --system <system> ...extra --json`, which must succeed: its parsed report. */
export async function benchJson(
  model: string,
  system: string,
  ...extra: string[]
): Promise<{ target: string; steps: BenchStep[] }> {
  const r = await pimc("bench", model, "--system", system, ...extra, "--json");
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { target: string; steps: BenchStep[] };
}

/**
 * The decode steps of a multi-GPU study's what-if (examples/<model>.pim on
 * examples/systems/<system>.pim): the weights and KV caches of one GPU's share exceed its memory,
 * so --no-capacity-check. Context 2047, as in docs/heterogeneous.md: the step's new token is the
 * last of GPT-3's and LLaMA-65B's 2048 positions.
 */
export async function whatIf(model: string, system: string, batch: string, ...extra: string[]) {
  const args = ["--phase", "decode", "--no-capacity-check", "--context", "2047", "--batch", batch];
  return (await benchJson(`examples/${model}.pim`, `examples/systems/${system}.pim`, ...args, ...extra))
    .steps;
}

/**
 * Llama-2-7B (examples/llama2-7b.pim) with `layers` of its 32 layers, written to a temporary file:
 * the same shapes, kernels and per-layer placements at a fraction of the work (tests that check how
 * a step is made, not the full model's figures, which the docs' figures check).
 */
export function llama7bLayers(layers: number): string {
  const path = join(tempDir("pimc-llama7b-"), `llama2-7b-${layers}layers.pim`);
  writeFileSync(
    path,
    readFileSync("examples/llama2-7b.pim", "utf8").replace("layers = 32", `layers = ${layers}`),
  );
  return path;
}
