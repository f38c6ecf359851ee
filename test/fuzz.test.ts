/**
 * Seeded-mutation fuzzing of every file and option pimc reads: description files (models, systems,
 * workloads), printed IR, HF config.json and safetensors, reference logits, `.pimx` programs, serve
 * traces and command lines. Each case must either succeed or throw a UserError with a one-line
 * message: never another exception, never a hang (each case is timed; the slowest is reported).
 *
 * PIMC_FUZZ_CASES (default 1000) sets the number of cases, PIMC_FUZZ_SEED (default 1) the seed:
 * `PIMC_FUZZ_CASES=10000 PIMC_FUZZ_SEED=7 npx vitest run test/fuzz.test.ts`. PIMC_FUZZ_LOG=file
 * appends each case's id before it runs (to find a case that hangs).
 *
 * test/fixtures/fuzz-corpus/<surface>/ keeps inputs that once crashed, hung or were accepted (gzipped
 * when large): each must now be rejected with a one-line UserError.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli/main.js";
import { readReference } from "../src/driver/verify.js";
import { UserError } from "../src/errors.js";
import { buildModel, parseDescription, selectModel } from "../src/frontend/dsl/index.js";
import { buildFamilyModule } from "../src/frontend/families/index.js";
import { parseHfConfig } from "../src/frontend/hf/config.js";
import { SafetensorsFile } from "../src/frontend/hf/safetensors.js";
import { readRequests } from "../src/frontend/requests.js";
import { parseAimTrace, runAimTrace } from "../targets/aim/trace.js";
import { DEFAULT_SYSTEM as AIM } from "../targets/aim/standard.js";
import { workloadFromDecl } from "../src/frontend/workload.js";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { assertValid } from "../src/ir/verifier.js";
import { mulberry32 } from "../src/rng.js";
import { getTarget } from "../targets/index.js";
import { decodeProgram } from "../targets/upmem/codec.js";
import { decodeIrProgram } from "../src/exec/ir-program.js";
import { irExecutable } from "../src/driver/run.js";
import { disassemble } from "../targets/upmem/disasm.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { tempDir } from "./util.js";

const CASES = Number(process.env.PIMC_FUZZ_CASES ?? 1000);
const SEED = Number(process.env.PIMC_FUZZ_SEED ?? 1);
const LOG = process.env.PIMC_FUZZ_LOG;
/** PIMC_FUZZ_FIRST=k starts at case k (with PIMC_FUZZ_CASES=k+1: only case k). */
const FIRST = Number(process.env.PIMC_FUZZ_FIRST ?? 0);
const CORPUS = "test/fixtures/fuzz-corpus";
/** A case slower than this is reported as a hang (the fuzzer used 10 s). */
const SLOW_MS = 10_000;

const dir = tempDir("pimc-fuzz-");
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---- mutations ----

type Rng = () => number;
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rng, n: number): number => Math.floor(r() * n);

const HUGE = [
  "2147483648",
  "4294967296",
  "4294967295",
  "1e15",
  "1e308",
  "1e999",
  "Infinity",
  "-Infinity",
  "NaN",
  "-1",
  "0",
  "-0",
  "0.5",
  "9007199254740993",
  "-2147483649",
];
const SWAPS = ['"x"', '""', "[]", "{}", "null", "true", "[1,2]", '{"a":1}', "-1", "1e400"];
const NEST_DEPTHS = [64, 300, 3000, 30000];

