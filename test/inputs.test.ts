/**
 * Sizes from input are bounded where they enter (src/limits.ts), output paths are checked before any
 * work, and files given for the wrong purpose are refused: each with one line naming the file or field.
 * Regression tests of crashes and hangs found by fuzzing pimc's inputs (issue 16).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { parseHfConfig } from "../src/frontend/hf/config.js";
import { importHf } from "../src/frontend/hf/import.js";
import {
  buildModel,
  parseDescription,
  selectModel,
  selectSystem,
  selectWorkload,
} from "../src/frontend/dsl/index.js";
import { parseRange, readRequests } from "../src/frontend/requests.js";
import { workloadFromDecl } from "../src/frontend/workload.js";
import { MODEL_LIMITS, TRACE_LIMITS, WORKLOAD_LIMITS } from "../src/limits.js";
import { getTarget } from "../targets/index.js";
import { makeProgram, outputOptions } from "../src/cli/main.js";
import { attendedPairs } from "../src/ir/ops/attention.js";
import { expectUserError, LLAMA_TINY, llamaVariant, pimc, rng, tempDir } from "./util.js";

const llamaConfig = (): Record<string, unknown> =>
  JSON.parse(readFileSync(join(LLAMA_TINY, "config.json"), "utf8")) as Record<string, unknown>;

/** A shape-only llama model block with `edit` appended (later keys win over nothing: keys are unique). */
const modelBlock = (keys: Record<string, string | number>): string =>
  `model m {\n${Object.entries({
    family: "llama",
    vocab: 128,
    hidden: 64,
    layers: 2,
    heads: 4,
    ffn: 176,
    ...keys,
  })
    .map(([k, v]) => `  ${k} = ${v}`)
    .join("\n")}\n}\n`;

const buildDsl = (text: string): unknown => {
  const d = parseDescription(text, "m.pim");
  return buildModel(selectModel(d), d);
};

describe("model sizes are capped where they enter", () => {
  test("description: layers = -1 with a sliding window (was a RangeError in mapKeys)", () => {
    expectUserError(() => buildDsl(modelBlock({ layers: -1, sliding_window: 8 })), "m.pim:5:", "layers");
  });

  test.each([4294967296, 1e15, MODEL_LIMITS.layers + 1])("description: layers = %s (was a hang)", (n) => {
    expectUserError(
      () => buildDsl(modelBlock({ layers: n, sliding_window: 8 })),
      "m.pim:5:",
      `layers must be at most ${MODEL_LIMITS.layers}`,
    );
  });

  test.each([
    ["hidden", 1e12],
    ["vocab", 2 ** 40],
    ["ffn", 2 ** 31],
    ["max_positions", 2 ** 40],
  ])("description: %s = %s", (key, n) => {
    expectUserError(() => buildDsl(modelBlock({ [key]: n })), `${key} must be at most`);
  });

  test("description: experts", () => {
    expectUserError(
      () => buildDsl(modelBlock({ family: "mixtral", experts: 1e9, top_k: 2 })),
      "experts must be at most",
    );
  });

  test("a model whose sizes are each allowed but whose parameters are not", () => {
    expectUserError(
      () => buildDsl(modelBlock({ layers: 1024, hidden: 65536, heads: 512, ffn: 1 << 20 })),
      "m.pim",
      "parameters, more than pimc's limit",
    );
  });

  const custom = readFileSync("examples/custom-llama-tiny.pim", "utf8").replace(/^\s*weights = .*$/m, "");

  test("custom graph: a loop over layers = 1e15 (was a hang)", () => {
    expectUserError(
      () => buildDsl(custom.replace("layers = 2", "layers = 1e15")),
      "m.pim:",
      "the loop 0..1000000000000000 runs",
      "(MAX_LOOP_TRIPS)",
    );
  });

  test("custom graph: a weight dimension beyond the cap", () => {
    expectUserError(
      () => buildDsl(custom.replace("hidden = 64", "hidden = 1e12")),
      "weight shape: 1000000000000",
    );
  });

  test.each([
    ["num_hidden_layers", 2147483648],
    ["num_hidden_layers", 1e15],
    ["hidden_size", 2 ** 40],
    ["vocab_size", 2 ** 40],
    ["intermediate_size", 2 ** 40],
    ["max_position_embeddings", 2 ** 40],
    ["num_attention_heads", 2 ** 30],
  ])("config.json: %s = %s", (key, n) => {
    const c = llamaConfig();
    c[key] = n;
    expectUserError(
      () => parseHfConfig(JSON.stringify(c), "config.json"),
      `config.json: field ${key}: must be at most`,
      String(n),
    );
  });

  test("config.json: sliding windows of 2^31 layers are not made (was a hang)", () => {
    const c = { ...llamaConfig(), model_type: "mistral", sliding_window: 16, num_hidden_layers: 2 ** 31 };
    expectUserError(() => parseHfConfig(JSON.stringify(c), "config.json"), "field num_hidden_layers");
  });
});

