/**
 * Builders for modules and functions. Every op added goes through the registry's attribute schema and
 * shape rule, so a graph that builds is well-typed; errors carry the op's source location.
 */
import { SourceError, UserError, type Loc } from "../errors.js";
import type { Attrs, ConstDecl, Func, Module, Op, StateDecl, Value } from "./module.js";
import { checkOp, getOp } from "./registry.js";
import { typeEq, typeToString, type TensorType } from "./types.js";
import "./ops/index.js";

/** A value usable as an operand: its reference (`%x` or `@w`) and its type. */
export interface Val {
  readonly ref: string;
  readonly type: TensorType;
}

export class ModuleBuilder {
  private readonly consts = new Map<string, ConstDecl>();
  private readonly states = new Map<string, StateDecl>();
  private readonly funcs: Func[] = [];

  constructor(
    readonly name: string,
    readonly attrs: Attrs = {},
  ) {}

  /** Declares (or re-uses) a constant; re-declaring with another type is an error. */
  constant(name: string, type: TensorType, attrs: Attrs = {}, loc?: Loc): Val {
    const prev = this.consts.get(name);
    if (prev && !typeEq(prev.type, type))
      throw new SourceError(
        loc,
        `constant @${name} declared as ${typeToString(type)} but earlier as ${typeToString(prev.type)}`,
      );
    if (!prev) this.consts.set(name, { name, type, attrs });
    return { ref: `@${name}`, type };
  }

  state(name: string, type: TensorType, attrs: Attrs = {}): Val {
    if (!this.states.has(name)) this.states.set(name, { name, type, attrs });
    return { ref: `@${name}`, type: this.states.get(name)!.type };
  }

  hasConst(name: string): boolean {
    return this.consts.has(name);
  }

  func(name: string, attrs: Attrs = {}): FuncBuilder {
    if (this.funcs.some((f) => f.name === name)) throw new UserError(`function @${name} defined twice`);
    return new FuncBuilder(name, attrs, (f) => this.funcs.push(f));
  }

  build(): Module {
    return {
      name: this.name,
      attrs: this.attrs,
      consts: [...this.consts.values()],
      states: [...this.states.values()],
      funcs: [...this.funcs],
    };
  }
}

export class FuncBuilder {
  private readonly params: Value[] = [];
  private readonly body: Op[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(
    readonly name: string,
    readonly attrs: Attrs,
    private readonly finish: (f: Func) => void,
  ) {}

  private fresh(hint: string | undefined): string {
    const base = (hint ?? "").replace(/[^A-Za-z0-9_.]/g, "_");
    if (base === "") {
      while (this.names.has(String(this.counter))) this.counter++;
      const n = String(this.counter++);
      this.names.add(n);
      return n;
    }
    let n = base;
    for (let i = 1; this.names.has(n); i++) n = `${base}_${i}`;
    this.names.add(n);
    return n;
  }

  param(name: string, type: TensorType): Val {
    const n = this.fresh(name);
    this.params.push({ name: n, type });
    return { ref: `%${n}`, type };
  }

  /** Adds an op; returns its results. `name` is a hint for the result names. */
  op(
    opcode: string,
    operands: readonly Val[],
    attrs: Attrs = {},
    opts: { name?: string; loc?: Loc } = {},
  ): Val[] {
    const def = getOp(opcode);
    if (!def) throw new SourceError(opts.loc, `unknown op '${opcode}'`);
    const res = checkOp(
      def,
      operands.map((o) => o.type),
      attrs,
    );
    if (!res.ok) throw new SourceError(opts.loc, res.message);
    const results: Value[] = res.types.map((type, i) => ({
      name: this.fresh(opts.name !== undefined && res.types.length > 1 ? `${opts.name}${i}` : opts.name),
      type,
    }));
    const op: Op = {
      opcode,
      operands: operands.map((o) => o.ref),
      results,
      attrs: res.attrs,
      ...(opts.loc ? { loc: opts.loc } : {}),
    };
    this.body.push(op);
    return results.map((r) => ({ ref: `%${r.name}`, type: r.type }));
  }

  /** Adds a single-result op. */
  op1(
    opcode: string,
    operands: readonly Val[],
    attrs: Attrs = {},
    opts: { name?: string; loc?: Loc } = {},
  ): Val {
    const r = this.op(opcode, operands, attrs, opts);
    if (r.length !== 1) throw new SourceError(opts.loc, `${opcode} has ${r.length} results, expected 1`);
    return r[0]!;
  }

  ret(...vals: Val[]): void {
    this.finish({
      name: this.name,
      params: this.params,
      body: this.body,
      results: vals.map((v) => v.ref),
      attrs: this.attrs,
    });
  }
}