/** A mutation of text: byte flips, truncation, duplication, nesting, huge numbers, type swaps, NULs. */
function mutateText(r: Rng, s: string): { text: string; how: string } {
  const n = s.length;
  const at = int(r, n + 1);
  const kind = int(r, 11);
  switch (kind) {
    case 0: {
      const ch = pick(r, [
        "\0",
        "\uffff",
        "\ud800",
        "é",
        '"',
        "\\",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "\n",
        ",",
        "=",
      ]);
      return { text: s.slice(0, at) + ch + s.slice(at + 1), how: `flip@${at}=${JSON.stringify(ch)}` };
    }
    case 1:
      return { text: s.slice(0, at), how: `truncate@${at}` };
    case 2: {
      const len = int(r, 200);
      return { text: s.slice(0, at) + s.slice(at, at + len) + s.slice(at), how: `dup@${at}+${len}` };
    }
    case 3: {
      const len = int(r, 100);
      return { text: s.slice(0, at) + s.slice(at + len), how: `delete@${at}+${len}` };
    }
    case 4: {
      const d = pick(r, NEST_DEPTHS);
      const [o, c] = pick(r, [
        ["(", ")"],
        ["[", "]"],
        ["{", "}"],
        ["-", ""],
        ['{"a":', "}"],
        ["[[", "]]"],
      ] as const);
      return {
        text: s.slice(0, at) + o.repeat(d) + "1" + c.repeat(d) + s.slice(at),
        how: `nest${o}${d}@${at}`,
      };
    }
    case 5:
    case 6: {
      const nums = [...s.matchAll(/-?\d+(\.\d+)?(e[-+]?\d+)?/g)];
      if (nums.length === 0) return { text: s, how: "nonum" };
      const m = pick(r, nums);
      const v = kind === 5 ? pick(r, HUGE) : pick(r, SWAPS);
      return { text: s.slice(0, m.index) + v + s.slice(m.index + m[0].length), how: `num@${m.index}=${v}` };
    }
    case 7:
      return { text: s.slice(0, at) + "\0" + s.slice(at), how: `nul@${at}` };
    case 8: {
      // Splice a line from elsewhere in the file.
      const lines = s.split("\n");
      const i = int(r, lines.length);
      lines.splice(int(r, lines.length), 0, lines[i]!);
      return { text: lines.join("\n"), how: `line-dup${i}` };
    }
    case 9: {
      const words = [...s.matchAll(/"[^"\n]*"|[A-Za-z_]\w*/g)];
      if (words.length === 0) return { text: s, how: "noword" };
      const m = pick(r, words);
      const v = pick(r, [...SWAPS, ...HUGE, '"\\u0000"', '"\\ud800"', '"' + "a".repeat(5000) + '"']);
      return {
        text: s.slice(0, m.index) + v + s.slice(m.index + m[0].length),
        how: `word@${m.index}=${v.slice(0, 10)}`,
      };
    }
    default: {
      // Several mutations at once.
      let t = s;
      const hows: string[] = [];
      for (let k = 0; k < 3; k++) {
        const m = mutateText(r, t);
        t = m.text;
        hows.push(m.how);
      }
      return { text: t, how: hows.join("+") };
    }
  }
}

/** Hostile JSON values: huge, negative, fractional, non-finite-ish, wrong types, deep, odd expressions. */
const JSON_VALUES: readonly unknown[] = [
  2147483648,
  4294967296,
  1e15,
  1e308,
  -1,
  0,
  0.5,
  -0.5,
  2 ** 53 + 2,
  "",
  "x",
  "B//0",
  "cdiv(B, 0)",
  "B*S*4294967296*4294967296",
  "((((B",
  "\u0000",
  null,
  true,
  [],
  {},
  [[[]]],
  { terms: 5 },
  { terms: [{ coef: 1, syms: ["B"] }] },
  { offset: 0, length: 4294967296 },
];

const MARK = "\u0001nest\u0001";

/**
 * A structural mutation of a JSON document: one value anywhere in it (found without recursion) is
 * replaced by a hostile one, deleted, duplicated into an array, or wrapped in deep nesting.
 */
function mutateJson(r: Rng, text: string): { text: string; how: string } | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const slots: { owner: Record<string, unknown> | unknown[]; key: string | number; path: string }[] = [];
  const stack: [unknown, string][] = [[doc, "$"]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    const entries: [string | number, unknown][] = Array.isArray(v)
      ? v.map((x, i) => [i, x])
      : Object.entries(v);
    for (const [k, x] of entries) {
      slots.push({ owner: v as Record<string, unknown>, key: k, path: `${path}.${k}` });
      stack.push([x, `${path}.${k}`]);
    }
  }
  if (slots.length === 0) return undefined;
  const slot = pick(r, slots);
  const o = slot.owner as Record<string | number, unknown>;
  let how: string;
  switch (int(r, 5)) {
    case 0: {
      // Built as text: JSON.stringify itself recurses.
      const d = pick(r, NEST_DEPTHS);
      const inner = JSON.stringify(o[slot.key]) ?? "null";
      o[slot.key] = MARK;
      const t = JSON.stringify(doc).replace(JSON.stringify(MARK), "[".repeat(d) + inner + "]".repeat(d));
      return { text: t, how: `json ${slot.path.slice(0, 80)} wrap${d}` };
    }
    case 1:
      if (Array.isArray(o)) o.splice(Number(slot.key), 1);
      else delete o[slot.key];
      how = "delete";
      break;
    case 2: {
      // Many copies (at most a few MB of them: big files are slow to read, not wrong).
      const size = (JSON.stringify(o[slot.key]) ?? "null").length;
      const n = Math.max(2, Math.min(pick(r, [2, 1000, 20000]), Math.floor(4e6 / size)));
      o[slot.key] = Array.from({ length: n }, () => o[slot.key]);
      how = `repeat${n}`;
      break;
    }
    default: {
      const v = pick(r, JSON_VALUES);
      o[slot.key] = structuredClone(v);
      how = `=${JSON.stringify(v)}`;
    }
  }
  return { text: JSON.stringify(doc), how: `json ${slot.path.slice(0, 80)} ${how}` };
}

