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
