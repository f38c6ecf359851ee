/**
 * Request traces for serving studies: a CSV file with a header `arrival,prompt,output` (arrival in
 * seconds from the start, prompt and output lengths in tokens) or a JSON array of such objects; or
 * a generated trace: Poisson arrivals at a rate, lengths uniform in ranges, from a seed.
 */
import { parseJson } from "../guards.js";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { UserError } from "../errors.js";
import type { Request } from "../exec/serve.js";
import { mulberry32 } from "../rng.js";

const zRequest = z.strictObject({
  arrival: z.number().nonnegative(),
  prompt: z.number().int().positive(),
  output: z.number().int().positive(),
});

function parseCsv(text: string, file: string): Request[] {
  const lines = text.split(/\r?\n/);
  const header = lines[0]?.split(",").map((h) => h.trim()) ?? [];
  const cols = ["arrival", "prompt", "output"].map((c) => header.indexOf(c));
  if (cols.some((c) => c < 0))
    throw new UserError(
      `${file}:1: expected a header with columns arrival,prompt,output, got "${lines[0] ?? ""}"`,
    );
  const out: Request[] = [];
  lines.forEach((line, i) => {
    if (i === 0 || line.trim() === "" || line.trim().startsWith("#")) return;
    const cells = line.split(",").map((c) => c.trim());
    const raw = {
      arrival: Number(cells[cols[0]!]),
      prompt: Number(cells[cols[1]!]),
      output: Number(cells[cols[2]!]),
    };
    const r = zRequest.safeParse(raw);
    if (!r.success || cells.some((c) => c === ""))
      throw new UserError(
        `${file}:${i + 1}: expected arrival >= 0 and positive integer prompt and output lengths, got "${line}"`,
      );
    out.push(r.data);
  });
  return out;
}

export function readRequests(file: string): Request[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      `${file}: ${code === "ENOENT" ? "no such file" : `cannot read (${code ?? String(e)})`}`,
    );
  }
  let out: Request[];
  if (text.trimStart().startsWith("[")) {
    const raw = parseJson(text, file);
    const r = z.array(zRequest).safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new UserError(
        `${file}: request ${String(issue.path[0])}: ${issue.path.slice(1).join(".")} ${issue.message}`,
      );
    }
    out = r.data;
  } else out = parseCsv(text, file);
  if (out.length === 0) throw new UserError(`${file}: no requests`);
  return out;
}

export interface PoissonOptions {
  /** Requests per second. */
  readonly rate: number;
  readonly count: number;
  readonly prompt: readonly [number, number];
  readonly output: readonly [number, number];
  readonly seed: number;
}

/** Poisson arrivals (exponential gaps at `rate`), lengths uniform in the ranges (inclusive). */
export function poissonRequests(o: PoissonOptions): Request[] {
  const r = mulberry32(o.seed);
  const pick = ([lo, hi]: readonly [number, number]) => lo + Math.floor(r() * (hi - lo + 1));
  const out: Request[] = [];
  let t = 0;
  for (let i = 0; i < o.count; i++) {
    out.push({ arrival: t, prompt: pick(o.prompt), output: pick(o.output) });
    t += -Math.log(1 - r()) / o.rate;
  }
  return out;
}

/** "128" or "64-256" (inclusive range). */
export function parseRange(v: string, what: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi < lo) throw new UserError(`${what}: expected N or N-M with 1 <= N <= M, got "${v}"`);
  return [lo, hi];
}
