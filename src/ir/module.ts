/**
 * The IR containers: a module holds constants (weights, by name; data lives in a WeightStore),
 * states (KV caches) and functions (normally `prefill` and `decode`); a function is a list of ops in
 * SSA form. Everything here is plain immutable data, so passes can rewrite it with immer and tests can
 * compare it structurally.
 */
import type { Loc } from "../errors.js";
import type { SymDim } from "./dim.js";
import type { TensorType } from "./types.js";

/** Attribute values: numbers, strings, booleans, symbolic dims and lists of these. */
export type Attr = number | string | boolean | SymDim | readonly Attr[];
export type Attrs = Readonly<Record<string, Attr>>;

/** A named SSA value (the name has no `%`). */
export interface Value {
  readonly name: string;
  readonly type: TensorType;
}

/**
 * One operation. Operands are references: `%name` for an SSA value, `@name` for a constant or a state.
 * `loc` is where the op came from (a model description), used in error messages; it is not printed
 * and not part of structural equality.
 */
export interface Op {
  readonly opcode: string;
  readonly operands: readonly string[];
  readonly results: readonly Value[];
  readonly attrs: Attrs;
  readonly loc?: Loc;
}

export interface Func {
  readonly name: string;
  readonly params: readonly Value[];
  readonly body: readonly Op[];
  /** Returned operands (`%name`). */
  readonly results: readonly string[];
  readonly attrs: Attrs;
}

/** A weight (or other constant). Its data, if any, is in the model's WeightStore under `name`. */
export interface ConstDecl {
  readonly name: string;
  readonly type: TensorType;
  readonly attrs: Attrs;
}

/** Mutable state that persists across calls: the KV cache. Its shape uses `T` for the stored length. */
export interface StateDecl {
  readonly name: string;
  readonly type: TensorType;
  readonly attrs: Attrs;
}

export interface Module {
  readonly name: string;
  readonly attrs: Attrs;
  readonly consts: readonly ConstDecl[];
  readonly states: readonly StateDecl[];
  readonly funcs: readonly Func[];
}

export const ssa = (name: string): string => `%${name}`;
export const global = (name: string): string => `@${name}`;
export const isSsa = (ref: string): boolean => ref.startsWith("%");
export const isGlobal = (ref: string): boolean => ref.startsWith("@");
export const refName = (ref: string): string => ref.slice(1);

export function findFunc(m: Module, name: string): Func | undefined {
  return m.funcs.find((f) => f.name === name);
}
