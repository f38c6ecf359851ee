// Module hooks (https://nodejs.org/api/module.html#customization-hooks) that load the project's .ts
// files with TypeScript's transpileModule (types are stripped, not checked: tsc does that) and
// resolve the sources' `./x.js` imports to `./x.ts`. Transpiling every file costs a few seconds of
// CPU, so each output is kept in node_modules/.cache/pimc-ts/ under the hash of its input.
import { createHash, randomBytes } from "node:crypto";
import { threadId } from "node:worker_threads";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import { URL, fileURLToPath } from "node:url";

const cacheDir = fileURLToPath(new URL("../node_modules/.cache/pimc-ts/", import.meta.url));
const require = createRequire(import.meta.url);
const tsVersion = JSON.parse(readFileSync(require.resolve("typescript/package.json"), "utf8")).version;
/** TypeScript itself (a large module) is loaded on the first cache miss only. */
let ts;

export async function resolve(specifier, context, next) {
  const parent = context.parentURL;
  if (parent?.endsWith(".ts") && specifier.startsWith(".") && specifier.endsWith(".js")) {
    const url = new URL(`${specifier.slice(0, -3)}.ts`, parent);
    if (existsSync(url)) return { url: url.href, format: "module", shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.endsWith(".ts")) return next(url, context);
  const fileName = fileURLToPath(url);
  const text = readFileSync(fileName, "utf8");
  const key = createHash("sha256").update(`${tsVersion}\0${fileName}\0${text}`).digest("hex");
  const cached = `${cacheDir}${key}.js`;
  if (existsSync(cached))
    return { format: "module", source: readFileSync(cached, "utf8"), shortCircuit: true };
  ts ??= (await import("typescript")).default;
  const compilerOptions = {
    module: ts.ModuleKind.ESNext,
    target: ts.ScriptTarget.ES2022,
    verbatimModuleSyntax: true,
    inlineSourceMap: true,
  };
  const source = ts.transpileModule(text, { fileName, compilerOptions }).outputText;
  mkdirSync(cacheDir, { recursive: true });
  // A name of its own per process and thread: parallel spawns and worker threads (pimc sweep's) may
  // write the same entry at once; the rename is atomic.
  const tmp = `${cached}.${process.pid}.${threadId}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, source);
  renameSync(tmp, cached);
  return { format: "module", source, shortCircuit: true };
}
