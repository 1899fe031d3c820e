// CUDA kernel of vidfast::cube_crop.  The host validates the arguments and packs the clip table (device pointers,
// sizes and strides of a batch or of a ragged list), the per-piece geometry and the source frames into one pinned
// int64 table, copied to the device with one asynchronous copy.  Each block writes a contiguous chunk of one
// output plane ((piece, channel, frame) or, channels-last, (piece, frame)), so consecutive threads write
// consecutive addresses; reads are byte gathers served by L1/L2.  Arithmetic uses round-to-nearest intrinsics
// so the values are bit-identical to the CPU kernel and the PyTorch reference, also under --use_fast_math.
#include "../cube_crop.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace vidfast {
namespace ops {
namespace {

constexpr int kThreads = 256;
constexpr int kItemsPerThread = 4;

struct Params {
  const int64_t* clips;
  const int64_t* pieces;
  const int64_t* frames;
  int64_t t, oh, ow;
  float scale[kChannels], bias[kChannels];
};

template <typename out_t, bool kChannelsLast>
__global__ void cube_crop_kernel(Params prm, out_t* __restrict__ out) {
  const int64_t plane = blockIdx.x;  // planes are numbered in memory order
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

  const int64_t chunk = static_cast<int64_t>(blockDim.x) * kItemsPerThread;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t end = begin + chunk < plane_size ? begin + chunk : plane_size;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int c = kChannelsLast ? static_cast<int>(e % kChannels) : plane_channel;
    const int64_t pixel = kChannelsLast ? e / kChannels : e;
    const int64_t i = pixel / prm.ow, j = pixel % prm.ow;
    const RowWalk walk = row_walk(i, rot, flip, prm.oh, prm.ow);
    const int64_t r = walk.r0 + j * walk.dr, col = walk.c0 + j * walk.dc;
    const int64_t src_c = (chan >= 0 ? chan : c) * sc;
    float v;
    if (copy) {
      v = static_cast<float>(__ldg(frame + (y0 + r) * sh + (x0 + col) * sw + src_c));
    } else {
      const Tap ty = bilinear_tap(r, h, prm.oh), tx = bilinear_tap(col, w, prm.ow);
      const uint8_t* top = frame + (y0 + ty.i0) * sh + src_c;
      const uint8_t* bottom = frame + (y0 + ty.i1) * sh + src_c;
      const int64_t a = (x0 + tx.i0) * sw, b = (x0 + tx.i1) * sw;
      v = bilinear(__ldg(top + a), __ldg(top + b), __ldg(bottom + a), __ldg(bottom + b), tx.w0, tx.w1, ty.w0, ty.w1);
    }
    o[e] = static_cast<out_t>(add_rn(mul_rn(v, prm.scale[c]), prm.bias[c]));
  }
}

template <typename out_t>
void launch(const CubeCropPlan& plan, const at::Tensor& table, const at::Tensor& out, cudaStream_t stream) {
  Params prm{};
  const int64_t* base = table.const_data_ptr<int64_t>();
  prm.clips = base;
  prm.pieces = base + plan.pieces_offset;
  prm.frames = base + plan.frames_offset;
  prm.t = plan.t;
  prm.oh = plan.oh;
  prm.ow = plan.ow;
  for (int c = 0; c < kChannels; ++c) {
    prm.scale[c] = plan.scale[c];
    prm.bias[c] = plan.bias[c];
  }
  const int64_t planes = plan.num_pieces() * plan.t * (plan.channels_last ? 1 : kChannels);
  const int64_t plane_size = plan.oh * plan.ow * (plan.channels_last ? kChannels : 1);
  const int64_t chunks = (plane_size + kThreads * kItemsPerThread - 1) / (kThreads * kItemsPerThread);
  TORCH_CHECK_VALUE(planes < (int64_t(1) << 31) && chunks < 65536, "out_size: output too large for one launch");
  if (planes == 0) return;
  const dim3 grid(static_cast<unsigned>(planes), static_cast<unsigned>(chunks));
  auto* dst = out.mutable_data_ptr<out_t>();
  if (plan.channels_last) {
    cube_crop_kernel<out_t, true><<<grid, kThreads, 0, stream>>>(prm, dst);
  } else {
    cube_crop_kernel<out_t, false><<<grid, kThreads, 0, stream>>>(prm, dst);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor cube_crop_cuda(at::TensorList video, const at::Tensor& frame_idx, const at::Tensor& boxes,
                          at::IntArrayRef out_size, const c10::optional<at::Tensor>& perm,
                          const c10::optional<at::Tensor>& flip, const c10::optional<at::Tensor>& rot,
                          const c10::optional<at::Tensor>& channel, at::ArrayRef<double> mean,
                          at::ArrayRef<double> std, at::ScalarType dtype, bool channels_last) {
  // Validation reads the (small) index tensors on the host: a synchronising copy when they live on the GPU.
  const CubeCropPlan plan = plan_cube_crop(video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std,
                                           dtype, channels_last, c10::DeviceType::CUDA, /*pinned=*/true);
  const c10::cuda::CUDAGuard guard(plan.device);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor table = plan.table.to(at::TensorOptions().device(plan.device), /*non_blocking=*/true);
  at::Tensor out = at::empty_strided(plan.out_sizes, plan.out_strides,
                                     at::TensorOptions().dtype(dtype).device(plan.device));
  switch (dtype) {  // plan_cube_crop accepted only these
    case at::kHalf: launch<at::Half>(plan, table, out, stream); break;
    case at::kBFloat16: launch<at::BFloat16>(plan, table, out, stream); break;
    default: launch<float>(plan, table, out, stream); break;
  }
  return out;
}

}  // namespace
}  // namespace ops
}  // namespace vidfast

TORCH_LIBRARY_IMPL(vidfast, CUDA, m) { m.impl("cube_crop", &vidfast::ops::cube_crop_cuda); }
