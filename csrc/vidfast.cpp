// The pybind11 module behind ``vidfast._C``: importing it registers every op in TORCH_LIBRARY(vidfast, m)
// (the op files are linked into the same shared object) and exposes build facts.
#include <torch/extension.h>

#include "ops/cpu/cube_crop_rows.h"

#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = std::string("unknown");
#endif
#ifdef _OPENMP
  info["openmp"] = true;
  info["openmp_version"] = static_cast<int>(_OPENMP);
  info["openmp_max_threads"] = omp_get_max_threads();
#else
  info["openmp"] = false;
#endif
  std::vector<std::string> kernels = {"cpu"};
#ifdef VIDFAST_WITH_CUDA
  kernels.push_back("cuda");
  info["cuda"] = true;
  info["cuda_arch_list"] = std::string(VIDFAST_CUDA_ARCH_LIST);
#else
  info["cuda"] = false;
  info["cuda_arch_list"] = std::string("");
#endif
  info["kernels"] = kernels;
  // Instruction set of the CPU kernels' row loops on this machine (chosen at run time; ATEN_CPU_CAPABILITY lowers it)
  info["cpu_isa"] = std::string(vidfast::ops::row_kernels().isa);
  // Native kernels compiled per op (torch.ops.vidfast.<op>), by device.
  pybind11::dict ops;
  ops["cube_crop"] = kernels;
  info["ops"] = ops;
  info["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vidfast native ops (registered as torch.ops.vidfast.*)";
  m.def("build_info", &build_info, "Compiler, OpenMP, CUDA arch list and the kernels compiled into this build");
}
