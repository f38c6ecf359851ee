/**
 * The commands shown in README.md and docs/*.md, as the docs test (test/docs.test.ts) and `npm run
 * bench` run them.
 *
 * Convention for fenced blocks (every block has a language):
 * - ```sh: every line is a command: `pimc ...` or `npx pimc ...` (run as pimc), or `npm start` (its
 *   pimc equivalent from package.json), `npm ci`, `npm test`, `npm run bench` (not run: they are the
 *   install, the suite itself and the benchmarks); `&&` joins commands; `# ...` ends a line.
 * - ```console: lines starting with `$ ` are commands as above, the others their output (not run).
 * - ```text (outputs, listings, IR), ```pim (the description language) and others: never run; a line
 *   there that looks like a command is an error (tag the block `sh` or `console`).
 * - `[...]` in a command is optional: it is left out when the command runs (`--seq S` style
 *   placeholders are not allowed: write a value).
 * - An HTML comment on the line before the fence changes how the block runs:
 *   `<!-- docs-test: slow -->` moves it from the suite to `npm run bench`;
 *   `<!-- docs-test: exit N -->` expects exit code N instead of 0.
 * Output options (`-o`, `--trace`, `--plot`, `--dump-ir`, `--emit`; sweeps' `--db`, `--export`,
 * `--slurm`) are redirected to a temporary folder, and a
 * later command of the same document naming such a file reads it from there.
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";

export interface DocCommand {
  doc: string;
  /** 1-based line of the command in the document. */
  line: number;
  /** The command as written (without `$ `, `npx ` and comments). */
  text: string;
  /** The pimc arguments to run, or null for npm commands that are not run. */
  args: string[] | null;
  slow: boolean;
  exit: number;
}

export interface DocBlock {
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  marker: string | undefined;
  lines: { line: number; text: string }[];
}

/** README.md and every docs/*.md, sorted. */
export function docFiles(root = "."): string[] {
  return [
    "README.md",
    ...readdirSync(join(root, "docs"))
      .filter((f) => f.endsWith(".md"))
      .sort()
      .map((f) => `docs/${f}`),
  ];
}

/** The fenced blocks of a markdown text, with the marker comment on the line before each. */
export function fencedBlocks(doc: string, text: string): DocBlock[] {
  const lines = text.split("\n");
  const blocks: DocBlock[] = [];
  let open: DocBlock | undefined;
  lines.forEach((l, i) => {
    const fence = /^```(\S*)\s*$/.exec(l);
    if (open) {
      if (l.startsWith("```")) {
        blocks.push(open);
        open = undefined;
      } else open.lines.push({ line: i + 1, text: l });
    } else if (fence) {
      const marker = /^<!--\s*docs-test:\s*(.*?)\s*-->\s*$/.exec(lines[i - 1] ?? "")?.[1];
      open = { doc, line: i + 1, lang: fence[1]!, marker, lines: [] };
    }
  });
  if (open) throw new Error(`${doc}:${open.line}: unclosed code block`);
  return blocks;
}

/** A line that looks like a command (for blocks that must not hold any). */
export const looksLikeCommand = (l: string): boolean => /^\s*(\$ )?(npx )?(pimc|npm|node) /.test(l);

/** Splits a command line into words (single and double quotes group, no expansions). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

const NOT_RUN = new Set(["npm ci", "npm test", "npm run bench", "npm install"]);

/** The pimc arguments of `npm start` (package.json's script runs `node dist/src/cli/bin.js ...`). */
export function npmStartArgs(root = "."): string[] {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: { start: string } };
  const [, rest] = pkg.scripts.start.split("dist/src/cli/bin.js ");
  if (rest === undefined) throw new Error("package.json: scripts.start does not run dist/src/cli/bin.js");
  return shellWords(rest);
}

/** One command as written (after `$ ` and `npx `) to its pimc arguments, or an error message. */
export function commandArgs(text: string, root = "."): string[] | null | string {
  if (/\[[^\]]*$|^[^[]*\]/.test(text)) return "unbalanced [ ]";
  const stripped = text.replace(/\[[^\]]*\]/g, " ").trim();
  if (NOT_RUN.has(stripped)) return null;
  if (stripped === "npm start") return npmStartArgs(root);
  const words = shellWords(stripped);
  if (words[0] !== "pimc") return `not a pimc or npm command: ${text}`;
  return words.slice(1);
}

/** Every command of the docs' sh and console blocks. Throws on a malformed command line. */
export function docCommands(root = "."): DocCommand[] {
  const out: DocCommand[] = [];
  for (const doc of docFiles(root)) {
    for (const b of fencedBlocks(doc, readFileSync(join(root, doc), "utf8"))) {
      if (b.lang !== "sh" && b.lang !== "console") continue;
      const slow = b.marker === "slow";
      const exitMatch = /^exit (\d+)$/.exec(b.marker ?? "");
      if (b.marker !== undefined && !slow && !exitMatch)
        throw new Error(`${doc}:${b.line - 1}: unknown docs-test marker "${b.marker}"`);
      for (const { line, text } of b.lines) {
        let t = text;
        if (b.lang === "console") {
          if (!t.startsWith("$ ")) continue;
          t = t.slice(2);
        }
        t = t.replace(/\s#.*$/, "").trim();
        if (t === "" || t.startsWith("#")) continue;
        for (const part of t.split("&&")) {
          const cmd = part.trim().replace(/^npx /, "");
          const args = commandArgs(cmd, root);
          if (typeof args === "string") throw new Error(`${doc}:${line}: ${args}`);
          out.push({ doc, line, text: cmd, args, slow, exit: exitMatch ? Number(exitMatch[1]) : 0 });
        }
      }
    }
  }
  return out;
}

/** Options whose value is a file the command writes. */
export const OUTPUT_OPTIONS = new Set([
  "-o",
  "--output",
  "--trace",
  "--plot",
  "--dump-ir",
  "--emit",
  "--db",
  "--export",
  "--slurm",
]);

/**
 * Redirects output files into `dir`: the values of output options, and arguments naming a file an
 * earlier command wrote (`written`, shared by the commands of one document, is updated).
 */
export function redirectOutputs(args: string[], dir: string, written: Set<string>): string[] {
  return args.map((a, i) => {
    if (i > 0 && OUTPUT_OPTIONS.has(args[i - 1]!)) {
      written.add(a);
      return join(dir, basename(a));
    }
    return written.has(a) ? join(dir, basename(a)) : a;
  });
}
