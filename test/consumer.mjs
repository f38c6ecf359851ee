// Runs docs/api.md's example as a project that depends on pimc would: in a temporary folder whose
// node_modules/pimc is this repository (the example's paths, examples/ and test/, are linked beside
// it), and compares what it prints with the doc's output block. Exit 0 when equal.
//   node test/consumer.mjs            the built package (dist/, the exports' default): .ci/run
//   node test/consumer.mjs --source   the TypeScript sources (the exports' pimc-source condition,
//                                     loaded by test/ts-register.mjs): test/api.test.ts
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { URL, fileURLToPath } from "node:url";
import { apiExample } from "./api-example.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const source = process.argv.includes("--source");

const { code, output } = apiExample(readFileSync(join(root, "docs/api.md"), "utf8"));
const dir = mkdtempSync(join(tmpdir(), "pimc-consumer-"));
try {
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(root, join(dir, "node_modules", "pimc"), "dir");
  for (const d of ["examples", "test"]) symlinkSync(join(root, d), join(dir, d), "dir");
  writeFileSync(join(dir, "package.json"), '{ "type": "module", "private": true }\n');
  writeFileSync(join(dir, "example.mjs"), code);
  const flags = source ? ["--conditions=pimc-source", "--import", join(root, "test/ts-register.mjs")] : [];
  const r = spawnSync(process.execPath, [...flags, "example.mjs"], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  if (r.status !== 0) {
    process.stderr.write(`docs/api.md's example failed (exit ${r.status}):\n${r.stderr}`);
    process.exit(1);
  }
  if (r.stdout !== output) {
    process.stderr.write(`docs/api.md's example printed:\n${r.stdout}\nthe doc shows:\n${output}`);
    process.exit(1);
  }
  process.stdout.write(`docs/api.md's example: ${output.trim().split("\n").length} lines as the doc shows\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
