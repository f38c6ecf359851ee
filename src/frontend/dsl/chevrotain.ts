/**
 * chevrotain, loaded from the single-file ESM bundle the package ships (lib/chevrotain.mjs). Its
 * default entry imports lodash-es module by module, which costs ~300 ms of start-up on every pimc
 * run; the bundle loads in ~40 ms. Falls back to the default entry if the bundle is not there.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type * as Chevrotain from "chevrotain";

function bundleUrl(): string | undefined {
  try {
    // The package's main entry is <pkg>/lib/src/api.js.
    const main = createRequire(import.meta.url).resolve("chevrotain");
    const bundle = join(dirname(main), "..", "chevrotain.mjs");
    return existsSync(bundle) ? pathToFileURL(bundle).href : undefined;
  } catch {
    return undefined;
  }
}

const url = bundleUrl();
const chevrotain: typeof Chevrotain = url
  ? ((await import(url)) as typeof Chevrotain)
  : await import("chevrotain");

export const { createToken, Lexer, CstParser, EOF } = chevrotain;