/** Flips, truncates or overwrites bytes of a binary file (lengths and offsets included). */
function mutateBytes(r: Rng, b: Uint8Array): { bytes: Uint8Array; how: string } {
  const out = new Uint8Array(b);
  const at = int(r, b.length);
  switch (int(r, 4)) {
    case 0:
      out[at] = int(r, 256);
      return { bytes: out, how: `byte@${at}=${out[at]}` };
    case 1:
      return { bytes: out.subarray(0, at), how: `truncate@${at}` };
    case 2: {
      // Little-endian u32 / u64 length fields of the header.
      const off = pick(r, [0, 4, 8, 12]);
      const v = pick(r, [0, 1, 7, 0xffffffff, 0x7fffffff, b.length, b.length + 1]);
      new DataView(out.buffer).setUint32(off, v, true);
      return { bytes: out, how: `u32@${off}=${v}` };
    }
    default: {
      const len = int(r, 64);
      const more = new Uint8Array(b.length + len);
      more.set(b.subarray(0, at));
      more.set(b.subarray(at, at + len), at);
      more.set(b.subarray(at), at + len);
      return { bytes: more, how: `dup@${at}+${len}` };
    }
  }
}

/** A container: an N-byte little-endian length (at `lenAt`) of a JSON text (at `textAt`), then data. */
interface Container {
  readonly lenAt: number;
  readonly lenBytes: 4 | 8;
  readonly textAt: number;
  /** The data section starts at the next multiple of this after the text (zero padding). */
  readonly align: number;
}
const SAFETENSORS: Container = { lenAt: 0, lenBytes: 8, textAt: 8, align: 1 };
const PIMX: Container = { lenAt: 12, lenBytes: 4, textAt: 16, align: 8 };
const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

function splitContainer(b: Uint8Array, c: Container): { text: string; rest: Uint8Array } {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = c.lenBytes === 8 ? Number(dv.getBigUint64(c.lenAt, true)) : dv.getUint32(c.lenAt, true);
  return {
    text: dec.decode(b.subarray(c.textAt, c.textAt + n)),
    rest: b.subarray(alignUp(c.textAt + n, c.align)),
  };
}

/** Re-wraps a mutated JSON text with a correct length field, so mutations reach the validator. */
function joinContainer(b: Uint8Array, c: Container, text: string, rest: Uint8Array): Uint8Array {
  const t = enc.encode(text);
  const dataAt = alignUp(c.textAt + t.length, c.align);
  const out = new Uint8Array(dataAt + rest.length);
  out.set(b.subarray(0, c.textAt));
  const dv = new DataView(out.buffer);
  if (c.lenBytes === 8) dv.setBigUint64(c.lenAt, BigInt(t.length), true);
  else dv.setUint32(c.lenAt, t.length, true);
  out.set(t, c.textAt);
  out.set(rest, dataAt);
  return out;
}

