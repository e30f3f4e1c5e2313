# MLModelScope: the two commands are `make demo` and `make test`; both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.setup-stamp
PACKAGES := -e services/core -e 'services/agent[onnxruntime,pytorch]' -e services/collector -e services/cli

.PHONY: setup demo test lint format bench constraints models clean

setup: $(STAMP)

$(STAMP): constraints.txt requirements-dev.txt services/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -U pip
	$(PIP) install -q --disable-pip-version-check -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	touch $(STAMP)

demo: setup
	$(BIN)/mlmodelscope evaluate --model digits-cnn --framework onnxruntime --scenario single-stream --mode both \
		--min-duration 10s --output results/demo/result.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p mlmodelscope.core -p mlmodelscope.agent -p mlmodelscope.collector -p mlmodelscope.cli
	PYTHONPATH=services/core/src:services/agent/src:services/collector/src:services/cli/src $(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/tracing_overhead.py
	$(BIN)/python benchmarks/trace_pipeline.py

models: setup
	$(BIN)/python scripts/build_digits.py

constraints: setup
	$(PIP) freeze --exclude-editable | sed 's/+cpu//' > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache results
