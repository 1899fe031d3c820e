// CPU kernel of vidfast::cube_crop, parallel (at::parallel_for, OpenMP) over output planes (piece, frame): each
// thread writes a contiguous range of planes, so the cores stream to disjoint output regions.
//
// Every output row is a contiguous run written by the row kernels of cube_crop_rows.h (vectorised for the CPU's
// instruction set, chosen at run time), in float32 with uint8 -> float conversion and normalisation fused:
// - a piece whose box has the output size is copied: a row of packed RGB pixels (flips folded into the read
//   order) is deinterleaved into the three channel rows, or, channels-last, converted as it lies; other walks
//   (rot90 by an odd k, strided or planar videos) gather the row's bytes first;
// - a resized piece is resampled separably with taps precomputed per piece: each source row it needs is converted
//   to floats once per plane, resampled horizontally into a row in output order (flip folded into the taps), and
//   each output row blends two such rows vertically and normalises it in the same pass; odd rotations go through
//   a resampled plane.
// The arithmetic is the reference's, rounded the same way (no FMA), so results are identical to it and to the
// CUDA kernel.  Outputs larger than the caches are written with non-temporal stores (no read-for-ownership of the
// destination).  float16 / bfloat16 outputs are computed as float32 rows and then cast.
#include "../cube_crop.h"
#include "cube_crop_rows.h"
#include "huge_page_allocator.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace vidfast {
namespace ops {
namespace {

// Outputs of at least this many bytes are written with streaming stores (they would only evict the cache).
constexpr int64_t kStreamBytes = int64_t(16) << 20;

// One vertical bilinear tap: source rows (absolute) and weights.
struct RowTap {
  int64_t y0, y1;
  float w0, w1;
};

// The geometry of the piece a thread is working on, with its resize taps (built when the piece changes).
struct PieceState {
  int64_t q = -1;
  const uint8_t* clip = nullptr;
  int64_t st = 0, sh = 0, sw = 0, sc = 0, y0 = 0, x0 = 0, h = 0, w = 0, rot = 0;
  bool flip = false, copy = true, packed = false, identity = true;
  int sel[kChannels] = {0, 1, 2};  // source channel of each output channel
  // Resize: vertical taps per resized row; horizontal taps of a row in the order the rows are built (output
  // order for even rotations, flip folded in; the resized plane's planar order for odd ones): element k of the
  // row is src[i0[k]] * w0[k] + src[i1[k]] * w1[k] over the source row as packed floats (3 x + channel).
  std::vector<RowTap> ytaps;
  std::vector<int32_t> i0, i1;
  std::vector<float> w0, w1;
  bool planar_rows = true;  // the horizontal rows are [3][ow] (else [ow][3])
};

// Per-thread buffers.
struct Scratch {
  std::vector<float> source;   // one source row of the box as packed floats [w][3]
  std::vector<float> rows[2];  // two horizontally resampled rows, keyed by source row
  int64_t row_of[2] = {-1, -1};
  std::vector<uint8_t> bytes;  // gathered bytes of one output row
  std::vector<float> line;     // one float output row, for outputs that are not float32
  std::vector<float> plane;    // resized plane [3][oh][ow] (odd rotations)
};

template <typename out_t>
class PlaneWriter {
 public:
  PlaneWriter(const CubeCropPlan& plan, const RowKernels& kernels, out_t* out, bool stream)
      : plan_(plan), k_(kernels), out_(out), oh_(plan.oh), ow_(plan.ow), t_(plan.t),
        channels_last_(plan.channels_last), stream_(stream && std::is_same<out_t, float>::value) {
    for (int c = 0; c < kChannels; ++c) {
      for (int r = 0; r < 3; ++r) {
        scale1_[c][r] = plan.scale[c];
        bias1_[c][r] = plan.bias[c];
      }
    }
  }

