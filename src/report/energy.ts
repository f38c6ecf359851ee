/**
 * Energy in reports (docs/energy.md): a call's joules per token, tokens per joule and average power,
 * with the target's breakdown, as `--json` carries them and as one line of text.
 */
import type { Energy } from "../../targets/index.js";
import { int } from "./format.js";

export interface EnergyJson {
  readonly joules: number;
  readonly per_token_j: number;
  readonly tokens_per_j: number;
  readonly watts: number;
  readonly breakdown: Readonly<Record<string, number>>;
}

/** A step's energy for `--json`: `tokens` the tokens it produced in `seconds`. */
export const energyJson = (e: Energy, tokens: number, seconds: number): EnergyJson => ({
  joules: e.joules,
  per_token_j: e.joules / tokens,
  tokens_per_j: tokens / e.joules,
  watts: e.joules / seconds,
  breakdown: e.breakdown,
});

/** "1.234 mJ" (J, mJ, uJ or nJ). */
export function joules(j: number): string {
  const a = Math.abs(j);
  if (a >= 1) return `${j.toFixed(3)} J`;
  if (a >= 1e-3) return `${(j * 1e3).toFixed(3)} mJ`;
  if (a >= 1e-6) return `${(j * 1e6).toFixed(3)} uJ`;
  return `${(j * 1e9).toFixed(3)} nJ`;
}

/** The parts over 0.5 % of an energy, largest first: "array 61 %, background 20 %". */
export function energyParts(e: Energy): string {
  return Object.entries(e.breakdown)
    .filter(([, j]) => j >= 0.005 * e.joules)
    .sort((a, b) => b[1] - a[1])
    .map(([k, j]) => `${k} ${((100 * j) / e.joules).toFixed(0)} %`)
    .join(", ");
}

/** "12.345 mJ per token, 81.0 tokens/J, 45.2 W: array 40 %, host_alu 30 %, ..." */
export function energyLine(e: Energy, tokens: number, seconds: number): string {
  const j = energyJson(e, tokens, seconds);
  const perJ = j.tokens_per_j >= 1000 ? int(Math.round(j.tokens_per_j)) : j.tokens_per_j.toFixed(1);
  return `${joules(j.per_token_j)} per token, ${perJ} tokens/J, ${j.watts.toFixed(1)} W: ${energyParts(e)}`;
}

/** An energy n times over, part by part (n identical runs). */
export function scaleEnergy(e: Energy, n: number): Energy {
  return {
    joules: e.joules * n,
    breakdown: Object.fromEntries(Object.entries(e.breakdown).map(([k, j]) => [k, j * n])),
  };
}

/** The sum of energies, part by part (a call's ops, a trace's steps). */
export function sumEnergies(es: readonly Energy[]): Energy {
  const breakdown: Record<string, number> = {};
  let joules = 0;
  for (const e of es) {
    joules += e.joules;
    for (const [k, j] of Object.entries(e.breakdown)) breakdown[k] = (breakdown[k] ?? 0) + j;
  }
  return { joules, breakdown };
}
