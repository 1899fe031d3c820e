// CUDA kernel of vidfast::cube_crop.  The host validates the arguments and packs the clip table (device pointers,
// sizes and strides of a batch or of a ragged list), the per-piece geometry and the source frames into one pinned
// int64 table, copied to the device with one asynchronous copy.  What each thread does and how the grid is laid out
// live in ../cube_crop_cuda.h, shared with the host emulation the tests run without a GPU; this file only launches.
#include "../cube_crop_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace vidfast {
namespace ops {
namespace {

template <typename out_t, bool kChannelsLast>
__global__ void cube_crop_kernel(Params prm, Launch launch, out_t* __restrict__ out) {
  cube_crop_thread<out_t, kChannelsLast>(prm, launch, blockIdx.x, blockIdx.y, threadIdx.x, out);
}

// Runs the kernel for a plan on the GPU, in launches of at most `limits` blocks.
at::Tensor run(const CubeCropPlan& plan, const GridLimits& limits) {
  const c10::cuda::CUDAGuard guard(plan.device);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor table = plan.table.to(at::TensorOptions().device(plan.device), /*non_blocking=*/true);
  at::Tensor out = at::empty_strided(plan.out_sizes, plan.out_strides,
                                     at::TensorOptions().dtype(plan.dtype).device(plan.device));
  const Params prm = make_params(plan, table.const_data_ptr<int64_t>());
  dispatch_kernel(plan.dtype, plan.channels_last, [&](auto tag, auto layout) {
    using out_t = typename decltype(tag)::type;
    auto* dst = out.mutable_data_ptr<out_t>();
    for_each_launch(plan, limits, [&](const Launch& launch) {
      const dim3 grid(static_cast<unsigned>(launch.blocks_x), static_cast<unsigned>(launch.blocks_y));
      cube_crop_kernel<out_t, decltype(layout)::value><<<grid, kThreads, 0, stream>>>(prm, launch, dst);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor cube_crop_cuda(at::TensorList video, const at::Tensor& frame_idx, const at::Tensor& boxes,
                          at::IntArrayRef out_size, const c10::optional<at::Tensor>& perm,
                          const c10::optional<at::Tensor>& flip, const c10::optional<at::Tensor>& rot,
                          const c10::optional<at::Tensor>& channel, at::ArrayRef<double> mean,
                          at::ArrayRef<double> std, at::ScalarType dtype, bool channels_last) {
  // Validation reads the (small) index tensors on the host: a synchronising copy when they live on the GPU.
  return cube_crop_with_grid<c10::DeviceType::CUDA, run>(video, frame_idx, boxes, out_size, perm, flip, rot,
                                                         channel, mean, std, dtype, channels_last, c10::nullopt);
}

}  // namespace
}  // namespace ops
}  // namespace vidfast

TORCH_LIBRARY_IMPL(vidfast, CUDA, m) {
  m.impl("cube_crop", &vidfast::ops::cube_crop_cuda);
  // verification only (tests): the real kernel in launches of at most max_grid blocks
  m.impl("cube_crop_cuda_check", &vidfast::ops::cube_crop_with_grid<c10::DeviceType::CUDA, vidfast::ops::run>);
}
