// The CUDA kernel of vidfast::cube_crop as code that the host can execute too.
//
// Everything one GPU thread does is cube_crop_thread(), a VIDFAST_HOST_DEVICE function of the kernel arguments,
// the launch and the block and thread indices; the launch configuration (block size, grid, the per-launch grid
// limits and the split of a larger grid into several launches) is for_each_launch(), a host function.
// cuda/cube_crop_kernel.cu launches the thread body on the GPU; cube_crop_cuda_check.cpp runs it on the host over
// the very same launches, blocks and threads, so that the CUDA code is exercised by the tests without a GPU.
//
// Each block writes a contiguous chunk of kThreads * kItemsPerThread elements of one output plane ((piece,
// channel, frame) or, channels-last, (piece, frame)), so consecutive threads write consecutive addresses.
#pragma once

#include "cube_crop.h"

#include <algorithm>
#include <type_traits>

namespace vidfast {
namespace ops {

constexpr int kThreads = 256;       // threads per block
constexpr int kItemsPerThread = 4;  // a block covers kThreads * kItemsPerThread elements of its plane
constexpr int64_t kBlockElems = int64_t(kThreads) * kItemsPerThread;

// Blocks per launch along x (output planes) and y (chunks of a plane); CUDA allows gridDim.x < 2^31 and
// gridDim.y < 2^16.  Larger grids are split into several launches.
struct GridLimits {
  int64_t x = (int64_t(1) << 31) - 1;
  int64_t y = 65535;
};

// The limits given as max_grid = (x, y) to vidfast::cube_crop_cuda_check, or CUDA's when absent.
inline GridLimits grid_limits(at::OptionalIntArrayRef max_grid) {
  GridLimits limits;
  if (!max_grid.has_value()) return limits;
  const at::IntArrayRef xy = *max_grid;
  TORCH_CHECK_VALUE(xy.size() == 2 && xy[0] >= 1 && xy[0] <= limits.x && xy[1] >= 1 && xy[1] <= limits.y,
                    "max_grid: expected (x, y) with 1 <= x <= ", limits.x, " and 1 <= y <= ", limits.y, ", got ",
                    xy);
  return GridLimits{xy[0], xy[1]};
}

// Kernel arguments: the plan's table (on the kernel's device) split into its parts, sizes and normalisation.
struct Params {
  const int64_t* clips;
  const int64_t* pieces;
  const int64_t* frames;
  int64_t t, oh, ow;
  float scale[kChannels], bias[kChannels];
};

inline Params make_params(const CubeCropPlan& plan, const int64_t* table) {
  Params prm{};
  prm.clips = table;
  prm.pieces = table + plan.pieces_offset;
  prm.frames = table + plan.frames_offset;
  prm.t = plan.t;
  prm.oh = plan.oh;
  prm.ow = plan.ow;
  for (int c = 0; c < kChannels; ++c) {
    prm.scale[c] = plan.scale[c];
    prm.bias[c] = plan.bias[c];
  }
  return prm;
}

// One kernel launch: block (x, y) of its grid [blocks_x, blocks_y] writes chunk chunk0 + y of plane plane0 + x.
struct Launch {
  int64_t plane0, chunk0, blocks_x, blocks_y;
};

// Calls launch(Launch) for each launch that covers the output of `plan` within `limits`: all planes times all
// chunks, in launches of at most limits.x by limits.y blocks of kThreads threads.
template <typename Fn>
void for_each_launch(const CubeCropPlan& plan, const GridLimits& limits, Fn&& launch) {
  const int64_t planes = plan.num_pieces() * plan.t * (plan.channels_last ? 1 : kChannels);
  const int64_t plane_size = plan.oh * plan.ow * (plan.channels_last ? kChannels : 1);
  const int64_t chunks = (plane_size + kBlockElems - 1) / kBlockElems;
  for (int64_t plane0 = 0; plane0 < planes; plane0 += limits.x) {
    for (int64_t chunk0 = 0; chunk0 < chunks; chunk0 += limits.y) {
      launch(Launch{plane0, chunk0, std::min(limits.x, planes - plane0), std::min(limits.y, chunks - chunk0)});
    }
  }
}

// Calls fn(tag, layout) with tag = TypeTag<out_t> for `dtype` (one plan_cube_crop accepted) and layout =
// std::integral_constant<bool, channels_last>: the instantiations of the kernel.
template <typename T>
struct TypeTag {
  using type = T;
};

template <typename Fn>
void dispatch_kernel(at::ScalarType dtype, bool channels_last, Fn&& fn) {
  const auto with_layout = [&](auto tag) {
    if (channels_last) {
      fn(tag, std::true_type{});
    } else {
      fn(tag, std::false_type{});
    }
  };
  switch (dtype) {
    case at::kHalf: with_layout(TypeTag<at::Half>{}); break;
    case at::kBFloat16: with_layout(TypeTag<at::BFloat16>{}); break;
    default: with_layout(TypeTag<float>{}); break;
  }
}

// cube_crop through the CUDA kernel code on tensors of kDevice, in launches of at most max_grid blocks (the
// signature of vidfast::cube_crop_cuda_check): checks max_grid, plans (a pinned host table for the GPU) and runs
// kRun(plan, limits), which launches the kernel or executes its threads on the host.
template <c10::DeviceType kDevice, at::Tensor (*kRun)(const CubeCropPlan&, const GridLimits&)>
at::Tensor cube_crop_with_grid(at::TensorList video, const at::Tensor& frame_idx, const at::Tensor& boxes,
                               at::IntArrayRef out_size, const c10::optional<at::Tensor>& perm,
                               const c10::optional<at::Tensor>& flip, const c10::optional<at::Tensor>& rot,
                               const c10::optional<at::Tensor>& channel, at::ArrayRef<double> mean,
                               at::ArrayRef<double> std, at::ScalarType dtype, bool channels_last,
                               at::OptionalIntArrayRef max_grid) {
  const GridLimits limits = grid_limits(max_grid);
  return kRun(plan_cube_crop(video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std, dtype,
                             channels_last, kDevice, /*pinned=*/kDevice == c10::DeviceType::CUDA),
              limits);
}

// A read-only byte load: through the read-only data cache on the GPU, a plain load on the host.
VIDFAST_HOST_DEVICE inline uint8_t load_byte(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

// Everything thread `thread` of block (block_x, block_y) of `launch` does: write its elements of the chunk.
// Reads are byte gathers (served by L1/L2 on the GPU); the arithmetic rounds like the CPU kernel and the
// PyTorch reference (mul_rn / add_rn), so all three agree bit for bit, also under --use_fast_math.
template <typename out_t, bool kChannelsLast>
VIDFAST_HOST_DEVICE inline void cube_crop_thread(const Params& prm, const Launch& launch, int64_t block_x,
                                                 int64_t block_y, int64_t thread, out_t* __restrict__ out) {
  const int64_t plane = launch.plane0 + block_x;  // planes are numbered in memory order
  const int64_t f = plane % prm.t;
  const int64_t q = kChannelsLast ? plane / prm.t : plane / (kChannels * prm.t);
  const int plane_channel = kChannelsLast ? 0 : static_cast<int>((plane / prm.t) % kChannels);
  const int64_t pixels = prm.oh * prm.ow;
  const int64_t plane_size = kChannelsLast ? pixels * kChannels : pixels;

  const int64_t* pc = prm.pieces + q * kPieceCols;
  const int64_t* cl = prm.clips + pc[kPieceClip] * kClipCols;
  const uint8_t* frame = reinterpret_cast<const uint8_t*>(cl[kClipPtr]) + prm.frames[q * prm.t + f] * cl[kClipST];
  const int64_t y0 = pc[kPieceY0], x0 = pc[kPieceX0], h = pc[kPieceH], w = pc[kPieceW];
  const int64_t rot = pc[kPieceRot], chan = pc[kPieceChannel];
  const bool flip = pc[kPieceFlip] != 0;
  const bool copy = h == prm.oh && w == prm.ow;
  const int64_t sh = cl[kClipSH], sw = cl[kClipSW], sc = cl[kClipSC];
  out_t* o = out + plane * plane_size;

  const int64_t begin = (launch.chunk0 + block_y) * kBlockElems;
  const int64_t end = begin + kBlockElems < plane_size ? begin + kBlockElems : plane_size;
  for (int64_t e = begin + thread; e < end; e += kThreads) {
    const int c = kChannelsLast ? static_cast<int>(e % kChannels) : plane_channel;
    const int64_t pixel = kChannelsLast ? e / kChannels : e;
    const int64_t i = pixel / prm.ow, j = pixel % prm.ow;
    const RowWalk walk = row_walk(i, rot, flip, prm.oh, prm.ow);
    const int64_t r = walk.r0 + j * walk.dr, col = walk.c0 + j * walk.dc;
    const int64_t src_c = (chan >= 0 ? chan : c) * sc;
    float v;
    if (copy) {
      v = static_cast<float>(load_byte(frame + (y0 + r) * sh + (x0 + col) * sw + src_c));
    } else {
      const Tap ty = bilinear_tap(r, h, prm.oh), tx = bilinear_tap(col, w, prm.ow);
      const uint8_t* top = frame + (y0 + ty.i0) * sh + src_c;
      const uint8_t* bottom = frame + (y0 + ty.i1) * sh + src_c;
      const int64_t a = (x0 + tx.i0) * sw, b = (x0 + tx.i1) * sw;
      v = bilinear(load_byte(top + a), load_byte(top + b), load_byte(bottom + a), load_byte(bottom + b), tx.w0,
                   tx.w1, ty.w0, ty.w1);
    }
    o[e] = static_cast<out_t>(add_rn(mul_rn(v, prm.scale[c]), prm.bias[c]));
  }
}

}  // namespace ops
}  // namespace vidfast
