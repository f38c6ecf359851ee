/**
 * The grammar of description files (a chevrotain CstParser, built once and reused). Syntax errors
 * become one-line SourceErrors at the offending token.
 */
import type { CstNode, IParserErrorMessageProvider, IToken, TokenType } from "chevrotain";
import { CstParser, EOF } from "./chevrotain.js";
import { SourceError, type Loc } from "../../errors.js";
import { MAX_NESTING_DEPTH } from "../../guards.js";
import * as T from "./lexer.js";

/** What a token looks like in a message. */
export function describeToken(t: IToken): string {
  if (t.tokenType === EOF) return "end of file";
  const img = t.image.length > 30 ? `${t.image.slice(0, 27)}...` : t.image;
  return t.tokenType === T.StringLit ? img : `'${img}'`;
}

const label = (t: TokenType): string => (typeof t.LABEL === "string" ? t.LABEL : t.name);

function oneOf(xs: readonly string[]): string {
  const u = [...new Set(xs)];
  return u.length <= 1 ? (u[0] ?? "something else") : `${u.slice(0, -1).join(", ")} or ${u[u.length - 1]}`;
}

const RULE_WHAT: Record<string, string> = {
  value: "a value",
  primary: "an expression",
  unary: "an expression",
  arg: "an argument",
  expression: "an expression",
};

/** In-context wording of "expected X" for a mismatched token. */
function expectedIn(rule: string, expected: TokenType, previous: IToken): string {
  const e = label(expected);
  if (rule === "entry" && expected === T.Equals) return `'=' after key "${previous.image}"`;
  if (expected === T.RCurly && (rule === "block" || rule === "blockValue")) return "a key or '}'";
  if (expected === T.RCurly && (rule === "graph" || rule === "forStmt")) return "a statement or '}'";
  if (expected === EOF) return "'}' to end the interpolation";
  if (expected === T.RBracket) return "',' or ']'";
  if (expected === T.RParen && rule === "callArgs") return "',' or ')'";
  if (expected === T.Ident && rule === "block") return `a name after '${previous.image}'`;
  if (expected === T.Equals && rule === "assign") return "'=' (or ',' and more names)";
  return e;
}

const messages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage: ({ expected, actual, previous, ruleName }) =>
    `expected ${expectedIn(ruleName, expected, previous)}, found ${describeToken(actual)}`,
  buildNotAllInputParsedMessage: ({ firstRedundant }) =>
    `expected 'model', 'system', 'workload' or 'sweep', found ${describeToken(firstRedundant)}`,
  buildNoViableAltMessage: ({ expectedPathsPerAlt, actual, ruleName }) => {
    const what =
      RULE_WHAT[ruleName] ?? oneOf(expectedPathsPerAlt.flatMap((alt) => alt.map((p) => label(p[0]!))));
    return `expected ${what}, found ${describeToken(actual[0]!)}`;
  },
  buildEarlyExitMessage: ({ expectedIterationPaths, actual }) =>
    `expected ${oneOf(expectedIterationPaths.map((p) => label(p[0]!)))}, found ${describeToken(actual[0]!)}`,
};