// ---- surfaces ----

interface Input {
  readonly name: string;
  readonly data: Uint8Array;
}

interface Surface {
  readonly name: string;
  /** File extension of corpus entries. */
  readonly ext: string;
  /** Well-formed inputs to mutate. */
  seeds(): Input[];
  mutate(r: Rng, x: Uint8Array): { data: Uint8Array; how: string };
  /** The stage under test: parse and validate (no full emulation). */
  run(x: Uint8Array, name: string): unknown;
}

const readSeed = (path: string): Input => ({ name: path, data: readFileSync(path) });
/** Text edits; JSON documents get a structural mutation half of the time. */
function mutateDoc(r: Rng, text: string): { text: string; how: string } {
  return (r() < 0.5 ? mutateJson(r, text) : undefined) ?? mutateText(r, text);
}
const textMutator = (r: Rng, x: Uint8Array) => {
  const m = mutateDoc(r, dec.decode(x));
  return { data: enc.encode(m.text), how: m.how };
};
const containerMutator =
  (c: Container) =>
  (r: Rng, x: Uint8Array): { data: Uint8Array; how: string } => {
    if (r() < 0.3) {
      const m = mutateBytes(r, x);
      return { data: m.bytes, how: m.how };
    }
    const { text, rest } = splitContainer(x, c);
    const m = mutateDoc(r, text);
    return { data: joinContainer(x, c, m.text, rest), how: `json:${m.how}` };
  };
/** Writes `x` to a temporary file named like `name` (for readers that take a path). */
function asFile(x: Uint8Array, name: string): string {
  const p = join(dir, name.replace(/[^A-Za-z0-9_.-]/g, "_"));
  writeFileSync(p, x);
  return p;
}

const examples = (sub: string): Input[] =>
  readdirSync(sub)
    .filter((f) => f.endsWith(".pim"))
    .sort()
    .map((f) => readSeed(join(sub, f)));

const SMALL_MODELS = ["examples/tiny-llama.pim", "examples/custom-llama-tiny.pim", "examples/gpt2-xl.pim"];
const HF = ["llama-tiny", "gpt2-tiny", "opt-tiny", "mixtral-tiny", "qwen2-tiny", "mistral-tiny"];

let pimxSeed: Uint8Array | undefined;
const irProgramSeeds: Input[] = [];
let irSeed = "";

