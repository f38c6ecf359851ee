/**
 * Golden IR files: every `test/golden/*.pimir` must parse, verify, and print back byte-for-byte (so
 * golden files are in canonical printed form). `UPDATE_GOLDEN=1 npx vitest run test/golden.test.ts`
 * rewrites them from the parsed module instead of comparing.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { allOps } from "../src/ir/registry.js";
import { verifyModule } from "../src/ir/verifier.js";

const DIR = fileURLToPath(new URL("golden", import.meta.url));
const update = process.env.UPDATE_GOLDEN === "1";
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".pimir"))
  .sort();

describe("golden IR", () => {
  test("there are golden files", () => expect(files).toContain("ops.pimir"));

  test("ops.pimir uses every registered op", () => {
    const m = parseModule(readFileSync(join(DIR, "ops.pimir"), "utf8"));
    const used = new Set(m.funcs.flatMap((f) => f.body.map((op) => op.opcode)));
    expect(
      allOps()
        .filter((d) => !used.has(d.name))
        .map((d) => d.name),
    ).toEqual([]);
  });

  for (const f of files)
    test(f, () => {
      const path = join(DIR, f);
      const text = readFileSync(path, "utf8");
      const m = parseModule(text, `test/golden/${f}`);
      expect(verifyModule(m)).toEqual([]);
      const printed = printModule(m);
      if (update) {
        if (printed !== text) writeFileSync(path, printed);
      } else expect(printed).toBe(text);
    });
});
