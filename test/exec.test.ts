import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { generate } from "../src/exec/generate.js";
import { Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import { importHf } from "../src/frontend/hf/import.js";
import { expectUserError } from "./util.js";

const ref = (dir: string): { prompt: number[][]; full_sequence: number[][] } =>
  JSON.parse(readFileSync(`${dir}/reference.json`, "utf8")) as {
    prompt: number[][];
    full_sequence: number[][];
  };

describe("reference interpreter", () => {
  test.each(["llama-tiny", "mixtral-tiny", "opt-tiny"])(
    "greedy generation of %s reproduces the reference continuation",
    (name) => {
      const dir = `test/fixtures/${name}`;
      const m = importHf(dir);
      const r = ref(dir);
      expect(generate(new Interpreter(m.module, m.weights), r.prompt, 6)).toEqual(r.full_sequence);
    },
  );
  test("decoding token by token equals one prefill of the whole sequence", () => {
    const m = importHf("test/fixtures/mistral-tiny");
    const it = new Interpreter(m.module, m.weights);
    const ids = [[5, 9, 17, 3, 77, 41, 8, 2, 99]];
    const full = it.run("prefill", [tokenTensor(ids)])[0]!;
    it.reset();
    it.run("prefill", [tokenTensor([ids[0]!.slice(0, 3)])]);
    let last = it.run("decode", [tokenTensor([ids[0]!.slice(3, 5)])])[0]!; // 2 tokens per step (speculation)
    for (let i = 5; i < ids[0]!.length; i++) last = it.run("decode", [tokenTensor([[ids[0]![i]!]])])[0]!;
    const v = 128;
    const want = (full.data as Float32Array).slice((ids[0]!.length - 1) * v);
    const got = last.data as Float32Array;
    for (let j = 0; j < v; j++) expect(Math.abs(got[j]! - want[j]!)).toBeLessThan(1e-5);
  });
  test("run-time errors are user errors", () => {
    const m = importHf("test/fixtures/llama-tiny");
    const it = new Interpreter(m.module, m.weights);
    expectUserError(() => it.run("prefill", [tokenTensor([[1, 500]])]), "token id 500 out of range");
    expectUserError(() => it.run("decode", [tokenTensor([[1, 2]]), tokenTensor([[1]])]), "takes 1 inputs");
    it.run("prefill", [
      tokenTensor([
        [1, 2],
        [3, 4],
      ]),
    ]);
    expect(it.cachedTokens).toBe(2);
    expectUserError(() => it.run("decode", [tokenTensor([[1]])]), "does not fit state"); // batch 1, cache of batch 2
  });
});
