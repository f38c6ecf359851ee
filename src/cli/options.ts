/** Option parsers and option groups shared by commands. */
import { InvalidArgumentError } from "@commander-js/extra-typings";

export function positiveNumber(v: string): number {
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x) || x <= 0)
    throw new InvalidArgumentError("expected a positive number");
  return x;
}

export function positiveInt(v: string): number {
  const x = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(x) || x <= 0)
    throw new InvalidArgumentError("expected a positive integer");
  return x;
}

export function nonNegativeInt(v: string): number {
  const x = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(x))
    throw new InvalidArgumentError("expected an integer >= 0");
  return x;
}

/** A parser of positive integers up to `max` (a cap of src/limits.ts). */
export function positiveIntUpTo(max: number): (v: string) => number {
  return (v) => {
    const x = positiveInt(v);
    if (x > max) throw new InvalidArgumentError(`expected a positive integer up to ${max} (pimc's limit)`);
    return x;
  };
}

/** A parser of integers >= 0 up to `max` (a cap of src/limits.ts). */
export function nonNegativeIntUpTo(max: number): (v: string) => number {
  return (v) => {
    const x = nonNegativeInt(v);
    if (x > max) throw new InvalidArgumentError(`expected an integer from 0 to ${max} (pimc's limit)`);
    return x;
  };
}

/** The formats `--plot` writes, by the file's extension. */
export const PLOT_FORMATS = ["svg", "png"] as const;

/** The format of a plot file from its extension (already checked by `plotFile`). */
export function plotFormat(file: string): (typeof PLOT_FORMATS)[number] {
  const ext = /\.([^./\\]+)$/.exec(file)?.[1]?.toLowerCase();
  return (PLOT_FORMATS as readonly string[]).includes(ext ?? "")
    ? (ext as (typeof PLOT_FORMATS)[number])
    : "svg";
}

/** `--plot FILE`: a file name ending in one of the supported extensions. */
export function plotFile(v: string): string {
  const ext = /\.([^./\\]+)$/.exec(v)?.[1];
  if (ext === undefined || !(PLOT_FORMATS as readonly string[]).includes(ext.toLowerCase()))
    throw new InvalidArgumentError(
      `the plot's format comes from its extension: ${PLOT_FORMATS.map((f) => `.${f}`).join(" or ")}`,
    );
  return v;
}
