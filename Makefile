# vidfast: the two set-up commands are `make demo` and `make test`; each creates or reuses the project venv.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# torchvision matching TORCH_SPEC, without dependencies: the tests run its pure-Python video ResNet file as the
# reference for vidfast's tv_* models (its compiled ops need not load, and vidfast itself never imports it)
TORCHVISION_SPEC ?= torchvision==0.28.0
EXTRAS ?= train,dev,export,dali,openvino
BIN := $(VENV)/bin
STAMP := $(VENV)/.vidfast-installed
NATIVE_SOURCES := $(shell find csrc -type f) setup.py pyproject.toml

.PHONY: install demo test bench cuda-check gpu-verify lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first (from TORCH_SPEC: here the CPU build on local disk), then the package built against it without
# build isolation, so pip does not pull a second, multi-GB torch into an isolated build environment.
$(STAMP): $(BIN)/python $(NATIVE_SOURCES)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q --no-deps "$(TORCHVISION_SPEC)"
	$(BIN)/pip install -q setuptools wheel pybind11
	$(BIN)/pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vidfast demo --out demo_runs

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-columns=mean,ops -q

# Compiles and links the CUDA kernels against a CUDA build of torch in a separate venv (no GPU needed).
cuda-check:
	bash .ci/cuda_check.sh

# On a CUDA machine: build with CUDA, pytest -m cuda, the CUDA benchmarks and a DALI-fed run, one results file
# under bench/results/ (<= 8 min; uses the machine's own Python and torch). Without a GPU: one line, exit 0.
gpu-verify:
	bash bench/gpu_verify.sh

lint: $(STAMP)
	$(BIN)/ruff check vidfast cli tests bench setup.py

clean:
	rm -rf build *.egg-info vidfast/_C*.so
