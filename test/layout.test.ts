import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  layoutProblem,
  parseLayout,
  physicalShape,
  toLogical,
  toPhysical,
  type Layout,
  ROW_MAJOR_WEIGHTS,
} from "../src/ir/layout.js";
import { f32 } from "../src/ir/tensor.js";

describe("constant layouts", () => {
  test("logical -> physical -> logical is the identity", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        (tr, tc, r, c) => {
          const shape = [tr * r, tc * c];
          const t = f32(
            shape,
            Float32Array.from({ length: shape[0]! * shape[1]! }, (_, i) => i),
          );
          for (const l of [
            { kind: "row" },
            { kind: "col" },
            { kind: "tiled", rows: r, cols: c },
          ] as Layout[]) {
            const p = toPhysical(t, l);
            expect(p.shape).toEqual(physicalShape(l, shape));
            expect(toLogical(p, l, shape)).toEqual(t);
          }
        },
      ),
    );
  });
  test("parsing and constraints", () => {
    expect(parseLayout("tiled:16x64")).toEqual({ kind: "tiled", rows: 16, cols: 64 });
    expect(parseLayout("tiled:0x4")).toBeUndefined();
    expect(parseLayout("diagonal")).toBeUndefined();
    expect(layoutProblem({ kind: "tiled", rows: 3, cols: 2 }, [4, 4])).toMatch(/do not divide/);
    expect(layoutProblem({ kind: "col" }, [4])).toMatch(/needs a 2-D constant/);
  });
});

describe("verifier", () => {
  test("checks const layouts", async () => {
    const { parseModule } = await import("../src/ir/parser.js");
    const { verifyModule } = await import("../src/ir/verifier.js");
    const m = (attr: string) => parseModule(`module @m\n\nconst @w : f32[4, 6] {layout = ${attr}}\n`);
    expect(verifyModule(m('"tiled:2x3"'))).toEqual([]);
    expect(verifyModule(m('"tiled:4x4"'))).toEqual(["const @w: tiles 4x4 do not divide [4, 6]"]);
    expect(verifyModule(m('"zigzag"'))).toEqual([
      'const @w: unknown layout "zigzag" (row, col or tiled:RxC)',
    ]);
  });
});

describe("ROW_MAJOR_WEIGHTS", () => {
  test("asks rows for a GEMM's weight and an embedding's table, from the ops' traits, and nothing else", () => {
    const op = (opcode: string, operands: string[]) => ({ opcode, operands, attrs: {}, results: [] });
    const want = (o: ReturnType<typeof op>) =>
      o.operands.map((_, i) => ROW_MAJOR_WEIGHTS.weightLayout!(o, i));
    expect(want(op("linear", ["%x", "@w", "@b"]))).toEqual([undefined, "row", undefined]);
    expect(want(op("qlinear", ["%x", "@q", "@s"]))).toEqual([undefined, "row", undefined]);
    expect(want(op("lowbit_linear", ["%x", "@q", "@s"]))).toEqual([undefined, "row", undefined]);
    expect(want(op("embedding", ["%ids", "@table"]))).toEqual([undefined, "row"]);
    expect(want(op("rms_norm", ["%x", "@g"]))).toEqual([undefined, undefined]);
  });
});