  // Writes plane u = (piece q, frame f) of the output.
  void write(int64_t u, PieceState& ps, Scratch& sc) {
    const int64_t q = u / t_, f = u % t_;
    if (ps.q != q) load_piece(q, ps, sc);
    const uint8_t* frame = ps.clip + plan_.frames()[u] * ps.st;
    const int64_t plane = oh_ * ow_;
    out_t* base = out_ + q * kChannels * t_ * plane + f * plane * (channels_last_ ? kChannels : 1);
    sc.row_of[0] = sc.row_of[1] = -1;  // rows cached for this frame only
    if (ps.copy) {
      for (int64_t i = 0; i < oh_; ++i) copy_row(frame, i, ps, sc, base);
    } else if (ps.rot % 2 == 0) {
      for (int64_t i = 0; i < oh_; ++i) {
        const RowWalk walk = row_walk(i, ps.rot, ps.flip, oh_, ow_);
        float* dst[kChannels];
        row_targets(base, i, sc, dst);
        resized_row(frame, walk.r0, ps, sc, dst, stream_);
        finish_row(base, i, sc);
      }
    } else {
      float* plane_buf = sc.plane.data();
      for (int64_t r = 0; r < oh_; ++r) {
        float* dst[kChannels] = {plane_buf + r * ow_, plane_buf + (oh_ + r) * ow_, plane_buf + (2 * oh_ + r) * ow_};
        resized_row(frame, r, ps, sc, dst, false);
      }
      for (int64_t i = 0; i < oh_; ++i) {
        const RowWalk walk = row_walk(i, ps.rot, ps.flip, oh_, ow_);
        const int64_t step = walk.dr * ow_ + walk.dc;
        for (int c = 0; c < kChannels; ++c) {
          const float* s = plane_buf + (c * oh_ + walk.r0) * ow_ + walk.c0;
          out_t* o = channels_last_ ? base + i * ow_ * kChannels + c : base + c * t_ * plane + i * ow_;
          const int64_t o_step = channels_last_ ? kChannels : 1;
          for (int64_t j = 0; j < ow_; ++j) o[j * o_step] = static_cast<out_t>(s[j * step]);
        }
      }
    }
  }

 private:
  void load_piece(int64_t q, PieceState& ps, Scratch& sc) {
    const int64_t* pc = plan_.pieces() + q * kPieceCols;
    const int64_t* cl = plan_.clips() + pc[kPieceClip] * kClipCols;
    ps.q = q;
    ps.clip = reinterpret_cast<const uint8_t*>(cl[kClipPtr]);
    ps.st = cl[kClipST];
    ps.sh = cl[kClipSH];
    ps.sw = cl[kClipSW];
    ps.sc = cl[kClipSC];
    ps.y0 = pc[kPieceY0];
    ps.x0 = pc[kPieceX0];
    ps.h = pc[kPieceH];
    ps.w = pc[kPieceW];
    ps.rot = pc[kPieceRot];
    ps.flip = pc[kPieceFlip] != 0;
    ps.copy = ps.h == oh_ && ps.w == ow_;
    ps.packed = ps.sw == kChannels && ps.sc == 1;
    for (int c = 0; c < kChannels; ++c) ps.sel[c] = pc[kPieceChannel] >= 0 ? static_cast<int>(pc[kPieceChannel]) : c;
    ps.identity = ps.sel[0] == 0 && ps.sel[1] == 1 && ps.sel[2] == 2;
    const int64_t n = kChannels * ow_;
    sc.bytes.resize(n);
    if (!std::is_same<out_t, float>::value) sc.line.resize(n);
    if (ps.copy) return;

    ps.ytaps.resize(oh_);
    for (int64_t r = 0; r < oh_; ++r) {
      const Tap tp = bilinear_tap(r, ps.h, oh_);
      ps.ytaps[r] = RowTap{ps.y0 + tp.i0, ps.y0 + tp.i1, tp.w0, tp.w1};
    }
    // Even rotations read resized row r0 along dc = +-1 (both constant over the piece); odd ones build the
    // resized plane forward, planar.
    const bool odd = ps.rot % 2 == 1;
    const bool reverse = !odd && row_walk(0, ps.rot, ps.flip, oh_, ow_).dc < 0;
    ps.planar_rows = odd || !channels_last_;
    ps.i0.resize(n);
    ps.i1.resize(n);
    ps.w0.resize(n);
    ps.w1.resize(n);
    for (int64_t j = 0; j < ow_; ++j) {
      const Tap tp = bilinear_tap(reverse ? ow_ - 1 - j : j, ps.w, ow_);
      for (int c = 0; c < kChannels; ++c) {
        const int64_t k = ps.planar_rows ? c * ow_ + j : j * kChannels + c;
        ps.i0[k] = static_cast<int32_t>(tp.i0 * kChannels + ps.sel[c]);
        ps.i1[k] = static_cast<int32_t>(tp.i1 * kChannels + ps.sel[c]);
        ps.w0[k] = tp.w0;
        ps.w1[k] = tp.w1;
      }
    }
    sc.source.resize(kChannels * ps.w);
    for (auto& row : sc.rows) row.resize(n);
    if (odd) sc.plane.resize(kChannels * oh_ * ow_);
  }

