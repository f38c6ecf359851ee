/**
 * `pimc sweep SPEC`: a design-space sweep (a `sweep` block, docs/sweeps.md) run on worker threads
 * into a DuckDB results database, resumable; `--query` / `--export` read it; `--shard i/n` runs a
 * slice into its own database and `pimc sweep merge` combines them; `--slurm` writes the script that
 * runs the shards as a Slurm job array with the merge as a dependent job.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { basename, resolve } from "node:path";
import { UserError } from "../errors.js";
import { writeFileAtomic } from "../fsutil.js";
import type { SweepPlotKind } from "../report/plot.js";
import { writePlot } from "./io.js";
import { plotFile } from "./options.js";
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { AXIS_COLUMNS, Results } from "../sweep/db.js";
import { loadSweep } from "../sweep/spec.js";
import { parseShard, runSweep } from "../sweep/run.js";
import { slurmScript } from "../sweep/slurm.js";

const posInt = (flag: string, max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > max)
    throw new UserError(`${flag} ${v}: expected an integer from 1 to ${max}`);
  return n;
};

/** The points in the order of their axes (not of their keys, which are hashes). */
const AXIS_ORDER = [...AXIS_COLUMNS.map(([n]) => `"${n}"`), "key"].join(", ");

/** A cell of a query's result as text (JSON values as JSON gives them; null empty). */
function cell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The default database of a sweep: `NAME.duckdb` in the current folder. */
const defaultDb = (name: string, shard?: string): string =>
  shard ? `${name}.shard-${shard.split("/")[0]}.duckdb` : `${name}.duckdb`;

export function sweepCommand() {
  const cmd = new Command("sweep")
    .description(
      "run a design-space sweep (a sweep block: models x systems x workload x flags x system parameters) on worker threads into a DuckDB database; resumable; --query / --export read it",
    )
    .argument("[spec]", "description file (.pim) with a sweep block")
    .option("--sweep <name>", "sweep block to use when the file has several")
    .option(
      "--db <file>",
      "write the results to this DuckDB database, or read them with --query and --export (default: NAME.duckdb in the current folder)",
    )
    .option(
      "-j, --jobs <n>",
      "worker threads (default: one per core; 1: the main thread)",
      posInt("--jobs", 1024),
    )
    .option("--force", "recompute points already in the database")
    .option("--shard <i/n>", "run only every n-th point from the i-th (into NAME.shard-i.duckdb by default)")
    .option("--query <sql>", "print the result of an SQL query on the database (tables: points, ops, meta)")
    .addOption(
      new Option("--format <format>", "how --query prints")
        .choices(["table", "csv", "json"] as const)
        .default("table" as const),
    )
    .option(
      "--export <file>",
      "write the points table (or --query's result) as CSV, Parquet or JSON, by extension",
    )
    .option("--plot <file>", "write a figure of the points (or of --query's rows) as SVG or PNG", plotFile)
    .addOption(
      new Option(
        "--plot-kind <kind>",
        "line: --y against --x per --series; heatmap: --value over --x by --y; pareto: --y against --x with the front",
      )
        .choices(["line", "heatmap", "pareto"] as const)
        .default("line" as const),
    )
    .option("--x <column>", "the plot's x (default: batch; pareto: latency_s)")
    .option(
      "--y <column>",
      "the plot's y (default: latency_s; heatmap: config or system; pareto: j_per_token)",
    )
    .option("--series <column>", "the plot's colours (default: config, else system)")
    .option("--value <column>", "a heatmap's cells (default: latency_s)")
    .option(
      "--slurm <file>",
      "write a script that runs the sweep as a Slurm job array of --shards shards, then merges",
    )
    .option("--shards <n>", "with --slurm: how many shards (array tasks)", posInt("--shards", 100_000), 4)
    .option(
      "--slurm-options <text>",
      'with --slurm: sbatch options of each shard task (e.g. "--cpus-per-task=8 --mem=16G --time=02:00:00")',
    )
    .action(async (spec, o) => {
      if (spec === undefined && o.db === undefined)
        throw new UserError("pimc sweep: give a sweep file, or --db with --query or --export");
      const name = spec !== undefined ? loadSweep(spec, o.sweep).name : undefined;
      if (o.shard !== undefined) parseShard(o.shard);
      const db = o.db ?? defaultDb(name!, o.shard);
      if (o.slurm !== undefined) {
        if (spec === undefined) throw new UserError("--slurm needs the sweep file");
        writeFileAtomic(
          o.slurm,
          slurmScript({
            spec: resolve(spec),
            ...(o.sweep !== undefined ? { sweep: o.sweep } : {}),
            name: name!,
            shards: o.shards,
            db: resolve(db),
            dir: process.cwd(),
            options: o.slurmOptions ?? "",
          }),
        );
        process.stderr.write(
          `wrote ${o.slurm}: ${o.shards} shards of sweep ${name}, merged into ${db} (run it with bash)\n`,
        );
        return;
      }
      // With a sweep file the sweep runs first (a complete one skips every point).
      if (spec !== undefined) await run(spec, o.sweep, db, o);
      if (o.query !== undefined || o.export !== undefined || o.plot !== undefined) {
        const results = await Results.open(db, { existing: true });
        try {
          if (o.export !== undefined) {
            await results.export(o.query ?? `SELECT * FROM points ORDER BY ${AXIS_ORDER}`, o.export);
            process.stderr.write(`wrote ${o.export}\n`);
          }
          if (o.plot !== undefined) await plot(results, o.plot, o, name);
          if (o.query !== undefined && o.export === undefined) {
            const { columns, rows } = await results.query(o.query);
            if (o.format === "json")
              process.stdout.write(
                `${JSON.stringify(rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i] ?? null]))))}\n`,
              );
            else if (o.format === "csv")
              process.stdout.write(`${[columns, ...rows].map((r) => r.map(csvCell).join(",")).join("\n")}\n`);
            else {
              const t = table(
                columns,
                columns.map(() => "right" as const),
              );
              for (const r of rows) t.push(r.map(cell));
              process.stdout.write(`${t.toString()}\n`);
            }
          }
        } finally {
          results.close();
        }
      }
    });
  cmd
    .command("merge")
    .description("combine results databases (e.g. the shards of a sweep) into one")
    .argument("<inputs...>", "databases to read")
    .requiredOption("-o, --output <file>", "write the merged results to this database (created, or added to)")
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`pimc: ${str}`) })
    .action(async (inputs, o) => {
      const out = o.output;
      const db = await Results.open(out);
      try {
        let added = 0;
        for (const f of inputs) {
          if (resolve(f) === resolve(out)) throw new UserError(`pimc sweep merge: ${f} is the output`);
          added += await db.mergeFrom(f);
        }
        process.stderr.write(`merged ${inputs.length} databases into ${out}: ${added} points added\n`);
      } finally {
        db.close();
      }
    });
  return cmd;
}

