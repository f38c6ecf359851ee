/**
 * Horizontal fusion of linear layers: linears that read the same input with constant weights become
 * one GEMM whose weight (and bias) is the concatenation of theirs, made once at build time in the
 * constant table, followed by a split that gives back each original result under its own name.
 * Passes choose which groups to fuse (fuse-qkv: projections feeding attention; fuse-gate-up: the
 * two halves of a gated MLP).
 */
import { produce } from "immer";
import type { ConstDecl, Func, Module, Op } from "../ir/module.js";
import { layoutOf, logicalSource } from "../ir/layout.js";
import type { Tensor } from "../ir/tensor.js";
import type { WeightStore } from "../ir/weights.js";
import { mapFuncs, usersOf } from "./rewrite.js";
import type { PassContext } from "./pass.js";

/** A fusable linear: operands [x, @weight] or [x, @weight, @bias]. */
export const isConstLinear = (op: Op): boolean =>
  op.opcode === "linear" &&
  op.operands.slice(1).every((r) => r.startsWith("@")) &&
  op.attrs.fused === undefined;

/** Candidate groups of a function: fusable linears by their input, in program order, 2 or more each. */
export function linearGroups(f: Func): Op[][] {
  const byInput = new Map<string, Op[]>();
  for (const op of f.body)
    if (isConstLinear(op)) {
      const l = byInput.get(op.operands[0]!) ?? [];
      l.push(op);
      byInput.set(op.operands[0]!, l);
    }
  return [...byInput.values()].filter((g) => g.length >= 2);
}

/** Ops that only move or rotate values on the way from a projection to attention. */
const VIEW_OPS = new Set(["reshape", "transpose", "rope", "kv_append", "cast", "split"]);

/** Whether value `%name` reaches an `attention` op through view ops only. */
export function reachesAttention(
  users: ReadonlyMap<string, Op[]>,
  name: string,
  seen = new Set<string>(),
): boolean {
  if (seen.has(name)) return false;
  seen.add(name);
  return (users.get(name) ?? []).some(
    (u) =>
      u.opcode === "attention" ||
      (VIEW_OPS.has(u.opcode) && u.results.some((r) => reachesAttention(users, r.name, seen))),
  );
}

const commonPrefix = (xs: readonly string[]): string =>
  xs.reduce((p, x) => {
    let i = 0;
    while (i < p.length && p[i] === x[i]) i++;
    return p.slice(0, i);
  });

/** `model.layers.0.self_attn.q_proj.weight`, ... -> `model.layers.0.self_attn.<role>_proj.weight`. */
function fusedConstName(
  members: readonly string[],
  role: string,
  suffix: string,
  taken: (n: string) => boolean,
): string {
  const prefix = commonPrefix(members);
  const base = `${prefix.slice(0, prefix.lastIndexOf(".") + 1)}${role}_proj.${suffix}`;
  let n = base;
  for (let i = 1; taken(n); i++) n = `${base}${i}`;
  return n;
}

/** The logical value of constant `c` as stored now (captured: later redefinitions do not matter). */
const logical = (w: WeightStore, c: ConstDecl): (() => Tensor) =>
  logicalSource(w, c.name, layoutOf(c.attrs), c.type.shape as number[]);

/** A loader of the constants' rows stacked (missing ones, e.g. absent biases, as zero rows). */
function concatRows(
  w: WeightStore,
  parts: readonly { decl?: ConstDecl; rows: number }[],
  cols: number,
): () => Tensor {
  const srcs = parts.map((p) => (p.decl ? logical(w, p.decl) : undefined));
  return () => {
    const total = parts.reduce((s, p) => s + p.rows, 0);
    const out = new Float32Array(total * cols);
    let off = 0;
    parts.forEach((p, i) => {
      const src = srcs[i];
      if (src) out.set(src().data as Float32Array, off);
      off += p.rows * cols;
    });
    return { dtype: "f32", shape: cols === 1 ? [total] : [total, cols], data: out };
  };
}

/**
 * Fuses the groups `choose` selects in every function. Groups over the same weights in different
 * functions (prefill and decode) share one fused constant.
 */
