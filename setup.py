"""Build script for vidfast's native extension ``vidfast._C``.

The extension is built only where torch is importable (the training install, ``make install``); without
torch (``pip install ".[deploy]"``) vidfast installs without it, pure Python. The C++ CPU kernels (OpenMP)
are always built with it. The CUDA kernels are built when a CUDA toolkit and a CUDA
build of torch are present; ``VIDFAST_CUDA=0`` forces them off and ``VIDFAST_CUDA=1`` forces them on (failing
loudly if the toolkit is missing). Install with ``pip install --no-build-isolation -e .`` after torch, so that
the build uses the torch already installed, not a multi-GB one pulled into an isolated build environment.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    flag = os.environ.get("VIDFAST_CUDA", "").strip()
    if flag == "0":
        return False
    available = CUDA_HOME is not None and torch.version.cuda is not None
    if flag == "1":
        if not available:
            sys.exit(
                "VIDFAST_CUDA=1 but no CUDA toolkit (CUDA_HOME) or no CUDA build of torch "
                f"(torch {torch.__version__}) was found"
            )
        return True
    return available


def _extensions():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    cpp_sources = sorted(
        glob.glob("csrc/*.cpp") + glob.glob("csrc/ops/*.cpp") + glob.glob("csrc/ops/cpu/*.cpp")
    )
    # no FMA contraction: the kernels round like the PyTorch reference, bit for bit, also with -march=native
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    if os.environ.get("VIDFAST_NATIVE_ARCH", "0") == "1":
        cxx_flags.append("-march=native")
    define_macros = []
    if _want_cuda():
        sources = cpp_sources + sorted(glob.glob("csrc/ops/cuda/*.cu"))
        define_macros.append(("VIDFAST_WITH_CUDA", None))
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
        define_macros.append(("VIDFAST_CUDA_ARCH_LIST", f'"{arch_list}"'))
        ext = CUDAExtension(
            "vidfast._C",
            sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "vidfast._C",
            cpp_sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
    return [ext]


def _build_ext():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(no_python_abi_suffix=False)


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


if _torch_importable():
    native = {"ext_modules": _extensions(), "cmdclass": {"build_ext": _build_ext()}}
else:
    if os.environ.get("VIDFAST_CUDA", "").strip() == "1":
        sys.exit("VIDFAST_CUDA=1 but torch is not importable: install torch, then build without isolation")
    print("vidfast: torch is not importable, so the native extension vidfast._C is not built (fine for the "
          "deployment install; the training install builds it: make install)", file=sys.stderr)
    native = {}

setup(
    packages=find_packages(include=["vidfast", "vidfast.*"]) + find_packages("cli"),
    package_dir={"vidfast_cli": "cli/vidfast_cli", "vidfast_cli.commands": "cli/vidfast_cli/commands"},
    zip_safe=False,
    **native,
)
