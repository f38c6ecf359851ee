/**
 * Terminal manners: tables fitted to the terminal's width (--wide for all), `pimc` alone exits 2
 * after the help, --plot's format from the file's extension, progress only on a terminal.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Table from "cli-table3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { simulate, type Request } from "../src/exec/serve.js";
import { progress } from "../src/report/progress.js";
import { renderPng, renderSvg } from "../src/report/plot.js";
import { setWide, table, tableWidth } from "../src/report/table.js";
import { LLAMA_TINY, pimc, tempDir } from "./util.js";

const tmp = tempDir("pimc-terminal-");

/** Widest line of `text`, in characters. */
const widest = (text: string): number => Math.max(...text.split("\n").map((l) => [...l].length));

/** Runs `f` with COLUMNS set to `columns` (undefined: unset), restoring it after. */
async function withColumns<T>(columns: string | undefined, f: () => T | Promise<T>): Promise<T> {
  const saved = process.env.COLUMNS;
  if (columns === undefined) delete process.env.COLUMNS;
  else process.env.COLUMNS = columns;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env.COLUMNS;
    else process.env.COLUMNS = saved;
  }
}

const rows = [
  ["linear", "host", "9", "56.45 us", "26.0%", "400 KiB", "201 k", "0.49"],
  ["attention", "64 DPUs", "2", "9.02 us", "4.2%", "9.50 KiB", "9.38 k", "0.96"],
];
const head = ["op", "device", "calls", "time", "share", "bytes", "flops", "Op/B"];
const aligns = ["left", "left", "right", "right", "right", "right", "right", "right"] as const;
const summary =
  "softmax(q k^T * scale + mask) v; q[B, Hq, S, D], k[B, Hkv, T, D], v[B, Hkv, T, Dv], Hq a multiple of Hkv (GQA)";

describe("tables fit the width", () => {
  test("at full width a table is cli-table3's, byte for byte", () => {
    const t = table(head, [...aligns], { drop: ["calls"] });
    t.push(...rows);
    const plain = new Table({ head, colAligns: [...aligns], style: { head: [], border: [], compact: true } });
    plain.push(...rows);
    expect(t.render(Infinity)).toBe(plain.toString());
    expect(t.render(widest(plain.toString()))).toBe(plain.toString());
  });

  test("too wide: the low-value columns go first, in the order given, with a note", () => {
    const t = table(head, [...aligns], { drop: ["calls", "flops", "bytes", "Op/B"] });
    t.push(...rows);
    const full = widest(t.render(Infinity));
    // Narrow enough for two of the four columns to go.
    const out = t.render(full - 12);
    const [tableText, note] = [out.slice(0, out.lastIndexOf("\n")), out.slice(out.lastIndexOf("\n") + 1)];
    expect(widest(tableText)).toBeLessThanOrEqual(full - 12);
    expect(tableText).not.toContain("calls");
    expect(tableText).not.toContain("flops");
    expect(tableText).toContain("bytes");
    expect(tableText).toContain("Op/B");
    expect(note).toBe(`(not shown to fit ${full - 12} columns: calls, flops; --wide shows them)`);
    // Every cell of the kept columns is still there.
    for (const r of rows) for (const c of [r[0]!, r[3]!, r[5]!]) expect(tableText).toContain(c);
  });

  test("still too wide: text columns wrap at word boundaries, numbers stay whole", () => {
    const t = table(["op", "flops", "summary"], ["left", "right", "left"]);
    t.push(["attention", "9.38 k", summary], ["add", "256", "element-wise sum with broadcasting"]);
    const out = t.render(60);
    expect(widest(out)).toBeLessThanOrEqual(60);
    expect(out).toContain("9.38 k");
    // The summary's words, in order, across the wrapped lines.
    const cells = out
      .split("\n")
      .map((l) => l.split("│")[3]?.trim() ?? "")
      .join(" ");
    expect(cells.replace(/\s+/g, " ")).toContain(summary);
  });

  test("as narrow as it gets: never fewer than the longest word of a wrapped column", () => {
    const t = table(["op", "summary"]);
    t.push(["attention", "supercalifragilistic words"]);
    const out = t.render(10);
    expect(out).toContain("supercalifragilistic");
  });

  test("the width: COLUMNS, else the terminal's; unlimited off a terminal and with --wide", () => {
    const tty = { isTTY: true, columns: 90 };
    expect(tableWidth(tty, {})).toBe(90);
    expect(tableWidth(tty, { COLUMNS: "70" })).toBe(70);
    expect(tableWidth({ isTTY: false }, { COLUMNS: "70" })).toBe(70);
    expect(tableWidth({ isTTY: false }, {})).toBe(Infinity);
    expect(tableWidth(tty, { COLUMNS: "wide" })).toBe(90);
    expect(tableWidth(tty, { COLUMNS: "0" })).toBe(90);
    setWide(true);
    try {
      expect(tableWidth(tty, { COLUMNS: "70" })).toBe(Infinity);
    } finally {
      setWide(false);
    }
  });
});