class DescParser extends CstParser {
  constructor() {
    super(T.allTokens, { errorMessageProvider: messages, recoveryEnabled: false, maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  file = this.RULE("file", () => {
    this.MANY(() => this.SUBRULE(this.block));
  });

  block = this.RULE("block", () => {
    this.OR([
      { ALT: () => this.CONSUME(T.Model, { LABEL: "kind" }) },
      { ALT: () => this.CONSUME(T.System, { LABEL: "kind" }) },
      { ALT: () => this.CONSUME(T.Workload, { LABEL: "kind" }) },
      { ALT: () => this.CONSUME(T.Sweep, { LABEL: "kind" }) },
    ]);
    this.CONSUME(T.Ident, { LABEL: "name" });
    this.CONSUME(T.LCurly);
    this.MANY(() =>
      this.OR2([
        { ALT: () => this.SUBRULE(this.entry) },
        { ALT: () => this.SUBRULE(this.graph) },
        { ALT: () => this.SUBRULE(this.sep) },
      ]),
    );
    this.CONSUME(T.RCurly);
  });

  sep = this.RULE("sep", () => {
    this.OR([{ ALT: () => this.CONSUME(T.Semi) }, { ALT: () => this.CONSUME(T.Comma) }]);
  });

  entry = this.RULE("entry", () => {
    this.CONSUME(T.Ident, { LABEL: "key" });
    this.CONSUME(T.Equals);
    this.SUBRULE(this.value);
  });

  value = this.RULE("value", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.numberValue) },
      { ALT: () => this.CONSUME(T.StringLit) },
      { ALT: () => this.CONSUME(T.Ident) },
      { ALT: () => this.CONSUME(T.True) },
      { ALT: () => this.CONSUME(T.False) },
      { ALT: () => this.SUBRULE(this.listValue) },
      { ALT: () => this.SUBRULE(this.blockValue) },
    ]);
  });

  /**
   * `-3`, `450 MHz`, `25.6 GB/s`: a unit is a name on the same line as its number that does not start
   * the next entry (`ffn = 16 heads = 2` has no unit).
   */
  numberValue = this.RULE("numberValue", () => {
    this.OPTION(() => this.CONSUME(T.Minus));
    const n = this.CONSUME(T.NumberLit);
    this.OPTION2({
      GATE: () =>
        this.LA(1).tokenType === T.Ident &&
        this.LA(1).startLine === n.startLine &&
        this.LA(2).tokenType !== T.Equals,
      DEF: () => {
        this.CONSUME(T.Ident, { LABEL: "unit" });
        this.OPTION3(() => {
          this.CONSUME(T.Slash);
          this.CONSUME2(T.Ident, { LABEL: "per" });
        });
      },
    });
  });

  listValue = this.RULE("listValue", () => {
    this.CONSUME(T.LBracket);
    this.OPTION(() => {
      this.SUBRULE(this.value);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.value);
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
    this.CONSUME(T.RBracket);
  });

  blockValue = this.RULE("blockValue", () => {
    this.CONSUME(T.LCurly);
    this.MANY(() =>
      this.OR([{ ALT: () => this.SUBRULE(this.entry) }, { ALT: () => this.SUBRULE(this.sep) }]),
    );
    this.CONSUME(T.RCurly);
  });

  graph = this.RULE("graph", () => {
    this.CONSUME(T.Graph);
    this.CONSUME(T.LCurly);
    this.SUBRULE(this.stmts);
    this.CONSUME(T.RCurly);
  });

  stmts = this.RULE("stmts", () => {
    this.MANY(() =>
      this.OR([
        { ALT: () => this.SUBRULE(this.assign) },
        { ALT: () => this.SUBRULE(this.forStmt) },
        { ALT: () => this.SUBRULE(this.returnStmt) },
        { ALT: () => this.SUBRULE(this.sep) },
      ]),
    );
  });

  assign = this.RULE("assign", () => {
    this.CONSUME(T.Ident);
    this.MANY(() => {
      this.CONSUME(T.Comma);
      this.CONSUME2(T.Ident);
    });
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  forStmt = this.RULE("forStmt", () => {
    this.CONSUME(T.For);
    this.CONSUME(T.Ident);
    this.CONSUME(T.In);
    this.SUBRULE(this.expression, { LABEL: "lo" });
    this.CONSUME(T.DotDot);
    this.SUBRULE2(this.expression, { LABEL: "hi" });
    this.CONSUME(T.LCurly);
    this.SUBRULE(this.stmts);
    this.CONSUME(T.RCurly);
  });

  returnStmt = this.RULE("returnStmt", () => {
    this.CONSUME(T.Return);
    this.SUBRULE(this.expression);
  });

  expression = this.RULE("expression", () => {
    this.SUBRULE(this.term);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(T.Plus, { LABEL: "op" }) },
        { ALT: () => this.CONSUME(T.Minus, { LABEL: "op" }) },
      ]);
      this.SUBRULE2(this.term);
    });
  });

  term = this.RULE("term", () => {
    this.SUBRULE(this.unary);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(T.Star, { LABEL: "op" }) },
        { ALT: () => this.CONSUME(T.Slash, { LABEL: "op" }) },
      ]);
      this.SUBRULE2(this.unary);
    });
  });

  unary = this.RULE("unary", () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Minus);
          this.SUBRULE(this.unary);
        },
      },
      { ALT: () => this.SUBRULE(this.primary) },
    ]);
  });

  primary = this.RULE("primary", () => {
    this.OR([
      { ALT: () => this.CONSUME(T.NumberLit) },
      { ALT: () => this.CONSUME(T.StringLit) },
      { ALT: () => this.CONSUME(T.True) },
      { ALT: () => this.CONSUME(T.False) },
      {
        ALT: () => {
          this.CONSUME(T.Ident);
          this.OPTION(() => this.SUBRULE(this.callArgs));
        },
      },
      {
        ALT: () => {
          this.CONSUME(T.LBracket);
          this.OPTION2(() => {
            this.SUBRULE(this.expression);
            this.MANY(() => {
              this.CONSUME(T.Comma);
              this.SUBRULE2(this.expression);
            });
            this.OPTION3(() => this.CONSUME2(T.Comma));
          });
          this.CONSUME(T.RBracket);
        },
      },
      {
        ALT: () => {
          this.CONSUME(T.LParen);
          this.SUBRULE3(this.expression);
          this.CONSUME(T.RParen);
        },
      },
    ]);
  });

  /** The expression inside `{...}` of a string. */
  interpolation = this.RULE("interpolation", () => {
    this.SUBRULE(this.expression);
    this.CONSUME(EOF);
  });

  callArgs = this.RULE("callArgs", () => {
    this.CONSUME(T.LParen);
    this.OPTION(() => {
      this.SUBRULE(this.arg);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.arg);
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
    this.CONSUME(T.RParen);
  });

  arg = this.RULE("arg", () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Ident, { LABEL: "name" });
          this.CONSUME(T.Equals);
          this.SUBRULE(this.expression);
        },
      },
      { ALT: () => this.SUBRULE2(this.expression) },
    ]);
  });
}

