/**
 * Docs are tests: every command README.md and docs/*.md show runs (bench/doc-commands.ts states the
 * convention), every quoted figure next to an emulated result is checked against the command's
 * --json output (test/docs-figures.ts), and no doc cites a file outside the repository.
 *
 * Commands in blocks marked `<!-- docs-test: slow -->` and figures marked slow run only with
 * PIMC_DOCS_SLOW=1, which `npm run bench` sets.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { describe, expect, test } from "vitest";
import {
  docCommands,
  docFiles,
  fencedBlocks,
  looksLikeCommand,
  OUTPUT_OPTIONS,
  redirectOutputs,
  type DocCommand,
} from "../bench/doc-commands.js";
import { FIGURES, quotedNumbers, type Figure } from "./docs-figures.js";
import { pimc, tempDir } from "./util.js";

const read = (doc: string) => readFileSync(doc, "utf8");
const SLOW = process.env.PIMC_DOCS_SLOW === "1";
/** Slow commands (an exhaustive tuning, emulated ablations) may take minutes each. */
const timeout = SLOW ? 1_800_000 : undefined;

describe("the docs' code blocks follow the convention", () => {
  for (const doc of docFiles())
    test(doc, () => {
      for (const b of fencedBlocks(doc, read(doc))) {
        expect(b.lang, `${doc}:${b.line}: a code block without a language (sh, console, text, pim)`).not.toBe(
          "",
        );
        if (b.lang === "sh" || b.lang === "console") continue;
        for (const l of b.lines)
          expect(looksLikeCommand(l.text), `${doc}:${l.line}: a command in a \`\`\`${b.lang} block`).toBe(
            false,
          );
      }
    });

  test("every command line parses; slow ones are few", () => {
    const cmds = docCommands();
    expect(cmds.length).toBeGreaterThan(30);
    expect(cmds.filter((c) => c.slow).length).toBeLessThan(cmds.length / 2);
  });
});

/**
 * One run per distinct command with --json, shared by the figures and by the command checks (a doc
 * command that a figure also runs is run once, with --json).
 */
const runs = new Map<string, Promise<{ code: number; stdout: string; stderr: string }>>();
const once = (key: string, args: string[]) => {
  let p = runs.get(key);
  if (!p) {
    p = Promise.resolve(pimc(...args));
    runs.set(key, p);
  }
  return p;
};
const withJson = (cmd: string) => {
  const args = cmd.split(" ");
  return once(`json: ${cmd}`, args.includes("--json") ? args : [...args, "--json"]);
};
/** The same command shown in two docs runs once (unless it writes a file). */
const runOnce = (args: string[]) =>
  args.some((a) => OUTPUT_OPTIONS.has(a)) ? Promise.resolve(pimc(...args)) : once(args.join(" "), args);
const figures = FIGURES.filter((f) => SLOW || f.slow !== true);
const figureCmds = new Set(figures.flatMap((f) => f.cmds));

describe("every command the docs show runs", () => {
  const dir = tempDir("pimc-docs-");
  const byDoc = new Map<string, DocCommand[]>();
  for (const c of docCommands()) byDoc.set(c.doc, [...(byDoc.get(c.doc) ?? []), c]);
  // One test per command, in document order (a later command may read a file an earlier one wrote).
  for (const [doc, cmds] of byDoc) {
    const written = new Set<string>();
    for (const c of cmds.filter((c) => c.args !== null && (SLOW || !c.slow)))
      test(
        `${doc}:${c.line}: pimc ${c.args!.join(" ")}`,
        async () => {
          const args = redirectOutputs(c.args!, dir, written);
          const key = args.join(" ");
          const r = await (figureCmds.has(key) ? withJson(key) : runOnce(args));
          expect(r.code, `${c.doc}:${c.line}: pimc ${key}\n${r.stderr}`).toBe(c.exit);
        },
        timeout,
      );
  }
});

describe("figures quoted in the docs match the emulator", () => {
  const json = async (cmd: string): Promise<unknown> => {
    const r = await withJson(cmd);
    // `verify` exits 1 when an error or a greedy token is off its tolerance: it still reports them.
    const ok = cmd.startsWith("verify ") ? [0, 1] : [0];
    expect(ok, `pimc ${cmd} --json\n${r.stderr}`).toContain(r.code);
    return JSON.parse(r.stdout) as unknown;
  };
  const check = async (f: Figure) => {
    // Line breaks and runs of spaces (table alignment) do not matter.
    const flat = (t: string) => t.replace(/\s+/g, " ");
    expect(flat(read(f.doc)), `${f.doc} no longer quotes: ${f.quote}`).toContain(flat(f.quote));
    const quoted = quotedNumbers(f.quote);
    expect(quoted.length, `${f.quote}: ${quoted.length} numbers, ${f.values.length} checks`).toBe(
      f.values.length,
    );
    const js: unknown[] = [];
    for (const c of f.cmds) js.push(await json(c));
    f.values.forEach((get, i) => {
      if (get === null) return;
      const q = quoted[i]!;
      const actual = get(js);
      expect(
        Math.abs(actual - q.value),
        `${f.doc}: "${f.quote}": number ${i + 1} is ${q.text}, the emulator gives ${actual} (pimc ${f.cmds.join(" ; pimc ")})`,
      ).toBeLessThanOrEqual(q.tolerance);
    });
  };
  for (const f of figures) test(`${f.doc}: ${f.quote}`, () => check(f), timeout);
});

describe("the docs cite only files in the repository", () => {
  test("and so do the examples", () => {
    const examples = readdirSync("examples", { recursive: true, encoding: "utf8" }).filter((f) =>
      f.endsWith(".pim"),
    );
    expect(examples.length).toBeGreaterThan(20);
    for (const f of examples) {
      const text = read(join("examples", f));
      for (const bad of ["../shared", "REFERENCE.md"])
        expect(text.includes(bad), `examples/${f} cites ${bad}`).toBe(false);
    }
  });

  for (const doc of docFiles())
    test(doc, () => {
      const text = read(doc);
      for (const bad of ["../shared", "REFERENCE.md", "/work/", "upmem-facts.md"])
        expect(text.includes(bad), `${doc} cites ${bad}`).toBe(false);
      // Relative links resolve (anchors are not checked).
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split("#")[0]!;
        if (target === "" || /^[a-z]+:/.test(target)) continue;
        const path = normalize(join(dirname(doc), target));
        expect(path.startsWith(".."), `${doc}: link outside the repository: ${m[1]}`).toBe(false);
        expect(existsSync(path), `${doc}: broken link ${m[1]}`).toBe(true);
      }
      // Paths in backquotes that look like repository files exist.
      for (const m of text.matchAll(/`((?:src|test|targets|passes|examples|bench|docs)\/[\w./-]+\.\w+)`/g))
        expect(existsSync(m[1]!), `${doc}: names a missing file ${m[1]}`).toBe(true);
    });
});
