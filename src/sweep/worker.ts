/**
 * A worker thread of `pimc sweep`: loads the sweep once, then runs the points the main thread sends
 * (one at a time) and posts each result back.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadSweep } from "./spec.js";
import { runPointSafely } from "./point.js";

const { file, name } = workerData as { file: string; name?: string };
const sweep = loadSweep(file, name);
parentPort!.on("message", (i: number) => {
  void runPointSafely(sweep, i).then((r) => parentPort!.postMessage({ i, r }));
});
