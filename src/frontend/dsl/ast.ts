/** Syntax trees of description files; every node carries its source location. */
import type { Loc } from "../../errors.js";

/** Values of block entries (`key = value`). Numbers with a unit are already in base units. */
export type ValueNode =
  | { readonly kind: "number"; readonly value: number; readonly unit?: string; readonly loc: Loc }
  | { readonly kind: "string"; readonly value: string; readonly loc: Loc }
  | { readonly kind: "ident"; readonly name: string; readonly loc: Loc }
  | { readonly kind: "bool"; readonly value: boolean; readonly loc: Loc }
  | { readonly kind: "list"; readonly items: readonly ValueNode[]; readonly loc: Loc }
  | { readonly kind: "block"; readonly entries: readonly EntryNode[]; readonly loc: Loc };

/** `key = value`; `loc` is the key's. */
export interface EntryNode {
  readonly key: string;
  readonly value: ValueNode;
  readonly loc: Loc;
}

export type BinOp = "+" | "-" | "*" | "/";

/** Parts of a string: text, or `{expr}` interpolations. */
export type StrPart = string | Expr;

export interface NamedArg {
  readonly name: string;
  readonly value: Expr;
  readonly loc: Loc;
}

export type Expr =
  | { readonly kind: "num"; readonly value: number; readonly loc: Loc }
  | { readonly kind: "str"; readonly parts: readonly StrPart[]; readonly loc: Loc }
  | { readonly kind: "bool"; readonly value: boolean; readonly loc: Loc }
  | { readonly kind: "list"; readonly items: readonly Expr[]; readonly loc: Loc }
  | { readonly kind: "name"; readonly name: string; readonly loc: Loc }
  | {
      readonly kind: "call";
      readonly callee: string;
      readonly args: readonly Expr[];
      readonly named: readonly NamedArg[];
      readonly loc: Loc;
    }
  /** `loc` is the operator's. */
  | { readonly kind: "binary"; readonly op: BinOp; readonly lhs: Expr; readonly rhs: Expr; readonly loc: Loc }
  | { readonly kind: "neg"; readonly operand: Expr; readonly loc: Loc };

export interface Target {
  readonly name: string;
  readonly loc: Loc;
}

export type Stmt =
  | { readonly kind: "assign"; readonly targets: readonly Target[]; readonly value: Expr; readonly loc: Loc }
  | {
      readonly kind: "for";
      readonly var: Target;
      readonly lo: Expr;
      readonly hi: Expr;
      readonly body: readonly Stmt[];
      readonly loc: Loc;
    }
  | { readonly kind: "return"; readonly value: Expr; readonly loc: Loc };

export interface GraphNode {
  readonly body: readonly Stmt[];
  /** The `graph` keyword; `end` is its closing brace. */
  readonly loc: Loc;
  readonly end: Loc;
}

export type BlockKind = "model" | "system" | "workload" | "sweep";

/** A top-level block as parsed (before duplicate checks). */
export interface BlockNode {
  readonly kind: BlockKind;
  readonly name: string;
  readonly loc: Loc;
  readonly entries: readonly EntryNode[];
  /** Model blocks only; several are reported by the checker. */
  readonly graphs: readonly GraphNode[];
}

export interface FileNode {
  readonly file: string;
  readonly blocks: readonly BlockNode[];
}
