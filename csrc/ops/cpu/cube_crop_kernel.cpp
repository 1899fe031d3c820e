// CPU kernel of vidfast::cube_crop, parallel (at::parallel_for, OpenMP) over output planes (piece, frame).
//
// A piece whose box has the output size is copied exactly: each output row walks a source row or column (flip and
// rot90 folded into a start and a step) through a 256-entry table per channel that fuses normalisation and the
// cast.  A resized piece is resampled separably into a per-thread float plane: horizontal taps per source row
// (each source row computed once per plane), then a vectorisable vertical blend, normalise in place; the output
// rows then walk that plane.  The arithmetic is the reference's, rounded the same way, so results are identical.
// Large outputs are staged per plane and written with non-temporal stores (no read-for-ownership of the
// destination, which would otherwise double the memory traffic of a write-bound op).
#include "../cube_crop.h"
#include "huge_page_allocator.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vidfast {
namespace ops {
namespace {

// Outputs of at least this many bytes are written with streaming stores (they would only evict the cache).
constexpr int64_t kStreamBytes = int64_t(16) << 20;

// Copies `bytes` to `dst` with non-temporal 16-byte stores where aligned (plain copies at the edges).
void stream_copy(void* dst, const void* src, size_t bytes) {
#if defined(__SSE2__)
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  const size_t head = std::min(bytes, (16 - reinterpret_cast<uintptr_t>(d) % 16) % 16);
  std::memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  for (; bytes >= 16; bytes -= 16, d += 16, s += 16) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  }
  std::memcpy(d, s, bytes);
#else
  std::memcpy(dst, src, bytes);
#endif
}

void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// One bilinear tap along an axis: source index (rows) or byte offset within a row (columns), and weights.
struct AxisTap {
  int64_t i0, i1;
  float w0, w1;
};

// Element strides of one output plane (piece, frame) in the buffer it is written to.
struct PlaneLayout {
  int64_t channel, row, column;
};

// out(c, j) = lut[c][src[j * step + chan[c]]] for one output row.
template <typename out_t>
inline void copy_row(const uint8_t* src, int64_t step, const int64_t* chan, const out_t* lut, out_t* out,
                     int64_t ow, const PlaneLayout& layout) {
  if (layout.column != 1) {  // channels-last: interleaved RGB output
    const uint8_t* s0 = src + chan[0];
    const uint8_t* s1 = src + chan[1];
    const uint8_t* s2 = src + chan[2];
    for (int64_t j = 0; j < ow; ++j) {
      out[3 * j + 0] = lut[s0[j * step]];
      out[3 * j + 1] = lut[256 + s1[j * step]];
      out[3 * j + 2] = lut[512 + s2[j * step]];
    }
    return;
  }
  for (int c = 0; c < kChannels; ++c) {
    const uint8_t* s = src + chan[c];
    const out_t* table = lut + 256 * c;
    out_t* o = out + c * layout.channel;
    if (step == kChannels) {  // the common forward walk over packed RGB: a constant stride
      for (int64_t j = 0; j < ow; ++j) o[j] = table[s[kChannels * j]];
    } else {
      for (int64_t j = 0; j < ow; ++j) o[j] = table[s[j * step]];
    }
  }
}

// Per-thread scratch for resampling one plane.
struct Scratch {
  std::vector<float> plane;  // [3, oh, ow] normalised values of the resized (unflipped, unrotated) crop
  std::vector<float> rows;   // two horizontally resampled source rows [2][3][ow]
};

// Resamples one (piece, frame) into scratch.plane: rows are taps along y, cols along x (byte offsets in a row).
void resample_plane(const uint8_t* frame, int64_t row_stride, const int64_t* chan, const AxisTap* rows,
                    const AxisTap* cols, int64_t oh, int64_t ow, const CubeCropPlan& plan, Scratch& scratch) {
  float* plane = scratch.plane.data();
  float* line[2] = {scratch.rows.data(), scratch.rows.data() + kChannels * ow};
  int64_t line_row[2] = {-1, -1};
  // Horizontal pass of source row y into line[k] (all three output channels).
  const auto horizontal = [&](int64_t y, int k) {
    const uint8_t* src = frame + y * row_stride;
    for (int c = 0; c < kChannels; ++c) {
      const uint8_t* s = src + chan[c];
      float* dst = line[k] + c * ow;
      for (int64_t x = 0; x < ow; ++x) {
        const AxisTap& t = cols[x];
        dst[x] = add_rn(mul_rn(static_cast<float>(s[t.i0]), t.w0), mul_rn(static_cast<float>(s[t.i1]), t.w1));
      }
    }
    line_row[k] = y;
  };
  for (int64_t r = 0; r < oh; ++r) {
    const AxisTap& ty = rows[r];
    // Taps only move forward: reuse a line computed for the previous output row when possible.
    if (line_row[0] != ty.i0) {
      if (line_row[1] == ty.i0) {
        std::swap(line[0], line[1]);
        std::swap(line_row[0], line_row[1]);
      } else {
        horizontal(ty.i0, 0);
      }
    }
    if (line_row[1] != ty.i1) horizontal(ty.i1, 1);
    const float wy0 = ty.w0, wy1 = ty.w1;
    for (int c = 0; c < kChannels; ++c) {
      const float* top = line[0] + c * ow;
      const float* bottom = line[1] + c * ow;
      float* dst = plane + (c * oh + r) * ow;
      const float scale = plan.scale[c], bias = plan.bias[c];
      for (int64_t x = 0; x < ow; ++x) {  // vectorisable: no gathers, no reassociation
        dst[x] = add_rn(mul_rn(add_rn(mul_rn(top[x], wy0), mul_rn(bottom[x], wy1)), scale), bias);
      }
    }
  }
}

// One output row read from the resampled plane along the walk.
template <typename out_t>
inline void plane_row(const float* plane, const RowWalk& walk, int64_t oh, int64_t ow, out_t* out,
                      const PlaneLayout& layout) {
  const int64_t step = walk.dr * ow + walk.dc;
  for (int c = 0; c < kChannels; ++c) {
    const float* src = plane + (c * oh + walk.r0) * ow + walk.c0;
    out_t* o = out + c * layout.channel;
    if (step == 1 && layout.column == 1) {
      for (int64_t j = 0; j < ow; ++j) o[j] = static_cast<out_t>(src[j]);
    } else {
      for (int64_t j = 0; j < ow; ++j) o[j * layout.column] = static_cast<out_t>(src[j * step]);
    }
  }
}

template <typename out_t>
void run(const CubeCropPlan& plan, const at::Tensor& output) {
  const int64_t np = plan.num_pieces(), t = plan.t, oh = plan.oh, ow = plan.ow;
  const int64_t* clips = plan.clips();
  const int64_t* pieces = plan.pieces();
  const int64_t* frames = plan.frames();

  std::vector<out_t> lut(kChannels * 256);
  std::transform(plan.lut(), plan.lut() + kChannels * 256, lut.begin(), [](float v) { return static_cast<out_t>(v); });

  // Taps of every resized piece (pieces whose box already has the output size are copied exactly).
  std::vector<int64_t> tap_index(np, -1);
  std::vector<AxisTap> ytaps, xtaps;
  for (int64_t q = 0; q < np; ++q) {
    const int64_t* pc = pieces + q * kPieceCols;
    if (pc[kPieceH] == oh && pc[kPieceW] == ow) continue;
    const int64_t sw = clips[pc[kPieceClip] * kClipCols + kClipSW];
    tap_index[q] = static_cast<int64_t>(ytaps.size() / oh);
    for (int64_t r = 0; r < oh; ++r) {
      const Tap tp = bilinear_tap(r, pc[kPieceH], oh);
      ytaps.push_back({pc[kPieceY0] + tp.i0, pc[kPieceY0] + tp.i1, tp.w0, tp.w1});
    }
    for (int64_t c = 0; c < ow; ++c) {
      const Tap tp = bilinear_tap(c, pc[kPieceW], ow);
      xtaps.push_back({(pc[kPieceX0] + tp.i0) * sw, (pc[kPieceX0] + tp.i1) * sw, tp.w0, tp.w1});
    }
  }
  const bool any_resized = !ytaps.empty();

  out_t* out = output.data_ptr<out_t>();
  const int64_t plane = oh * ow;
  const bool channels_last = plan.channels_last;
  const bool stream = output.numel() * static_cast<int64_t>(sizeof(out_t)) >= kStreamBytes;
  // Layout of a plane in the output, and in the staging buffer used for streaming stores.
  const PlaneLayout out_layout = channels_last ? PlaneLayout{1, ow * kChannels, kChannels} : PlaneLayout{t * plane, ow, 1};
  const PlaneLayout stage_layout = channels_last ? out_layout : PlaneLayout{plane, ow, 1};
  const int64_t grain = std::max<int64_t>(1, 32768 / (kChannels * plane));

  at::parallel_for(0, np * t, grain, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    if (any_resized) {
      scratch.plane.resize(kChannels * plane);
      scratch.rows.resize(2 * kChannels * ow);
    }
    std::vector<out_t> stage(stream ? kChannels * plane : 0);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t q = u / t, f = u % t;
      const int64_t* pc = pieces + q * kPieceCols;
      const int64_t* cl = clips + pc[kPieceClip] * kClipCols;
      const uint8_t* frame = reinterpret_cast<const uint8_t*>(cl[kClipPtr]) + frames[u] * cl[kClipST];
      int64_t chan[kChannels];
      for (int c = 0; c < kChannels; ++c) chan[c] = (pc[kPieceChannel] >= 0 ? pc[kPieceChannel] : c) * cl[kClipSC];
      // Plane (q, f) starts at element q * 3 * t * plane + f * plane * (channels_last ? 3 : 1) of the output.
      out_t* dst = out + q * kChannels * t * plane + f * plane * (channels_last ? kChannels : 1);
      out_t* base = stream ? stage.data() : dst;
      const PlaneLayout& layout = stream ? stage_layout : out_layout;
      const bool copy = tap_index[q] < 0;
      if (!copy) {
        resample_plane(frame, cl[kClipSH], chan, ytaps.data() + tap_index[q] * oh, xtaps.data() + tap_index[q] * ow,
                       oh, ow, plan, scratch);
      }
      for (int64_t i = 0; i < oh; ++i) {
        const RowWalk walk = row_walk(i, pc[kPieceRot], pc[kPieceFlip] != 0, oh, ow);
        out_t* o = base + i * layout.row;
        if (copy) {
          const uint8_t* src = frame + (pc[kPieceY0] + walk.r0) * cl[kClipSH] + (pc[kPieceX0] + walk.c0) * cl[kClipSW];
          copy_row<out_t>(src, walk.dr * cl[kClipSH] + walk.dc * cl[kClipSW], chan, lut.data(), o, ow, layout);
        } else {
          plane_row<out_t>(scratch.plane.data(), walk, oh, ow, o, layout);
        }
      }
      if (stream) {
        if (channels_last) {
          stream_copy(dst, stage.data(), kChannels * plane * sizeof(out_t));
        } else {
          for (int c = 0; c < kChannels; ++c) {
            stream_copy(dst + c * out_layout.channel, stage.data() + c * plane, plane * sizeof(out_t));
          }
        }
      }
    }
    if (stream) stream_fence();
  });
}

at::Tensor cube_crop_cpu(at::TensorList video, const at::Tensor& frame_idx, const at::Tensor& boxes,
                         at::IntArrayRef out_size, const c10::optional<at::Tensor>& perm,
                         const c10::optional<at::Tensor>& flip, const c10::optional<at::Tensor>& rot,
                         const c10::optional<at::Tensor>& channel, at::ArrayRef<double> mean,
                         at::ArrayRef<double> std, at::ScalarType dtype, bool channels_last) {
  const CubeCropPlan plan = plan_cube_crop(video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std,
                                           dtype, channels_last, c10::DeviceType::CPU, /*pinned=*/false);
  const at::Tensor out = empty_strided_cached(plan.out_sizes, plan.out_strides, plan.dtype);
  switch (dtype) {  // plan_cube_crop accepted only these
    case at::kHalf: run<at::Half>(plan, out); break;
    case at::kBFloat16: run<at::BFloat16>(plan, out); break;
    default: run<float>(plan, out); break;
  }
  return out;
}

}  // namespace
}  // namespace ops
}  // namespace vidfast

TORCH_LIBRARY_IMPL(vidfast, CPU, m) { m.impl("cube_crop", &vidfast::ops::cube_crop_cpu); }
