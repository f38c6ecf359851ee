/**
 * `pimc sweep`: the grid a sweep block makes, its errors, the results database (resume, force,
 * failing points), shards merged against an unsharded run, exports, the Slurm script run with a
 * local stand-in for sbatch, and Ctrl-C.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseDescription, selectSweep } from "../src/frontend/dsl/index.js";
import { expandSweep } from "../src/sweep/spec.js";
import { shardOf } from "../src/sweep/run.js";
import { PIMC_VERSION } from "../src/version.js";
import { PIMC_BIN, pimc, tempDir } from "./util.js";

const EX = resolve("examples");
const dir = tempDir("pimc-sweep-");

const sweepOf = (body: string, file = join(dir, "s.pim")) =>
  expandSweep(selectSweep(parseDescription(`sweep s {\n${body}\n}\n`, file)));

/** A sweep file in the temp folder: the tiny Llama on an H100 and on HBM-PIM, plus `extra` lines. */
function tinySweep(name: string, extra = ""): string {
  const f = join(dir, `${name}.pim`);
  writeFileSync(
    f,
    `sweep ${name} {
  models = ["${EX}/tiny-llama.pim"]
  configs = {
    h100 = { systems = "${EX}/systems/h100.pim" }
    fast = { systems = "${EX}/systems/h100.pim", set = { xpu = { bandwidth = 6.7 TB/s } } }
    pim = { systems = "${EX}/systems/hbm-pim-64ch.pim" }
  }
  batch = [1, 4]
  context = [32, 96]
${extra}
}
`,
  );
  return f;
}

const QUERY = "SELECT * EXCLUDE (key) FROM points ORDER BY ALL";

/**
 * A single-node Slurm for the --slurm test (test/slurm/start.sh): where sbatch is installed (.ci/run
 * installs Debian's slurm-wlm and munge) and the tests run as root (the daemons need it). Else why not.
 */
const CLUSTER = join(tmpdir(), "pimc-slurm");

function startSlurm(at: string): { conf?: string; why: string } {
  if (spawnSync("sh", ["-c", "command -v sbatch slurmctld slurmd munged"]).status !== 0)
    return { why: "Slurm is not installed (Debian's slurm-wlm and munge)" };
  if (process.getuid?.() !== 0) return { why: "not root: the test starts munge and the Slurm daemons" };
  const r = spawnSync("bash", ["test/slurm/start.sh", at], { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) return { why: `test/slurm/start.sh failed: ${r.stderr.trim().split("\n")[0]}` };
  return { conf: r.stdout.trim(), why: "" };
}

describe("sweep grids", () => {
  it("is the cross product of the axes, zipped axes advancing together, per configuration", () => {
    const s = sweepOf(`models = ["${EX}/tiny-llama.pim"]
  configs = { a = { systems = "${EX}/systems/h100.pim" }, b = { systems = "${EX}/systems/a100.pim", cooperation = false } }
  speculation = [1, 2, 4]
  context = [63, 62, 60]
  zip = [["speculation", "context"]]
  batch = [1, 8]
  set = { xpu = { overhead = [1 us, 2 us] } }`);
    expect(s.points).toHaveLength(2 * 3 * 2 * 2);
    expect(s.params).toEqual(["xpu.overhead"]);
    expect(new Set(s.points.map((p) => `${p.speculation}+${p.context}`))).toEqual(
      new Set(["1+63", "2+62", "4+60"]),
    );
    expect(s.points.filter((p) => p.config === "b").every((p) => p.cooperation === false)).toBe(true);
    expect(s.points[0]).toMatchObject({
      config: "a",
      batch: 1,
      speculation: 1,
      context: 63,
      set: { "xpu.overhead": 1e-6 },
    });
    expect(s.settings[0]![0]!.path).toEqual(["xpu", "overhead"]);
  });

  it("leaves out excluded points and the lengths another phase would use (no duplicate points)", () => {
    const s = sweepOf(`models = "${EX}/tiny-llama.pim"
  systems = "${EX}/systems/h100.pim"
  phase = ["prefill", "decode"]
  prompt = [16, 32]
  context = [8, 16]
  batch = [1, 2]
  exclude = [{ phase = "prefill", batch = 2 }]`);
    // prefill: 2 prompts x batch 1; decode: 2 contexts x 2 batches.
    expect(s.points).toHaveLength(2 + 4);
    expect(s.points.filter((p) => p.phase === "decode").every((p) => p.prompt === null)).toBe(true);
    expect(s.points.filter((p) => p.phase === "prefill").every((p) => p.context === null)).toBe(true);
  });

  it("keys carry pimc's version, package.json's", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(PIMC_VERSION).toBe(pkg.version);
  });

  it("shards are disjoint slices that cover the grid", () => {
    const all = [1, 2, 3].flatMap((i) => shardOf(10, { index: i, count: 3 }));
    expect(all.sort((a, b) => a - b)).toEqual(shardOf(10));
  });

  it.each([
    ["batchs = [1]", /s\.pim:4:1: unknown sweep key 'batchs' \(did you mean 'batch'\?\)/],
    ["batch = []", /s\.pim:4:9: batch: an empty list makes an empty grid/],
    ["batch = [0]", /s\.pim:4:10: batch: expected a positive integer up to 65536/],
    ['phase = "decoder"', /phase: expected prefill, decode, got decoder \(did you mean 'decode'\?\)/],
    ['batch = [1, 2]\ncontext = [8]\nzip = [["batch", "context"]]', /zip: 'context' has 1 values, 'batch' 2/],
    [
      "exclude = [{ batch = 1 }]\nbatch = 1",
      /s\.pim:1:7: sweep s: the grid is empty \(every point excluded\)/,
    ],
    ['models = ["nope.pim"]', /s\.pim:4:\d+: models: .*nope\.pim: no such file or folder/],
  ])("refuses %j with its location", (extra, message) => {
    const lines = [
      `systems = "${EX}/systems/h100.pim"`,
      ...(extra.startsWith("models") ? [] : [`models = "${EX}/tiny-llama.pim"`]),
    ];
    // The line under test is line 4 of the file.
    const body = extra.startsWith("models")
      ? `${lines[0]}\n\n${extra}`
      : `${lines[0]}\n${lines[1]}\n${extra}`;
    expect(() => sweepOf(body)).toThrow(message);
  });
});