let parser: DescParser | undefined;

/** Where the end of `text` is (for errors at end of file). */
function endLoc(text: string, file: string, base?: { line: number; col: number }): Loc {
  const lines = text.split("\n");
  const line = lines.length;
  const col = lines[line - 1]!.length + 1;
  return base
    ? { file, line: base.line + line - 1, col: line === 1 ? base.col + col - 1 : col }
    : { file, line, col };
}

/**
 * Parses tokens with `rule` ("file", or "interpolation" for `{expr}` in strings); throws the first syntax
 * error as a SourceError.
 */
export function parseTokens(
  tokens: IToken[],
  rule: "file" | "interpolation",
  text: string,
  file: string,
  base?: { line: number; col: number },
): CstNode {
  checkNesting(tokens, file);
  parser ??= new DescParser();
  parser.input = tokens;
  const cst = rule === "file" ? parser.file() : parser.interpolation();
  const err = parser.errors[0];
  if (err) {
    const t = err.token;
    const loc =
      t.tokenType === EOF || Number.isNaN(t.startOffset) ? endLoc(text, file, base) : tokLoc(t, file);
    throw new SourceError(loc, err.message);
  }
  return cst;
}

const OPEN = new Set<TokenType>([T.LParen, T.LBracket, T.LCurly]);
const CLOSE = new Set<TokenType>([T.RParen, T.RBracket, T.RCurly]);

/**
 * Rejects brackets, braces, parentheses and runs of unary minus nested deeper than MAX_NESTING_DEPTH
 * before the (recursive) parser sees them.
 */
function checkNesting(tokens: readonly IToken[], file: string): void {
  let depth = 0;
  let minus = 0;
  for (const t of tokens) {
    if (OPEN.has(t.tokenType)) depth++;
    else if (CLOSE.has(t.tokenType)) depth--;
    minus = t.tokenType === T.Minus ? minus + 1 : 0;
    if (depth + minus > MAX_NESTING_DEPTH)
      throw new SourceError(
        tokLoc(t, file),
        `expressions, lists and blocks nested deeper than ${MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH)`,
      );
  }
}

export const tokLoc = (t: IToken, file: string): Loc => ({
  file,
  line: t.startLine ?? 1,
  col: t.startColumn ?? 1,
});
