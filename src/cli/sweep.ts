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
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { Results } from "../sweep/db.js";
import { loadSweep } from "../sweep/spec.js";
import { parseShard, runSweep } from "../sweep/run.js";
import { slurmScript } from "../sweep/slurm.js";

const posInt = (flag: string, max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > max)
    throw new UserError(`${flag} ${v}: expected an integer from 1 to ${max}`);
  return n;
};

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
    .option("-j, --jobs <n>", "worker threads (default: one per core)", posInt("--jobs", 1024))
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
    .option(
      "--slurm <file>",
      "write a script that runs the sweep as a Slurm job array of --shards shards, then merges",
    )
    .option("--shards <n>", "with --slurm: how many shards (array tasks)", posInt("--shards", 100_000), 4)
    .option(
      "--slurm-options <text>",
      'with --slurm: #SBATCH lines\' options for each shard (e.g. "--cpus-per-task=8 --mem=16G --time=02:00:00")',
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
      if (o.query !== undefined || o.export !== undefined) {
        const results = await Results.open(db, { existing: true });
        try {
          if (o.export !== undefined) {
            await results.export(o.query ?? "SELECT * FROM points ORDER BY ALL", o.export);
            process.stderr.write(`wrote ${o.export}\n`);
          }
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
    .argument("<out>", "the database to write (created, or added to)")
    .argument("<inputs...>", "databases to read")
    .action(async (out, inputs) => {
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
        const left = ((performance.now() - t0) / done) * (total - done);
        bar.label(
          `${basename(p.model)} on ${basename(p.system)}, batch ${p.batch}; ETA ${Math.round(left / 1000)} s`,
        );
        bar.tick();
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