const surfaces: Surface[] = [
  {
    name: "dsl-model",
    ext: "pim",
    seeds: () => SMALL_MODELS.map(readSeed),
    mutate: textMutator,
    // Named inside examples/ so that relative `weights` paths resolve.
    run: (x) => {
      const d = parseDescription(dec.decode(x), "examples/fuzz.pim");
      return buildModel(selectModel(d, d.models[0]?.name), d);
    },
  },
  {
    name: "dsl-system",
    ext: "pim",
    seeds: () => examples("examples/systems"),
    mutate: textMutator,
    run: async (x) => {
      const d = parseDescription(dec.decode(x), "examples/systems/fuzz.pim");
      for (const s of d.systems) (await getTarget(s.target)).system(s);
    },
  },
  {
    name: "dsl-workload",
    ext: "pim",
    seeds: () => examples("examples/workloads"),
    mutate: textMutator,
    run: (x) =>
      parseDescription(dec.decode(x), "examples/workloads/fuzz.pim").workloads.map(workloadFromDecl),
  },
  {
    name: "ir",
    ext: "pimir",
    seeds: () => [{ name: "tiny-llama.pimir", data: enc.encode(irSeed) }],
    mutate: textMutator,
    run: (x) => assertValid(parseModule(dec.decode(x), "fuzz.pimir")),
  },
  {
    name: "hf-config",
    ext: "json",
    seeds: () => HF.map((h) => readSeed(`test/fixtures/${h}/config.json`)),
    mutate: textMutator,
    run: (x) => buildFamilyModule("fuzz", parseHfConfig(dec.decode(x), "config.json")),
  },
  {
    name: "safetensors",
    ext: "safetensors",
    seeds: () => HF.slice(0, 3).map((h) => readSeed(`test/fixtures/${h}/model.safetensors`)),
    mutate: containerMutator(SAFETENSORS),
    run: (x) => {
      const f = SafetensorsFile.fromBuffer(x, "model.safetensors");
      for (const name of f.entries.keys()) {
        f.read(name);
        f.readF32(name);
      }
    },
  },
  {
    name: "reference",
    ext: "json",
    seeds: () => [readSeed("test/fixtures/llama-tiny/reference.json")],
    mutate: textMutator,
    run: (x, name) => readReference(asFile(x, name)),
  },
  {
    name: "pimx",
    ext: "pimx",
    seeds: () => [{ name: "tiny-llama.pimx", data: pimxSeed! }],
    mutate: containerMutator(PIMX),
    // What `pimc sim --disasm` and `pimc sim` do, at the program's own limits.
    run: (x) => {
      const p = decodeProgram(x, "fuzz.pimx");
      disassemble(p);
      const m = new UpmemMachine(p, { functional: false, detailed: false });
      m.setup();
      for (const ph of p.phases) {
        const S = ph.name === "decode" ? 1 : (p.limits.S ?? 1);
        m.reset();
        m.run(ph.name, undefined, {
          B: p.limits.B ?? 1,
          S,
          P: ph.name === "decode" ? Math.max(0, (p.limits.T ?? S) - S) : 0,
        });
      }
    },
  },
  {
    name: "ir-program",
    ext: "pimx",
    seeds: () => irProgramSeeds,
    mutate: textMutator,
    // What `pimc sim` does with the program file of a target without code generation.
    run: async (x) => {
      const ir = decodeIrProgram(x, "fuzz.pimx");
      const calls = ["prefill", "decode"].map((phase) => ({
        phase,
        env: {
          B: ir.limits.B,
          S: phase === "decode" ? 1 : ir.limits.S,
          P: phase === "decode" ? ir.limits.T - 1 : 0,
        },
      }));
      const session = (await irExecutable(ir)).open();
      for (const c of calls) session.call(c.phase, c.env);
    },
  },
  {
    name: "serve-trace",
    ext: "txt",
    seeds: () => [
      { name: "trace.csv", data: enc.encode("arrival,prompt,output\n0,16,8\n0.5,32,4\n# note\n1.25,8,16\n") },
      {
        name: "trace.json",
        data: enc.encode('[{"arrival":0,"prompt":16,"output":8},{"arrival":0.5,"prompt":32,"output":4}]'),
      },
    ],
    mutate: textMutator,
    run: (x, name) => readRequests(asFile(x, name.endsWith(".json") ? "t.json" : "t.csv")),
  },
  {
    // AiM instruction traces (`pimc kernel trace`): parsed and timed on the default AiM system.
    name: "aim-trace",
    ext: "trace",
    seeds: () => [
      {
        name: "gemv.trace",
        data: enc.encode(
          "# a GEMV on 2 channels\nAiM WR_GB 64 0 0xc0000000\nAiM WR_BIAS 0 0xc0000000\nAiM MAC_ABK 64 0xc0000000 3\nAiM RD_MAC 0 0xc0000000\nAiM EOC\n",
        ),
      },
      {
        name: "eltwise.trace",
        data: enc.encode(
          "W MEM 0 1 7\nW MEM 1 5 7\nR MEM 0 1 7\nAiM EWMUL 8 0xffffffff 7\nAiM COPY_BKGB 8 0xffffffff 2 7\nAiM COPY_GBBK 8 0xffffffff 3 7\nW CFR 2 1\nAiM AF 0x80000000\nAiM RD_AF 0 0x80000000\nAiM WR_ABK 0 0x80000000 9\nAiM MAC_SBK 4 0x80000000 1 7\nAiM EWADD 256 0 0\nAiM SYNC\nAiM EOC\n",
        ),
      },
    ],
    mutate: textMutator,
    run: (x, name) => runAimTrace(AIM, parseAimTrace(dec.decode(x), name, AIM)),
  },
];

// ---- the command line (in-process) ----

