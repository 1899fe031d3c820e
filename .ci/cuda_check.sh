#!/usr/bin/env bash
# CUDA build check, no GPU needed: compile and link vidfast's native extension with its CUDA kernels against a
# CUDA build of torch, import it, and check that the CPU and CUDA kernels of every op are registered.  Nothing runs
# on a device; this only keeps the CUDA code from rotting on machines without one.
#
#   VENV=.venv-cuda (default)   venv holding a CUDA build of torch; created when missing
#   TORCH_CUDA_SPEC             torch to install into a new venv (default torch==2.14.1, a CUDA 13.0 build)
#   TORCH_CUDA_ARCH_LIST        GPU architectures to compile for (default "8.0;9.0")
#   KEEP_BUILD=1                keep the temporary build folder (its path is printed)
#
# The extension is built out of tree (a temporary folder), so the in-tree CPU build is left untouched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv-cuda}"
TORCH_CUDA_SPEC="${TORCH_CUDA_SPEC:-torch==2.14.1}"
started=$(date +%s)
say() { printf 'cuda-check: %s\n' "$*"; }
die() { printf 'cuda-check: error: %s\n' "$*" >&2; exit 1; }

# --- the CUDA toolkit behind the nvcc on PATH (which may be a wrapper script naming the real one)
NVCC="$(command -v nvcc)" || die "nvcc is not on PATH"
nvcc_bin="$("$NVCC" --dryrun -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n 1)"
if [ -z "$nvcc_bin" ]; then  # older nvcc: follow symlinks, then an absolute .../bin/nvcc named inside a script
  real="$(readlink -f "$NVCC")"
  named="$(grep -aoE '/[^[:space:]"'\'']+/bin/nvcc' "$real" 2>/dev/null | head -n 1 || true)"
  nvcc_bin="$(dirname "$(readlink -f "${named:-$real}")")"
fi
CUDA_HOME="$(cd "$nvcc_bin/.." && pwd)"
[ -x "$CUDA_HOME/bin/nvcc" ] || die "could not locate the CUDA toolkit of $NVCC (got $CUDA_HOME)"
export CUDA_HOME
say "nvcc $NVCC -> CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"

# --- a venv with a CUDA build of torch
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $TORCH_CUDA_SPEC (several GB, a few minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$TORCH_CUDA_SPEC" pybind11 setuptools numpy
fi
PY="$VENV/bin/python"
torch_cuda="$("$PY" -c 'import torch; print(torch.version.cuda or "")')" || die "$VENV has no working torch"
[ -n "$torch_cuda" ] || die "torch in $VENV is not a CUDA build (set TORCH_CUDA_SPEC and remove $VENV)"
say "torch $("$PY" -c 'import torch; print(torch.__version__)') (CUDA $torch_cuda) in $VENV"

# The system CUDA include folder lacks some headers torch includes (e.g. cusparse.h); the CUDA wheels have them.
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
major="${torch_cuda%%.*}"
wheel_include="$site/nvidia/cu$major/include"
[ -d "$wheel_include" ] || wheel_include="$(ls -d "$site"/nvidia/*/include 2>/dev/null | paste -sd: -)"
export CPATH="$wheel_include${CPATH:+:$CPATH}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export VIDFAST_CUDA=1

# --- build out of tree
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/vidfast-cuda-check.XXXXXX")"
if [ "${KEEP_BUILD:-0}" = "1" ]; then say "build folder kept: $BUILD"; else trap 'rm -rf "$BUILD"' EXIT; fi
say "building for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
build_started=$(date +%s)
if ! "$PY" setup.py -q build_ext --build-lib "$BUILD/lib" --build-temp "$BUILD/temp" >"$BUILD/build.log" 2>&1; then
  tail -n 40 "$BUILD/build.log" >&2
  die "build failed (log above)"
fi
so="$(ls "$BUILD"/lib/vidfast/_C*.so)"
say "built $(basename "$so") in $(( $(date +%s) - build_started )) s"

# --- import it (by path, so the in-tree CPU build cannot shadow it) and check the registrations
"$PY" - "$so" <<'EOF'
import importlib.util
import sys

import torch

spec = importlib.util.spec_from_file_location("vidfast._C", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
info = module.build_info()
assert info["cuda"] and "cuda" in info["kernels"], f"build_info reports no CUDA kernels: {info}"
# cube_crop_cuda_check: the test-only op that runs the CUDA kernel code (on the host for CPU tensors)
missing = [f"vidfast::{op}/{key}" for op in [*info["ops"], "cube_crop_cuda_check"] for key in ("CPU", "CUDA")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"vidfast::{op}", key)]
assert not missing, f"kernels not registered: {missing}"
print(f"cuda-check: ok: ops {sorted(info['ops'])} have CPU and CUDA kernels; arch list {info['cuda_arch_list']!r}; "
      f"{info['compiler']}")
EOF
say "passed in $(( $(date +%s) - started )) s"
