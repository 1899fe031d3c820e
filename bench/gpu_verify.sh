#!/usr/bin/env bash
# Every GPU figure and check in one call (`make gpu-verify`), within a total budget (default 8 minutes):
#   1. build the native extension with its CUDA kernels, for this device's architecture only
#   2. pytest -m cuda over tests/ (the CUDA kernel against the CPU kernel and the reference, bit for bit)
#   3. CUDA benchmarks: cube_crop vs a device copy_ (bench/test_cube_crop.py), a training step fp32 / bf16 / fp16
#      channels-last (bench/test_gpu.py), onnxruntime CUDA / TensorRT providers where installed
#      (bench/test_inference.py), the DALI loader vs PyAV (bench/test_data.py)
#   4. a short DALI-fed training run (`vidfast train` on synthetic videos, data.backend dali, device cuda)
# and writes ONE results file, bench/results/gpu-verify-<device>-<UTC time>.txt: the device (nvidia-smi), the
# versions, each step's status (ok / FAILED rc / TIMED OUT / skipped: why) and seconds, and each step's output.
#
# Made for a machine lent once, without network: it uses the Python and torch already there (PYTHON, default
# python3), pip-installs only wheels from a folder when one is present (VIDFAST_WHEELS, default ./wheels), never
# waits past a step's timeout, and goes on after a failed step (recording it). Without a CUDA GPU it says so in
# one line and exits 0. Exit status: 0 when every step passed or was skipped, 1 otherwise.
#
#   GPU_VERIFY_BUDGET_S   total seconds (default 480)     GPU_VERIFY_OUT   results file (default as above)
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"

# --- a CUDA GPU, or one line and exit 0
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-verify: no CUDA GPU here (nvidia-smi not found): nothing to verify"
  exit 0
fi
if ! gpus="$(timeout 30 nvidia-smi -L 2>&1)" || ! grep -q '^GPU [0-9]' <<<"$gpus"; then
  echo "gpu-verify: no CUDA GPU here (nvidia-smi -L: $(head -n 1 <<<"$gpus")): nothing to verify"
  exit 0
fi

started=$(date +%s)
BUDGET="${GPU_VERIFY_BUDGET_S:-480}"
device_name="$(timeout 30 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
slug="$(tr -cs 'A-Za-z0-9' '-' <<<"${device_name:-gpu}" | sed 's/^-*//; s/-*$//')"
mkdir -p bench/results
OUT="${GPU_VERIFY_OUT:-bench/results/gpu-verify-${slug}-$(date -u +%Y-%m-%dT%H%MZ).txt}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vidfast-gpu-verify.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
failures=0
summary=()

{
  echo "vidfast gpu-verify, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "device: $device_name"
  timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
  echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  timeout 60 "$PY" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, cuda available {torch.cuda.is_available()}")' 2>&1
  echo "nvcc: $(command -v nvcc >/dev/null && nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p' || echo 'not found')"
  echo "budget: ${BUDGET} s"
} >"$OUT"
echo "gpu-verify: $device_name; results in $OUT"

# run NAME MAX_SECONDS COMMAND...: runs the step within min(MAX_SECONDS, what is left of the budget minus a
# reserve for the file), records its status, seconds and output; never stops the script.
run() {
  local name="$1" max="$2"
  shift 2
  local left=$((BUDGET - ($(date +%s) - started) - 10))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 15 ]; then
    summary+=("$(printf '%-28s skipped: out of time' "$name")")
    printf '\n===== %s: skipped, out of time\n' "$name" >>"$OUT"
    return
  fi
  printf '\n===== %s (limit %d s): %s\n' "$name" "$limit" "$*" >>"$OUT"
  local t0=$(date +%s) rc
  timeout -k 10 "$limit" "$@" >"$WORK/step.log" 2>&1 </dev/null
  rc=$?
  local took=$(($(date +%s) - t0)) status
  case $rc in
    0) status="ok" ;;
    5) status="ok (no tests selected)" ;;
    124 | 137) status="TIMED OUT after ${limit} s"; failures=$((failures + 1)) ;;
    *) status="FAILED (exit $rc)"; failures=$((failures + 1)) ;;
  esac
  # the step's output, without the progress noise of long lines; the whole of it when short
  if [ "$(wc -l <"$WORK/step.log")" -gt 400 ]; then
    { head -n 60 "$WORK/step.log"; echo "[... $(wc -l <"$WORK/step.log") lines, middle left out ...]"; tail -n 300 "$WORK/step.log"; } >>"$OUT"
  else
    cat "$WORK/step.log" >>"$OUT"
  fi
  printf -- '----- %s: %s in %d s\n' "$name" "$status" "$took" >>"$OUT"
  summary+=("$(printf '%-28s %-28s %4d s' "$name" "$status" "$took")")
  echo "gpu-verify: $name: $status ($took s)"
}

