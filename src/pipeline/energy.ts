/**
 * Energy facts shared by targets (docs/energy.md): what moving a bit along an HBM stack's access path
 * and a multiply-add cost. The per-bit energies are O'Connor et al., "Fine-Grained DRAM: Energy-
 * Efficient DRAM for Extreme Bandwidth Systems", MICRO 2017, as the AttAcc simulator tabulates them
 * (scale-snu/attacc_simulator, src/config.py, ENERGY_TABLE, comment "2017 MICRO FGDRAM"); the MAC is
 * AttAcc's ALU energy (ENERGY_TABLE['GPU']['alu'] = ENERGY_TABLE['PIM'][*]['alu'] = 0.32 pJ, charged
 * per flops / 2). Dynamic energy only: a device's static power is not in these.
 */
export const HBM_PATH = {
  /** Opening and closing a row (ACT + PRE), per bit of the row: "Cell (ACT/PRE) energy 0.11 pJ/b". */
  actPerBit: 0.11e-12,
  /** Reading or writing a burst in the cell array: "Cell (RD/WRT) energy 0.44 pJ/b". */
  arrayPerBit: 0.44e-12,
  /** Column decoder to bank-group mux 1.01, bank-group mux to global I/O mux 1.23, TSV 0.5 pJ/b. */
  datapathPerBit: (1.01 + 1.23 + 0.5) * 1e-12,
  /** "Silicon interposer IO energy 0.3 pJ/b": between the stack and the processor. */
  ioPerBit: 0.3e-12,
} as const;

/** A multiply-add on a processor's or a PIM unit's ALU (AttAcc's ALU energy). */
export const MAC_ENERGY = 0.32e-12;

/** Joules per byte a processor beside the stack streams (rows read whole): 28.72 pJ, AttAcc's GPU `mem`. */
export const HBM_STREAM_PER_BYTE =
  8 * (HBM_PATH.actPerBit + HBM_PATH.arrayPerBit + HBM_PATH.datapathPerBit + HBM_PATH.ioPerBit);

/** Joules per byte a processor on the stack's logic die streams (no interposer): 26.32 pJ, AttAcc's buffer-die PIM. */
export const HBM_LOGIC_DIE_PER_BYTE =
  8 * (HBM_PATH.actPerBit + HBM_PATH.arrayPerBit + HBM_PATH.datapathPerBit);
