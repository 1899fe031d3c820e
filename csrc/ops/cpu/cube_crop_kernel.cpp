// CPU kernel of vidfast::cube_crop: parallel over output rows (piece, frame, row); each row is either an exact copy
// through a 256-entry lookup table (normalise + cast fused) or a bilinear resample with precomputed taps.
#include "../cube_crop.h"
#include "huge_page_allocator.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace vidfast {
namespace ops {
namespace {

// One bilinear tap along an axis, as byte offsets from the frame start (rows) or the row start (columns).
struct AxisTap {
  int64_t off0, off1;
  float w0, w1;
};

struct Layout {
  int64_t channel;  // element stride between output channels
  int64_t column;   // element stride between output columns
};

// out[c, j] = lut[c][src[j * step + chan[c]]]: exact copy of a row walk, normalised and cast by the table.
template <typename out_t, bool kChannelsLast>
inline void copy_row(const uint8_t* src, int64_t step, const int64_t* chan, const out_t* lut, out_t* out,
                     int64_t ow, Layout layout) {
  if (kChannelsLast) {
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
    if (step == kChannels) {  // the common forward walk over packed RGB: a constant stride the compiler unrolls
      for (int64_t j = 0; j < ow; ++j) o[j] = table[s[kChannels * j]];
    } else {
      for (int64_t j = 0; j < ow; ++j) o[j] = table[s[j * step]];
    }
  }
}

// Bilinear row: output pixel j samples the resized crop at (walk.r0 + j * walk.dr, walk.c0 + j * walk.dc).
template <typename out_t>
inline void resize_row(const uint8_t* frame, const RowWalk& walk, const AxisTap* ytaps, const AxisTap* xtaps,
                       const int64_t* chan, const CubeCropPlan& plan, out_t* out, int64_t ow, Layout layout) {
  for (int64_t j = 0; j < ow; ++j) {
    const AxisTap& y = ytaps[walk.r0 + j * walk.dr];
    const AxisTap& x = xtaps[walk.c0 + j * walk.dc];
    const uint8_t* top = frame + y.off0;
    const uint8_t* bottom = frame + y.off1;
    for (int c = 0; c < kChannels; ++c) {
      const int64_t a = x.off0 + chan[c], b = x.off1 + chan[c];
      const float v = bilinear(top[a], top[b], bottom[a], bottom[b], x.w0, x.w1, y.w0, y.w1);
      out[c * layout.channel + j * layout.column] = static_cast<out_t>(add_rn(mul_rn(v, plan.scale[c]), plan.bias[c]));
    }
  }
}

template <typename out_t, bool kChannelsLast>
void run_layout(const CubeCropPlan& plan, const at::Tensor& output) {
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
    const int64_t* cl = clips + pc[kPieceClip] * kClipCols;
    tap_index[q] = static_cast<int64_t>(ytaps.size() / oh);
    for (int64_t r = 0; r < oh; ++r) {
      const Tap tp = bilinear_tap(r, pc[kPieceH], oh);
      ytaps.push_back({(pc[kPieceY0] + tp.i0) * cl[kClipSH], (pc[kPieceY0] + tp.i1) * cl[kClipSH], tp.w0, tp.w1});
    }
    for (int64_t c = 0; c < ow; ++c) {
      const Tap tp = bilinear_tap(c, pc[kPieceW], ow);
      xtaps.push_back({(pc[kPieceX0] + tp.i0) * cl[kClipSW], (pc[kPieceX0] + tp.i1) * cl[kClipSW], tp.w0, tp.w1});
    }
  }

  out_t* out = output.data_ptr<out_t>();
  const int64_t plane = oh * ow;
  const int64_t piece_stride = kChannels * t * plane;
  const Layout layout = kChannelsLast ? Layout{1, kChannels} : Layout{t * plane, 1};
  const int64_t grain = std::max<int64_t>(1, 32768 / (kChannels * ow));
  at::parallel_for(0, np * t * oh, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % oh;
      const int64_t f = (row / oh) % t;
      const int64_t q = row / (oh * t);
      const int64_t* pc = pieces + q * kPieceCols;
      const int64_t* cl = clips + pc[kPieceClip] * kClipCols;
      const uint8_t* frame = reinterpret_cast<const uint8_t*>(cl[kClipPtr]) + frames[q * t + f] * cl[kClipST];
      const RowWalk walk = row_walk(i, pc[kPieceRot], pc[kPieceFlip] != 0, oh, ow);
      int64_t chan[kChannels];
      for (int c = 0; c < kChannels; ++c) chan[c] = (pc[kPieceChannel] >= 0 ? pc[kPieceChannel] : c) * cl[kClipSC];
      out_t* o = out + q * piece_stride + (f * plane + i * ow) * (kChannelsLast ? kChannels : 1);
      if (tap_index[q] < 0) {
        const uint8_t* src = frame + (pc[kPieceY0] + walk.r0) * cl[kClipSH] + (pc[kPieceX0] + walk.c0) * cl[kClipSW];
        const int64_t step = walk.dr * cl[kClipSH] + walk.dc * cl[kClipSW];
        copy_row<out_t, kChannelsLast>(src, step, chan, lut.data(), o, ow, layout);
      } else {
        resize_row<out_t>(frame, walk, ytaps.data() + tap_index[q] * oh, xtaps.data() + tap_index[q] * ow, chan,
                          plan, o, ow, layout);
      }
    }
  });
}

template <typename out_t>
void run(const CubeCropPlan& plan, const at::Tensor& output) {
  if (plan.channels_last) {
    run_layout<out_t, true>(plan, output);
  } else {
    run_layout<out_t, false>(plan, output);
  }
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
