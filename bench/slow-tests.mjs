// Prints the tests of a vitest JSON report (`vitest run --reporter=json --outputFile=...`) that took
// over a threshold (default 5 s), slowest first, and the per-file durations. A report, not a check:
// it never fails (speed goals belong in bench/, not in timed unit tests).
//   node bench/slow-tests.mjs .ci/out/vitest.json [seconds]
import { readFileSync } from "node:fs";
import process from "node:process";

const say = (line) => process.stdout.write(`${line}\n`);
// A reader that stops early (`... | head`) is not an error.
process.stdout.on("error", (e) => process.exit(e.code === "EPIPE" ? 0 : 1));
const [file = ".ci/out/vitest.json", limit = "5"] = process.argv.slice(2);
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (e) {
  say(`slow tests: no report (${e.message})`);
  process.exit(0);
}
const over = Number(limit) * 1000;
const files = [];
const slow = [];
for (const f of report.testResults ?? []) {
  const name = f.name.replace(`${process.cwd()}/`, "");
  files.push({ name, ms: f.endTime - f.startTime });
  for (const t of f.assertionResults ?? [])
    if ((t.duration ?? 0) > over) slow.push({ ms: t.duration, name: `${name} > ${t.fullName}` });
}
const s = (ms) => `${(ms / 1000).toFixed(1)} s`.padStart(8);
files.sort((a, b) => b.ms - a.ms);
slow.sort((a, b) => b.ms - a.ms);
const total = files.reduce((x, f) => x + f.ms, 0);
say(`test files: ${files.length}, sum of their durations ${s(total).trim()}; slowest:`);
for (const f of files.slice(0, 10)) say(`${s(f.ms)}  ${f.name}`);
say(`tests over ${limit} s: ${slow.length}`);
for (const t of slow) say(`${s(t.ms)}  ${t.name}`);