describe("system numbers are finite and in range", () => {
  const upmem = readFileSync("examples/systems/upmem-2048.pim", "utf8");

  const loadSystem = async (text: string): Promise<unknown> => {
    const decl = selectSystem(parseDescription(text, "s.pim"));
    return (await getTarget(decl.target)).system(decl, {
      cooperation: true,
      attention: "auto",
    });
  };

  const rejects = async (text: string, ...parts: string[]): Promise<void> => {
    let err: unknown;
    try {
      await loadSystem(text);
    } catch (e) {
      err = e;
    }
    expectUserError(
      () => {
        if (err) throw err;
      },
      ...parts,
    );
  };

  test("a denormal DPU frequency (decode took Infinity s)", async () => {
    await rejects(upmem.replace("frequency = 450 MHz", "frequency = 1e-320 MHz"), "s.pim:9:", "frequency");
  });

  test("a host bandwidth of 1e-300 GB/s", async () => {
    await rejects(
      upmem.replace("memory_bandwidth = 23.1 GB/s", "memory_bandwidth = 1e-300 GB/s"),
      "host.memory_bandwidth",
      "bandwidth must be 0 or",
    );
  });

  test("a count beyond the cap", async () => {
    await rejects(upmem.replace("dpus = 2048", "dpus = 1e30"), "s.pim:7:", "dpus");
  });

  test("numbers in lists and nested blocks are checked", async () => {
    await rejects(upmem.replace("[64, 6.68 GB/s]", "[64, 1e30 GB/s]"), "transfer.to_dpu[1][1]", "bandwidth");
  });

  test("counts the emulators allocate or loop over are capped by key (was a hang or a RangeError)", async () => {
    await rejects(
      upmem.replace("max_tasklets = 24", "max_tasklets = 24000000"),
      "max_tasklets",
      "limit of 64",
    );
    const hbm = readFileSync("examples/systems/hbm-pim-64ch.pim", "utf8");
    await rejects(hbm.replace("ranks = 2 ", "ranks = 100000000 "), "ranks: 100000000 is more than");
  });

  test("HBM refresh that leaves the banks no time (was a hang)", async () => {
    const hbm = readFileSync("examples/systems/hbm-pim-64ch.pim", "utf8");
    await rejects(hbm.replace("tREFI = 3900", "tREFI = 1"), "timing.tREFI", "at least 2 x tRFC");
  });

  test("every example system loads", async () => {
    for (const f of readdirSync("examples/systems")) {
      const d = parseDescription(readFileSync(join("examples/systems", f), "utf8"), f);
      for (const s of d.systems) {
        const target = await getTarget(s.target);
        expect(() =>
          target.system(s, {
            cooperation: true,
            attention: "auto",
          }),
        ).not.toThrow();
      }
    }
  });
});

describe("workloads and request traces are capped", () => {
  const tmp = tempDir();

  test.each([
    ["batch", 1e9, "decode"],
    ["context", 2 ** 40, "decode"],
    ["speculation", 1e6, "decode"],
    ["prompt", 2 ** 40, "prefill"],
    ["output", 1e15, "decode"],
  ])("workload block: %s = %s", (key, n, phase) => {
    const d = parseDescription(`workload w {\n  phase = ${phase}\n  ${key} = ${n}\n}\n`, "w.pim");
    expectUserError(
      () => workloadFromDecl(selectWorkload(d)),
      "w.pim:3:",
      `${key} must be a positive integer up to ${(WORKLOAD_LIMITS as Record<string, number>)[key]}`,
    );
  });

  const trace = (name: string, text: string): string => {
    const f = join(tmp, name);
    writeFileSync(f, text);
    return f;
  };

  test("a CSV request with a huge output (was a hang)", () => {
    const f = trace("huge.csv", "arrival,prompt,output\n0,16,1000000000000\n");
    expectUserError(() => readRequests(f), "huge.csv:2: output must be at most");
  });

  test("a JSON request with a huge prompt (was a hang)", () => {
    const f = trace("huge.json", JSON.stringify([{ arrival: 0, prompt: 1e12, output: 4 }]));
    expectUserError(() => readRequests(f), "huge.json: request 0: prompt");
  });

  test("too many output tokens in all", () => {
    const n = Math.floor(TRACE_LIMITS.total_output / TRACE_LIMITS.output) + 1;
    const rows = Array.from({ length: n }, (_, i) => `${i},1,${TRACE_LIMITS.output}`);
    const f = trace("many.csv", `arrival,prompt,output\n${rows.join("\n")}\n`);
    expectUserError(() => readRequests(f), "many.csv:", "output tokens in all, more than pimc's limit");
  });

  test("generated lengths beyond the cap", () => {
    expectUserError(() => parseRange("1-99999999999", "--output", TRACE_LIMITS.output), "--output: expected");
  });
});

