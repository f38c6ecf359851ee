/**
 * Named host CPUs built from published measurements (no constant here is fitted to a figure pimc is
 * then compared with). Each figure names its source; `D` marks arithmetic on measured figures.
 *
 * GEMM throughput of a Cascade Lake Xeon Silver core (one AVX-512 FMA unit) comes from OpenVINO's
 * published benchmark data, release 2024.1 (openvinotoolkit/openvino,
 * docs/sphinx_setup/_static/benchmarks_files/OV-benchmark-data.csv): BERT-large (whole-word-masking
 * SQuAD, sequence 384, 246.93 GFLOP per inference, Open Model Zoo) on 2 x Xeon Silver 4216R (2 x 16
 * cores, 2.2 GHz base, 12 x 32 GB DDR4-2666), throughput mode: FP32 6.84 and INT8 20.83 inferences/s,
 * i.e. (D) 1689 GFLOP/s and 5144 GOP/s, or 23.99 FLOP and 73.06 INT8 op per core per base-clock
 * cycle. BERT-large is GEMMs (plus attention's batched products), so these are achieved GEMM rates of
 * a tuned library (oneDNN) on this core. They scale to another part of the family by cores x base
 * clock; the calibration test checks that scaling on held-out parts (test/calibration-host.test.ts).
 * Cascade Lake has no FP16/BF16 arithmetic (AVX512_BF16 came with Cooper Lake): OpenVINO 2022.1 runs
 * the same network's FP16 at its FP32 speed (4.57 vs 4.59 inferences/s on that machine).
 */
import type { HostConfig } from "./index.js";

/** FP32 flops per core per base-clock cycle that large GEMMs reach on a Cascade Lake Silver core (D). */
export const CLX_SILVER_F32_PER_CYCLE = (246.93e9 * 6.84) / (32 * 2.2e9);
/** INT8 (VNNI) ops per core per base-clock cycle, likewise (D). */
export const CLX_SILVER_I8_PER_CYCLE = (246.93e9 * 20.83) / (32 * 2.2e9);

/** GEMM rates of a Cascade Lake Silver/Gold-5xxx part (one FMA unit per core) from its cores and base clock. */
export function clxSilverGemm(cores: number, baseClock: number): NonNullable<HostConfig["gemm"]> {
  const f32 = CLX_SILVER_F32_PER_CYCLE * cores * baseClock;
  return { f32, f16: f32, bf16: f32, i8: CLX_SILVER_I8_PER_CYCLE * cores * baseClock };
}

/**
 * The host of the UPMEM servers PrIM and PIM-LLM-class studies use: 2 x Intel Xeon Silver 4215
 * (Cascade Lake, 2 x 8 cores, 2.5 GHz base, one AVX-512 FMA unit per core: Intel ARK) with its DRAM
 * on the channels the UPMEM DIMMs leave (2 DDR4-2400 DIMMs per socket beside 20 PIM DIMMs).
 *  - memory_bandwidth 23.1 GB/s: STREAM measured on this host beside the PIM DIMMs (Giannoula et al.,
 *    PyGim, SIGMETRICS 2025, Table 1; the same table's peakperf figure, 1.28 TFLOP/s FP32, is the
 *    nominal 16 x 2.5 GHz x 32);
 *  - core_bandwidth 12.96 GB/s: one Cascade Lake core's DRAM load bandwidth (likwid-bench on a Xeon
 *    Gold 6248; RRZE-HPC/kerncraft, examples/machine-files/CascadelakeSP_Gold-6248_SNC.yml);
 *  - gemm: `clxSilverGemm(16, 2.5 GHz)` (D): 960 GFLOP/s FP32 (75 % of the peakperf figure),
 *    2.92 TOP/s INT8, FP16/BF16 at the FP32 rate;
 *  - overhead 4.3 us per parallel op: (D) from ggml-org/llama.cpp issue 26200, where a decode step of
 *    about 2,000 barriers runs 11.92 tokens/s with sleeping and 13.28 with spinning barriers
 *    ((1 / 11.92 - 1 / 13.28) / 2000); the order of a fork/join, not a measurement of this part.
 */
export const XEON_SILVER_4215_X2: HostConfig = {
  cpu: "2 x Intel Xeon Silver 4215 (Cascade Lake), 4 x DDR4-2400",
  cores: 16,
  threads: 16,
  frequency: 2.5e9,
  memory_bandwidth: 23.1e9,
  core_bandwidth: 12.96e9,
  simd_width: 512,
  fma_units: 1,
  overhead: 4.3e-6,
  gemm: clxSilverGemm(16, 2.5e9),
};
