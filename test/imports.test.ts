/**
 * Module import cycles in src/, targets/ and passes/ (type-only imports aside). A cycle lets a module
 * read another's export before it is initialised (the HBM-PIM target's kernels were once undefined
 * when a test imported its kernel runner first), so none may appear but the one known below, whose
 * modules use each other's exports only inside functions.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const KNOWN = [["targets/upmem/lower.ts", "targets/upmem/passes/lower.ts", "targets/upmem/passes/plan.ts"]];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith(".ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

/** Each module's value imports (relative, not `import type`, not `{ type A, type B }`). */
function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of ["src", "targets", "passes"].flatMap(files)) {
    const deps: string[] = [];
    for (const m of readFileSync(f, "utf8").matchAll(
      /^\s*(?:import|export)\s+(?!type\b)([^;]*?)\s+from\s+"(\.[^"]+)"/gms,
    )) {
      const what = m[1]!.trim();
      const names = /^\{[^}]*\}$/s.test(what)
        ? what
            .replace(/[{}\s]/g, "")
            .split(",")
            .filter(Boolean)
        : [];
      if (names.length > 0 && names.every((x) => x.startsWith("type"))) continue;
      const to = relative(process.cwd(), resolve(dirname(f), m[2]!.replace(/\.js$/, ".ts")));
      if (existsSync(to)) deps.push(to);
    }
    g.set(f, deps);
  }
  return g;
}

/** The strongly connected components of more than one module (Tarjan). */
function cycles(g: Map<string, string[]>): string[][] {
  let n = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, n);
    low.set(v, n++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

describe("module imports", () => {
  it("form no cycle but the known one", () => {
    expect(cycles(graph())).toEqual(KNOWN);
  });
});
