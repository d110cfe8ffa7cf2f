# monai_gen: `make demo` runs the shipped ECG bundle, `make test` runs the test suite.
# Both create the local virtual environment on first use; later runs reuse it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Torch is installed before the package: on a machine without a GPU a bare `torch` requirement would pull a
# multi-GB CUDA build. TORCH_SPEC / TORCH_INDEX_URL override the choice (e.g. the PyTorch CPU index).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.monai_gen-installed
PYTEST_ARGS ?=
DEMO_OUT ?= demo_output

.PHONY: venv test demo bench lint clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then \
	    echo "GPU found: installing $(TORCH_SPEC) (CUDA build)"; $(PIP) install --quiet "$(TORCH_SPEC)"; \
	  else \
	    echo "no GPU found: installing $(TORCH_SPEC) (CPU build)"; \
	    $(PIP) install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)); \
	  fi; \
	fi
	$(PIP) install --quiet -e ".[test]"
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job: the shipped ECG bundle and its weights generate beats across a heart-rate sweep (WFDB records,
# a sweep strip and manifest.csv; --previews would add a 12-lead PNG per ECG). Re-running reuses finished samples.
demo: $(STAMP)
	$(VENV)/bin/monai-gen sweep ecg_generative_diffusion --phenotype heart_rate --start 50 --stop 110 \
	  --num-values 4 --num-seeds 2 --output-dir $(DEMO_OUT)
	@echo "demo output in $(abspath $(DEMO_OUT)): sweep_heart_rate.png, one .hea/.dat/.json per ECG, manifest.csv"

bench: $(STAMP)
	$(PY) -m benchmarks.generation

lint: $(STAMP)
	$(PY) -m ruff check monai_gen tests

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
