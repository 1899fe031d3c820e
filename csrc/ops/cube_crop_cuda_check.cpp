// vidfast::cube_crop_cuda_check on CPU tensors, for tests only: the CUDA kernel of cube_crop executed on the host.
//
// The kernel's per-thread body (cube_crop_thread in cube_crop_cuda.h) runs for every thread of every block of every
// launch that for_each_launch yields, as the CUDA launcher would launch them, and writes into a CPU buffer.  The
// buffer starts as NaN, so an element no thread writes shows as NaN, and it has a NaN guard of the output's size
// plus one block's chunk on either side: a write there fails the call.  One host call per GPU thread: slow, for tests
// only.
#include "cube_crop_cuda.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>

namespace vidfast {
namespace ops {
namespace {

at::Tensor emulate(const CubeCropPlan& plan, const GridLimits& limits) {
  const int64_t numel = plan.num_pieces() * kChannels * plan.t * plan.oh * plan.ow;  // dense, either layout
  const int64_t guard = numel + kBlockElems;
  const at::Tensor buffer = at::full({guard + numel + guard}, std::numeric_limits<float>::quiet_NaN(),
                                     at::TensorOptions().dtype(plan.dtype));
  const Params prm = make_params(plan, plan.clips());
  dispatch_kernel(plan.dtype, plan.channels_last, [&](auto tag, auto layout) {
    using out_t = typename decltype(tag)::type;
    out_t* out = buffer.mutable_data_ptr<out_t>() + guard;
    for_each_launch(plan, limits, [&](const Launch& launch) {
      // Blocks run in any order on a GPU and write disjoint elements: here they run in parallel too.
      at::parallel_for(0, launch.blocks_x * launch.blocks_y, 1, [&](int64_t begin, int64_t end) {
        for (int64_t block = begin; block < end; ++block) {
          for (int64_t thread = 0; thread < kThreads; ++thread) {
            cube_crop_thread<out_t, decltype(layout)::value>(prm, launch, block % launch.blocks_x,
                                                             block / launch.blocks_x, thread, out);
          }
        }
      });
    });
  });
  TORCH_CHECK(buffer.narrow(0, 0, guard).isnan().all().item<bool>() &&
                  buffer.narrow(0, guard + numel, guard).isnan().all().item<bool>(),
              "cube_crop_cuda_check: the CUDA kernel's threads wrote outside the output");
  at::Tensor out = at::empty_strided(plan.out_sizes, plan.out_strides, at::TensorOptions().dtype(plan.dtype));
  out.copy_(buffer.as_strided(plan.out_sizes, plan.out_strides, guard));
  return out;
}

}  // namespace
}  // namespace ops
}  // namespace vidfast

TORCH_LIBRARY_IMPL(vidfast, CPU, m) {
  m.impl("cube_crop_cuda_check", &vidfast::ops::cube_crop_with_grid<c10::DeviceType::CPU, vidfast::ops::emulate>);
}
