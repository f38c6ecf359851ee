/**
 * The target, system and pass flags every compiling command shares (declared here; the compiler
 * driver that reads them is src/driver/compile.ts).
 */
import { Option, type Command as PlainCommand } from "commander";
import { UserError } from "../errors.js";
import { systemSpec } from "../driver/compile.js";
import type { Target, TargetFlag, TargetFlagValues } from "../../targets/index.js";
import { positiveInt } from "./options.js";

/** A flag some targets declare, with their names. */
interface DeclaredFlag {
  readonly flag: TargetFlag;
  readonly targets: readonly string[];
}

/**
 * The targets' flags the compiling commands accept (useTargetFlags, before the program is made),
 * and the target `--help` shows them for (none: help lists no target's flags).
 */
let declared: readonly DeclaredFlag[] = [];
let helpTarget: string | undefined;
/** The options made from target flags, with their keys. */
const fromTarget = new WeakMap<Option, string>();

/**
 * The target flags of `targets` become options of the compiling commands made after this call;
 * `argv` (a help request naming --target or --system) chooses whose `--help` lists.
 */
export function useTargetFlags(targets: ReadonlyMap<string, Target>, argv: readonly string[]): void {
  const byKey = new Map<string, { flag: TargetFlag; targets: string[] }>();
  for (const t of targets.values())
    for (const f of t.flags ?? []) {
      const d = byKey.get(f.key) ?? { flag: f, targets: [] };
      d.targets.push(t.name);
      byKey.set(f.key, d);
    }
  declared = [...byKey.values()];
  helpTarget = argv.some((a) => a === "-h" || a === "--help" || a === "help") ? targetNamed(argv) : undefined;
}

/** The target a command line names (--target, or --system's file), if it can tell. */
function targetNamed(argv: readonly string[]): string | undefined {
  const value = (flag: string): string | undefined => {
    const i = argv.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
    if (i < 0) return undefined;
    return argv[i]!.includes("=") ? argv[i]!.slice(flag.length + 1) : argv[i + 1];
  };
  const t = value("--target");
  if (t !== undefined) return t;
  const s = value("--system");
  if (s === undefined) return undefined;
  try {
    return systemSpec(s).decl.target;
  } catch {
    return undefined; // the command itself reports a bad system file
  }
}

/** The values of the target flags given on the command line (not their defaults), by key. */
export function targetFlagValues(cmd: PlainCommand): TargetFlagValues {
  const out: Record<string, string | boolean> = {};
  for (const o of cmd.options) {
    const key = fromTarget.get(o as Option);
    if (key === undefined || cmd.getOptionValueSource(o.attributeName()) !== "cli") continue;
    out[key] = cmd.getOptionValue(o.attributeName()) as string | boolean;
  }
  return out;
}

/** Adds the targets' flags (useTargetFlags) to a command, listed in --help for its target only. */
function withTargetFlags(cmd: PlainCommand): PlainCommand {
  for (const d of declared) {
    const o = new Option(d.flag.flags, `${d.targets.join(", ")}: ${d.flag.description}`);
    if (d.flag.choices) o.choices(d.flag.choices);
    if (helpTarget === undefined || !d.targets.includes(helpTarget)) o.hideHelp();
    fromTarget.set(o, d.flag.key);
    cmd.addOption(o);
  }
  if (declared.length > 0 && helpTarget === undefined) {
    const owners = [...new Set(declared.flatMap((d) => d.targets))].sort();
    cmd.addHelpText(
      "after",
      `\nTargets' own flags (${owners.join(", ")}) are listed with --target NAME or --system FILE.`,
    );
  }
  return cmd;
}

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

/** Adds the target, system and pass flags, and the targets' own flags, to a command. */
export function withPipelineFlags<C>(cmd: C, defaultOpt: number): C {
  const c = (cmd as unknown as PlainCommand)
    .option("--target <name>", "target (default: the system's, else cpu)")
    .option("--system <file>", "system description FILE.pim[:NAME] (its target is used)")
    .option("-O, --opt-level <n>", `optimisation level 0-3 (default ${defaultOpt})`, optLevel)
    .option("--disable-pass <names>", "passes not to run (comma-separated, repeatable)", list, [] as string[])
    .option("--print-before <pass>", "print the IR before this pass (repeatable)", list, [] as string[])
    .option("--print-after <pass>", "print the IR after this pass (repeatable)", list, [] as string[])
    .option("--print-after-all", "print the IR after every pass")
    .option("--dump-ir <dir>", "write the IR before and after every pass to DIR/NNN_<pass>.pimir")
    .option("--time-passes", "print the time spent in each pass (on stderr)")
    .option(
      "--verify-each",
      "run the IR verifier after every pass (pimc verify: also interpret the IR after each pass, its logit error)",
    )
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
        "attention on the PIM device, the host, or auto (cost model)",
      ).choices(["auto", "pim", "host"]),
    )
    .option(
      "--no-cooperation",
      "partition: run every GEMM the PIM device can run there (no CPU/PIM comparison)",
    )
    .option(
      "--no-capacity-check",
      "what-if: compile and time a model whose weights, KV cache and activations overflow the system's memories (one warning line)",
    );
  return withTargetFlags(c) as unknown as C;
}