const ARGVS: string[][] = [
  ["dump", "examples/tiny-llama.pim", "--batch", "2", "--seq", "8"],
  ["compile", "examples/tiny-llama.pim", "--target", "cpu", "--batch", "4", "--prompt", "8"],
  ["compile", "examples/tiny-llama.pim", "--system", "examples/systems/upmem-rank.pim", "--weights", "int8"],
  ["list", "targets"],
];
const ARG_VALUES = [...HUGE, "", "-", "--", "examples", "package.json", "x.pimx", "../cpu", "a,b", "\0"];

function mutateArgv(r: Rng, argv: readonly string[]): string[] {
  const a = [...argv];
  const i = 1 + int(r, a.length - 1);
  switch (int(r, 4)) {
    case 0:
      a[i] = pick(r, ARG_VALUES);
      break;
    case 1:
      a.splice(i, 1);
      break;
    case 2:
      a.splice(i, 0, a[int(r, a.length)]!);
      break;
    default:
      a.splice(
        i,
        0,
        pick(r, ["--batch", "--seq", "--prompt", "--context", "--target", "--opt-level"]),
        pick(r, ARG_VALUES),
      );
  }
  return a;
}

/** Runs the CLI in-process with stdout and stderr captured. */
async function runCli(argv: string[]): Promise<{ code: number; err: string }> {
  const out = process.stdout.write.bind(process.stdout);
  const errw = process.stderr.write.bind(process.stderr);
  let err = "";
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => {
    err += typeof s === "string" ? s : dec.decode(s);
    return true;
  }) as typeof process.stderr.write;
  const exitCode = process.exitCode;
  try {
    return { code: await main(argv), err };
  } finally {
    process.stdout.write = out;
    process.stderr.write = errw;
    process.exitCode = exitCode;
  }
}

// ---- running cases ----

interface Failure {
  readonly id: string;
  readonly how: string;
  readonly problem: string;
}

/** Success, or a one-line UserError; anything else is returned as the problem. */
async function check(f: () => unknown): Promise<{ problem?: string; ms: number }> {
  const t0 = performance.now();
  let problem: string | undefined;
  try {
    await f();
  } catch (e) {
    if (!(e instanceof UserError))
      problem = `${(e as Error).name}: ${(e as Error).message?.slice(0, 200)} ${(e as Error).stack?.split("\n")[1]?.trim() ?? ""}`;
    else if (e.message.includes("\n"))
      problem = `multi-line message: ${JSON.stringify(e.message.slice(0, 200))}`;
  }
  const ms = performance.now() - t0;
  if (!problem && ms > SLOW_MS) problem = `slow: ${ms.toFixed(0)} ms`;
  return problem === undefined ? { ms } : { problem, ms };
}

function corpusFiles(s: Surface): string[] {
  const d = join(CORPUS, s.name);
  return existsSync(d)
    ? readdirSync(d)
        .sort()
        .map((f) => join(d, f))
    : [];
}

beforeAll(async () => {
  const d = parseDescription(readFileSync("examples/tiny-llama.pim", "utf8"), "examples/tiny-llama.pim");
  irSeed = printModule(buildModel(selectModel(d), d).module);
  const out = join(dir, "tiny.pimx");
  // INT8 weights and every op the DPUs can run on them: kernels, DMA, transfers and host ops.
  const r = await runCli([
    "compile",
    "examples/tiny-llama.pim",
    "--system",
    "examples/systems/upmem-rank.pim",
    "--weights",
    "int8",
    "--no-cooperation",
    "-o",
    out,
  ]);
  expect(r).toEqual({ code: 0, err: "" });
  pimxSeed = readFileSync(out);
  // The compiled IR with its system: a device model (an H100) and the default host CPU.
  for (const args of [
    ["--system", "examples/systems/h100.pim"],
    ["--target", "cpu"],
  ]) {
    const file = join(dir, `tiny-${args[1]!.replace(/\W/g, "_")}.pimx`);
    expect(await runCli(["compile", "examples/tiny-llama.pim", ...args, "-o", file])).toEqual({
      code: 0,
      err: "",
    });
    irProgramSeeds.push({ name: file, data: readFileSync(file) });
  }
});