export function fuseLinears(
  m: Module,
  ctx: PassContext,
  pass: string,
  role: string,
  choose: (f: Func, users: ReadonlyMap<string, Op[]>) => Op[][],
): Module {
  const consts = new Map(m.consts.map((c) => [c.name, c]));
  const added: ConstDecl[] = [];
  const fusedFor = new Map<string, { weight: string; bias?: string }>(); // key: member weights joined
  const taken = (n: string): boolean => consts.has(n) || added.some((c) => c.name === n);

  const fuseGroup = (group: readonly Op[]): { weight: string; bias?: string } => {
    const key = group.map((op) => op.operands.slice(1).join("+")).join("|");
    const hit = fusedFor.get(key);
    if (hit) return hit;
    const wDecls = group.map((op) => consts.get(op.operands[1]!.slice(1))!);
    const bDecls = group.map((op) => (op.operands[2] ? consts.get(op.operands[2].slice(1)) : undefined));
    const rows = wDecls.map((d) => d.type.shape[0] as number);
    const k = wDecls[0]!.type.shape[1] as number;
    const dtype = wDecls[0]!.type.dtype;
    const weight = fusedConstName(
      wDecls.map((d) => d.name),
      role,
      "weight",
      taken,
    );
    added.push({ name: weight, type: { dtype, shape: [rows.reduce((a, b) => a + b, 0), k] }, attrs: {} });
    if (wDecls.every((d) => ctx.weights.has(d.name)))
      ctx.weights.define(
        weight,
        concatRows(
          ctx.weights,
          wDecls.map((decl, i) => ({ decl, rows: rows[i]! })),
          k,
        ),
      );
    let bias: string | undefined;
    if (bDecls.some((d) => d)) {
      bias = fusedConstName(
        wDecls.map((d) => d.name),
        role,
        "bias",
        taken,
      );
      added.push({
        name: bias,
        type: { dtype: bDecls.find((d) => d)!.type.dtype, shape: [rows.reduce((a, b) => a + b, 0)] },
        attrs: {},
      });
      if (bDecls.every((d) => !d || ctx.weights.has(d.name)))
        ctx.weights.define(
          bias,
          concatRows(
            ctx.weights,
            bDecls.map((decl, i) => ({ ...(decl ? { decl } : {}), rows: rows[i]! })),
            1,
          ),
        );
      ctx.count(pass, "biases concatenated");
    }
    const r = bias === undefined ? { weight } : { weight, bias };
    fusedFor.set(key, r);
    ctx.count(pass, "fused weights");
    return r;
  };

  const out = mapFuncs(m, (f) => {
    const groups = choose(f, usersOf(f)).filter((g) => g.length >= 2);
    if (groups.length === 0) return f;
    const names = new Set(f.body.flatMap((op) => op.results.map((r) => r.name)));
    const replace = new Map<Op, Op[]>();
    const drop = new Set<Op>();
    for (const group of groups) {
      const { weight, bias } = fuseGroup(group);
      const first = group[0]!;
      const results = group.map((op) => op.results[0]!);
      const prefix = commonPrefix(results.map((r) => r.name));
      let name = `${prefix}${role}`;
      for (let i = 1; names.has(name); i++) name = `${prefix}${role}_${i}`;
      names.add(name);
      const sizes = results.map((r) => r.type.shape[r.type.shape.length - 1]!);
      const width = sizes.reduce<number>((a, b) => a + (b as number), 0);
      const shape = [...first.results[0]!.type.shape.slice(0, -1), width];
      const gemm: Op = {
        opcode: "linear",
        operands: [first.operands[0]!, `@${weight}`, ...(bias ? [`@${bias}`] : [])],
        results: [{ name, type: { ...first.results[0]!.type, shape } }],
        attrs: { fused: role },
        ...(first.loc ? { loc: first.loc } : {}),
      };
      const split: Op = { opcode: "split", operands: [`%${name}`], results, attrs: { axis: -1, sizes } };
      replace.set(first, [gemm, split]);
      for (const op of group.slice(1)) drop.add(op);
      ctx.count(pass, `${role} groups fused`);
    }
    return { ...f, body: f.body.flatMap((op) => replace.get(op) ?? (drop.has(op) ? [] : [op])) };
  });
  return added.length === 0 ? out : produce(out, (d) => void d.consts.push(...(added as never[])));
}
