/**
 * Before/Expected tests of every pass, written in IR text (TVM style): parse Before, run the pass,
 * compare the printed result with Expected, and check that the result verifies.
 */
import { describe, expect, test } from "vitest";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { verifyModule } from "../src/ir/verifier.js";
import { WeightStore } from "../src/ir/weights.js";
import { f32 } from "../src/ir/tensor.js";
import { PassContext, type PassContextInit } from "../src/pipeline/pass.js";
import { rooflineCostModel } from "../src/pipeline/cost-model.js";
import { getPass } from "../passes/index.js";
import { placementNotes } from "../passes/partition.js";

/** Strips the common indentation of a template literal (so IR can be indented in the test). */
function ir(text: string): string {
  const lines = text
    .replace(/^\n/, "")
    .replace(/\n\s*$/, "")
    .split("\n");
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return `${lines.map((l) => l.slice(indent)).join("\n")}\n`;
}

function run(pass: string, before: string, init: PassContextInit = {}): { text: string; ctx: PassContext } {
  const ctx = new PassContext(init);
  const out = getPass(pass).run(parseModule(ir(before), "before.pimir"), ctx);
  expect(verifyModule(out)).toEqual([]);
  return { text: printModule(out), ctx };
}

const expectPass = (
  pass: string,
  before: string,
  expected: string,
  init: PassContextInit = {},
): PassContext => {
  const { text, ctx } = run(pass, before, init);
  expect(text).toBe(ir(expected));
  return ctx;
};

describe("dce", () => {
  test("removes unused ops and constants, keeps state updates", () => {
    const ctx = expectPass(
      "dce",
      `
      module @m

      const @w : f32[4, 4]
      const @unused : f32[4]

      state @kv : f32[B, 1, T, 4]

      func @f(%x: f32[B, 1, S, 4]) -> (f32[B, 1, S, 4]) {
        %dead = relu(%x) : f32[B, 1, S, 4]
        %c = kv_append(@kv, %x) {axis = 2, past = 0} : f32[B, 1, S, 4]
        %y = linear(%x, @w) : f32[B, 1, S, 4]
        return %y
      }
      `,
      `
      module @m

      const @w : f32[4, 4]

      state @kv : f32[B, 1, T, 4]

      func @f(%x: f32[B, 1, S, 4]) -> (f32[B, 1, S, 4]) {
        %c = kv_append(@kv, %x) {axis = 2, past = 0} : f32[B, 1, S, 4]
        %y = linear(%x, @w) : f32[B, 1, S, 4]
        return %y
      }
      `,
    );
    expect(ctx.report.get("dce")).toEqual({ "ops removed": 1, "constants removed": 1 });
  });
});

describe("simplify-shapes", () => {
  test("folds reshape chains, identity reshapes and composed transposes", () => {
    expectPass(
      "simplify-shapes",
      `
      module @m

      func @f(%x: f32[B, S, 64]) -> (f32[B, S, 64], f32[B, 4, S, 16]) {
        %a = reshape(%x) {shape = [B, S, 4, 16]} : f32[B, S, 4, 16]
        %b = reshape(%a) {shape = [B, S, 64]} : f32[B, S, 64]
        %t1 = transpose(%a) {perm = [0, 2, 1, 3]} : f32[B, 4, S, 16]
        %t2 = transpose(%t1) {perm = [0, 2, 1, 3]} : f32[B, S, 4, 16]
        %t3 = transpose(%t2) {perm = [0, 2, 1, 3]} : f32[B, 4, S, 16]
        %id = transpose(%t3) {perm = [0, 1, 2, 3]} : f32[B, 4, S, 16]
        return %b, %id
      }
      `,
      `
      module @m

      func @f(%x: f32[B, S, 64]) -> (f32[B, S, 64], f32[B, 4, S, 16]) {
        %a = reshape(%x) {shape = [B, S, 4, 16]} : f32[B, S, 4, 16]
        %t1 = transpose(%a) {perm = [0, 2, 1, 3]} : f32[B, 4, S, 16]
        %t3 = transpose(%a) {perm = [0, 2, 1, 3]} : f32[B, 4, S, 16]
        return %x, %t3
      }
      `,
    );
  });
  test("binding S = 1 in decode makes [B, 1, 64] -> [B, 64] reshapes foldable", () => {
    expectPass(
      "simplify-shapes",
      `
      module @m

      func @decode(%x: f32[B, S, 64]) -> (f32[B, S, 64]) {
        %a = reshape(%x) {shape = [B, S, 64]} : f32[B, S, 64]
        %p = positions() {len = S, start = P} : i32[S]
        return %a
      }
      `,
      `
      module @m

      func @decode(%x: f32[B, 1, 64]) -> (f32[B, 1, 64]) {
        %p = positions() {len = 1, start = P} : i32[1]
        return %x
      }
      `,
      { options: { "simplify-shapes": { bind: { decode: { S: 1 } } } } },
    );
  });
});

