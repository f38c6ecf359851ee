/**
 * Request traces for serving studies: a CSV file with a header `arrival,prompt,output` (arrival in
 * seconds from the start, prompt and output lengths in tokens) or a JSON array of such objects; or
 * a generated trace: Poisson arrivals at a rate, lengths uniform in ranges, from a seed.
 */
import { parseJson } from "../guards.js";
import { z } from "zod";
import { UserError } from "../errors.js";
import { readTextFile } from "../fsutil.js";
import { TRACE_LIMITS as L } from "../limits.js";
import type { Request } from "../exec/serve.js";
import { mulberry32 } from "../rng.js";

const zRequest = z.strictObject({
  arrival: z.number().nonnegative().max(L.arrival),
  prompt: z.number().int().positive().max(L.prompt),
  output: z.number().int().positive().max(L.output),
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
    const big = r.error?.issues.find((x) => x.code === "too_big");
    if (big)
      throw new UserError(
        `${file}:${i + 1}: ${String(big.path[0])} must be at most ${String(big.maximum)} (pimc's limit), got "${line}"`,
      );
    if (!r.success || cells.some((c) => c === ""))
      throw new UserError(
        `${file}:${i + 1}: expected arrival >= 0 and positive integer prompt and output lengths, got "${line}"`,
      );
    out.push(r.data);
  });
  return out;
}

export function readRequests(file: string): Request[] {
  const text = readTextFile(file, "a request trace (CSV or JSON)");
  return text.trimStart().startsWith("[")
    ? requestsFrom(parseJson(text, file), file)
    : checked(parseCsv(text, file), file);
}

/**
 * A trace from a JSON value (a JSON file's, or a script's array: the library API), each request and
 * the whole checked; errors name `what` and the request.
 */
export function requestsFrom(raw: unknown, what: string): Request[] {
  const r = z.array(zRequest).safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new UserError(
      issue.path.length === 0
        ? `${what}: expected an array of requests {arrival, prompt, output}`
        : `${what}: request ${String(issue.path[0])}: ${issue.path.slice(1).join(".")} ${issue.message}`,
    );
  }
  return checked(r.data, what);
}

function checked(out: Request[], what: string): Request[] {
  if (out.length === 0) throw new UserError(`${what}: no requests`);
  checkTrace(out, what);
  return out;
}

/** The trace as a whole within the caps of src/limits.ts (the simulation takes a step per token). */
export function checkTrace(trace: readonly Request[], what: string): void {
  if (trace.length > L.requests)
    throw new UserError(`${what}: ${trace.length} requests, more than pimc's limit of ${L.requests}`);
  const late = trace.findIndex((r) => !(r.arrival <= L.arrival));
  if (late >= 0)
    throw new UserError(
      `${what}: request ${late} arrives at ${trace[late]!.arrival} s, past pimc's limit of ${L.arrival} s`,
    );
  const tokens = trace.reduce((s, r) => s + r.output, 0);
  if (tokens > L.total_output)
    throw new UserError(
      `${what}: ${tokens} output tokens in all, more than pimc's limit of ${L.total_output}`,
    );
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
export function parseRange(v: string, what: string, max: number): [number, number] {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi < lo || hi > max)
    throw new UserError(`${what}: expected N or N-M with 1 <= N <= M <= ${max}, got "${v}"`);
  return [lo, hi];
}
