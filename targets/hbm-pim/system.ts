/** The HBM-PIM system of a SystemModel (the target's validated description, else the default). */
import type { SystemModel } from "../index.js";
import { DEFAULT_SYSTEM, type HbmPimSystem } from "./standard.js";

export const systemOf = (s: SystemModel): HbmPimSystem =>
  (s.config as HbmPimSystem | undefined) ?? DEFAULT_SYSTEM;