/** `--plot`: the figure of the points (or of --query's rows), columns checked against the data. */
async function plot(
  results: Results,
  file: string,
  o: {
    readonly query?: string;
    readonly plotKind: SweepPlotKind;
    readonly x?: string;
    readonly y?: string;
    readonly series?: string;
    readonly value?: string;
  },
  name: string | undefined,
): Promise<void> {
  const { columns, rows } = await results.query(
    o.query ?? "SELECT * FROM points WHERE status = 'ok' ORDER BY ALL",
  );
  const data = rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i] ?? null])));
  if (data.length === 0) throw new UserError("--plot: no rows to plot");
  const varies = (c: string) => columns.includes(c) && new Set(data.map((r) => r[c])).size > 1;
  const group = varies("config") ? "config" : "system";
  const pareto = o.plotKind === "pareto";
  const x = o.x ?? (pareto ? "latency_s" : "batch");
  const y = o.y ?? (pareto ? "j_per_token" : o.plotKind === "heatmap" ? group : "latency_s");
  const series =
    o.plotKind === "heatmap" ? undefined : (o.series ?? (columns.includes(group) ? group : undefined));
  const value = o.plotKind === "heatmap" ? (o.value ?? "latency_s") : undefined;
  for (const [flag, c] of [
    ["--x", x],
    ["--y", y],
    ["--series", series],
    ["--value", value],
  ] as const)
    if (c !== undefined && !columns.includes(c))
      throw new UserError(`${flag} ${c}: no such column (the rows have ${columns.join(", ")})`);
  await writePlot(file, (p) =>
    p.sweepSpec({
      kind: o.plotKind,
      title: `${name !== undefined ? `sweep ${name}: ` : ""}${value ?? y} ${o.plotKind === "heatmap" ? `over ${x} and ${y}` : `against ${x}`}`,
      rows: data,
      x,
      y,
      ...(series !== undefined ? { series } : {}),
      ...(value !== undefined ? { value } : {}),
    }),
  );
  process.stderr.write(`wrote ${file}\n`);
}

async function run(
  spec: string,
  sweep: string | undefined,
  db: string,
  o: { readonly jobs?: number; readonly force?: boolean; readonly shard?: string },
): Promise<void> {
  const bar = progress();
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
  };
  process.on("SIGINT", onSignal);
  const t0 = performance.now();
  let done = 0;
  let total = 0;
  try {
    const s = await runSweep(spec, sweep, {
      db,
      ...(o.jobs !== undefined ? { jobs: o.jobs } : {}),
      ...(o.force ? { force: true } : {}),
      ...(o.shard !== undefined ? { shard: parseShard(o.shard) } : {}),
      stopped: () => interrupted,
      onStart: (n) => {
        total = n;
        bar.start(n);
        bar.label("points");
      },
      onPoint: (p) => {
        done++;
        const left = Math.round((((performance.now() - t0) / done) * (total - done)) / 1000);
        bar.label(`${basename(p.model)} on ${basename(p.system)}, batch ${p.batch}; ETA ${left} s`);
        bar.tick();
        // Not a terminal (a batch job's log): a line at every tenth of the points instead of the bar.
        if (!process.stderr.isTTY && Math.floor((10 * done) / total) > Math.floor((10 * (done - 1)) / total))
          process.stderr.write(`sweep: ${done}/${total} points, ETA ${left} s\n`);
      },
    });
    bar.stop();
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    process.stderr.write(
      `sweep: ${s.points} points${o.shard ? ` in shard ${o.shard}` : ""}: ${s.ran} run (${s.failed} failed), ${s.skipped} already in ${db}; ${secs} s${s.stopped ? "; interrupted: complete points kept, run again to resume" : ""}\n`,
    );
    if (s.stopped) process.exitCode = 130;
  } finally {
    bar.stop();
    process.off("SIGINT", onSignal);
  }
}
