/**
 * Tables for the terminal: cli-table3 with a header rule only (no line between rows), fitted to the
 * width of the terminal. A table wider than the terminal first hides its low-value columns (named by
 * the caller, least valuable first; a note under the table says which), then wraps its text columns
 * (the left-aligned ones) at word boundaries. The width is `COLUMNS` when set, else the terminal's
 * when stdout is a TTY; otherwise (a pipe, a file, a test) tables keep their full width, and
 * `--wide` (`setWide`) keeps it everywhere.
 */
import Table from "cli-table3";

type Align = "left" | "right" | "center";

export interface TableOptions {
  /** Heads of the columns that may be hidden when the table does not fit, least valuable first. */
  readonly drop?: readonly string[];
}

let wide = false;

/** `--wide`: every table at its full width, whatever the terminal's. */
export function setWide(on: boolean): void {
  wide = on;
}

/** Columns a table may take: `COLUMNS` when set, else the TTY's width; Infinity when not a terminal. */
export function tableWidth(
  stream: { readonly isTTY?: boolean; readonly columns?: number } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): number {
  if (wide) return Infinity;
  const c = env.COLUMNS?.trim();
  if (c !== undefined && /^\d+$/.test(c) && Number(c) > 0) return Number(c);
  if (stream.isTTY === true && stream.columns !== undefined && stream.columns > 0) return stream.columns;
  return Infinity;
}

// cli-table3's padding: one space each side of a cell; one border character between and around cells.
const PAD = 2;
/** Narrowest a wrapped column gets (text characters). */
const MIN_WRAP = 10;

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const textWidth = (s: string): number =>
  Math.max(0, ...s.split("\n").map((l) => [...l.replace(ANSI, "")].length));
const longestWord = (s: string): number => Math.max(0, ...s.split(/\s+/).map(textWidth));

export class FitTable {
  private readonly rows: string[][] = [];

  constructor(
    readonly head: readonly string[],
    readonly aligns: readonly Align[] | undefined,
    readonly options: TableOptions = {},
  ) {}

  /** Adds rows (cli-table3's `push`). */
  push(...rows: readonly string[][]): number {
    this.rows.push(...rows.map((r) => [...r]));
    return this.rows.length;
  }

  /** The table fitted to `tableWidth()`. */
  toString(): string {
    return this.render(tableWidth());
  }

  /** The table fitted to `width` columns (Infinity: full width). */
  render(width: number): string {
    const n = Math.max(this.head.length, ...this.rows.map((r) => r.length));
    const cell = (r: readonly string[], i: number): string => r[i] ?? "";
    const natural = (i: number): number =>
      PAD + Math.max(textWidth(cell(this.head, i)), ...this.rows.map((r) => textWidth(cell(r, i))));
    const total = (cols: readonly number[], w: (i: number) => number): number =>
      cols.reduce((s, i) => s + w(i), cols.length + 1);
    let cols = [...Array(n).keys()];
    if (total(cols, natural) <= width) return this.draw(cols);
    // 1. Hide low-value columns until the rest fits.
    const hidden: string[] = [];
    for (const name of this.options.drop ?? []) {
      if (total(cols, natural) <= width) break;
      const i = cols.find((c) => this.head[c] === name);
      if (i === undefined) continue;
      cols = cols.filter((c) => c !== i);
      hidden.push(name);
    }
    const note =
      hidden.length > 0
        ? `\n(not shown to fit ${width} columns: ${hidden.join(", ")}; --wide shows them)`
        : "";
    if (total(cols, natural) <= width) return this.draw(cols) + note;
    // 2. Wrap the text columns, the widest first, down to their longest word (at least MIN_WRAP).
    const widths = new Map(cols.map((c) => [c, natural(c)]));
    const floor = new Map(
      cols.map((c) => {
        const words = Math.max(
          longestWord(cell(this.head, c)),
          ...this.rows.map((r) => longestWord(cell(r, c))),
        );
        return [c, PAD + Math.max(MIN_WRAP, words)];
      }),
    );
    const wrappable = cols.filter((c) => (this.aligns?.[c] ?? "left") === "left");
    let excess = total(cols, (c) => widths.get(c)!) - width;
    while (excess > 0) {
      const c = wrappable
        .filter((x) => widths.get(x)! > floor.get(x)!)
        .sort((a, b) => widths.get(b)! - widths.get(a)!)[0];
      if (c === undefined) break; // as narrow as it gets: the terminal wraps the rest
      widths.set(c, widths.get(c)! - 1);
      excess--;
    }
    return (
      this.draw(
        cols,
        cols.map((c) => widths.get(c)!),
      ) + note
    );
  }

  private draw(cols: readonly number[], colWidths?: number[]): string {
    const t = new Table({
      head: cols.map((c) => this.head[c] ?? ""),
      ...(this.aligns ? { colAligns: cols.map((c) => this.aligns![c] ?? "left") } : {}),
      ...(colWidths ? { colWidths, wordWrap: true, wrapOnWordBoundary: true } : {}),
      style: { head: [], border: [], compact: true },
    });
    t.push(...this.rows.map((r) => cols.map((c) => r[c] ?? "")));
    return t.toString();
  }
}

export function table(
  head: readonly string[],
  colAligns?: readonly Align[],
  options: TableOptions = {},
): FitTable {
  return new FitTable(head, colAligns, options);
}
