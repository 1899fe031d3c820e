// Row kernels of the CPU cube_crop (see cube_crop_rows.h): portable C++, and on x86-64 AVX2 and AVX-512 builds
// of one body (cube_crop_rows_simd.inc) compiled for those instruction sets by a target pragma, so that the rest
// of the library keeps the baseline x86-64 code and the wheel runs on any x86-64 CPU.
#include "cube_crop_rows.h"

#include <ATen/Version.h>

#include <cstdint>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VIDFAST_X86_SIMD 1
#include <immintrin.h>
#endif

namespace vidfast {
namespace ops {
namespace {

// ---------------------------------------------------------------------------------------------- portable C++

namespace portable {

void rgb_planar(const uint8_t* src, int64_t n, bool reverse, const int* sel, const float* scale, const float* bias,
                float* const* dst, bool /*stream*/) {
  for (int c = 0; c < 3; ++c) {
    const uint8_t* s = src + sel[c];
    float* d = dst[c];
    for (int64_t j = 0; j < n; ++j) d[j] = static_cast<float>(s[3 * (reverse ? n - 1 - j : j)]) * scale[c] + bias[c];
  }
}

void bytes(const uint8_t* src, int64_t n, const float* scale3, const float* bias3, float* dst, bool /*stream*/) {
  for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<float>(src[k]) * scale3[k % 3] + bias3[k % 3];
}

void taps(const float* src, const int32_t* i0, const int32_t* i1, const float* w0, const float* w1, int64_t n,
          float* dst) {
  for (int64_t k = 0; k < n; ++k) dst[k] = src[i0[k]] * w0[k] + src[i1[k]] * w1[k];
}

void blend(const float* top, const float* bottom, float wy0, float wy1, const float* scale3, const float* bias3,
           int64_t n, float* dst, bool /*stream*/) {
  for (int64_t k = 0; k < n; ++k) dst[k] = (top[k] * wy0 + bottom[k] * wy1) * scale3[k % 3] + bias3[k % 3];
}

void fence() {}

}  // namespace portable

#ifdef VIDFAST_X86_SIMD

// pshufb masks that deinterleave 16 packed RGB pixels (three 16-byte loads a, b, c): channel ch gathers byte
// 3k + ch of the 48 into lane k; kDeinterleave.m[ch][v] picks the lanes that load v holds (0x80: zero).
struct DeinterleaveMasks {
  uint8_t m[3][3][16];
};

constexpr DeinterleaveMasks make_masks() {
  DeinterleaveMasks r{};
  for (int ch = 0; ch < 3; ++ch) {
    for (int v = 0; v < 3; ++v) {
      for (int k = 0; k < 16; ++k) {
        const int pos = 3 * k + ch;
        r.m[ch][v][k] = static_cast<uint8_t>(pos / 16 == v ? pos % 16 : 0x80);
      }
    }
  }
  return r;
}

constexpr DeinterleaveMasks kDeinterleave = make_masks();
alignas(16) constexpr uint8_t kReverse[16] = {15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0};

// --------------------------------------------------------------------------------------------------- AVX2
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {

struct V {
  static constexpr int L = 8;
  using f = __m256;
  static f load(const float* p) { return _mm256_loadu_ps(p); }
  static f set1(float x) { return _mm256_set1_ps(x); }
  static f mul(f a, f b) { return _mm256_mul_ps(a, b); }
  static f add(f a, f b) { return _mm256_add_ps(a, b); }
  static f from_bytes(const uint8_t* p) {  // L bytes
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static void from_bytes16(__m128i x, f* out) {  // 16 bytes -> 16 / L vectors
    out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x));
    out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(x, 8)));
  }
  static f gather(const float* base, const int32_t* idx) {
    return _mm256_i32gather_ps(base, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 4);
  }
  static void store(float* p, f v, bool stream) {
    if (stream && (reinterpret_cast<uintptr_t>(p) & 31) == 0) {
      _mm256_stream_ps(p, v);
    } else {
      _mm256_storeu_ps(p, v);
    }
  }
};

#include "cube_crop_rows_simd.inc"

}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ------------------------------------------------------------------------------------------------- AVX-512
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#endif
namespace avx512 {

struct V {
  static constexpr int L = 16;
  using f = __m512;
  static f load(const float* p) { return _mm512_loadu_ps(p); }
  static f set1(float x) { return _mm512_set1_ps(x); }
  static f mul(f a, f b) { return _mm512_mul_ps(a, b); }
  static f add(f a, f b) { return _mm512_add_ps(a, b); }
  static f from_bytes(const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static void from_bytes16(__m128i x, f* out) { out[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x)); }
  static f gather(const float* base, const int32_t* idx) {
    return _mm512_i32gather_ps(_mm512_loadu_si512(idx), base, 4);
  }
  static void store(float* p, f v, bool stream) {
    if (stream && (reinterpret_cast<uintptr_t>(p) & 63) == 0) {
      _mm512_stream_ps(p, v);
    } else {
      _mm512_storeu_ps(p, v);
    }
  }
};

#include "cube_crop_rows_simd.inc"

}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // VIDFAST_X86_SIMD

constexpr RowKernels kPortable{"portable C++", portable::rgb_planar, portable::bytes, portable::taps,
                               portable::blend, portable::fence};
#ifdef VIDFAST_X86_SIMD
constexpr RowKernels kAvx2{"AVX2", avx2::rgb_planar, avx2::bytes, avx2::taps, avx2::blend, avx2::fence};
constexpr RowKernels kAvx512{"AVX-512", avx512::rgb_planar, avx512::bytes, avx512::taps, avx512::blend,
                             avx512::fence};
#endif

}  // namespace

const RowKernels& row_kernels() {
  static const RowKernels* const chosen = [] {
#ifdef VIDFAST_X86_SIMD
    // ATen's level: the CPU's own, or lower where ATEN_CPU_CAPABILITY asks (e.g. avx2 on an AVX-512 CPU).
    const std::string level = at::get_cpu_capability();
    __builtin_cpu_init();
    if (level == "AVX512" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
      return &kAvx512;
    }
    if ((level == "AVX512" || level == "AVX2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return &kAvx2;
    }
#endif
    return &kPortable;
  }();
  return *chosen;
}

}  // namespace ops
}  // namespace vidfast