# --- wheels carried in a folder (no network here)
WHEELS="${VIDFAST_WHEELS:-wheels}"
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  run "install carried wheels" 120 "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEELS"/*.whl
else
  summary+=("$(printf '%-28s skipped: no wheels folder %s' "install carried wheels" "$WHEELS")")
fi

# --- build: CUDA kernels for this device's architecture only (fast), in place; the tree's CPU build otherwise
arch="$(timeout 60 "$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
run "build (CUDA ${arch:-?})" 200 env VIDFAST_CUDA=1 TORCH_CUDA_ARCH_LIST="${arch:-8.0}" \
  "$PY" setup.py -q build_ext --inplace
export PYTHONPATH="$ROOT:$ROOT/cli${PYTHONPATH:+:$PYTHONPATH}"
run "native ops loaded" 30 "$PY" -c '
from vidfast import _ext
from vidfast.ops import native_available
native = _ext.native_module()
assert native is not None, _ext.load_error()
print(dict(native.build_info()))
assert native_available("cuda"), "no CUDA kernel of cube_crop in this build"'

# --- correctness on the device, then the figures
run "pytest -m cuda" 75 "$PY" -m pytest -q -m cuda tests -p no:cacheprovider
run "bench: cube_crop vs copy_" 40 "$PY" -m pytest -q -s -p no:cacheprovider bench/test_cube_crop.py -k cuda \
  --benchmark-columns=median,rounds
run "bench: train step" 50 "$PY" -m pytest -q -s -p no:cacheprovider -m cuda bench/test_gpu.py \
  --benchmark-columns=median,rounds
run "bench: onnxruntime GPU" 40 "$PY" -m pytest -q -s -p no:cacheprovider bench/test_inference.py \
  -k "CUDA or TensorRT" --benchmark-columns=median,rounds
run "bench: DALI loader vs PyAV" 90 "$PY" -m pytest -q -s -p no:cacheprovider bench/test_data.py \
  -k "loaders_side_by_side or report" --benchmark-columns=median,rounds

# --- a short DALI-fed training run on synthetic videos
data="$WORK/synth"
cat >"$WORK/dali.yaml" <<EOF
data:
  backend: dali
runtime:
  device: cuda
EOF
run "train: DALI-fed, 2 epochs" 60 bash -c "
  '$PY' '$ROOT/cli/vidfast_cli/app.py' data synth '$data' --classes 2 --per-class 8 --frames 32 --size 128x160 &&
  '$PY' '$ROOT/cli/vidfast_cli/app.py' data index folder '$data' --out '$WORK/synth.csv' --val-fraction 0.25 &&
  '$PY' '$ROOT/cli/vidfast_cli/app.py' train '$WORK/synth.csv' --config '$WORK/dali.yaml' --arch resnet18 --clip-len 16 \
    --size 112 --batch-size 4 --epochs 2 --run-dir '$WORK/run'"

{
  printf '\n===== summary (%d s of %d s)\n' "$(($(date +%s) - started))" "$BUDGET"
  printf '%s\n' "${summary[@]}"
} >>"$OUT"
printf '%s\n' "${summary[@]}"
echo "gpu-verify: $failures step(s) failed; results in $OUT"
[ "$failures" -eq 0 ]
