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

export function getPass(name: string): Pass {
  const p = PASSES.get(name);
  if (!p)
    throw new UserError(
      `unknown pass "${name}"${didYouMean(name, PASSES.keys()) || ` (passes: ${[...PASSES.keys()].join(", ")})`}`,
    );
  return p;
}

/** A Sequential of the named passes. */
export function pipelineOf(name: string, passes: readonly string[]): Sequential {
  return new Sequential(name, passes.map(getPass));
}
