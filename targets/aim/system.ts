/** The AiM system of a SystemModel (the target's validated description, else the default). */
import type { SystemModel } from "../index.js";
import { DEFAULT_SYSTEM, type AimSystem } from "./standard.js";

export const systemOf = (s: SystemModel): AimSystem => (s.config as AimSystem | undefined) ?? DEFAULT_SYSTEM;
