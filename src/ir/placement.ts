/**
 * The placement attributes the partition pass writes on each op and every target reads: `device`
 * (where the op runs), and with a dynamic placement `alt_device` and `switch_above` (the device once
 * the tokens per step B x S exceed the threshold).
 */
import type { DimEnv } from "./dim.js";
import type { Op } from "./module.js";

/**
 * Where an annotated op runs under `env`: its `device`, or with a dynamic placement its `alt_device`
 * once the tokens per step B x S exceed `switch_above`. Undefined for ops without a placement.
 */
export function deviceFor(op: Op, env: DimEnv): string | undefined {
  const d = op.attrs.device;
  if (typeof d !== "string") return undefined;
  const alt = op.attrs.alt_device;
  const above = op.attrs.switch_above;
  if (typeof alt === "string" && typeof above === "number" && (env.B ?? 1) * (env.S ?? 1) > above) return alt;
  return d;
}
