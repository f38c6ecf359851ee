/** The host CPU target: today the fp32 reference interpreter (the host timing model comes with bench). */
import { Interpreter } from "../../src/exec/interpreter.js";
import type { Target } from "../index.js";

const cpu: Target = {
  name: "cpu",
  summary: "host CPU, fp32 reference execution",
  prepare(model) {
    return new Interpreter(model.module, model.weights);
  },
};

export default cpu;