describe("weights must be floating-point tensors", () => {
  const tmp = tempDir();
  test.each(["I32", "BOOL", "I64", "U8"])("a %s tensor read as float weights", (dtype) => {
    const dir = llamaVariant(tmp, {
      tensors: (t) => {
        const e = t["model.norm.weight"]!;
        const n = e.shape.reduce((a, b) => a * b, 1);
        const size = { I32: 4, BOOL: 1, I64: 8, U8: 1 }[dtype]!;
        t["model.norm.weight"] = { dtype, shape: e.shape, bytes: new Uint8Array(n * size) };
      },
    });
    expectUserError(() => importHf(dir), "model.safetensors", '"model.norm.weight"', `dtype ${dtype}`);
  });
});

/** Runs pimc, which must exit 2 with one `pimc: error:` line containing every part, and no output. */
async function cliRejects(args: string[], ...parts: string[]): Promise<string> {
  const r = await pimc(...args);
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^pimc: error: /);
  for (const p of parts) expect(r.stderr).toContain(p);
  expect(r.stdout).toBe("");
  return r.stderr;
}

describe("output paths are checked before any work", () => {
  const tmp = tempDir();
  const missing = join(tmp, "no-such-folder");

  test("the options that write files", () => {
    const found = makeProgram().commands.flatMap((c) => outputOptions(c).map((o) => `${c.name()} ${o.long}`));
    expect(found.sort()).toEqual(
      [
        "bench --dump-ir",
        "bench --plot",
        "bench --trace",
        "compile --dump-ir",
        "compile --output",
        "dump --dump-ir",
        "dump --output",
        "generate --dump-ir",
        "kernel --emit",
        "kernel --trace",
        "serve --dump-ir",
        "sim --trace",
        "sweep --db",
        "sweep --export",
        "sweep --plot",
        "sweep --slurm",
        "tune --dump-ir",
        "verify --dump-ir",
      ].sort(),
    );
  });

  test.each([
    [["dump", "examples/tiny-llama.pim", "--dump-ir", "package.json"], "--dump-ir package.json: is a file"],
    [
      ["dump", "examples/tiny-llama.pim", "--dump-ir", join(missing, "ir")],
      `folder ${missing} does not exist`,
    ],
    [
      ["compile", "examples/tiny-llama.pim", "-o", join(missing, "x.pimx")],
      `folder ${missing} does not exist`,
    ],
    [["compile", "examples/tiny-llama.pim", "-o", "examples"], "--output examples: is a folder"],
    [["dump", "examples/tiny-llama.pim", "-o", ""], '--output: expected a file name, got ""'],
    [
      ["bench", "examples/tiny-llama.pim", "--trace", "package.json/out.json"],
      "package.json is not a folder",
    ],
    [["bench", "examples/tiny-llama.pim", "--plot", "package.json/out.svg"], "package.json is not a folder"],
    [["sim", "no-such.pimx", "--trace", join(missing, "t.json")], `--trace ${join(missing, "t.json")}`],
    [["kernel", "add", "1M", "--trace", join(missing, "t.json")], `folder ${missing} does not exist`],
    [
      ["kernel", "gemv", "64x64", "--target", "aim", "--emit", join(missing, "g.trace")],
      `folder ${missing} does not exist`,
    ],
  ])("pimc %j", async (args, part) => {
    await cliRejects(args, part);
    expect(existsSync(missing)).toBe(false);
  });
});

