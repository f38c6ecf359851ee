/**
 * `pimc sweep --slurm FILE`: a bash script that submits a sweep to Slurm as a job array, one task per
 * shard (`pimc sweep SPEC --shard i/n` into its own database, as many worker threads as the task
 * has CPUs), and the merge of the shards' databases as a job that runs when all of them succeeded
 * (`--dependency=afterok`; killed if a shard fails). `sbatch --wait` on the merge makes the script
 * return when it is done, with its exit status.
 */

export interface SlurmOptions {
  /** The sweep file, absolute. */
  readonly spec: string;
  readonly sweep?: string;
  /** The sweep's name (jobs' and shards' names). */
  readonly name: string;
  readonly shards: number;
  /** The merged database, absolute. */
  readonly db: string;
  /** The folder the jobs run in. */
  readonly dir: string;
  /** Options of each shard's sbatch (resources), as the user gave them. */
  readonly options: string;
  /** The pimc command on the cluster's nodes (default: this pimc's bin by its path). */
  readonly pimc?: string;
}

/** A word quoted for bash. */
export const sh = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);

export function slurmScript(o: SlurmOptions): string {
  const pimc = o.pimc ?? `${sh(process.execPath)} ${sh(process.argv[1] ?? "pimc")}`;
  const base = o.db.replace(/\.duckdb$/, "");
  const shardDb = (i: string) => `${base}.shard-${i}.duckdb`;
  const sweep = o.sweep !== undefined ? ` --sweep ${sh(o.sweep)}` : "";
  const task =
    `${pimc} sweep ${sh(o.spec)}${sweep} --shard "$SLURM_ARRAY_TASK_ID/${o.shards}" ` +
    `--jobs "\${SLURM_CPUS_PER_TASK:-1}" --db "${shardDb("$SLURM_ARRAY_TASK_ID")}"`;
  const inputs = Array.from({ length: o.shards }, (_, i) => sh(shardDb(String(i + 1)))).join(" ");
  const merge = `${pimc} sweep merge ${inputs} -o ${sh(o.db)}`;
  return [
    "#!/usr/bin/env bash",
    `# Sweep ${o.name} on Slurm, written by \`pimc sweep --slurm\`: ${o.shards} array tasks (one shard each),`,
    "# then the merge of their databases once every task succeeded (logs beside the databases).",
    "# Run: bash THIS_FILE",
    "set -euo pipefail",
    `cd ${sh(o.dir)}`,
    `array=$(sbatch --parsable --job-name=${sh(`pimc-${o.name}`)} --array=1-${o.shards} --output=${sh(`${base}.shard-%a.log`)} ${o.options} --wrap=${sh(task)})`,
    `echo "shards: job $array"`,
    `sbatch --parsable --wait --job-name=${sh(`pimc-${o.name}-merge`)} --dependency="afterok:$array" --kill-on-invalid-dep=yes --output=${sh(`${base}.merge.log`)} --wrap=${sh(merge)}`,
    `echo "merged into ${o.db}"`,
    "",
  ].join("\n");
}