const QKV_BEFORE = `
  module @m

  const @attn.q_proj.weight : f32[4, 2]
  const @attn.k_proj.weight : f32[2, 2]
  const @attn.v_proj.weight : f32[2, 2]
  const @attn.q_proj.bias : f32[4]
  const @attn.v_proj.bias : f32[2]

  state @kv.k : f32[B, 1, T, 2]
  state @kv.v : f32[B, 1, T, 2]

  func @f(%x: f32[B, S, 2]) -> (f32[B, S, 4]) {
    %q = linear(%x, @attn.q_proj.weight, @attn.q_proj.bias) : f32[B, S, 4]
    %k = linear(%x, @attn.k_proj.weight) : f32[B, S, 2]
    %v = linear(%x, @attn.v_proj.weight, @attn.v_proj.bias) : f32[B, S, 2]
    %q4 = reshape(%q) {shape = [B, S, 2, 2]} : f32[B, S, 2, 2]
    %k4 = reshape(%k) {shape = [B, S, 1, 2]} : f32[B, S, 1, 2]
    %v4 = reshape(%v) {shape = [B, S, 1, 2]} : f32[B, S, 1, 2]
    %qt = transpose(%q4) {perm = [0, 2, 1, 3]} : f32[B, 2, S, 2]
    %kt = transpose(%k4) {perm = [0, 2, 1, 3]} : f32[B, 1, S, 2]
    %vt = transpose(%v4) {perm = [0, 2, 1, 3]} : f32[B, 1, S, 2]
    %kc = kv_append(@kv.k, %kt) {axis = 2, past = 0} : f32[B, 1, S, 2]
    %vc = kv_append(@kv.v, %vt) {axis = 2, past = 0} : f32[B, 1, S, 2]
    %a = attention(%qt, %kc, %vc) {causal = true, scale = 0.5, window = 0} : f32[B, 2, S, 2]
    %at = transpose(%a) {perm = [0, 2, 1, 3]} : f32[B, S, 2, 2]
    %o = reshape(%at) {shape = [B, S, 4]} : f32[B, S, 4]
    %side = linear(%x, @attn.k_proj.weight) : f32[B, S, 2]
    return %o
  }
`;

describe("fuse-qkv", () => {
  test("GQA projections with partial biases become one GEMM and a split; data concatenated at build time", () => {
    const weights = new WeightStore();
    const t = (shape: number[], xs: number[]) => f32(shape, Float32Array.from(xs));
    weights.set("attn.q_proj.weight", t([4, 2], [1, 2, 3, 4, 5, 6, 7, 8]));
    weights.set("attn.k_proj.weight", t([2, 2], [9, 10, 11, 12]));
    weights.set("attn.v_proj.weight", t([2, 2], [13, 14, 15, 16]));
    weights.set("attn.q_proj.bias", t([4], [0.1, 0.2, 0.3, 0.4]));
    weights.set("attn.v_proj.bias", t([2], [0.5, 0.6]));
    const { text, ctx } = run("fuse-qkv", QKV_BEFORE, { weights });
    // %side reads the same input but does not feed attention: it is not fused.
    expect(text).toContain(
      ir(`
        %qkv = linear(%x, @attn.qkv_proj.weight, @attn.qkv_proj.bias) {fused = "qkv"} : f32[B, S, 8]
        %q, %k, %v = split(%qkv) {axis = -1, sizes = [4, 2, 2]} : f32[B, S, 4], f32[B, S, 2], f32[B, S, 2]
        %q4 = reshape(%q) {shape = [B, S, 2, 2]} : f32[B, S, 2, 2]
      `).replace(/^/gm, "  "),
    );
    expect(text).toContain("  %side = linear(%x, @attn.k_proj.weight) : f32[B, S, 2]\n");
    expect(text).toContain("const @attn.qkv_proj.weight : f32[8, 2]\nconst @attn.qkv_proj.bias : f32[8]\n");
    expect([...(ctx.weights.get("attn.qkv_proj.weight").data as Float32Array)]).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ]);
    expect(
      [...(ctx.weights.get("attn.qkv_proj.bias").data as Float32Array)].map((x) => +x.toFixed(3)),
    ).toEqual([0.1, 0.2, 0.3, 0.4, 0, 0, 0.5, 0.6]);
    expect(ctx.report.get("fuse-qkv")).toEqual({
      "qkv groups fused": 1,
      "fused weights": 1,
      "biases concatenated": 1,
    });
  });
  test("an already fused projection (GPT-2 c_attn) is recognised", () => {
    const { text, ctx } = run(
      "fuse-qkv",
      `
      module @m

      const @c_attn.weight : f32[2, 6]

      func @f(%x: f32[B, S, 2]) -> (f32[B, 1, S, 2]) {
        %wt = transpose(@c_attn.weight) {perm = [1, 0]} : f32[6, 2]
        %qkv = linear(%x, %wt) : f32[B, S, 6]
        %q, %k, %v = split(%qkv) {axis = -1, sizes = [2, 2, 2]} : f32[B, S, 2], f32[B, S, 2], f32[B, S, 2]
        %q4 = reshape(%q) {shape = [B, S, 1, 2]} : f32[B, S, 1, 2]
        %k4 = reshape(%k) {shape = [B, S, 1, 2]} : f32[B, S, 1, 2]
        %v4 = reshape(%v) {shape = [B, S, 1, 2]} : f32[B, S, 1, 2]
        %qt = transpose(%q4) {perm = [0, 2, 1, 3]} : f32[B, 1, S, 2]
        %kt = transpose(%k4) {perm = [0, 2, 1, 3]} : f32[B, 1, S, 2]
        %vt = transpose(%v4) {perm = [0, 2, 1, 3]} : f32[B, 1, S, 2]
        %a = attention(%qt, %kt, %vt) {causal = true, scale = 1, window = 0} : f32[B, 1, S, 2]
        return %a
      }
      `,
    );
    expect(text).toContain('%qkv = linear(%x, %wt) {fused = "qkv"} : f32[B, S, 6]');
    expect(ctx.report.get("fuse-qkv")).toEqual({ "already fused, recognised": 1 });
  });
});

