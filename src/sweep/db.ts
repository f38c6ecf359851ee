/**
 * A sweep's results in an embedded DuckDB database (docs/sweeps.md has the schema): `points`, a row
 * per point (its axes, latency, tokens/s, energy, busy time per engine, placement), `ops`, a row per
 * op group of a point's step, and `meta` (schema version). Each point is written in one transaction,
 * so an interrupted sweep leaves whole points only.
 */
import { existsSync, renameSync, rmSync } from "node:fs";
import type { DuckDBConnection } from "@duckdb/node-api";
import { DuckDBInstance, type DuckDBValue } from "@duckdb/node-api";
import { UserError } from "../errors.js";
import type { Point } from "./spec.js";
import type { PointResult } from "./point.js";

/** The schema's version: a database of another version is refused (not migrated). */
export const SCHEMA_VERSION = 1;

/** The axis columns of `points`, in the order queries sort by. */
export const AXIS_COLUMNS = [
  ["sweep", "VARCHAR"],
  ["config", "VARCHAR"],
  ["model", "VARCHAR"],
  ["system", "VARCHAR"],
  ["phase", "VARCHAR"],
  ["batch", "INTEGER"],
  ["prompt", "INTEGER"],
  ["context", "INTEGER"],
  ["speculation", "INTEGER"],
  ["output", "INTEGER"],
  ["compile_batch", "INTEGER"],
  ["sub_batches", "INTEGER"],
  ["weights", "VARCHAR"],
  ["activations", "VARCHAR"],
  ["group_size", "INTEGER"],
  ["attention", "VARCHAR"],
  ["cooperation", "BOOLEAN"],
  ["dynamic_placement", "BOOLEAN"],
  ["capacity_check", "BOOLEAN"],
] as const;

const RESULT_COLUMNS = [
  ["params", "JSON"],
  ["target", "VARCHAR"],
  ["status", "VARCHAR"],
  ["error", "VARCHAR"],
  ["warnings", "VARCHAR"],
  ["latency_s", "DOUBLE"],
  ["tokens_per_step", "INTEGER"],
  ["tokens_per_s", "DOUBLE"],
  ["energy_j", "DOUBLE"],
  ["j_per_token", "DOUBLE"],
  ["tokens_per_j", "DOUBLE"],
  ["watts", "DOUBLE"],
  ["busy", "JSON"],
  ["energy_breakdown", "JSON"],
  ["placement", "JSON"],
  ["pimc_version", "VARCHAR"],
] as const;

const OP_COLUMNS = [
  ["key", "VARCHAR"],
  ["name", "VARCHAR"],
  ["device", "VARCHAR"],
  ["calls", "INTEGER"],
  ["seconds", "DOUBLE"],
  ["bytes", "DOUBLE"],
  ["flops", "DOUBLE"],
  ["joules", "DOUBLE"],
] as const;

/** A value of a query's result as JSON can hold it: BIGINTs as numbers while exact, other objects as text. */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(plain);
  return String(v);
}

/** A point to record: its key, sweep, axes and result. */
export interface Recorded {
  readonly key: string;
  readonly sweep: string;
  readonly point: Point;
  readonly result: PointResult;
}

/** A point's values for the key, axis and result columns, in AXIS_COLUMNS / RESULT_COLUMNS order. */
function pointRow({ key, sweep, point: p, result: r }: Recorded, version: string): DuckDBValue[] {
  const w = r.workload;
  const json = (v: unknown): string | null => (v === null ? null : JSON.stringify(v));
  return [
    key,
    sweep,
    p.config,
    p.model,
    p.system,
    p.phase,
    p.batch,
    w?.phase === "prefill" ? w.prompt : p.prompt,
    w?.phase === "decode" ? w.context : p.context,
    w?.phase === "decode" ? w.speculation : p.speculation,
    w ? w.output : p.output,
    p.compile_batch,
    p.sub_batches,
    p.weights,
    p.activations,
    p.group_size,
    p.attention,
    p.cooperation,
    p.dynamic_placement,
    p.capacity_check,
    JSON.stringify(p.set),
    r.target,
    r.status,
    r.error,
    r.warnings,
    r.latency_s,
    r.tokens_per_step,
    r.tokens_per_s,
    r.energy_j,
    r.j_per_token,
    r.tokens_per_j,
    r.watts,
    json(r.busy),
    json(r.energy_breakdown),
    json(r.placement),
    version,
  ];
}

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** An open results database. */
export class Results {
  private constructor(
    private readonly instance: DuckDBInstance,
    readonly conn: DuckDBConnection,
    readonly file: string,
  ) {}

