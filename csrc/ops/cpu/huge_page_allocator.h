// Host allocator for the large outputs of vidfast's CPU kernels.
#pragma once

#include <ATen/ATen.h>

namespace vidfast {
namespace ops {

// at::empty_strided on the CPU, except that outputs of 2 MiB or more come from 2 MiB-aligned blocks advised for
// transparent huge pages and recycled through a small cache of freed blocks.  A data pipeline asks for a
// same-sized batch every step; without this each fresh 100 MB output costs ~25000 page faults plus the kernel
// zeroing every page, which takes longer than the op's own work.  VIDFAST_CPU_CACHE_MB (default 512, 0 disables)
// bounds the bytes kept in the cache; at most two blocks are kept.
at::Tensor empty_strided_cached(at::IntArrayRef sizes, at::IntArrayRef strides, at::ScalarType dtype);

}  // namespace ops
}  // namespace vidfast
