/** Pass instruments: print IR before/after passes, dump every stage to files, time passes, verify. */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Module } from "../ir/module.js";
import { printModule } from "../ir/printer.js";
import { verifyModule } from "../ir/verifier.js";
import { writeFileAtomic } from "../fsutil.js";
import type { Instrument, Pass } from "./pass.js";

export type Sink = (text: string) => void;

const banner = (when: string, pass: string): string => `// ----- IR ${when} ${pass} -----\n`;

/** `--print-before NAME` (repeatable). */
export function printBefore(names: ReadonlySet<string>, out: Sink): Instrument {
  return { before: (p, m) => names.has(p.name) && out(banner("before", p.name) + printModule(m)) };
}

/** `--print-after NAME` (repeatable) and `--print-after-all` (names undefined). */
export function printAfter(names: ReadonlySet<string> | undefined, out: Sink): Instrument {
  return { after: (p, m) => (!names || names.has(p.name)) && out(banner("after", p.name) + printModule(m)) };
}

/** `--dump-ir DIR`: `000_input.pimir`, then `NNN_<pass>.pimir` after every pass. */
export function dumpIr(dir: string): Instrument {
  let n = 0;
  const write = (name: string, m: Module): void => {
    writeFileAtomic(join(dir, `${String(n++).padStart(3, "0")}_${name}.pimir`), printModule(m));
  };
  return {
    start: (m) => {
      mkdirSync(dir, { recursive: true }); // its parent exists (checkOutputPath)
      write("input", m);
    },
    after: (p, m) => write(p.name, m),
  };
}

/** `--time-passes`: a table of the time spent in each pass, printed at the end. */
export function timePasses(out: Sink): Instrument {
  const rows: [string, number][] = [];
  return {
    after: (p, _m, _c, ms) => void rows.push([p.name, ms]),
    finish: () => {
      const total = rows.reduce((s, r) => s + r[1], 0);
      const w = Math.max(5, ...rows.map((r) => r[0].length));
      const line = (name: string, ms: number): string =>
        `${name.padEnd(w)}  ${ms.toFixed(2).padStart(9)} ms  ${total > 0 ? ((100 * ms) / total).toFixed(1).padStart(5) : "  0.0"} %`;
      out(
        `// ----- pass timing -----\n${rows.map(([n, ms]) => line(n, ms)).join("\n")}\n${line("total", total)}\n`,
      );
    },
  };
}

/** Raised when a pass leaves an invalid module: a bug in that pass. */
export class PassVerificationError extends Error {}

/** `--verify-each`: the IR verifier after every pass. */
export function verifyEach(): Instrument {
  const check = (m: Module, where: string): void => {
    const problems = verifyModule(m);
    if (problems.length > 0)
      throw new PassVerificationError(
        `IR verification failed ${where}: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}`,
      );
  };
  return { start: (m) => check(m, "on the input"), after: (p: Pass, m) => check(m, `after pass ${p.name}`) };
}