describe("pimc sweep", () => {
  it("fills a database, resumes, recomputes with --force, and records a failing point without stopping", async () => {
    const f = tinySweep("runs", `  exclude = [{ configs = "pim", batch = 4 }]`);
    const db = join(dir, "runs.duckdb");
    let r = await pimc("sweep", f, "--db", db, "-j", "1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/sweep: 10 points: 10 run \(0 failed\), 0 already in/);
    r = await pimc(
      "sweep",
      f,
      "--db",
      db,
      "-j",
      "1",
      "--query",
      "SELECT config, batch, context, latency_s, status FROM points ORDER BY ALL",
      "--format",
      "json",
    );
    expect(r.stderr).toMatch(/0 run \(0 failed\), 10 already in/);
    const rows = JSON.parse(r.stdout) as {
      config: string;
      batch: number;
      context: number;
      latency_s: number;
    }[];
    expect(rows).toHaveLength(10);
    // The set parameter reaches the system: twice the bandwidth, a faster step.
    const at = (c: string, b: number) =>
      rows.find((x) => x.config === c && x.batch === b && x.context === 96)!.latency_s;
    expect(at("fast", 4)).toBeLessThan(at("h100", 4));
    r = await pimc("sweep", f, "--db", db, "-j", "1", "--force");
    expect(r.stderr).toMatch(/10 run \(0 failed\), 0 already/);
    // A point that cannot run (more positions than the model has) is a row with its error.
    const bad = tinySweep("bad", "");
    writeFileSync(bad, readFileSync(bad, "utf8").replace("context = [32, 96]", "context = [32, 400]"));
    r = await pimc(
      "sweep",
      bad,
      "--db",
      join(dir, "bad.duckdb"),
      "-j",
      "1",
      "--query",
      "SELECT status, error FROM points WHERE status = 'error' LIMIT 1",
      "--format",
      "csv",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/12 run \(6 failed\)/);
    expect(r.stdout).toMatch(
      /^status,error\nerror,llama_tiny: context 400 \+ 1 token\(s\) per step need 401 positions/,
    );
  });

  it("a set path that is no system parameter: one line with the sweep's location, exit 2, no database", async () => {
    const f = tinySweep("badset", "  set = { xpu = { bandwith = 1 TB/s } }");
    const db = join(dir, "badset.duckdb");
    const r = await pimc("sweep", f, "--db", db);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/badset\.pim:10:30: unknown key 'xpu\.bandwith' in a xpu system/);
    expect(existsSync(db)).toBe(false);
  });

  it("two shards merged give the rows of one unsharded run, on worker threads or not", async () => {
    const f = tinySweep("shards");
    const one = join(dir, "one.duckdb");
    expect((await pimc("sweep", f, "--db", one, "-j", "2")).code).toBe(0);
    const a = join(dir, "a.duckdb");
    const b = join(dir, "b.duckdb");
    expect((await pimc("sweep", f, "--db", a, "--shard", "1/2", "-j", "1")).stderr).toMatch(
      /6 points in shard 1\/2: 6 run/,
    );
    expect((await pimc("sweep", f, "--db", b, "--shard", "2/2", "-j", "2")).code).toBe(0);
    const merged = join(dir, "merged.duckdb");
    const m = await pimc("sweep", "merge", a, b, "-o", merged);
    expect(m.stderr).toMatch(/12 points added/);
    // Merging again adds nothing; a missing input or output, or a file that is no database, is one
    // line, exit 2.
    const garbage = join(dir, "garbage.duckdb");
    writeFileSync(garbage, "not a database\n");
    expect((await pimc("sweep", "merge", a, "-o", merged)).stderr).toMatch(/0 points added/);
    for (const [args, message] of [
      [["merge", join(dir, "none.duckdb"), "-o", merged], /none\.duckdb: no such results database/],
      [["merge", a], /required option '-o, --output <file>' not specified/],
      [["--db", garbage, "--query", "SELECT 1"], /garbage\.duckdb: not a results database/],
    ] as const) {
      const bad = await pimc("sweep", ...args);
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim().split("\n")).toHaveLength(1);
      expect(bad.stderr).toMatch(message);
    }
    const q = async (db: string) =>
      (await pimc("sweep", "--db", db, "--query", QUERY, "--format", "csv")).stdout;
    const want = await q(one);
    expect(want.split("\n").length).toBe(14);
    expect(await q(merged)).toBe(want);
    const ops = async (db: string) =>
      (await pimc("sweep", "--db", db, "--query", "SELECT * FROM ops ORDER BY ALL", "--format", "csv"))
        .stdout;
    expect(await ops(merged)).toBe(await ops(one));
    // Exports: CSV, JSON, Parquet (by extension), written whole.
    for (const ext of ["csv", "json", "parquet"]) {
      const out = join(dir, `points.${ext}`);
      expect((await pimc("sweep", "--db", one, "--export", out)).code).toBe(0);
      expect(existsSync(out)).toBe(true);
    }
    expect(readFileSync(join(dir, "points.csv"), "utf8").trim().split("\n")).toHaveLength(13);
    const bad = await pimc("sweep", "--db", one, "--export", join(dir, "points.xlsx"));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected a \.csv, \.parquet or \.json file/);
  });

  it("--slurm writes a job-array script that runs on Slurm (single-node, started here) and fills the merged database", async () => {
    const f = tinySweep("slurm");
    const script = join(dir, "slurm.sh");
    const db = join(dir, "slurm.duckdb");
    const r = await pimc(
      "sweep",
      f,
      "--slurm",
      script,
      "--shards",
      "2",
      "--db",
      db,
      "--slurm-options",
      "--cpus-per-task=1 --time=00:10:00",
    );
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(script, "utf8");
    expect(text).toMatch(
      /sbatch --parsable --job-name=pimc-slurm --array=1-2 .*--cpus-per-task=1 --time=00:10:00 --wrap=/,
    );
    expect(text).toMatch(/--dependency="afterok:\$array" --kill-on-invalid-dep=yes/);
    // The script runs pimc by the path of the process that wrote it: here, from the sources.
    writeFileSync(
      script,
      text.replaceAll(`${process.execPath} ${process.argv[1]}`, PIMC_BIN.map((a) => `'${a}'`).join(" ")),
    );
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
    const slurm = startSlurm(CLUSTER);
    if (slurm.conf !== undefined) env.SLURM_CONF = slurm.conf;
    else {
      // No Slurm here (slurm.why): a stand-in for sbatch runs an array's tasks one after another with
      // SLURM_ARRAY_TASK_ID set, then the dependent job, so the script's own commands still run.
      console.warn(`test/sweep.test.ts: no single-node Slurm (${slurm.why}); sbatch stand-in`);
      const bin = join(dir, "bin");
      mkdirSync(bin, { recursive: true });
      writeFileSync(
        join(bin, "sbatch"),
        `#!/usr/bin/env bash
array=""; wrap=""
for a in "$@"; do case "$a" in --array=*) array="\${a#--array=}";; --wrap=*) wrap="\${a#--wrap=}";; esac; done
if [ -n "$array" ]; then for i in $(seq \${array%-*} \${array#*-}); do SLURM_ARRAY_TASK_ID=$i SLURM_CPUS_PER_TASK=1 bash -c "$wrap" || exit 1; done; echo 41
else bash -c "$wrap" || exit 1; echo 42; fi
`,
      );
      chmodSync(join(bin, "sbatch"), 0o755);
      env.PATH = `${bin}:${process.env.PATH}`;
    }
    try {
      const run = spawnSync("bash", [script], { env, encoding: "utf8", timeout: 100_000 });
      expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
      expect(run.stdout).toMatch(/^shards: job \d+/m);
      const q = async (file: string) =>
        (await pimc("sweep", "--db", file, "--query", QUERY, "--format", "csv")).stdout;
      const one = join(dir, "slurm-one.duckdb");
      expect((await pimc("sweep", f, "--db", one, "-j", "1")).code).toBe(0);
      expect(await q(db)).toBe(await q(one));
    } finally {
      if (slurm.conf !== undefined) spawnSync("bash", ["test/slurm/start.sh", CLUSTER, "stop"]);
    }
  }, 120_000);

  it("Ctrl-C keeps only complete points and says how to resume", async () => {
    const f = tinySweep("sigint");
    // 75 points, a few seconds: interrupted part way.
    writeFileSync(
      f,
      readFileSync(f, "utf8")
        .replace("batch = [1, 4]", "batch = [1, 2, 4, 8, 16]")
        .replace("context = [32, 96]", "context = [8, 16, 32, 64, 96]"),
    );
    const db = join(dir, "sigint.duckdb");
    const r = await new Promise<{ code: number | null; err: string }>((done) => {
      const c = spawn(PIMC_BIN[0]!, [...PIMC_BIN.slice(1), "sweep", f, "--db", db, "-j", "1"], {
        env: { ...process.env, NO_COLOR: "1" },
      });
      let err = "";
      c.stderr.on("data", (d: Buffer) => {
        err += d.toString();
      });
      // Interrupt at the first progress line (a tenth of the points done).
      c.stderr.on("data", (d: Buffer) => {
        if (/sweep: \d+\/75 points/.test(d.toString())) c.kill("SIGINT");
      });
      c.on("close", (code) => done({ code, err }));
    });
    const q = await pimc(
      "sweep",
      "--db",
      db,
      "--query",
      "SELECT count(*) AS n, count(*) FILTER (status = 'ok') AS ok, (SELECT count(DISTINCT key) FROM ops) AS with_ops FROM points",
      "--format",
      "json",
    );
    const { n, ok, with_ops } = (JSON.parse(q.stdout) as { n: number; ok: number; with_ops: number }[])[0]!;
    expect(ok).toBe(n);
    expect(with_ops).toBe(n);
    expect(r.code, r.err).toBe(130);
    expect(r.err).toMatch(
      new RegExp(
        `75 points: ${n} run \\(0 failed\\).*interrupted: complete points kept, run again to resume`,
      ),
    );
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(75);
  }, 60_000);
});

