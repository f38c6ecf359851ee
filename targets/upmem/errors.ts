/** An illegal UPMEM program (WRAM overflow, bad DMA, MRAM out of bounds, unknown kernel, ...). */
import { UserError } from "../../src/errors.js";

export class ProgramError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = "ProgramError";
  }
}