describe("fuse-gate-up", () => {
  test("the two halves of a SwiGLU MLP become one GEMM", () => {
    expectPass(
      "fuse-gate-up",
      `
      module @m

      const @mlp.gate_proj.weight : f32[6, 4]
      const @mlp.up_proj.weight : f32[6, 4]
      const @mlp.down_proj.weight : f32[4, 6]

      func @f(%x: f32[B, S, 4]) -> (f32[B, S, 4]) {
        %gate = linear(%x, @mlp.gate_proj.weight) : f32[B, S, 6]
        %up = linear(%x, @mlp.up_proj.weight) : f32[B, S, 6]
        %act = silu(%gate) : f32[B, S, 6]
        %h = mul(%act, %up) : f32[B, S, 6]
        %down = linear(%h, @mlp.down_proj.weight) : f32[B, S, 4]
        return %down
      }
      `,
      `
      module @m

      const @mlp.gate_proj.weight : f32[6, 4]
      const @mlp.up_proj.weight : f32[6, 4]
      const @mlp.down_proj.weight : f32[4, 6]
      const @mlp.gate_up_proj.weight : f32[12, 4]

      func @f(%x: f32[B, S, 4]) -> (f32[B, S, 4]) {
        %gate_up = linear(%x, @mlp.gate_up_proj.weight) {fused = "gate_up"} : f32[B, S, 12]
        %gate, %up = split(%gate_up) {axis = -1, sizes = [6, 6]} : f32[B, S, 6], f32[B, S, 6]
        %act = silu(%gate) : f32[B, S, 6]
        %h = mul(%act, %up) : f32[B, S, 6]
        %down = linear(%h, @mlp.down_proj.weight) : f32[B, S, 4]
        return %down
      }
      `,
    );
  });
});