describe("fuzz", () => {
  it("the corpus of inputs that once crashed, hung or were accepted: each is a one-line user error", async () => {
    const failures: Failure[] = [];
    let n = 0;
    for (const s of surfaces)
      for (const path of corpusFiles(s)) {
        n++;
        const gz = path.endsWith(".gz");
        const data = gz ? gunzipSync(readFileSync(path)) : readFileSync(path);
        let rejected = false;
        const r = await check(async () => {
          try {
            await s.run(data, gz ? path.slice(0, -3) : path);
          } catch (e) {
            rejected = e instanceof UserError;
            throw e;
          }
        });
        if (r.problem) failures.push({ id: path, how: "corpus", problem: r.problem });
        else if (!rejected) failures.push({ id: path, how: "corpus", problem: "accepted" });
      }
    expect(failures).toEqual([]);
    expect(n).toBeGreaterThanOrEqual(40);
  });

  // Case k goes to surface k mod (surfaces + 1), the command line last: one test per surface.
  it.each([...surfaces.map((s) => s.name), "cli"].map((name, i) => ({ name, i })))(
    `$name: mutated inputs give a result or a one-line user error (${CASES} cases in all, seed ${SEED})`,
    async ({ i }) => {
      const failures: Failure[] = [];
      const seeds = surfaces.map((s) => s.seeds());
      const cli = Math.max(1, Math.round(CASES / 40));
      let slowest = { ms: 0, id: "" };
      let ran = 0;
      for (let k = FIRST; k < CASES; k++) {
        const si = k % (surfaces.length + 1);
        if (si !== i) continue;
        // One generator per case: a case is reproduced from its number alone.
        const r = mulberry32((SEED * 1_000_003 + k) >>> 0);
        const id = `seed ${SEED} case ${k}`;
        let how: string;
        let res: { problem?: string; ms: number };
        if (si === surfaces.length) {
          if (k / (surfaces.length + 1) >= cli) continue; // the CLI runs real work: fewer cases
          const argv = mutateArgv(r, pick(r, ARGVS));
          how = `argv ${JSON.stringify(argv)}`;
          if (LOG) appendFileSync(LOG, `${id} ${how}\n`);
          res = await check(async () => {
            const c = await runCli(argv);
            if (c.code !== 0 && c.code !== 2)
              throw new Error(`exit ${c.code}: ${c.err.split("\n").slice(0, 2).join(" ")}`);
            if (c.code === 2 && c.err.trimEnd().includes("\n"))
              throw new Error(`several lines: ${c.err.slice(0, 200)}`);
          });
        } else {
          const s = surfaces[si]!;
          const seed = pick(r, seeds[si]!);
          const m = s.mutate(r, seed.data);
          how = `${s.name} ${seed.name} ${m.how}`;
          if (LOG) appendFileSync(LOG, `${id} ${how.slice(0, 200)}\n`);
          res = await check(() => s.run(m.data, seed.name));
          if (res.problem && process.env.PIMC_FUZZ_SAVE) {
            mkdirSync(join(process.env.PIMC_FUZZ_SAVE, s.name), { recursive: true });
            writeFileSync(join(process.env.PIMC_FUZZ_SAVE, s.name, `${SEED}-${k}.${s.ext}`), m.data);
          }
        }
        ran++;
        if (res.ms > slowest.ms) slowest = { ms: res.ms, id: `${id} ${how.slice(0, 120)}` };
        if (res.problem) {
          failures.push({ id, how: how.slice(0, 200), problem: res.problem });
          if (process.env.PIMC_FUZZ_SAVE)
            appendFileSync(
              join(process.env.PIMC_FUZZ_SAVE, "failures.jsonl"),
              `${JSON.stringify(failures.at(-1))}\n`,
            );
        }
      }
      console.log(
        `fuzz: ${ran} cases, seed ${SEED}, ${failures.length} failures, slowest ${slowest.ms.toFixed(0)} ms (${slowest.id})`,
      );
      expect(failures).toEqual([]);
    },
    600_000,
  );
});
