/**
 * The UPMEM target end to end: lowering, the emulator against the reference interpreter, resource
 * pooling, fast vs detailed timing, the host<->DPU transfer figures of REFERENCE.md, and the CLI
 * (compile -o, sim, verify) as a user runs it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test, vi } from "vitest";
import { evalOp, Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import { importHf } from "../src/frontend/hf/import.js";
import { defaultWorkload } from "../src/frontend/workload.js";
import { compileModel, type PipelineFlags } from "../src/driver/compile.js";
import { verify } from "../src/driver/verify.js";
import { getTarget, type SystemOptions } from "../targets/index.js";
import type { UpmemOptions } from "../targets/upmem/index.js";
import { kSplitOk, weightBlock, type GemmShape, type Tiling } from "../targets/upmem/gemm.js";
import { lowerModule, type LowerOptions } from "../targets/upmem/lower.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { DEFAULT_SYSTEM, zUpmemSystem } from "../targets/upmem/system.js";
import { broadcastTime, pullTime, pushTime } from "../targets/upmem/transfer.js";
import { decodeProgram, encodeProgram } from "../targets/upmem/codec.js";
import type { Program } from "../targets/upmem/program.js";
import type { TraceEvent } from "../src/report/trace.js";
import { traceJson } from "../targets/upmem/report.js";
import { llama7bLayers, pimc, tempDir } from "./util.js";

const tmp = tempDir("pimc-upmem-");

const flags = (extra: Partial<PipelineFlags> = {}): PipelineFlags => ({
  target: "upmem",
  // These tests lower the placed module themselves (lowerModule): no plan at compile time.
  disablePass: ["upmem-plan"],
  printBefore: [],
  printAfter: [],
  cooperation: false,
  attention: "pim",
  ...extra,
});

/**
 * Compiled with every GEMM and attention on the DPUs (attention back on the host when asked), then
 * lowered (with `lowering`'s choices).
 */
async function compiled(
  dir: string,
  extra: Partial<PipelineFlags> = {},
  attentionOnHost = false,
  lowering: Partial<LowerOptions> = {},
) {
  const model = importHf(dir);
  const c0 = await compileModel(model, flags(extra), defaultWorkload("decode"), 2);
  const c = !attentionOnHost
    ? c0
    : {
        ...c0,
        module: {
          ...c0.module,
          funcs: c0.module.funcs.map((f) => ({
            ...f,
            body: f.body.map((o) =>
              o.opcode === "attention" ? { ...o, attrs: { ...o.attrs, device: "host" } } : o,
            ),
          })),
        },
      };
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as { prompt: number[][] };
  const seq = ref.prompt[0]!.length;
  const lowered = lowerModule(c.module, c.ctx.weights, {
    system: DEFAULT_SYSTEM,
    limits: { B: ref.prompt.length, S: seq, T: seq + 4 },
    envs: { prefill: { B: ref.prompt.length, S: seq, P: 0 }, decode: { B: ref.prompt.length, S: 1, P: seq } },
    ...(extra.targetFlags?.pooling === false ? { pooling: false } : {}),
    ...lowering,
  });
  return { ...c, ref, program: lowered.program, gemms: lowered.gemms, attention: lowered.attention };
}