describe("sweep files, fuzzed", () => {
  it("any sweep block either makes a grid or fails with one located UserError", async () => {
    const fc = (await import("fast-check")).default;
    const { UserError } = await import("../src/errors.js");
    const keys = [
      "models",
      "systems",
      "batch",
      "context",
      "phase",
      "zip",
      "exclude",
      "set",
      "configs",
      "record",
      "speculation",
      "weights",
      "nope",
    ];
    const value = fc.oneof(
      fc.integer({ min: -3, max: 70000 }).map(String),
      fc.constantFrom(
        `"${EX}/tiny-llama.pim"`,
        `"${EX}/systems/h100.pim"`,
        '"decode"',
        '"int8"',
        "true",
        '"ops"',
        "x",
      ),
      fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 4 }).map((a) => `[${a.join(", ")}]`),
      fc.constantFrom(
        '[["batch", "context"]]',
        "[{ batch = 1 }]",
        "{ xpu = { flops = [1 TFLOPS] } }",
        "{ a = { batch = 2 } }",
        "[]",
        "{}",
      ),
    );
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.constantFrom(...keys), value), { selector: (e) => e[0], maxLength: 8 }),
        (entries) => {
          const body = entries.map(([k, v]) => `${k} = ${v}`).join("\n");
          try {
            const s = sweepOf(body);
            expect(s.points.length).toBeGreaterThan(0);
          } catch (e) {
            expect(e).toBeInstanceOf(UserError);
            expect((e as Error).message).toMatch(/s\.pim:\d+:\d+: /);
          }
        },
      ),
      { numRuns: 300, seed: 21 },
    );
  });
});