describe("pimc's tables", () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.COLUMNS;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.COLUMNS;
    else process.env.COLUMNS = saved;
  });

  test("COLUMNS narrows them, --wide (anywhere on the line) restores them, a pipe keeps them whole", async () => {
    const full = await withColumns(undefined, () => pimc("list", "ops"));
    expect(full.code, full.stderr).toBe(0);
    expect(widest(full.stdout)).toBeGreaterThan(120);
    const narrow = await withColumns("72", () => pimc("list", "ops"));
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(widest(narrow.stdout)).toBeLessThanOrEqual(72);
    // Every op is still listed.
    for (const line of full.stdout.split("\n").slice(3, -2))
      expect(narrow.stdout).toContain(line.split("│")[1]!.trim());
    for (const argv of [
      ["list", "ops", "--wide"],
      ["--wide", "list", "ops"],
    ]) {
      const wide = await withColumns("72", () => pimc(...argv));
      expect(wide.code, wide.stderr).toBe(0);
      expect(wide.stdout).toBe(full.stdout);
    }
  });

  test("bench at 80 columns: every table within 80, the hidden columns named", async () => {
    const r = await withColumns("80", () =>
      pimc("bench", "examples/tiny-llama.pim", "--system", "examples/systems/upmem-2048.pim", "--batch", "1"),
    );
    expect(r.code, r.stderr).toBe(0);
    const tableLines = r.stdout.split("\n").filter((l) => /^[┌│├└]/.test(l));
    expect(tableLines.length).toBeGreaterThan(20);
    for (const l of tableLines) expect([...l].length, l).toBeLessThanOrEqual(80);
    expect(r.stdout).toContain("(not shown to fit 80 columns: tokens/step");
    expect(r.stdout).toContain("--wide shows them");
  });
});

describe("pimc with no arguments", () => {
  test("prints the help on stderr and exits 2; asking for help exits 0", async () => {
    const r = await pimc();
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("Usage: pimc [options] [command]");
    expect(r.stderr).toContain("--wide");
    for (const argv of [["--help"], ["help", "bench"]]) {
      const h = await pimc(...argv);
      expect(h.code, argv.join(" ")).toBe(0);
      expect(h.stdout).toContain("Usage: pimc");
    }
  });
});

describe("--plot: the format from the extension", () => {
  const bench = (plot: string) =>
    pimc(
      "bench",
      LLAMA_TINY,
      "--system",
      "examples/systems/upmem-rank.pim",
      "--phase",
      "decode",
      "--no-cooperation",
      "--batch",
      "1",
      "--plot",
      plot,
    );

  test("an unknown or missing extension: one line naming .svg and .png, exit 2, no file", async () => {
    for (const name of ["p.pdf", "p.svg/p"]) {
      const file = join(tmp, name);
      const r = await bench(file);
      expect(r.code, name).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(".svg or .png");
      expect(existsSync(file)).toBe(false);
    }
  });

  test(".png: a PNG of the same plot (resvg), twice the SVG's size", async () => {
    const file = join(tmp, "plot.PNG");
    const r = await bench(file);
    expect(r.code, r.stderr).toBe(0);
    const png = readFileSync(file);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // IHDR: width and height, big-endian, at bytes 16 and 20.
    expect(png.readUInt32BE(16)).toBeGreaterThan(800);
    expect(png.readUInt32BE(20)).toBeGreaterThan(png.readUInt32BE(16));
  });

  test("renderPng scales the SVG by two and paints the background white", async () => {
    const svg = await renderSvg({
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      width: 100,
      height: 50,
      data: { values: [{ x: 1 }] },
      mark: "point",
      encoding: { x: { field: "x", type: "quantitative" } },
    });
    const w = Number(/width="(\d+)"/.exec(svg)![1]);
    const png = Buffer.from(await renderPng(svg));
    expect(png.readUInt32BE(16)).toBe(2 * w);
  });
});

describe("progress only on a terminal", () => {
  const stream = (isTTY: boolean) => {
    const out: string[] = [];
    const s = { isTTY, columns: 100, write: (x: string) => out.push(x) > 0 };
    return { out, s: s as unknown as NodeJS.WriteStream };
  };

  test("thousands of quick steps redraw the bar a few times, not thousands", () => {
    const { out, s } = stream(true);
    const bar = progress(s);
    bar.start(5000);
    bar.label("emulating decode");
    for (let i = 0; i < 4999; i++) bar.tick();
    expect(out.length).toBeLessThan(50);
    expect(out.join("")).toContain("emulating decode");
    bar.tick();
    expect(out.join("")).toContain("\x1B[?25h"); // the last step clears the bar
  });

  test("on a terminal it shows the step and its label, and clears itself after the last step", () => {
    const { out, s } = stream(true);
    const bar = progress(s);
    bar.start(3);
    bar.label("batch 1");
    bar.tick();
    bar.label("batch 4");
    expect(out.join("")).toContain("1/3 batch 4");
    bar.tick();
    const before = out.length;
    bar.tick(); // the last step: the bar goes away and the cursor comes back
    const end = out.slice(before).join("");
    expect(end).toContain("\x1B[?25h");
    expect(end).not.toContain("3/3");
    const after = out.length;
    bar.stop(); // already stopped: nothing more
    expect(out.length).toBe(after);
  });

  test("off a terminal nothing at all, however many steps", () => {
    const { out, s } = stream(false);
    const bar = progress(s);
    bar.start(3);
    for (let i = 0; i < 3; i++) bar.tick();
    expect(out).toEqual([]);
  });

  test("serve reports each request as it finishes (its bar's steps)", () => {
    const trace: Request[] = [0, 0.001, 0.002, 0.5].map((arrival) => ({ arrival, prompt: 8, output: 4 }));
    const done: number[] = [];
    const timing = { prefill: () => 1e-3, decode: () => 1e-4 };
    const r = simulate(trace, timing, { batching: "continuous", maxBatch: 2, onFinish: (n) => done.push(n) });
    expect(done).toEqual([1, 2, 3, 4]);
    expect(r.requests).toHaveLength(4);
  });

  test("commands off a terminal write nothing on stderr", async () => {
    const r = await pimc("generate", LLAMA_TINY, "--ids", "1,2,3", "--steps", "3");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split(" ")).toHaveLength(6);
  });
});
