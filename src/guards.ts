/**
 * Guards of the parsers and decoders: hard caps on nesting depth, dimension terms and graph sizes,
 * and the helpers that enforce them where input enters (bounded JSON, depth-counting recursive
 * descent, one-line messages). Each cap is named in the message of the error that reports it, so a user can
 * find it here. Caps on the sizes a model, workload or system declares, and on file sizes, live in
 * src/limits.ts.
 */
import { UserError } from "./errors.js";

/**
 * Deepest nesting of any parsed structure: JSON values (safetensors headers, config.json, reference
 * logits, `.pimx` manifests, serve traces), IR attribute lists and dimension expressions, description
 * file expressions, lists and blocks, and `.pimx` kernel loops and integer expressions. Real inputs
 * nest fewer than 16 levels; the cap keeps recursive code far from the stack limit.
 */
export const MAX_NESTING_DEPTH = 256;

/**
 * Terms of a symbolic dimension, and symbols in one term: real dims have a handful (`B*S`, `P+S`);
 * multiplying sums read from a file, such as `(a+b+c+d)*(a+b+c+d)*...`, grows them combinatorially.
 */
export const MAX_DIM_TERMS = 64;

/**
 * Iterations of one `for` loop of a custom model graph (description files): a loop over the layers of
 * the deepest published decoders runs about 100 times. A bound written as 4294967296 is an error,
 * not hours of graph building.
 */
export const MAX_LOOP_TRIPS = 1 << 12;

/**
 * Statements a custom model graph may run, loop bodies counted once per iteration (nested loops
 * multiply): 1,000 layers of 30 statements run 30,000. Building the IR costs about 0.1 ms per
 * statement, so the cap bounds a graph's build to a few seconds.
 */
export const MAX_GRAPH_STEPS = 1 << 16;

/** Longest string quoted in a message. */
const MAX_QUOTE = 60;

/** `s` on one line (control characters escaped) and at most `max` characters long. */
export function oneLine(s: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => JSON.stringify(c).slice(1, -1));
  return t.length > max ? `${t.slice(0, max - 3)}...` : t;
}

/** A short quotation of user text for messages: JSON-quoted, on one line, cut to a few words. */
export function quote(s: string): string {
  return oneLine(JSON.stringify(s), MAX_QUOTE);
}

/** The nesting depth of a JSON value (0 for a scalar), computed without recursion. */
export function jsonDepth(v: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== "object" || x === null) continue;
    const here = d + 1;
    if (here > max) max = here;
    if (max > MAX_NESTING_DEPTH) return max; // deep enough to reject: stop early
    for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, here]);
  }
  return max;
}

/**
 * Parses JSON from a user file: syntax errors and nesting deeper than MAX_NESTING_DEPTH are one-line
 * UserErrors `where: ...` (V8's parser is iterative; the cap protects the recursive code that walks
 * the result: zod, printers, validators).
 */
export function parseJson(text: string, where: string): unknown {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${where}: not valid JSON (${jsonSyntaxMessage(e, text)})`);
  }
  if (jsonDepth(v) > MAX_NESTING_DEPTH)
    throw new UserError(`${where}: JSON nested deeper than ${MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH)`);
  return v;
}

/** JSON.parse's message on one line, with the position as line and column. */
export function jsonSyntaxMessage(e: unknown, text: string): string {
  // V8 quotes the text around the error, newlines included: drop the quotation.
  const msg = (e as Error).message.replace(/, "[\s\S]*" is not valid JSON$/, "");
  return oneLine(
    msg.replace(/at position (\d+)(?: \(line \d+ column \d+\))?/, (_, p: string) => {
      const before = text.slice(0, Number(p));
      const line = before.split("\n").length;
      return `at line ${line} column ${before.length - before.lastIndexOf("\n")}`;
    }),
  );
}

/**
 * Counts nesting in a recursive-descent parser: `enter()` before descending (throws `fail(message)`
 * past MAX_NESTING_DEPTH), `leave()` after.
 */
export class DepthGuard {
  private depth = 0;
  constructor(private readonly fail: (message: string) => never) {}

  enter(what: string): void {
    if (++this.depth > MAX_NESTING_DEPTH)
      this.fail(`${what} nested deeper than ${MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH)`);
  }

  leave(): void {
    this.depth--;
  }

  /** Runs `f` one level deeper. */
  nest<T>(what: string, f: () => T): T {
    this.enter(what);
    try {
      return f();
    } finally {
      this.leave();
    }
  }
}
