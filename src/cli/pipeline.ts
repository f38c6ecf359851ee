/**
 * The target, system and pass flags every compiling command shares (declared here; the compiler
 * driver that reads them is src/driver/compile.ts).
 */
import { Option, type Command as PlainCommand } from "commander";
import { UserError } from "../errors.js";
import { positiveInt } from "./options.js";

const list = (v: string, prev: string[]): string[] => [
  ...prev,
  ...v
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean),
];

function optLevel(v: string): number {
  if (!/^[0-3]$/.test(v)) throw new UserError(`--opt-level: expected 0, 1, 2 or 3, got "${v}"`);
  return Number(v);
}

/** Adds the target, system and pass flags to a command. */
export function withPipelineFlags<C>(cmd: C, defaultOpt: number): C {
  return (cmd as unknown as PlainCommand)
    .option("--target <name>", "target (default: the system's, else cpu)")
    .option("--system <file>", "system description FILE.pim[:NAME] (its target is used)")
    .option("-O, --opt-level <n>", `optimisation level 0-3 (default ${defaultOpt})`, optLevel)
    .option("--disable-pass <names>", "passes not to run (comma-separated, repeatable)", list, [] as string[])
    .option("--print-before <pass>", "print the IR before this pass (repeatable)", list, [] as string[])
    .option("--print-after <pass>", "print the IR after this pass (repeatable)", list, [] as string[])
    .option("--print-after-all", "print the IR after every pass")
    .option("--dump-ir <dir>", "write the IR before and after every pass to DIR/NNN_<pass>.pimir")
    .option("--time-passes", "print the time spent in each pass (on stderr)")
    .option("--verify-each", "run the IR verifier after every pass")
    .addOption(
      new Option(
        "--weights <type>",
        "weight precision: f32 (as imported), int8 (per channel or --group-size, with int8 activations), or int4 / int2 (per group, weight-only unless --activations int8), quantized at build time",
      ).choices(["f32", "int8", "int4", "int2"]),
    )
    .option(
      "--layer-weights <pattern=type>",
      "precision of the linear layers whose op name matches (e.g. 'L*.down=int8', 'logits=f32'; repeatable, first match wins)",
      list,
      [] as string[],
    )
    .option(
      "--group-size <n>",
      "weights per scale (int4 / int2 default 128, int8 default a row: per channel; the largest divisor of K up to it)",
      positiveInt,
    )
    .addOption(
      new Option(
        "--activations <type>",
        "with --weights int8: activations quantized to int8 (default), int16 carried as two INT8 planes (twice the MACs), or f32 (weight-only); with int4 / int2: int8 makes the layers W4A8 / W2A8 (integer group dot products, what LUT kernels compute) instead of weight-only (f32, the default)",
      ).choices(["f32", "int8", "int16"]),
    )
    .option(
      "--dynamic-placement",
      "partition: keep both placements of linear layers, chosen by B*S at run time",
    )
    .addOption(
      new Option(
        "--attention <where>",
        "UPMEM: attention on the DPUs, the host, or auto (cost model)",
      ).choices(["auto", "pim", "host"]),
    )
    .option(
      "--runtime-transpose",
      "UPMEM: no build-time layout adjustment: the host transposes each weight at every call (needs --no-pooling)",
    )
    .option("--no-pooling", "UPMEM: send weights and allocate DPUs at every call (no resource pooling)")
    .option(
      "--base-gemm",
      "UPMEM: PIM-LLM's naive BaseGEMM mapping (rows of X over DPUs, all of W on each, fixed tile)",
    )
    .option(
      "--no-cooperation",
      "partition: run every GEMM the PIM device can run there (no CPU/PIM comparison)",
    )
    .option(
      "--no-capacity-check",
      "what-if: compile and time a model whose weights, KV cache and activations overflow the system's memories (one warning line)",
    ) as unknown as C;
}
