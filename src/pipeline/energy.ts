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
  /** "Column decoder to BG MUX" 1.01 pJ/b. */
  bankGroupPerBit: 1.01e-12,
  /** "BG Mux to GIO Mux" 1.23 pJ/b. */
  globalIoPerBit: 1.23e-12,
  /** "TSV energy" 0.5 pJ/b. */
  tsvPerBit: 0.5e-12,
  /** The three above: a burst's way from the bank to the stack's base. */
  datapathPerBit: (1.01 + 1.23 + 0.5) * 1e-12,
  /** "Silicon interposer IO energy 0.3 pJ/b": between the stack and the processor. */
  ioPerBit: 0.3e-12,
} as const;

/** A multiply-add on a processor's or a PIM unit's ALU (AttAcc's ALU energy). */
export const MAC_ENERGY = 0.32e-12;

/** Joules per byte a processor beside the stack streams (rows read whole): 28.72 pJ, AttAcc's GPU `mem`. */
export const HBM_STREAM_PER_BYTE =
  8 * (HBM_PATH.actPerBit + HBM_PATH.arrayPerBit + HBM_PATH.datapathPerBit + HBM_PATH.ioPerBit);

/**
 * Joules per byte Duplex's Logic-PIM streams: 16.48 pJ. Its reads leave each bank group for TSVs added
 * beside it and go down to the logic die (Yun et al., "Duplex", MICRO 2024, Section IV-C: the added
 * TSVs sit in the power-TSV area "to reduce the length of Logic-PIM-path I/O from each bank"), so they
 * pay the row, the cells, the column path to the bank-group mux and a TSV, not the global I/O to the
 * stack's central data TSVs nor the interposer. (AttAcc's buffer-die PIM, which uses the stack's own
 * data path, would pay 26.32 pJ.)
 */
export const HBM_LOGIC_PIM_PER_BYTE =
  8 * (HBM_PATH.actPerBit + HBM_PATH.arrayPerBit + HBM_PATH.bankGroupPerBit + HBM_PATH.tsvPerBit);

/**
 * A GPU's on-chip energies, AttAcc's GPU model (scale-snu/attacc_simulator, src/config.py,
 * ENERGY_TABLE['GPU']: `l2` 0.3 x 8, `l1` 0.16 x 8 pJ per byte, from arXiv 1509.02308's 4-way caches;
 * `reg` 0.0675 pJ per register access), charged on the traffic its devices.py counts
 * (targets/xpu/model.ts onChipTraffic).
 */
export const GPU_ON_CHIP = {
  l2PerByte: 0.3e-12 * 8,
  l1PerByte: 0.16e-12 * 8,
  regAccess: 0.0675e-12,
} as const;

/** A PIM device's SRAM buffers and register files, per byte (AttAcc's PIM `sram`, 0.0034 pJ/byte). */
export const PIM_SRAM_PER_BYTE = 0.0034e-12;
