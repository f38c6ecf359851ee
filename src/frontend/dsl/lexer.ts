/** Tokens of the description language (docs/language.md, "Lexical rules"). */
import type { IToken, Lexer as LexerT, TokenType } from "chevrotain";
import { createToken, Lexer } from "./chevrotain.js";
import { SourceError, type Loc } from "../../errors.js";

const WhiteSpace = createToken({
  name: "WhiteSpace",
  pattern: /[ \t\r\n]+/,
  group: Lexer.SKIPPED,
  line_breaks: true,
});
const LineComment = createToken({ name: "LineComment", pattern: /\/\/[^\n]*/, group: Lexer.SKIPPED });
const BlockComment = createToken({
  name: "BlockComment",
  pattern: /\/\*[\s\S]*?\*\//,
  group: Lexer.SKIPPED,
  line_breaks: true,
});

/** `/*` without its end (a complete comment matches BlockComment first). */
const OpenComment = createToken({ name: "OpenComment", pattern: /\/\*/ });

export const Ident = createToken({ name: "Ident", pattern: /[A-Za-z_][A-Za-z0-9_]*/, label: "a name" });
const keyword = (word: string): TokenType =>
  createToken({
    name: word[0]!.toUpperCase() + word.slice(1),
    pattern: word,
    longer_alt: Ident,
    label: `'${word}'`,
  });
export const Model = keyword("model");
export const System = keyword("system");
export const Workload = keyword("workload");
export const Sweep = keyword("sweep");
export const Graph = keyword("graph");
export const For = keyword("for");
export const In = keyword("in");
export const Return = keyword("return");
export const True = keyword("true");
export const False = keyword("false");

export const NumberLit = createToken({
  name: "NumberLit",
  pattern: /\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/,
  label: "a number",
});
export const StringLit = createToken({
  name: "StringLit",
  // JSON strings: no raw control characters (NUL, tab, newline, ...); they are written as escapes.
  // eslint-disable-next-line no-control-regex
  pattern: /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/,
  label: "a string",
});

const punct = (name: string, pattern: string): TokenType =>
  createToken({ name, pattern, label: `'${pattern}'` });
export const LCurly = punct("LCurly", "{");
export const RCurly = punct("RCurly", "}");
export const LParen = punct("LParen", "(");
export const RParen = punct("RParen", ")");
export const LBracket = punct("LBracket", "[");
export const RBracket = punct("RBracket", "]");
export const Equals = punct("Equals", "=");
export const Comma = punct("Comma", ",");
export const Semi = punct("Semi", ";");
export const DotDot = punct("DotDot", "..");
export const Plus = punct("Plus", "+");
export const Minus = punct("Minus", "-");
export const Star = punct("Star", "*");
export const Slash = punct("Slash", "/");

export const allTokens: TokenType[] = [
  WhiteSpace,
  LineComment,
  BlockComment,
  OpenComment,
  Model,
  System,
  Workload,
  Sweep,
  Graph,
  For,
  In,
  Return,
  True,
  False,
  Ident,
  NumberLit,
  StringLit,
  LCurly,
  RCurly,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Equals,
  Comma,
  Semi,
  DotDot,
  Plus,
  Minus,
  Star,
  Slash,
];

let lexer: LexerT | undefined;

/** A short description of what went wrong at `offset` (the lexer only says which character). */
function lexMessage(text: string, offset: number): string {
  const c = text[offset]!;
  if (c === '"') {
    for (let i = offset + 1; i < text.length && text[i] !== "\n"; i++) {
      if (text[i] === "\\") i++;
      else if (text[i] === '"') return "invalid escape in string";
      else if (text.charCodeAt(i) < 32)
        return `control character ${JSON.stringify(text[i])} in string (write it as an escape)`;
    }
    return "unterminated string";
  }
  return `unexpected character ${JSON.stringify(c).replace(/^"|"$/g, "'")}`;
}

/**
 * Tokenises `text`. `base` shifts positions (for expressions inside strings); the first lexer error
 * becomes a SourceError.
 */
export function tokenize(text: string, file: string, base?: { line: number; col: number }): IToken[] {
  lexer ??= new Lexer(allTokens, { positionTracking: "full" });
  const r = lexer.tokenize(text);
  const shift = (line: number, col: number): Loc =>
    base
      ? { file, line: base.line + line - 1, col: line === 1 ? base.col + col - 1 : col }
      : { file, line, col };
  const open = r.tokens.find((t) => t.tokenType === OpenComment);
  if (open) throw new SourceError(shift(open.startLine!, open.startColumn!), "unterminated block comment");
  const err = r.errors[0];
  if (err) throw new SourceError(shift(err.line ?? 1, err.column ?? 1), lexMessage(text, err.offset));
  if (base)
    for (const t of r.tokens) {
      const l = shift(t.startLine!, t.startColumn!);
      t.startLine = l.line;
      t.startColumn = l.col;
    }
  return r.tokens;
}