describe("layout", () => {
  test("a transposed weight (GPT-2 Conv1D) is folded: same data, logical type transposed, layout col", () => {
    const weights = new WeightStore();
    weights.set("c_fc.weight", f32([2, 3], Float32Array.from([1, 2, 3, 4, 5, 6])));
    const ctx = expectPass(
      "layout",
      `
      module @m

      const @c_fc.weight : f32[2, 3]

      func @f(%x: f32[B, 2]) -> (f32[B, 3]) {
        %wt = transpose(@c_fc.weight) {perm = [1, 0]} : f32[3, 2]
        %y = linear(%x, %wt) : f32[B, 3]
        return %y
      }
      `,
      `
      module @m

      const @c_fc.weight : f32[3, 2] {layout = "col"}

      func @f(%x: f32[B, 2]) -> (f32[B, 3]) {
        %y = linear(%x, @c_fc.weight) : f32[B, 3]
        return %y
      }
      `,
      { weights },
    );
    expect(ctx.weights.get("c_fc.weight").shape).toEqual([2, 3]);
    expect(ctx.report.get("layout")).toEqual({ "transposes folded": 1 });
  });
  test("weights get the layout their consumer wants, converted once at build time", () => {
    const weights = new WeightStore();
    weights.set("w", f32([2, 4], Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8])));
    const ctx = expectPass(
      "layout",
      `
      module @m

      const @w : f32[2, 4]

      func @f(%x: f32[B, 4]) -> (f32[B, 2]) {
        %y = linear(%x, @w) : f32[B, 2]
        return %y
      }
      `,
      `
      module @m

      const @w : f32[2, 4] {layout = "tiled:2x2"}

      func @f(%x: f32[B, 4]) -> (f32[B, 2]) {
        %y = linear(%x, @w) : f32[B, 2]
        return %y
      }
      `,
      { weights, options: { layout: { weightLayout: () => "tiled:2x2" } } },
    );
    // [[1 2 3 4] [5 6 7 8]] in 2x2 tiles: [1 2; 5 6] then [3 4; 7 8], tile grid [1, 2].
    expect(ctx.weights.get("w").shape).toEqual([1, 2, 2, 2]);
    expect([...(ctx.weights.get("w").data as Float32Array)]).toEqual([1, 2, 5, 6, 3, 4, 7, 8]);
    expect(weights.get("w").shape).toEqual([2, 4]); // the model's own table is unchanged
  });
  const TIED = `
    module @m

    const @embed : f32[8, 4]

    func @f(%t: i32[B]) -> (f32[B, 8]) {
      %x = embedding(%t, @embed) : f32[B, 4]
      %logits = linear(%x, @embed) : f32[B, 8]
      return %logits
    }
  `;
  const wants = {
    weightLayout: (op: { opcode: string }, i: number) =>
      i !== 1 ? undefined : op.opcode === "embedding" ? "row" : "col",
  };
  test("a weight wanted in two layouts (tied embedding) is duplicated at build time", () => {
    const ctx = expectPass(
      "layout",
      TIED,
      `
      module @m

      const @embed : f32[8, 4]
      const @embed.col : f32[8, 4] {layout = "col"}

      func @f(%t: i32[B]) -> (f32[B, 8]) {
        %x = embedding(%t, @embed) : f32[B, 4]
        %logits = linear(%x, @embed.col) : f32[B, 8]
        return %logits
      }
      `,
      { options: { layout: wants } },
    );
    expect(ctx.report.get("layout")).toEqual({ "constants duplicated": 1 });
  });
  test("without duplication the conflict becomes an explicit run-time conversion, counted", () => {
    const ctx = expectPass(
      "layout",
      TIED,
      `
      module @m

      const @embed : f32[8, 4]

      func @f(%t: i32[B]) -> (f32[B, 8]) {
        %x = embedding(%t, @embed) : f32[B, 4]
        %embed_col = relayout(@embed) {layout = "col"} : f32[8, 4]
        %logits = linear(%x, %embed_col) : f32[B, 8]
        return %logits
      }
      `,
      { options: { layout: { ...wants, duplicate: false } } },
    );
    expect(ctx.report.get("layout")).toEqual({ "run-time conversions": 1 });
  });
});

