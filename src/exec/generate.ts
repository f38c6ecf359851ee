/** Greedy generation with the KV cache: prefill the prompt, then one decode call per new token. */
import type { Tensor } from "../ir/tensor.js";
import { greedyNext, tokenTensor } from "./interpreter.js";

export interface Runner {
  reset(): void;
  run(func: string, inputs: readonly Tensor[]): Tensor[];
}

/** Returns each sequence extended by `steps` greedily chosen tokens. */
export function generate(runner: Runner, prompt: readonly (readonly number[])[], steps: number): number[][] {
  runner.reset();
  const seqs = prompt.map((p) => [...p]);
  if (steps <= 0) return seqs;
  let next = greedyNext(runner.run("prefill", [tokenTensor(prompt)])[0]!);
  for (let s = 0; ; s++) {
    next.forEach((t, i) => seqs[i]!.push(t));
    if (s === steps - 1) return seqs;
    next = greedyNext(runner.run("decode", [tokenTensor(next.map((t) => [t]))])[0]!);
  }
}
