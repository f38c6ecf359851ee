/**
 * Errors caused by the user's input (files, options). The CLI prints `message` on one line and exits
 * with code 2; any other exception is a bug in pimc.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** A source position, printed as `file:line:col`. */
export interface Loc {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export function fmtLoc(loc: Loc | undefined): string {
  return loc ? `${loc.file}:${loc.line}:${loc.col}` : "";
}

/** A UserError that points at a place in a source file. */
export class SourceError extends UserError {
  constructor(
    readonly loc: Loc | undefined,
    readonly detail: string,
  ) {
    super(loc ? `${fmtLoc(loc)}: ${detail}` : detail);
    this.name = "SourceError";
  }
}

/** Edit distance (insertions, deletions, substitutions) between two short strings. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** ` (did you mean 'x'?)` for the closest candidate within a few edits, else "". */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best === undefined ? "" : ` (did you mean '${best}'?)`;
}