describe("lowering and the emulator", () => {
  test("every INT8 GEMM runs on the DPUs, bit-identical to the reference interpreter", async () => {
    const { module, ctx, ref, program } = await compiled(
      "test/fixtures/llama-tiny",
      { weights: "int8" },
      true,
    );
    const commands = program.phases.flatMap((p) => p.commands);
    const launches = commands.filter((c) => c.kind === "launch");
    const qlinears = module.funcs.flatMap((f) => f.body).filter((o) => o.opcode === "qlinear");
    expect(launches.length).toBe(qlinears.length);

    const interp = new Interpreter(module, ctx.weights);
    const machine = new UpmemMachine(program);
    const prompt = tokenTensor(ref.prompt);
    const a = interp.run("prefill", [prompt])[0]!;
    const b = machine.run("prefill", [prompt]).outputs![0]!;
    expect(Array.from(b.data as Float32Array)).toEqual(Array.from(a.data as Float32Array));
    const next = tokenTensor(ref.prompt.map(() => [5]));
    const c = interp.run("decode", [next])[0]!;
    const d = machine.run("decode", [next]).outputs![0]!;
    expect(Array.from(d.data as Float32Array)).toEqual(Array.from(c.data as Float32Array));
  });

  test("GEMMs with a K split inside the DPUs: the host adds their int32 partial tiles, bit-identical", async () => {
    // Every GEMM whose chunks allow it split in two inside the DPUs (the selector splits K in decode
    // GEMMs of big models, rarely in tiny ones).
    const retile = (s: GemmShape, t: Tiling): Tiling => {
      // Half the chunk if it is all of K (8-byte int8 rows at least), then two splits.
      const tk = t.tk === weightBlock(s, t).kb && t.tk % 16 === 0 ? t.tk / 2 : t.tk;
      return kSplitOk(weightBlock(s, t).kb / tk, 2) ? { ...t, tk, double: false, ks: 2 } : t;
    };
    const { module, ctx, ref, program } = await compiled(
      "test/fixtures/llama-tiny",
      { weights: "int8" },
      true,
      {
        retile,
      },
    );
    const commands = program.phases.flatMap((p) => p.commands);
    const splits = commands.filter(
      (x) => x.kind === "host" && x.opcode === "reduce_sum" && x.inputs[0]!.endsWith(".parts"),
    );
    // Of the 18 GEMM calls (9 per phase), those whose chunks allow two splits.
    expect(splits.length).toBeGreaterThan(4);
    expect(program.kernels.filter((k) => /^gemm\.i8 .* ks2$/.test(k.summary)).length).toBeGreaterThan(2);
    const interp = new Interpreter(module, ctx.weights);
    const machine = new UpmemMachine(program);
    const prompt = tokenTensor(ref.prompt);
    const a = interp.run("prefill", [prompt])[0]!;
    const b = machine.run("prefill", [prompt]).outputs![0]!;
    expect(Array.from(b.data as Float32Array)).toEqual(Array.from(a.data as Float32Array));
    for (const tok of [5, 17]) {
      const next = tokenTensor(ref.prompt.map((_, i) => [tok + i]));
      const c = interp.run("decode", [next])[0]!;
      const d = machine.run("decode", [next]).outputs![0]!;
      expect(Array.from(d.data as Float32Array)).toEqual(Array.from(c.data as Float32Array));
    }
  });

  test("16-bit activations as two INT8 planes are bit-identical too, with twice the rows", async () => {
    const { module, ctx, ref, program } = await compiled(
      "test/fixtures/qwen2-tiny",
      { weights: "int8", activations: "int16" },
      true,
    );
    const push = program.phases[0]!.commands.find((c) => c.kind === "push" || c.kind === "broadcast");
    expect(push && "map" in push ? String(push.map.rows) : "").toMatch(/^2\*/);
    const prompt = tokenTensor(ref.prompt);
    const a = new Interpreter(module, ctx.weights).run("prefill", [prompt])[0]!;
    const b = new UpmemMachine(program).run("prefill", [prompt]).outputs![0]!;
    expect(Array.from(b.data as Float32Array)).toEqual(Array.from(a.data as Float32Array));
  });

  test("fp32 GEMMs on DPUs (software float) agree with the reference within 1e-5", async () => {
    const { module, ctx, ref, program } = await compiled("test/fixtures/opt-tiny");
    const prompt = tokenTensor(ref.prompt);
    const a = new Interpreter(module, ctx.weights).run("prefill", [prompt])[0]!.data as Float32Array;
    const b = new UpmemMachine(program).run("prefill", [prompt]).outputs![0]!.data as Float32Array;
    let err = 0;
    for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
    expect(err).toBeGreaterThan(0); // a different summation order, really computed on the DPUs
    expect(err).toBeLessThan(1e-5);
  });

  test.each(["mistral-tiny", "llama-tiny-variants"])(
    "attention over the KV cache on the DPUs (%s: sliding window / MQA) matches the interpreter",
    async (name) => {
      const { module, ctx, ref, program } = await compiled(`test/fixtures/${name}`);
      const attentions = module.funcs[1]!.body.filter((o) => o.opcode === "attention");
      expect(attentions.length).toBeGreaterThan(0);
      expect(attentions.every((o) => o.attrs.device === "pim")).toBe(true);
      const decode = program.phases[1]!.commands;
      const gemms = module.funcs[1]!.body.filter((o) => o.opcode === "linear" && o.attrs.device === "pim");
      expect(decode.filter((c) => c.kind === "launch")).toHaveLength(gemms.length + 2 * attentions.length);
      expect(decode.filter((c) => c.kind === "host" && c.opcode === "masked_softmax")).toHaveLength(
        attentions.length,
      );
      const interp = new Interpreter(module, ctx.weights);
      const machine = new UpmemMachine(program);
      const prompt = tokenTensor(ref.prompt);
      const next = tokenTensor(ref.prompt.map(() => [3]));
      for (const [fn, input] of [
        ["prefill", prompt],
        ["decode", next],
      ] as const) {
        const a = interp.run(fn, [input])[0]!.data as Float32Array;
        const b = machine.run(fn, [input]).outputs![0]!.data as Float32Array;
        let err = 0;
        for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
        expect(err).toBeLessThan(1e-5);
      }
    },
  );

  test("attention's context partials added on the DPUs (reduce kernel) or by the host: the same bits", async () => {
    const bits = (t: { data: unknown }) => {
      const f = t.data as Float32Array;
      return Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length));
    };
    const logits: Record<string, number[][]> = {};
    for (const attentionReduce of ["auto", "host", "pim"] as const) {
      // Cooperation keeps the tiny GEMMs on the host: attention, the subject, stays on the DPUs.
      const { ref, program, attention } = await compiled(
        "test/fixtures/llama-tiny",
        { cooperation: true },
        false,
        {
          attentionReduce,
        },
      );
      const decode = program.phases.find((p) => p.name === "decode")!.commands;
      // Decode splits the context kernel's tokens over the tasklets; auto leaves the adds to the host.
      expect(attention.filter((a) => a.phase === "decode").every((a) => (a.tiling.context.ks ?? 1) > 1)).toBe(
        true,
      );
      const reduceLaunches = decode.filter((x) => x.kind === "launch" && x.kernel.startsWith("reduce"));
      // Attention's partials (GEMMs with a K split inside the DPUs add theirs with reduce_sum too).
      const reduceSums = decode.filter(
        (x) => x.kind === "host" && x.opcode === "reduce_sum" && x.outputs[0]!.endsWith(".sum"),
      );
      expect(reduceLaunches).toHaveLength(attentionReduce === "pim" ? 2 : 0);
      expect(reduceSums).toHaveLength(attentionReduce === "pim" ? 0 : 2);
      const machine = new UpmemMachine(program);
      const outs = [machine.run("prefill", [tokenTensor(ref.prompt)]).outputs![0]!];
      for (const t of [3, 11, 7])
        outs.push(machine.run("decode", [tokenTensor(ref.prompt.map((_, b) => [t + b]))]).outputs![0]!);
      logits[attentionReduce] = outs.map(bits);
      if (attentionReduce === "pim") {
        const file = join(tmp, "tiny-reduce.pimx");
        writeFileSync(file, encodeProgram(program));
        const dis = await pimc("sim", file, "--disasm");
        expect(dis.code, dis.stderr).toBe(0);
        expect(dis.stdout).toMatch(
          /kernel reduce\d+ "reduce\.f32 ks\d+ x 2 cols" tasklets=\d+ wram: part f32\[\d+\]/,
        );
        expect(dis.stdout).toMatch(/vadd part\[0\] \+= part\[2\+q\*2\] count=2/);
        expect(dis.stdout).toMatch(/launch reduce\d+ dpus\[0\.\.\d+\]/);
      }
    }
    expect(logits.pim).toEqual(logits.host);
    expect(logits.auto).toEqual(logits.host);
  });

  test("the KV cache stays in MRAM: a decode step sends its new tokens, not the cache", async () => {
    const cacheBytes = (program: Program, report: { commands: readonly { id: number; bytes: number }[] }) => {
      const cmds = program.phases.find((p) => p.name === "decode")!.commands;
      return report.commands
        .filter((r) => {
          const c = cmds[r.id]!;
          return c.kind === "push" && /^(kc|vc):/.test(c.region);
        })
        .reduce((s, r) => s + r.bytes, 0);
    };
    const pushed = async (pooling: boolean) => {
      const { module, ctx, ref, program } = await compiled("test/fixtures/qwen2-tiny", {
        targetFlags: { pooling },
      });
      const interp = new Interpreter(module, ctx.weights);
      const machine = new UpmemMachine(program);
      machine.run("prefill", [tokenTensor(ref.prompt)]);
      interp.run("prefill", [tokenTensor(ref.prompt)]);
      const out: number[] = [];
      for (const t of [3, 7, 11]) {
        const next = tokenTensor(ref.prompt.map(() => [t]));
        const { outputs, report } = machine.run("decode", [next]);
        const want = interp.run("decode", [next])[0]!.data as Float32Array;
        const got = outputs![0]!.data as Float32Array;
        let err = 0;
        for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(want[i]! - got[i]!));
        expect(err).toBeLessThan(1e-5);
        out.push(cacheBytes(program, report));
      }
      return out;
    };
    const resident = await pushed(true);
    expect(resident[0]).toBeGreaterThan(0);
    // The same bytes every step whatever the cache length (the new token, and V's odd/even window).
    expect(new Set(resident).size).toBe(1);
    // Without pooling the DPUs do not outlive a call: each call sends the whole, growing cache.
    const whole = await pushed(false);
    expect(whole[1]!).toBeGreaterThan(whole[0]!);
    expect(whole[0]!).toBeGreaterThan(resident[0]!);
  });

  test("masked_softmax then a product with v is the attention op", () => {
    const rnd = (n: number, seed: number) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.9);
    const [b, h, kvh, s, t, d] = [1, 4, 2, 3, 7, 4];
    const q = { dtype: "f32" as const, shape: [b, h, s, d], data: rnd(b * h * s * d, 1) };
    const k = { dtype: "f32" as const, shape: [b, kvh, t, d], data: rnd(b * kvh * t * d, 2) };
    const v = { dtype: "f32" as const, shape: [b, kvh, t, d], data: rnd(b * kvh * t * d, 3) };
    const attrs = { scale: 0.5, causal: true, window: 3 };
    const want = evalOp("attention", attrs, [q, k, v], {})[0]!.data as Float32Array;
    const scores = new Float32Array(b * h * s * t);
    for (let hh = 0; hh < h; hh++)
      for (let i = 0; i < s; i++)
        for (let j = 0; j < t; j++) {
          let dot = 0;
          for (let x = 0; x < d; x++)
            dot += q.data[(hh * s + i) * d + x]! * k.data[((hh >> 1) * t + j) * d + x]!;
          scores[(hh * s + i) * t + j] = dot;
        }
    const p = evalOp("masked_softmax", attrs, [{ dtype: "f32", shape: [b, h, s, t], data: scores }], {})[0]!
      .data as Float32Array;
    for (let hh = 0; hh < h; hh++)
      for (let i = 0; i < s; i++)
        for (let x = 0; x < d; x++) {
          let acc = 0;
          for (let j = 0; j < t; j++) acc += p[(hh * s + i) * t + j]! * v.data[((hh >> 1) * t + j) * d + x]!;
          expect(acc).toBeCloseTo(want[(hh * s + i) * d + x]!, 6);
        }
  });

  test("resource pooling: DPUs allocated and weights uploaded once, in the setup", async () => {
    const { program, gemms } = await compiled("test/fixtures/mistral-tiny", { weights: "int8" });
    expect(program.setup.filter((c) => c.kind === "alloc")).toHaveLength(1);
    // One upload per layout (a weight whose phases want different layouts has one per phase).
    const layouts = gemms.reduce((s, g) => s + g.layouts.length, 0);
    expect(layouts).toBeGreaterThanOrEqual(gemms.length);
    expect(program.setup.filter((c) => c.kind === "upload")).toHaveLength(layouts);
    for (const p of program.phases)
      expect(p.commands.filter((c) => ["alloc", "load", "upload"].includes(c.kind))).toEqual([]);
    // Weights of different layers live at different MRAM offsets; one kernel serves them all.
    const offsets = new Set(program.regions.filter((r) => r.name.startsWith("w:")).map((r) => r.offset));
    expect(offsets.size).toBe(layouts);
    expect(program.kernels.length).toBeLessThan(gemms.length * program.phases.length);
  });

  test("without pooling every GEMM call allocates, loads and sends its weight; BaseGEMM splits rows of X", async () => {
    const model = importHf("test/fixtures/llama-tiny");
    const c = await compileModel(
      model,
      flags({ weights: "int8", attention: "host" }),
      defaultWorkload("decode"),
      2,
    );
    const lowered = lowerModule(c.module, c.ctx.weights, {
      system: DEFAULT_SYSTEM,
      limits: { B: 2, S: 7, T: 11 },
      envs: { prefill: { B: 2, S: 7, P: 0 }, decode: { B: 2, S: 1, P: 7 } },
      pooling: false,
      gemm: "base",
    });
    const p = lowered.program;
    expect(p.setup).toEqual([]);
    expect(p.images).toEqual([]);
    const cmds = p.phases[0]!.commands;
    const launches = cmds.filter((x) => x.kind === "launch").length;
    // One allocation per GEMM call and per attention (whose two kernels share it).
    const attentions = c.module.funcs[0]!.body.filter(
      (o) => o.opcode === "attention" && o.attrs.device === "pim",
    );
    expect(cmds.filter((x) => x.kind === "alloc").length).toBe(launches - attentions.length);
    expect(cmds.filter((x) => x.kind === "load").length).toBe(launches - attentions.length);
    for (const g of lowered.gemms) {
      for (const l of g.layouts) expect(l.distribution.dn * l.distribution.dk).toBe(1);
      expect(g.phases.get("prefill")!.tiling.dm).toBe(8); // 14 rows: 8 DPUs get one or two each
    }
    // Each GEMM's weight is broadcast from the host constants at every call.
    const weights = new Set(lowered.gemms.map((g) => g.weight));
    const sent = cmds.filter((x) => x.kind === "broadcast" && weights.has(x.buffer)).length;
    expect(sent).toBe(launches - 2 * attentions.length);
    const ref = JSON.parse(readFileSync("test/fixtures/llama-tiny/reference.json", "utf8")) as {
      prompt: number[][];
    };
    const out = new UpmemMachine(p).run("prefill", [tokenTensor(ref.prompt)]).outputs![0]!;
    const want = new Interpreter(c.module, c.ctx.weights).run("prefill", [tokenTensor(ref.prompt)])[0]!;
    let err = 0;
    for (let i = 0; i < want.data.length; i++)
      err = Math.max(err, Math.abs((want.data[i] as number) - (out.data[i] as number)));
    expect(err).toBeLessThan(1e-5);
  });

  test("the program survives its binary form and runs the same", async () => {
    const { ref, program } = await compiled("test/fixtures/llama-tiny", { weights: "int8" });
    const back = decodeProgram(encodeProgram(program), "mem.pimx");
    const prompt = tokenTensor(ref.prompt);
    const a = new UpmemMachine(program).run("prefill", [prompt]);
    const b = new UpmemMachine(back).run("prefill", [prompt]);
    expect(Array.from(b.outputs![0]!.data as Float32Array)).toEqual(
      Array.from(a.outputs![0]!.data as Float32Array),
    );
    expect(b.report.seconds).toBe(a.report.seconds);
  });

  test("fast (one DPU timed per launch) and detailed (every DPU) timing agree, deterministically", async () => {
    const { program } = await compiled("test/fixtures/llama-tiny", { weights: "int8" });
    const env = { B: 1, S: 7, P: 0 };
    const fast = new UpmemMachine(program, { functional: false }).run("prefill", undefined, env).report;
    const slow = new UpmemMachine(program, { functional: false, detailed: true }).run(
      "prefill",
      undefined,
      env,
    ).report;
    expect(slow.seconds).toBe(fast.seconds);
    expect(slow.commands.map((c) => c.end)).toEqual(fast.commands.map((c) => c.end));
    const again = new UpmemMachine(program, { functional: false }).run("prefill", undefined, env).report;
    expect(JSON.stringify(again)).toBe(JSON.stringify(fast));
  });

  test("the Perfetto trace is well-formed trace-event JSON, one track per engine and DPU rank", async () => {
    const { program } = await compiled("test/fixtures/llama-tiny", { weights: "int8" });
    const m = new UpmemMachine(program, { functional: false });
    const reports = [m.setup(), m.run("prefill", undefined, { B: 1, S: 7, P: 0 }).report];
    const parsed = JSON.parse(traceJson(reports, program.system.dpus_per_rank)) as {
      traceEvents: TraceEvent[];
      displayTimeUnit: string;
    };
    expect(parsed.displayTimeUnit).toBe("ms");
    const ev = parsed.traceEvents;
    const names = new Map<string, string>();
    for (const e of ev) {
      expect(["X", "M"]).toContain(e.ph);
      expect(Number.isInteger(e.pid) && Number.isInteger(e.tid)).toBe(true);
      expect(typeof e.name).toBe("string");
      if (e.ph === "M" && e.name === "thread_name") names.set(`${e.pid}/${e.tid}`, String(e.args!.name));
    }
    const complete = ev.filter((e) => e.ph === "X");
    expect(complete.length).toBeGreaterThanOrEqual(reports.reduce((s, r) => s + r.commands.length, 0));
    // Every complete event sits on a named track; a track's events never overlap (engines are serial).
    const tracks = new Map<string, TraceEvent[]>();
    for (const e of complete) {
      expect(e.ts!).toBeGreaterThanOrEqual(0);
      expect(e.dur!).toBeGreaterThanOrEqual(0);
      const key = `${e.pid}/${e.tid}`;
      expect(names.has(key)).toBe(true);
      tracks.set(key, [...(tracks.get(key) ?? []), e]);
    }
    for (const list of tracks.values()) {
      const sorted = [...list].sort((a, b) => a.ts! - b.ts!);
      for (let i = 1; i < sorted.length; i++)
        expect(sorted[i]!.ts!).toBeGreaterThanOrEqual(sorted[i - 1]!.ts! + sorted[i - 1]!.dur! - 1e-6);
    }
    expect([...names.values()]).toEqual(
      expect.arrayContaining(["host CPU", "host <-> DPU link", "DPU rank 0"]),
    );
  });

  test("calls beyond the program's limits are refused", async () => {
    const { program } = await compiled("test/fixtures/llama-tiny");
    const m = new UpmemMachine(program, { functional: false });
    expect(() => m.run("prefill", undefined, { B: 1, S: 64, P: 0 })).toThrow(/exceeds the program's limits/);
  });

  test("an illegal kernel is rejected when launched (WRAM overflow)", async () => {
    const { program, ref } = await compiled("test/fixtures/llama-tiny", { weights: "int8" });
    const bad: Program = {
      ...program,
      kernels: program.kernels.map((k) => ({
        ...k,
        wram: [...k.wram, { name: "huge", dtype: "i8", elems: 1 << 16 }],
      })),
    };
    expect(() => new UpmemMachine(bad).run("prefill", [tokenTensor(ref.prompt)])).toThrow(/WRAM overflow/);
  });
});

