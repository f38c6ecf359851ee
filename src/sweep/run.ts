/**
 * Runs a sweep: its points not yet in the results database (or all of them with `force`), on
 * `jobs` worker threads, each result written as it arrives. Deterministic (a point's row does not
 * depend on the thread that ran it or on the order), resumable (keys: src/sweep/spec.ts pointKey),
 * sharded by a fixed slice of the grid.
 */
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { chooseTarget } from "../driver/compile.js";
import { UserError } from "../errors.js";
import { PIMC_VERSION } from "../version.js";
import { Results, type Recorded } from "./db.js";
import { runPointSafely, type PointResult } from "./point.js";
import { loadSweep, pointKey, resolvePath, type Point, type Sweep } from "./spec.js";

/** Points per write of results, at most, and the longest a result waits to be written. */
const FLUSH_POINTS = 64;
const FLUSH_MS = 2000;

export interface Shard {
  /** 1-based. */
  readonly index: number;
  readonly count: number;
}

export interface SweepRunOptions {
  readonly db: string;
  readonly jobs?: number;
  readonly force?: boolean;
  readonly shard?: Shard;
  /** Called before the first point with the count to run, and after each. */
  readonly onStart?: (total: number, skipped: number) => void;
  readonly onPoint?: (p: Point, r: PointResult) => void;
  /** Checked between points: true stops the sweep (points already written stay). */
  readonly stopped?: () => boolean;
}

export interface SweepSummary {
  readonly points: number;
  readonly skipped: number;
  readonly ran: number;
  readonly failed: number;
  readonly stopped: boolean;
}

/** "2/4" -> { index: 2, count: 4 }. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || count > 100_000 || index < 1 || index > count)
    throw new UserError(`--shard ${text}: expected i/n with 1 <= i <= n (e.g. 2/4)`);
  return { index, count };
}

/** The points of a shard: every n-th point of the grid, from the i-th. */
export function shardOf(count: number, shard?: Shard): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  return shard ? all.filter((i) => i % shard.count === shard.index - 1) : all;
}

/**
 * Checks each system a sweep names with each of its settings, before any point runs: a setting at a
 * path no system parameter has is an error at its place in the sweep file.
 */
export async function checkSystems(sweep: Sweep): Promise<void> {
  const seen = new Set<string>();
  for (const [i, p] of sweep.points.entries()) {
    const key = JSON.stringify([p.system, p.set, p.cooperation, p.attention]);
    if (seen.has(key)) continue;
    seen.add(key);
    await chooseTarget({
      system: resolvePath(sweep, p.system),
      systemSettings: sweep.settings[i]!,
      ...(p.cooperation !== null ? { cooperation: p.cooperation } : {}),
      ...(p.attention !== null ? { attention: p.attention as "auto" | "pim" | "host" } : {}),
    });
  }
}

/** The column type of each system parameter the sweep sets. */
function paramTypes(sweep: Sweep): { name: string; type: "DOUBLE" | "VARCHAR" | "BOOLEAN" }[] {
  return sweep.params.map((name) => {
    const vs = sweep.points.map((p) => p.set[name]).filter((v) => v !== undefined);
    const type = vs.every((v) => typeof v === "number")
      ? "DOUBLE"
      : vs.every((v) => typeof v === "boolean")
        ? "BOOLEAN"
        : "VARCHAR";
    return { name, type };
  });
}

