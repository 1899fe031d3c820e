// vidfast::cube_crop: shared argument checking and planning for the CPU and CUDA kernels.
//
// The op gathers P pieces from each of N uint8 clips ([N, T, H, W, 3] or a ragged list of [T_i, H_i, W_i, 3]),
// resizes them bilinearly (align_corners=False) or copies them exactly, flips, rotates, replicates a channel,
// normalises and casts, writing Tensor[N, P, 3, t, oh, ow] (optionally channels-last-3d strided).
//
// plan_cube_crop() validates every argument (TORCH_CHECK_VALUE / TORCH_CHECK_INDEX, so Python sees ValueError /
// IndexError), resolves the permutation and packs everything the kernels need into one int64 host table, so that
// the CUDA kernel can receive it with a single host-to-device copy.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

// Functions shared by the host and the device: __host__ __device__ under nvcc, plain C++ elsewhere.
#if defined(__CUDACC__)
#define VIDFAST_HOST_DEVICE __host__ __device__
#else
#define VIDFAST_HOST_DEVICE
#endif

namespace vidfast {
namespace ops {

// Columns of the per-clip rows of the table: base pointer, sizes and byte strides.
enum ClipCol : int64_t { kClipPtr = 0, kClipT, kClipH, kClipW, kClipST, kClipSH, kClipSW, kClipSC, kClipCols };
// Columns of the per-output-piece rows (geometry already resolved through perm).
enum PieceCol : int64_t {
  kPieceClip = 0,
  kPieceY0,
  kPieceX0,
  kPieceH,
  kPieceW,
  kPieceFlip,
  kPieceRot,
  kPieceChannel,
  kPieceCols
};

constexpr int kChannels = 3;

struct CubeCropPlan {
  int64_t n = 0, p = 0, t = 0, oh = 0, ow = 0;
  bool channels_last = false;
  at::ScalarType dtype = at::kFloat;
  // int64 host table: [n, kClipCols] clip rows, then [n * p, kPieceCols] piece rows, then [n * p, t] source
  // frame indices, then 3 * 256 floats (packed two per int64): the copy-path lookup table lut[c][v] = normalize.
  at::Tensor table;
  int64_t pieces_offset = 0, frames_offset = 0, lut_offset = 0;
  // Normalisation of a (possibly interpolated) byte value v of output channel c, in float32:
  // v * scale[c] + bias[c] with scale = 1 / (255 std[c]) and bias = -mean[c] / std[c] rounded from double
  // (the reference computes exactly this, so native and reference agree bit for bit).
  std::array<float, kChannels> scale{}, bias{};
  // Output [N, P, 3, t, oh, ow]: contiguous, or channels-last (channel innermost, channels_last_3d per piece).
  // Each kernel allocates it (the CPU one with huge pages), on the video's device.
  std::vector<int64_t> out_sizes, out_strides;
  c10::Device device = c10::Device(c10::DeviceType::CPU);

  int64_t num_pieces() const { return n * p; }
  const int64_t* clips() const { return table.data_ptr<int64_t>(); }
  const int64_t* pieces() const { return table.data_ptr<int64_t>() + pieces_offset; }
  const int64_t* frames() const { return table.data_ptr<int64_t>() + frames_offset; }
  const float* lut() const { return reinterpret_cast<const float*>(table.data_ptr<int64_t>() + lut_offset); }
};

// Validates the arguments of vidfast::cube_crop for a kernel running on `device_type` and builds the plan.
// `pinned` allocates the host table in page-locked memory (for an asynchronous copy to the GPU).
CubeCropPlan plan_cube_crop(at::TensorList video, const at::Tensor& frame_idx, const at::Tensor& boxes,
                            at::IntArrayRef out_size, const c10::optional<at::Tensor>& perm,
                            const c10::optional<at::Tensor>& flip, const c10::optional<at::Tensor>& rot,
                            const c10::optional<at::Tensor>& channel, at::ArrayRef<double> mean,
                            at::ArrayRef<double> std, at::ScalarType dtype, bool channels_last,
                            c10::DeviceType device_type, bool pinned);

// Where output pixel (i, j) of a piece reads the resized crop: A(r0 + j * dr, c0 + j * dc) for row i, given the
// piece's horizontal flip and rot90 k (dims (-2, -1)).  Shared by host and device code.
struct RowWalk {
  int64_t r0, dr, c0, dc;
};

VIDFAST_HOST_DEVICE inline RowWalk row_walk(int64_t i, int64_t rot, bool flip, int64_t oh, int64_t ow) {
  // rot90(B, k)[i, j] = B[bi, bj]; B = flip ? A[:, ::-1] : A.  Odd k implies oh == ow.
  int64_t bi0, dbi, bj0, dbj;
  switch (rot) {
    case 1: bi0 = 0; dbi = 1; bj0 = ow - 1 - i; dbj = 0; break;
    case 2: bi0 = oh - 1 - i; dbi = 0; bj0 = ow - 1; dbj = -1; break;
    case 3: bi0 = oh - 1; dbi = -1; bj0 = i; dbj = 0; break;
    default: bi0 = i; dbi = 0; bj0 = 0; dbj = 1; break;
  }
  if (flip) {
    bj0 = ow - 1 - bj0;
    dbj = -dbj;
  }
  return RowWalk{bi0, dbi, bj0, dbj};
}

// IEEE single-precision arithmetic with round-to-nearest and no contraction into FMA, also under nvcc's
// --use_fast_math, so that host and device kernels compute bit-identical values.
VIDFAST_HOST_DEVICE inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

VIDFAST_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

VIDFAST_HOST_DEVICE inline float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// PyTorch's bilinear source taps for align_corners=False (no scale factor), in float like ATen's CPU kernel.
struct Tap {
  int64_t i0, i1;
  float w0, w1;
};

VIDFAST_HOST_DEVICE inline Tap bilinear_tap(int64_t dst, int64_t in_len, int64_t out_len) {
  const float scale = div_rn(static_cast<float>(in_len), static_cast<float>(out_len));
  float src = add_rn(mul_rn(add_rn(static_cast<float>(dst), 0.5f), scale), -0.5f);
  src = src < 0.f ? 0.f : src;
  const int64_t i0 = static_cast<int64_t>(src);
  const float w1 = add_rn(src, -static_cast<float>(i0));
  return Tap{i0, i0 + (i0 < in_len - 1 ? 1 : 0), add_rn(1.f, -w1), w1};
}

// The bilinear value of one channel: (p00 wx0 + p01 wx1) wy0 + (p10 wx0 + p11 wx1) wy1, rounded step by step.
VIDFAST_HOST_DEVICE inline float bilinear(float p00, float p01, float p10, float p11, float wx0, float wx1, float wy0,
                                          float wy1) {
  const float top = add_rn(mul_rn(p00, wx0), mul_rn(p01, wx1));
  const float bottom = add_rn(mul_rn(p10, wx0), mul_rn(p11, wx1));
  return add_rn(mul_rn(top, wy0), mul_rn(bottom, wy1));
}

}  // namespace ops
}  // namespace vidfast
