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