describe("partition", () => {
  const TWO = rooflineCostModel(
    [
      { name: "host", kind: "host", flops: 1e12, bandwidth: 50e9, overhead: 1e-6 },
      { name: "pim", kind: "pim", flops: 0.1e12, bandwidth: 1e12, overhead: 1e-6 },
    ],
    "host",
    10e9,
    1e-6,
  );
  const MLP = `
    module @m

    const @w1 : f16[4096, 4096]
    const @w2 : f16[4096, 4096]

    func @decode(%x: f16[B, S, 4096]) -> (f16[B, S, 4096]) {
      %h = linear(%x, @w1) : f16[B, S, 4096]
      %a = relu(%h) : f16[B, S, 4096]
      %y = linear(%a, @w2) : f16[B, S, 4096]
      return %y
    }
  `;
  test("memory-bound GEMVs go to PIM with the cheap op between them; transfers at the edges only", () => {
    const ctx = expectPass(
      "partition",
      MLP,
      `
      module @m

      const @w1 : f16[4096, 4096]
      const @w2 : f16[4096, 4096]

      func @decode(%x: f16[B, S, 4096]) -> (f16[B, S, 4096]) {
        %x.to_pim = transfer(%x) {from = "host", to = "pim"} : f16[B, S, 4096]
        %h = linear(%x.to_pim, @w1) {device = "pim"} : f16[B, S, 4096]
        %a = relu(%h) {device = "pim"} : f16[B, S, 4096]
        %y = linear(%a, @w2) {device = "pim"} : f16[B, S, 4096]
        %y.to_host = transfer(%y) {from = "pim", to = "host"} : f16[B, S, 4096]
        return %y.to_host
      }
      `,
      { costModel: TWO, options: { envs: { decode: { B: 1, S: 1, P: 0 } } } },
    );
    const notes = placementNotes(ctx);
    expect(notes.map((n) => [n.value, n.device])).toEqual([
      ["h", "pim"],
      ["a", "pim"],
      ["y", "pim"],
    ]);
    expect(notes[1]!.reason).toMatch(/^fastest \(host 1\.\d+ us, pim 1\.\d+ us\)$/);
    expect(ctx.report.get("partition")).toEqual({
      "ops on pim": 3,
      "transfers host->pim": 1,
      "transfers pim->host": 1,
    });
  });
  test("large batches are compute-bound: everything stays on the host", () => {
    const { text } = run("partition", MLP, {
      costModel: TWO,
      options: { envs: { decode: { B: 512, S: 1, P: 0 } } },
    });
    expect(text).not.toContain("transfer(");
    expect(text).toContain('%h = linear(%x, @w1) {device = "host"}');
  });
  test("dynamic placement keeps both variants of each linear with the crossover B*S", () => {
    const { text, ctx } = run("partition", MLP, {
      costModel: TWO,
      options: { placement: "dynamic", envs: { decode: { B: 1, S: 1, P: 0 } } },
    });
    const m =
      /%h = linear\(%x.to_pim, @w1\) \{alt_device = "host", device = "pim", switch_above = (\d+)\}/.exec(
        text,
      );
    expect(m).not.toBeNull();
    // Crossover: the PIM is compute-bound above 2*T*N*K / 0.1e12 = 2*N*K*2 / 1e12 + ... solve with the model:
    const alpha = Number(m![1]);
    const time = (t: number, dev: "host" | "pim") => {
      const flops = 2 * t * 4096 * 4096;
      const bytes = 4096 * 4096 * 2 + 2 * t * 4096 * 2;
      return dev === "host"
        ? Math.max(flops / 1e12, bytes / 50e9) + 1e-6
        : Math.max(flops / 0.1e12, bytes / 1e12) + 1e-6;
    };
    expect(time(alpha, "pim")).toBeLessThanOrEqual(time(alpha, "host"));
    expect(time(alpha + 1, "pim")).toBeGreaterThan(time(alpha + 1, "host"));
    expect(ctx.report.get("partition")!["dynamic placements"]).toBe(2);
  });
  test("a single-device system leaves the IR alone", () => {
    const one = rooflineCostModel(
      [{ name: "host", kind: "host", flops: 1e12, bandwidth: 50e9, overhead: 0 }],
      "host",
      1,
      0,
    );
    const { text } = run("partition", MLP, { costModel: one });
    expect(text).toBe(ir(MLP));
  });
});

describe("quantize", () => {
  const BEFORE = `
    module @m

    const @w : f32[2, 4]
    const @b : f32[2]

    func @f(%x: f32[B, 4]) -> (f32[B, 2]) {
      %y = linear(%x, @w, @b) : f32[B, 2]
      return %y
    }
  `;
  test("without --weights int8 nothing changes", () => {
    expectPass("quantize", BEFORE, BEFORE);
  });
  test("linear layers become qlinear with int8 weights and per-channel scales computed at build time", () => {
    const weights = new WeightStore();
    weights.set("w", f32([2, 4], Float32Array.from([1, -2, 0.5, 0.25, 0, 0, 0, 0])));
    const ctx = expectPass(
      "quantize",
      BEFORE,
      `
      module @m

      const @w : f32[2, 4]
      const @b : f32[2]
      const @w.q8 : i8[2, 4]
      const @w.scale : f32[2]

      func @f(%x: f32[B, 4]) -> (f32[B, 2]) {
        %y = qlinear(%x, @w.q8, @w.scale, @b) : f32[B, 2]
        return %y
      }
      `,
      { weights, options: { quantize: { weights: "int8" } } },
    );
    expect([...(ctx.weights.get("w.q8").data as Int8Array)]).toEqual([64, -127, 32, 16, 0, 0, 0, 0]);
    expect([...(ctx.weights.get("w.scale").data as Float32Array)]).toEqual([Math.fround(2 / 127), 1]);
  });
});