describe("files given for the wrong purpose", () => {
  const tmp = tempDir();
  const program = join(tmp, "x.pimx");
  writeFileSync(program, "PIMCUPM\0\x01\x02 not a description");

  test.each([
    [
      ["compile", "examples/tiny-llama.pim", "--system", "examples"],
      "examples: is a folder, not a description file",
    ],
    [
      ["compile", "examples/tiny-llama.pim", "--system", "examples/tiny-llama.pim"],
      "no system block (the file has model blocks: llama_tiny",
    ],
    [
      ["compile", "examples/tiny-llama.pim", "--system", program],
      "a compiled pimc program, not a description",
    ],
    [["compile", "examples/tiny-llama.pim", "--system", "no/such.pim"], "no/such.pim: no such file"],
    [["compile", "examples/tiny-llama.pim", "--target", ""], 'unknown target ""'],
    [["compile", "examples/tiny-llama.pim", "--target", "../cpu"], 'unknown target "../cpu"'],
    [
      ["compile", "examples/systems/upmem-2048.pim"],
      "no model block (the file has system blocks: upmem_2048)",
    ],
    [["compile", program], "a compiled pimc program"],
    [["verify", "examples/tiny-llama.pim"], "examples/tiny-llama.pim: not a folder"],
    [
      ["bench", "examples/tiny-llama.pim", "--workload", "examples/systems/upmem-2048.pim"],
      "no workload block",
    ],
    [["sim", "examples"], "examples: is a folder, not a program file"],
    [
      ["serve", "examples/tiny-llama.pim", "--target", "xpu", "--requests", "examples"],
      "is a folder, not a request trace",
    ],
    [["verify", LLAMA_TINY, "--reference", "examples"], "examples: is a folder, not reference logits"],
    [["dump", "no/such.pimir"], "no/such.pimir: no such file"],
  ])("pimc %j", async (args, part) => {
    await cliRejects(args, part);
  });
});

/** `pimc serve` of the tiny Llama (128 positions) on the xPU model, with a generated trace. */
const serveTiny = (...extra: string[]): string[] => [
  "serve",
  "examples/tiny-llama.pim",
  "--target",
  "xpu",
  "--rate",
  "1",
  ...extra,
];

describe("sizes on the command line", () => {
  test.each([
    [["compile", "examples/tiny-llama.pim", "--batch", "1000000"], "up to 65536"],
    [["compile", "examples/tiny-llama.pim", "--context", "99999999999"], "from 0 to"],
    [
      ["bench", "examples/tiny-llama.pim", "--batch", "1,4294967296"],
      "--batch: expected positive integers up to",
    ],
    [["bench", "examples/tiny-llama.pim", "--seq", "1e15"], "expected a positive integer"],
    [serveTiny("--count", "1e9"), "--count"],
    [serveTiny("--rate", "1e-320", "--count", "4"), "request 1 arrives at Infinity s, past pimc's limit"],
    [["kernel", "add", "1M", "--channels", "100000000"], "--channels"],
    [
      ["generate", "examples/tiny-llama.pim", "--ids", "1,2,3", "--steps", "16000000"],
      "3 prompt + 16000000 generated tokens exceed the 128 positions of llama_tiny",
    ],
    [serveTiny("--output", "1-100000000000"), "--output: expected N or N-M"],
    [serveTiny("--count", "2000", "--output", "16000000"), "output tokens in all, more than pimc's limit"],
    [
      serveTiny("--prompt", "100", "--output", "100"),
      "the generated trace (--prompt, --output): none of its 64 requests can be served: 64 past the model's 128 positions",
    ],
  ])("pimc %j", async (args, part) => {
    await cliRejects(args, part);
  });
});

describe("long prompts are costed in closed form", () => {
  /** The loop attendedPairs replaced: query i attends keys first..last. */
  const byLoop = (s: number, t: number, causal: boolean, window: number): number => {
    let pairs = 0;
    for (let i = 0; i < s; i++) {
      const last = causal ? Math.min(t - 1, t - s + i) : t - 1;
      const first = window > 0 ? Math.max(0, last - window + 1) : 0;
      pairs += Math.max(0, last - first + 1);
    }
    return pairs;
  };

  test("attendedPairs agrees with the loop over queries", () => {
    const r = rng(16);
    for (let n = 0; n < 2000; n++) {
      const s = 1 + Math.floor(r() * 40);
      const t = Math.floor(r() * 80);
      const causal = r() < 0.7;
      const window = r() < 0.5 ? 0 : 1 + Math.floor(r() * 30);
      expect(attendedPairs(s, t, causal, window), `${s} ${t} ${causal} ${window}`).toBe(
        byLoop(s, t, causal, window),
      );
    }
  });

  test("a prompt of 16 Mi tokens is costed at once (was minutes)", () => {
    const s = 1 << 24;
    expect(attendedPairs(s, s, true, 0)).toBe((s * (s + 1)) / 2);
    expect(attendedPairs(s, s, true, 4096)).toBe((4096 * 4097) / 2 + (s - 4096) * 4096);
  });
});