export async function runSweep(
  file: string,
  name: string | undefined,
  o: SweepRunOptions,
): Promise<SweepSummary> {
  const sweep = loadSweep(file, name);
  await checkSystems(sweep);
  const indices = shardOf(sweep.points.length, o.shard);
  const keys = sweep.points.map((p) => pointKey(sweep, p, PIMC_VERSION));
  const types = paramTypes(sweep);
  const varchar = new Set(types.filter((t) => t.type === "VARCHAR").map((t) => t.name));
  const stored = (p: Point): Point =>
    varchar.size === 0
      ? p
      : {
          ...p,
          set: Object.fromEntries(Object.entries(p.set).map(([k, v]) => [k, varchar.has(k) ? String(v) : v])),
        };
  const db = await Results.open(o.db);
  try {
    await db.addParams(types);
    if (o.force) await db.remove(indices.map((i) => keys[i]!));
    const done = await db.keys();
    const todo = indices.filter((i) => !done.has(keys[i]!));
    const skipped = indices.length - todo.length;
    o.onStart?.(todo.length, skipped);
    let failed = 0;
    let ran = 0;
    // Results are written in batches, one transaction each, every FLUSH_POINTS points or FLUSH_MS
    // (and at the end, or when stopped): a point is in the database whole or not at all.
    let pending: Recorded[] = [];
    let since = performance.now();
    let writing = Promise.resolve();
    const flush = (): Promise<void> => {
      const batch = pending;
      pending = [];
      since = performance.now();
      writing = writing.then(() => db.insertMany(batch, PIMC_VERSION, sweep.ops));
      return writing;
    };
    const record = (i: number, r: PointResult): Promise<void> => {
      pending.push({ key: keys[i]!, sweep: sweep.name, point: stored(sweep.points[i]!), result: r });
      ran++;
      if (r.status === "error") failed++;
      o.onPoint?.(sweep.points[i]!, r);
      return pending.length >= FLUSH_POINTS || performance.now() - since >= FLUSH_MS ? flush() : writing;
    };
    const jobs = Math.max(1, Math.min(o.jobs ?? availableParallelism(), todo.length));
    const stopped =
      jobs <= 1
        ? await runHere(sweep, todo, record, o.stopped)
        : await runOnWorkers(file, name, todo, jobs, record, o.stopped);
    await flush();
    return { points: indices.length, skipped, ran, failed, stopped };
  } finally {
    db.close();
  }
}

async function runHere(
  sweep: Sweep,
  todo: readonly number[],
  record: (i: number, r: PointResult) => Promise<void>,
  stopped?: () => boolean,
): Promise<boolean> {
  for (const i of todo) {
    if (stopped?.()) return true;
    await record(i, await runPointSafely(sweep, i));
    // Let a signal handler run between points.
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

/** The worker's module: its .js beside this one, or its .ts when pimc runs from its sources (tests). */
function workerModule(): { url: URL; execArgv: string[] } {
  const fromSources = import.meta.url.endsWith(".ts");
  const url = new URL(fromSources ? "./worker.ts" : "./worker.js", import.meta.url);
  const execArgv = fromSources
    ? ["--import", fileURLToPath(new URL("../../test/ts-register.mjs", import.meta.url))]
    : [];
  return { url, execArgv };
}

async function runOnWorkers(
  file: string,
  name: string | undefined,
  todo: readonly number[],
  jobs: number,
  record: (i: number, r: PointResult) => Promise<void>,
  stopped?: () => boolean,
): Promise<boolean> {
  const { url, execArgv } = workerModule();
  const workers = Array.from(
    { length: jobs },
    () => new Worker(url, { workerData: { file, name }, execArgv, stdout: true, stderr: true }),
  );
  let next = 0;
  let halted = false;
  const writes: Promise<void>[] = [];
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolveWorker, reject) => {
            // One point at a time per worker: the next one goes as a result comes back.
            const give = (): void => {
              if (next >= todo.length || (stopped?.() ?? false)) {
                if (next < todo.length) halted = true;
                resolveWorker();
                return;
              }
              w.postMessage(todo[next++]!);
            };
            w.on("message", (m: { i: number; r: PointResult }) => {
              const written = record(m.i, m.r);
              written.catch(reject);
              writes.push(written);
              give();
            });
            w.on("error", reject);
            w.on("exit", (code) => {
              if (code !== 0) reject(new Error(`sweep worker exited with code ${code}`));
            });
            give();
          }),
      ),
    );
    await Promise.all(writes);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return halted;
}