  // Where output row i goes as float rows: channel rows dst[c] (planar) or the interleaved row dst[0]; into the
  // output itself for float32, else into scratch.line (cast by finish_row).
  void row_targets(out_t* base, int64_t i, Scratch& sc, float** dst) const {
    const int64_t plane = oh_ * ow_;
    for (int c = 0; c < kChannels; ++c) {
      if constexpr (std::is_same<out_t, float>::value) {
        dst[c] = channels_last_ ? base + i * ow_ * kChannels : base + c * t_ * plane + i * ow_;
      } else {
        dst[c] = sc.line.data() + (channels_last_ ? 0 : c * ow_);
      }
    }
  }

  void finish_row(out_t* base, int64_t i, const Scratch& sc) const {
    if constexpr (!std::is_same<out_t, float>::value) {
      const int64_t plane = oh_ * ow_;
      if (channels_last_) {
        out_t* o = base + i * ow_ * kChannels;
        for (int64_t k = 0; k < kChannels * ow_; ++k) o[k] = static_cast<out_t>(sc.line[k]);
      } else {
        for (int c = 0; c < kChannels; ++c) {
          out_t* o = base + c * t_ * plane + i * ow_;
          const float* s = sc.line.data() + c * ow_;
          for (int64_t j = 0; j < ow_; ++j) o[j] = static_cast<out_t>(s[j]);
        }
      }
    } else {
      (void)base;
      (void)i;
      (void)sc;
    }
  }

  void copy_row(const uint8_t* frame, int64_t i, const PieceState& ps, Scratch& sc, out_t* base) {
    const RowWalk walk = row_walk(i, ps.rot, ps.flip, oh_, ow_);
    float* dst[kChannels];
    row_targets(base, i, sc, dst);
    const uint8_t* row = frame + (ps.y0 + walk.r0) * ps.sh;
    if (walk.dr == 0 && ps.packed && !channels_last_) {  // a run of packed RGB pixels, forward or backward
      const int64_t first = walk.dc > 0 ? walk.c0 : walk.c0 - (ow_ - 1);
      k_.rgb_planar(row + (ps.x0 + first) * kChannels, ow_, walk.dc < 0, ps.sel, plan_.scale.data(),
                    plan_.bias.data(), dst, stream_);
    } else if (walk.dr == 0 && walk.dc > 0 && ps.packed && ps.identity) {  // channels-last: converted as it lies
      k_.bytes(row + (ps.x0 + walk.c0) * kChannels, kChannels * ow_, plan_.scale.data(), plan_.bias.data(), dst[0],
               stream_);
    } else {  // gather the row's bytes in output order, then convert
      const uint8_t* start = row + (ps.x0 + walk.c0) * ps.sw;
      const int64_t step = walk.dr * ps.sh + walk.dc * ps.sw;
      uint8_t* b = sc.bytes.data();
      for (int c = 0; c < kChannels; ++c) {
        const uint8_t* s = start + ps.sel[c] * ps.sc;
        if (channels_last_) {
          for (int64_t j = 0; j < ow_; ++j) b[j * kChannels + c] = s[j * step];
        } else {
          for (int64_t j = 0; j < ow_; ++j) b[c * ow_ + j] = s[j * step];
        }
      }
      if (channels_last_) {
        k_.bytes(b, kChannels * ow_, plan_.scale.data(), plan_.bias.data(), dst[0], stream_);
      } else {
        for (int c = 0; c < kChannels; ++c) k_.bytes(b + c * ow_, ow_, scale1_[c], bias1_[c], dst[c], stream_);
      }
    }
    finish_row(base, i, sc);
  }

