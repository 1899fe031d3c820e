// Row kernels of the CPU cube_crop: the inner loops over contiguous runs, in float32, one implementation per
// instruction set (portable C++, AVX2, AVX-512), picked at run time by the CPU capability ATen reports
// (at::get_cpu_capability(): the CPU's, lowered by ATEN_CPU_CAPABILITY), so that one build runs on any x86-64.
//
// All arithmetic is the reference's: float(byte) products and sums rounded step by step (no FMA), so every
// implementation gives the same bits.  Channel patterns: ``scale3[k % 3]`` applies to element k of a run (a run
// of one channel passes the same value three times; an interleaved RGB run passes the three channels').
// ``stream``: write with non-temporal stores where the destination is aligned (outputs larger than the caches).
#pragma once

#include <cstdint>

namespace vidfast {
namespace ops {

struct RowKernels {
  const char* isa;
  // dst[c][j] = float(src[3 * k + sel[c]]) * scale[c] + bias[c] for j < n, c < 3, where k = j (reverse: n-1-j):
  // n packed RGB pixels to three planar float rows.
  void (*rgb_planar)(const uint8_t* src, int64_t n, bool reverse, const int* sel, const float* scale,
                     const float* bias, float* const* dst, bool stream);
  // dst[k] = float(src[k]) * scale3[k % 3] + bias3[k % 3] for k < n.
  void (*bytes)(const uint8_t* src, int64_t n, const float* scale3, const float* bias3, float* dst, bool stream);
  // dst[k] = src[i0[k]] * w0[k] + src[i1[k]] * w1[k] for k < n (horizontal bilinear taps).
  void (*taps)(const float* src, const int32_t* i0, const int32_t* i1, const float* w0, const float* w1,
               int64_t n, float* dst);
  // dst[k] = (top[k] * wy0 + bottom[k] * wy1) * scale3[k % 3] + bias3[k % 3] for k < n (vertical blend).
  void (*blend)(const float* top, const float* bottom, float wy0, float wy1, const float* scale3,
                const float* bias3, int64_t n, float* dst, bool stream);
  // Orders the non-temporal stores of this thread before later stores (after a thread's last row).
  void (*fence)();
};

// The implementation for this CPU (decided once, at first use).
const RowKernels& row_kernels();

}  // namespace ops
}  // namespace vidfast
