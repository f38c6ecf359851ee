/** The passes by name, and pipelines built from lists of names. */
import { UserError, didYouMean } from "../src/errors.js";
import { Sequential, type Pass } from "../src/pipeline/pass.js";
import { dce } from "./dce.js";
import { fuseGateUp } from "./fuse-gate-up.js";
import { fuseQkv } from "./fuse-qkv.js";
import { layout } from "./layout.js";
import { partition } from "./partition.js";
import { quantize } from "./quantize.js";
import { simplifyShapes } from "./simplify-shapes.js";

export const PASSES: ReadonlyMap<string, Pass> = new Map(
  [simplifyShapes, fuseQkv, fuseGateUp, layout, quantize, partition, dce].map((p) => [p.name, p]),
);

/** A pass by name: one of passes/, or of `own` (a target's own passes). */
export function getPass(name: string, own: readonly Pass[] = []): Pass {
  const p = own.find((x) => x.name === name) ?? PASSES.get(name);
  if (!p) {
    const names = [...PASSES.keys(), ...own.map((x) => x.name)];
    throw new UserError(
      `unknown pass "${name}"${didYouMean(name, names) || ` (passes: ${names.join(", ")})`}`,
    );
  }
  return p;
}

/** A Sequential of the named passes (`own`: the target's passes besides passes/). */
export function pipelineOf(name: string, passes: readonly string[], own: readonly Pass[] = []): Sequential {
  return new Sequential(
    name,
    passes.map((p) => getPass(p, own)),
  );
}