  // Computes the horizontally resampled row of source row y (absolute) into cache slot `slot`.
  void horizontal(const uint8_t* frame, int64_t y, const PieceState& ps, Scratch& sc, int slot) {
    const uint8_t* src = frame + y * ps.sh + ps.x0 * ps.sw;
    float* s = sc.source.data();
    if (ps.packed) {
      k_.bytes(src, kChannels * ps.w, kOnes, kZeros, s, false);
    } else {
      for (int64_t x = 0; x < ps.w; ++x) {
        for (int c = 0; c < kChannels; ++c) s[x * kChannels + c] = static_cast<float>(src[x * ps.sw + c * ps.sc]);
      }
    }
    k_.taps(s, ps.i0.data(), ps.i1.data(), ps.w0.data(), ps.w1.data(), kChannels * ow_, sc.rows[slot].data());
    sc.row_of[slot] = y;
  }

  static int cached(const Scratch& sc, int64_t y) { return sc.row_of[0] == y ? 0 : sc.row_of[1] == y ? 1 : -1; }

  // Resized row r (normalised) into dst: channel rows (planar rows) or one interleaved row.
  void resized_row(const uint8_t* frame, int64_t r, const PieceState& ps, Scratch& sc, float* const* dst,
                   bool stream) {
    const RowTap& ty = ps.ytaps[r];
    int a = cached(sc, ty.y0);
    if (a < 0) {
      a = cached(sc, ty.y1) == 0 ? 1 : 0;  // keep the row the bottom tap needs
      horizontal(frame, ty.y0, ps, sc, a);
    }
    int b = cached(sc, ty.y1);
    if (b < 0) {
      b = 1 - a;
      horizontal(frame, ty.y1, ps, sc, b);
    }
    const float* top = sc.rows[a].data();
    const float* bottom = sc.rows[b].data();
    if (ps.planar_rows) {
      for (int c = 0; c < kChannels; ++c) {
        k_.blend(top + c * ow_, bottom + c * ow_, ty.w0, ty.w1, scale1_[c], bias1_[c], ow_, dst[c], stream);
      }
    } else {
      k_.blend(top, bottom, ty.w0, ty.w1, plan_.scale.data(), plan_.bias.data(), kChannels * ow_, dst[0], stream);
    }
  }

  static constexpr float kOnes[3] = {1.f, 1.f, 1.f};
  static constexpr float kZeros[3] = {0.f, 0.f, 0.f};
  const CubeCropPlan& plan_;
  const RowKernels& k_;
  out_t* out_;
  const int64_t oh_, ow_, t_;
  const bool channels_last_, stream_;
  float scale1_[kChannels][3], bias1_[kChannels][3];  // one channel's normalisation as a period-3 pattern
};

template <typename out_t>
void run(const CubeCropPlan& plan, const at::Tensor& output) {
  const int64_t planes = plan.num_pieces() * plan.t;
  const bool stream = output.numel() * static_cast<int64_t>(sizeof(out_t)) >= kStreamBytes;
  const RowKernels& kernels = row_kernels();
  PlaneWriter<out_t> writer(plan, kernels, output.data_ptr<out_t>(), stream);
  const int64_t grain = std::max<int64_t>(1, 32768 / (kChannels * plan.oh * plan.ow));
  at::parallel_for(0, planes, grain, [&](int64_t begin, int64_t end) {
    PieceState piece;
    Scratch scratch;
    for (int64_t u = begin; u < end; ++u) writer.write(u, piece, scratch);
    if (stream) kernels.fence();
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
