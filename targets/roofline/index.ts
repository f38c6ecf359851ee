/**
 * A heterogeneous system described by rooflines: any number of devices (host CPU, PIM, xPU), each
 * with a peak FLOP/s and a memory bandwidth, joined by one link. Quick studies of placement before a
 * detailed device model exists; execution is the fp32 reference interpreter.
 */
import { z } from "zod";
import { Interpreter } from "../../src/exec/interpreter.js";
import { validateSystem } from "../../src/frontend/system.js";
import { rooflineCostModel } from "../../src/pipeline/cost-model.js";
import type { Target } from "../index.js";

const zDevice = z.strictObject({
  kind: z.enum(["host", "pim", "xpu"]),
  flops: z.number().positive(),
  bandwidth: z.number().positive(),
  overhead: z.number().nonnegative().default(0),
  /** Bytes of the device's own memory: what the data of the ops placed on it must fit (absent: unchecked). */
  memory: z.number().positive().optional(),
});

const zSystem = z
  .strictObject({
    devices: z.record(z.string(), zDevice),
    /** The device holding function inputs and results. */
    home: z.string(),
    /** Bandwidth between devices, bytes/s, and latency per transfer, s. */
    link: z.number().positive(),
    link_latency: z.number().nonnegative().default(0),
  })
  .refine((s) => s.home in s.devices, { message: "home must name one of the devices", path: ["home"] });

const DEFAULT = zSystem.parse({
  devices: {
    host: { kind: "host", flops: 1.5e12, bandwidth: 51.2e9, overhead: 1e-6 },
    pim: { kind: "pim", flops: 0.5e12, bandwidth: 1e12, overhead: 5e-6 },
  },
  home: "host",
  link: 25e9,
  link_latency: 2e-6,
});

const roofline: Target = {
  name: "roofline",
  summary: "devices described by their rooflines (peak FLOP/s, bandwidth) and a link; for placement studies",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "quantize", "dce", "partition"],
  system(decl) {
    const s = decl ? validateSystem(decl, zSystem) : DEFAULT;
    const devices = Object.entries(s.devices).map(([name, d]) => ({ name, ...d }));
    return {
      name: decl?.name ?? "roofline_default",
      costModel: rooflineCostModel(devices, s.home, s.link, s.link_latency),
      passOptions: {},
      config: s,
    };
  },
  // Each device holds the data of the ops placed on it; unplaced ops run on the home device.
  memories(system) {
    const s = system.config as z.infer<typeof zSystem>;
    const name = (d: string): string => `${d}'s memory`;
    return {
      memories: Object.entries(s.devices).flatMap(([d, v]) =>
        v.memory === undefined ? [] : [{ name: name(d), bytes: v.memory }],
      ),
      place: (_kind, devices) => {
        const d = [...devices][0] ?? s.home;
        return s.devices[d]?.memory === undefined ? undefined : name(d);
      },
      holdsAll: Object.values(s.devices).every((v) => v.memory !== undefined),
    };
  },
  prepare(model) {
    return new Interpreter(model.module, model.weights);
  },
};

export default roofline;