describe("host <-> DPU transfers reproduce REFERENCE.md (within 10%)", () => {
  const sys = DEFAULT_SYSTEM;
  const MB = 8 * 2 ** 20;
  const bw = (bytes: number, t: number) => bytes / t;
  test.each([
    ["to one DPU", () => bw(MB, pushTime(sys, { first: 0, count: 1 }, MB)), 0.33e9],
    ["to one rank (64 DPUs)", () => bw(64 * MB, pushTime(sys, { first: 0, count: 64 }, MB)), 6.68e9],
    ["from one DPU", () => bw(MB, pullTime(sys, { first: 0, count: 1 }, MB)), 0.12e9],
    ["from one rank", () => bw(64 * MB, pullTime(sys, { first: 0, count: 64 }, MB)), 4.74e9],
    ["broadcast to a rank", () => bw(MB, broadcastTime(sys, { first: 0, count: 64 }, MB)), 16.9e9],
  ])("%s", (_name, measure, published) => {
    expect(Math.abs(measure() / published - 1)).toBeLessThan(0.1);
  });

  test("ranks transfer in parallel up to the host's limit", () => {
    const one = pushTime(sys, { first: 0, count: 64 }, MB);
    const four = pushTime(sys, { first: 0, count: 256 }, MB);
    expect(four / one).toBeCloseTo(1, 1);
    const all = pushTime(sys, { first: 0, count: 2048 }, MB);
    expect((2048 * MB) / all).toBeCloseTo(sys.transfer.host_limit, -8);
  });

  test("the emulator's push of a launch moves its bytes at the table's bandwidth", async () => {
    const { program } = await compiled("test/fixtures/llama-tiny", { weights: "int8" });
    const r = new UpmemMachine(program, { functional: false }).run("prefill", undefined, {
      B: 1,
      S: 7,
      P: 0,
    }).report;
    const push = r.commands.find((c) => c.kind === "push")!;
    expect(push).toBeDefined();
    const cmd = program.phases[0]!.commands[push.id]!;
    const per = push.bytes / push.dpus!;
    expect(push.end - push.start).toBeCloseTo(
      pushTime(sys, "range" in cmd ? cmd.range : { first: 0, count: 1 }, per),
      12,
    );
  });

  test("a slower system description changes the figures", () => {
    const slow = zUpmemSystem.parse({
      transfer: {
        to_dpu: [
          [1, 0.1e9],
          [64, 2e9],
        ],
      },
    });
    expect(pushTime(slow, { first: 0, count: 64 }, MB)).toBeGreaterThan(
      pushTime(sys, { first: 0, count: 64 }, MB),
    );
  });
});

