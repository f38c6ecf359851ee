/**
 * The program file of a target without code generation (hbm-pim, xpu, sram-pim, cpu, roofline): the
 * compiled module (placed IR, shape only) with the system it was compiled for, which `pimc sim` times
 * call by call with the target's device model (or its cost model) as `pimc bench` does. UPMEM's
 * programs are lowered further and have their own format (targets/upmem/codec.ts).
 *
 * A JSON document (docs/api.md, "Program files"):
 *   { "pimc_program": 2, "target": "xpu", "model": "llama2_7b",
 *     "system": { "file": "examples/systems/h100.pim", "name": "h100", "text": "<the .pim file>" } | null,
 *     "options": { "cooperation": true, "attention": "auto", "targetFlags": { "kSplit": false } }, "limits": { "B": 1, "S": 128, "T": 1025 },
 *     "module": "<the module as printed IR>" }
 * `system` null: the target's default system. Decoding checks every field, re-parses the system and
 * the module (their errors name the file) and verifies the module.
 */
import { z } from "zod";
import { UserError } from "../errors.js";
import { parseJson } from "../guards.js";
import { zodMessage } from "../ir/attrs.js";
import type { Module } from "../ir/module.js";
import { parseModule } from "../ir/parser.js";
import { printModule } from "../ir/printer.js";
import { assertValid } from "../ir/verifier.js";
import { WORKLOAD_LIMITS as W } from "../limits.js";
import type { SystemOptions } from "../../targets/index.js";

/**
 * The format's version; a file of another version is refused. 2: `options` holds the target's own
 * flags under `targetFlags` (version 1 had UPMEM's pooling, gemm and runtimeTranspose at top level).
 */
export const IR_PROGRAM_VERSION = 2;

export interface IrProgram {
  readonly target: string;
  readonly model: string;
  /** The description file the system came from, and the system block's name; absent: the default. */
  readonly system?: { readonly file: string; readonly name: string; readonly text: string };
  /** How the system is used (cooperation, attention, the target's flags). */
  readonly options: SystemOptions;
  /** The largest batch, tokens per call and cached tokens the program was compiled for. */
  readonly limits: { readonly B: number; readonly S: number; readonly T: number };
  readonly module: Module;
}

const positions = W.prompt + W.context + W.speculation;
const zIrProgram = z.strictObject({
  pimc_program: z.literal(IR_PROGRAM_VERSION),
  target: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
  model: z.string().max(256),
  system: z
    .strictObject({ file: z.string().max(4096), name: z.string().max(256), text: z.string() })
    .nullable(),
  options: z.strictObject({
    cooperation: z.boolean().optional(),
    attention: z.enum(["auto", "pim", "host"]).optional(),
    targetFlags: z
      .record(z.string().max(64), z.union([z.string().max(64), z.boolean()]))
      .refine((r) => Object.keys(r).length <= 64, "at most 64 target flags")
      .optional(),
  }),
  limits: z.strictObject({
    B: z.number().int().positive().max(W.batch),
    S: z.number().int().positive().max(Math.max(W.prompt, W.speculation)),
    T: z.number().int().positive().max(positions),
  }),
  module: z.string(),
});

export function encodeIrProgram(p: IrProgram): Uint8Array {
  const doc = {
    pimc_program: IR_PROGRAM_VERSION,
    target: p.target,
    model: p.model,
    system: p.system ?? null,
    options: p.options,
    limits: p.limits,
    module: printModule(p.module),
  };
  return new TextEncoder().encode(`${JSON.stringify(doc, null, 1)}\n`);
}

/** Whether `bytes` look like an IR program (a JSON document naming the format). */
export const isIrProgram = (bytes: Uint8Array): boolean =>
  /^\s*\{\s*"pimc_program"/.test(new TextDecoder().decode(bytes.subarray(0, 64)));

export function decodeIrProgram(bytes: Uint8Array, file: string): IrProgram {
  const raw = parseJson(new TextDecoder().decode(bytes), file);
  if (
    typeof raw === "object" &&
    raw !== null &&
    "pimc_program" in raw &&
    raw.pimc_program !== IR_PROGRAM_VERSION
  )
    throw new UserError(
      `${file}: a program file of format version ${String(raw.pimc_program)}; this pimc reads version ${IR_PROGRAM_VERSION} (compile it again)`,
    );
  const r = zIrProgram.safeParse(raw);
  if (!r.success) throw new UserError(`${file}: ${zodMessage(r.error, "field")}`);
  const d = r.data;
  const module = parseModule(d.module, `${file} (module)`);
  try {
    assertValid(module);
  } catch (e) {
    throw e instanceof UserError ? new UserError(`${file} (module): ${e.message}`) : e;
  }
  return {
    target: d.target,
    model: d.model,
    ...(d.system ? { system: d.system } : {}),
    options: d.options,
    limits: d.limits,
    module,
  };
}