  /** Opens (creating unless `existing`) the database at `file`. */
  static async open(file: string, opts: { readonly existing?: boolean } = {}): Promise<Results> {
    if (opts.existing && !existsSync(file)) throw new UserError(`${file}: no such results database`);
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(file, { threads: "1" });
    } catch (e) {
      const why = (e as Error).message.split("\n")[0]!;
      throw new UserError(
        /lock/i.test(why)
          ? `${file}: in use by another process (a sweep writing it?); DuckDB: ${why}`
          : `${file}: not a results database (${why})`,
      );
    }
    const conn = await instance.connect();
    const r = new Results(instance, conn, file);
    try {
      await r.ensureSchema();
    } catch (e) {
      r.close();
      throw e;
    }
    return r;
  }

  private async ensureSchema(): Promise<void> {
    const tables = await this.rows("SELECT table_name FROM information_schema.tables");
    const names = new Set(tables.map((t) => String(t.table_name)));
    if (names.has("meta")) {
      const v = await this.rows("SELECT value FROM meta WHERE key = 'schema_version'");
      if (v[0]?.value !== String(SCHEMA_VERSION))
        throw new UserError(
          `${this.file}: results schema version ${String(v[0]?.value ?? "?")}, this pimc writes ${SCHEMA_VERSION}; use a new --db`,
        );
      return;
    }
    if (names.size > 0) throw new UserError(`${this.file}: a DuckDB database, but not pimc's sweep results`);
    const cols = (cs: readonly (readonly [string, string])[]) =>
      cs.map(([n, t]) => `${quote(n)} ${t}`).join(", ");
    await this.conn.run("BEGIN TRANSACTION");
    await this.conn.run("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)");
    await this.conn.run(`INSERT INTO meta VALUES ('schema_version', '${SCHEMA_VERSION}')`);
    await this.conn.run(
      `CREATE TABLE points (key VARCHAR PRIMARY KEY, ${cols(AXIS_COLUMNS)}, ${cols(RESULT_COLUMNS)})`,
    );
    await this.conn.run(`CREATE TABLE ops (${cols(OP_COLUMNS)})`);
    await this.conn.run("COMMIT");
  }

  /** Adds a column per system parameter the sweep sets (`pim.banks_per_unit`), typed by its values. */
  async addParams(
    params: readonly { readonly name: string; readonly type: "DOUBLE" | "VARCHAR" | "BOOLEAN" }[],
  ) {
    const have = new Map(
      (
        await this.rows(
          "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'points'",
        )
      ).map((r) => [String(r.column_name), String(r.data_type)]),
    );
    for (const p of params) {
      const t = have.get(p.name);
      if (t === undefined) await this.conn.run(`ALTER TABLE points ADD COLUMN ${quote(p.name)} ${p.type}`);
      else if (t !== p.type)
        throw new UserError(
          `${this.file}: column ${p.name} holds ${t}, the sweep gives ${p.type}; use a new --db`,
        );
    }
  }

  /** Keys of the points already recorded. */
  async keys(): Promise<Set<string>> {
    return new Set((await this.rows("SELECT key FROM points")).map((r) => String(r.key)));
  }

  /** Removes points (and their op rows). */
  async remove(keys: readonly string[]): Promise<void> {
    // A statement per 1,000 keys, not two per key (--force on a large grid).
    await this.conn.run("BEGIN TRANSACTION");
    for (let at = 0; at < keys.length; at += 1000) {
      const chunk = keys.slice(at, at + 1000);
      const list = chunk.map((_, i) => `$${i + 1}`).join(", ");
      await this.conn.run(`DELETE FROM ops WHERE key IN (${list})`, chunk);
      await this.conn.run(`DELETE FROM points WHERE key IN (${list})`, chunk);
    }
    await this.conn.run("COMMIT");
  }

  /**
   * Records points and their op rows in one transaction (a transaction per point costs more than a
   * cheap point's run): all of them, or none.
   */
  async insertMany(items: readonly Recorded[], version: string, ops: boolean): Promise<void> {
    if (items.length === 0) return;
    const params = [...new Set(items.flatMap((it) => Object.keys(it.point.set)))];
    const names = ["key", ...AXIS_COLUMNS.map(([n]) => n), ...RESULT_COLUMNS.map(([n]) => n), ...params];
    const rows = items.map((it) => [...pointRow(it, version), ...params.map((n) => it.point.set[n] ?? null)]);
    const opRows = ops
      ? items.flatMap(({ key, result }) =>
          result.ops.map((o) => [
            key,
            o.name,
            o.device,
            o.calls,
            o.seconds,
            o.bytes,
            o.flops,
            o.joules ?? null,
          ]),
        )
      : [];
    await this.conn.run("BEGIN TRANSACTION");
    try {
      await this.insertRows(`points (${names.map(quote).join(", ")})`, rows);
      await this.insertRows("ops", opRows);
      await this.conn.run("COMMIT");
    } catch (e) {
      await this.conn.run("ROLLBACK");
      throw e;
    }
  }

  /** Rows into a table by multi-row INSERTs of at most 4096 values each. */
  private async insertRows(into: string, rows: readonly (readonly DuckDBValue[])[]): Promise<void> {
    if (rows.length === 0) return;
    const per = Math.max(1, Math.floor(4096 / rows[0]!.length));
    for (let at = 0; at < rows.length; at += per) {
      const chunk = rows.slice(at, at + per);
      let n = 0;
      const tuples = chunk.map((r) => `(${r.map(() => `$${++n}`).join(", ")})`);
      await this.conn.run(`INSERT INTO ${into} VALUES ${tuples.join(", ")}`, chunk.flat());
    }
  }

  /** Rows of a query as plain objects (BIGINT as numbers where exact, else strings; JSON as text). */
  async rows(sql: string): Promise<Record<string, unknown>[]> {
    const r = await this.conn.runAndReadAll(sql);
    return r.getRowObjectsJson() as Record<string, unknown>[];
  }

  /** A query's column names and rows (values as JSON gives them). */
  async query(sql: string): Promise<{ columns: string[]; rows: unknown[][] }> {
    let r;
    try {
      r = await this.conn.runAndReadAll(sql);
    } catch (e) {
      throw new UserError(`--query: ${(e as Error).message.split("\n")[0]}`);
    }
    return { columns: r.deduplicatedColumnNames(), rows: r.getRowsJS().map((row) => row.map(plain)) };
  }

  /**
   * Writes a table or query to `file` as CSV, Parquet or JSON (by its extension), atomically: DuckDB
   * writes a temporary file beside it, renamed into place.
   */
  async export(what: string, file: string): Promise<void> {
    const format = /\.parquet$/i.test(file)
      ? "PARQUET"
      : /\.json$/i.test(file)
        ? "JSON"
        : /\.csv$/i.test(file)
          ? "CSV"
          : undefined;
    if (format === undefined)
      throw new UserError(`--export ${file}: expected a .csv, .parquet or .json file`);
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      await this.conn.run(`COPY (${what}) TO '${tmp.replace(/'/g, "''")}' (FORMAT ${format})`);
      renameSync(tmp, file);
    } catch (e) {
      rmSync(tmp, { force: true });
      if (e instanceof UserError) throw e;
      throw new UserError(`--export: ${(e as Error).message.split("\n")[0]}`);
    }
  }

  /** Copies the points (and op rows) of another results database that this one does not have. */
  async mergeFrom(file: string): Promise<number> {
    const other = await Results.open(file, { existing: true });
    const cols = (
      await other.rows(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'points'",
      )
    )
      .map((r) => ({ name: String(r.column_name), type: String(r.data_type) }))
      .filter(
        (c) => !["key", ...AXIS_COLUMNS.map(([n]) => n), ...RESULT_COLUMNS.map(([n]) => n)].includes(c.name),
      );
    other.close();
    await this.addParams(
      cols.map((c) => ({ name: c.name, type: c.type as "DOUBLE" | "VARCHAR" | "BOOLEAN" })),
    );
    const alias = "merged_in";
    await this.conn.run(`ATTACH '${file.replace(/'/g, "''")}' AS ${alias} (READ_ONLY)`);
    try {
      const before = await this.rows("SELECT count(*) AS n FROM points");
      await this.conn.run("BEGIN TRANSACTION");
      const names = (
        await this.rows(
          `SELECT column_name FROM information_schema.columns WHERE table_catalog = '${alias}' AND table_name = 'points'`,
        )
      ).map((r) => quote(String(r.column_name)));
      // The op rows of the points this database does not have yet, then those points.
      await this.conn.run(
        `INSERT INTO ops SELECT * FROM ${alias}.ops WHERE key NOT IN (SELECT key FROM points)`,
      );
      await this.conn.run(
        `INSERT INTO points (${names.join(", ")}) SELECT ${names.join(", ")} FROM ${alias}.points WHERE key NOT IN (SELECT key FROM points)`,
      );
      await this.conn.run("COMMIT");
      const after = await this.rows("SELECT count(*) AS n FROM points");
      return Number(after[0]!.n) - Number(before[0]!.n);
    } finally {
      await this.conn.run(`DETACH ${alias}`);
    }
  }

  close(): void {
    this.conn.closeSync();
    this.instance.closeSync();
  }
}