describe("pimc with --target upmem", () => {
  /**
   * A system of 64 DPUs: the tiny fixtures' GEMMs would be spread over all 2048 DPUs of the default
   * system, and emulating each DPU's few items costs more than their arithmetic. llama-tiny still
   * verifies on the default system; the others on this one (larger blocks per DPU, the same kernels).
   */
  const small = join(tmp, "upmem-64.pim");
  writeFileSync(small, "system upmem_64 {\n  target = upmem\n  dpus = 64\n}\n");
  const systemOf = (name: string): string[] =>
    name === "llama-tiny" ? ["--target", "upmem"] : ["--system", small];
  const fp32 = [
    "llama-tiny",
    "mistral-tiny",
    "qwen2-tiny",
    "mixtral-tiny",
    "opt-tiny",
    "opt-tiny-350m",
    "gpt2-tiny-bias",
  ];
  test.each(fp32)("verify %s: fp32 GEMMs and attention on the DPUs within 1e-4", async (name) => {
    const r = await pimc(
      "verify",
      `test/fixtures/${name}`,
      ...systemOf(name),
      "--no-cooperation",
      "--attention",
      "pim",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, number | boolean>;
    expect(j.passed).toBe(true);
    expect(j.target).toBe("upmem");
    expect(j.full_max_abs_err as number).toBeLessThan(1e-4);
  });

  test.each(["qwen2-tiny", "opt-tiny", "gpt2-tiny-bias", "mixtral-tiny"])(
    "verify %s --weights int8: greedy tokens equal to the reference, error stated",
    async (name) => {
      const r = await pimc(
        "verify",
        `test/fixtures/${name}`,
        ...systemOf(name),
        "--no-cooperation",
        "--weights",
        "int8",
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/greedy tokens match: 14\/14/);
      expect(r.stdout).toMatch(/PASSED \(tolerance 0.25\)/);
    },
  );

  test("verify llama-tiny --weights int8: the only disagreements are the reference's near-ties", async () => {
    const r = await pimc(
      "verify",
      "test/fixtures/llama-tiny",
      "--target",
      "upmem",
      "--no-cooperation",
      "--weights",
      "int8",
      "--json",
    );
    const j = JSON.parse(r.stdout) as Record<string, number | boolean>;
    expect(j.disagreements_beyond_near_ties).toBe(0);
    expect(j.full_max_abs_err).toBeLessThan(0.25);
    // Near ties may flip within the tolerance: verify passes and says how many differ.
    expect(r.code).toBe(0);
    expect(j.passed).toBe(true);
    expect(j.tokens_match).toBe(false);
  });

  test.each(["--no-pooling", "--base-gemm --no-pooling", "--base-gemm --no-pooling --runtime-transpose"])(
    "verify with the naive mappings (%s) still matches",
    async (flags) => {
      const fl = flags.split(" ");
      for (const w of ["f32", "int8"]) {
        const r = await pimc(
          "verify",
          "test/fixtures/opt-tiny",
          ...systemOf("opt-tiny"),
          "--no-cooperation",
          "--weights",
          w,
          ...fl,
        );
        expect(r.code, r.stdout + r.stderr).toBe(0);
      }
    },
  );

  test("BaseGEMM keeps all of W on every DPU, so it cannot keep the weights resident", async () => {
    const r = await pimc(
      "compile",
      "examples/llama2-7b.pim",
      "--system",
      "examples/systems/upmem-2048.pim",
      "--weights",
      "int8",
      "--no-cooperation",
      "--base-gemm",
      "-o",
      join(tmp, "b.pimx"),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^pimc: error: mram: .* per DPU .*the system's mram is 64.0 MiB/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("verify llama-tiny passes with attention's partials added on the DPUs or by the host, with the same errors", async () => {
    const upmem = await getTarget("upmem");
    const system = upmem.system.bind(upmem);
    const prepare = upmem.prepare.bind(upmem);
    const results: Awaited<ReturnType<typeof verify>>[] = [];
    for (const attentionReduce of ["host", "pim"] as const) {
      // The choice is an option of the upmem target, not a flag: the systems verify makes carry it,
      // and the program it runs is the one emit describes.
      const made: UpmemOptions[] = [];
      const lines: string[] = [];
      vi.spyOn(upmem, "system").mockImplementation((decl, opts?: SystemOptions) => {
        const m = system(decl, { ...opts, attentionReduce } as UpmemOptions);
        made.push(m.options!);
        return m;
      });
      vi.spyOn(upmem, "prepare").mockImplementation((model, sm, opts) => {
        lines.push(...upmem.emit!(model, sm, { ...opts, shapeOnly: true }).lines);
        return prepare(model, sm, opts);
      });
      try {
        // Cooperation keeps the tiny GEMMs on the host: attention, the subject, stays on the DPUs.
        const f = flags({ cooperation: true });
        results.push(await verify("test/fixtures/llama-tiny", { flags: f, tolerance: 1e-4 }));
      } finally {
        vi.restoreAllMocks();
      }
      expect(made.length).toBeGreaterThan(0);
      expect(made.every((o) => o.attentionReduce === attentionReduce)).toBe(true);
      expect(lines.find((l) => l.startsWith("attention"))).toMatch(
        attentionReduce === "pim"
          ? /decode ks \d+, partials added on the DPUs \(reduce kernel\)$/
          : /decode ks \d+, partials added by the host$/,
      );
    }
    for (const r of results) {
      expect(r.passed).toBe(true);
      expect(r.tokens_match).toBe(true);
      expect(r.full_max_abs_err).toBeLessThan(1e-4);
    }
    const errs = (r: (typeof results)[number]) => [
      r.prefill_max_abs_err,
      r.decode_max_abs_err,
      r.full_max_abs_err,
    ];
    expect(errs(results[1]!)).toEqual(errs(results[0]!));
  });

  test("verify with CPU/PIM cooperation (tiny GEMMs stay on the host) still matches", async () => {
    const r = await pimc("verify", "test/fixtures/llama-tiny", "--target", "upmem", "--json");
    expect(r.code, r.stderr).toBe(0);
  });

  test("compile -o writes a program; sim times it, --disasm lists it", async () => {
    // Llama-2-7B's shapes with one layer: the same kernels as the full model, 4 weights per layer + logits.
    const model = llama7bLayers(1);
    const prog = join(tmp, "l7.pimx");
    const c = await pimc(
      "compile",
      model,
      "--system",
      "examples/systems/upmem-2048.pim",
      "--weights",
      "int8",
      "-o",
      prog,
    );
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/program\s+upmem, \d+ kernels, 5 DPU-resident weights/);
    const s = await pimc("sim", prog, "--phase", "decode", "--json");
    expect(s.code, s.stderr).toBe(0);
    const j = JSON.parse(s.stdout) as {
      target: string;
      dpus: number;
      phases: { seconds: number; busy: Record<string, number>; rows: { kernel: string }[] }[];
    };
    expect(j).toMatchObject({ target: "upmem", dpus: 2048 });
    const ph = j.phases[0]!;
    expect(ph.seconds).toBeGreaterThan(0);
    expect(ph.busy.kernels).toBeGreaterThan(0);
    expect(ph.rows.some((r) => r.kernel.startsWith("gemm"))).toBe(true);
    const dis = await pimc("sim", prog, "--disasm");
    expect(dis.code).toBe(0);
    expect(dis.stdout).toMatch(/kernel gemm0/);
    expect(dis.stdout).toMatch(/launch gemm\d+/);
  });

  test.each([
    ["dpus = 0", /:2:\d+: dpus: Too small/],
    ["transfer = { to_dpu = 5 }", /:2:\d+: transfer\.to_dpu: .*expected array, received number/],
    ['dma = { beta = "x" }', /:2:\d+: dma\.beta: .*expected number, received string/],
    ["tasklet = 16", /unknown key 'tasklet' in a upmem system/],
  ])("a bad UPMEM system (%s) is one clear error at its line", async (entry, want) => {
    const f = join(tmp, "bad-system.pim");
    writeFileSync(f, `system s { target = upmem\n  ${entry}\n}\n`);
    const r = await pimc("compile", "examples/tiny-llama.pim", "--system", f);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(want);
  });

  test("pimc bench emulates each batch size and explains the time", async () => {
    const trace = join(tmp, "bench-trace.json");
    const r = await pimc(
      "bench",
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/upmem-2048.pim",
      "--phase",
      "decode",
      "--batch",
      "1,4",
      "--weights",
      "int8",
      "--no-cooperation",
      "--json",
      "--trace",
      trace,
    );
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      phase: string;
      steps: {
        batch: number;
        seconds: number;
        tokens_per_second: number;
        busy: Record<string, number>;
        ops: { device: string; seconds: number; flops: number; peak_fraction?: number }[];
      }[];
    };
    expect(j.phase).toBe("decode");
    expect(j.steps.map((s) => s.batch)).toEqual([1, 4]);
    for (const s of j.steps) {
      expect(s.seconds).toBeGreaterThan(0);
      expect(s.tokens_per_second).toBeCloseTo(s.batch / s.seconds, 6);
      expect(s.busy.kernels).toBeGreaterThan(0);
      const dpu = s.ops.filter((k) => k.device.endsWith("DPUs"));
      expect(dpu.length).toBeGreaterThan(0);
      // Transfers (the link) have no roof; every other row reached at most its device's peak.
      for (const k of s.ops)
        if (k.device === "link") expect(k.peak_fraction).toBeUndefined();
        else expect(k.peak_fraction).toBeLessThanOrEqual(1.0000001);
      expect(dpu.every((k) => k.flops > 0 && k.peak_fraction! > 0)).toBe(true);
    }
    const t = JSON.parse(readFileSync(trace, "utf8")) as { traceEvents: unknown[] };
    expect(t.traceEvents.length).toBeGreaterThan(0);
    const text = await pimc(
      "bench",
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/upmem-2048.pim",
      "--batch",
      "2",
    );
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/tokens\/s/);
    expect(text.stdout).toMatch(/% of peak/);
    expect((await pimc("bench", "examples/tiny-llama.pim", "--batch", "1,x")).code).toBe(2);
  });

  test("pimc bench --ablation adds PIM-LLM's optimizations one by one and compares with the CPU", async () => {
    const r = await pimc(
      "bench",
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/upmem-2048.pim",
      "--phase",
      "prefill",
      "--seq",
      "16",
      "--weights",
      "int8",
      "--ablation",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      ablation: { config: string; seconds: number; speedup_vs_basegemm: number; speedup_vs_cpu: number }[];
    };
    expect(j.ablation.map((a) => a.config.split(" ")[0])).toEqual([
      "CPU",
      "BaseGEMM",
      "+",
      "+",
      "+",
      "+",
      "+",
    ]);
    const base = j.ablation[1]!.seconds;
    const cpu = j.ablation[0]!.seconds;
    for (const a of j.ablation) {
      expect(a.seconds).toBeGreaterThan(0);
      expect(a.speedup_vs_basegemm).toBeCloseTo(base / a.seconds, 9);
      expect(a.speedup_vs_cpu).toBeCloseTo(cpu / a.seconds, 9);
    }
    // Pooling removes per-call allocation, load and weight transfer (tiny-llama stays on the host: equal).
    expect(j.ablation[6]!.seconds).toBeLessThanOrEqual(j.ablation[5]!.seconds);
    expect(j.ablation[5]!.seconds).toBeLessThanOrEqual(j.ablation[4]!.seconds); // cooperation never loses
    const two = await pimc("bench", "examples/tiny-llama.pim", "--ablation", "--batch", "1,2");
    expect(two.code).toBe(2);
    expect(two.stderr.trim()).toBe("pimc: error: --ablation runs one batch size; got --batch 1,2");
  });

  test("a corrupt program is one clear error with exit code 2", async () => {
    const bad = join(tmp, "bad.pimx");
    writeFileSync(bad, "not a program");
    const r = await pimc("sim", bad);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("bad.pimx");
  });

  test("what a program does wrong while it runs names the file (sim beyond its limits)", async () => {
    const prog = join(tmp, "tiny-limits.pimx");
    const c = await pimc("compile", "examples/tiny-llama.pim", "--target", "upmem", "-o", prog);
    expect(c.code, c.stderr).toBe(0);
    const r = await pimc("sim", prog, "--phase", "prefill", "--batch", "64");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^pimc: error: .*tiny-limits\.pimx: prefill with B=64 .* exceeds the program's limits/,
    );
    expect(r.stdout).toBe("");
  });

  test("fp32 weights that do not fit in MRAM are a clear error", async () => {
    const r = await pimc(
      "compile",
      "examples/llama2-70b.pim",
      "--system",
      "examples/systems/upmem-2048.pim",
      "--no-cooperation",
      "-o",
      join(tmp, "x.pimx"),
    );
    expect(r.code).toBe(2);
    // The field that is too small is named, on one line.
    expect(r.stderr).toMatch(/^pimc: error: mram: the DPU-resident weights need at least [\d.]+ MiB per DPU/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
