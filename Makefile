# One task runner: CI calls `make test` exactly as a person would.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: up test lint typecheck format bench bench-storage install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

## Start Soulfra: the default world, live in the terminal (Ctrl-C stops it).
up: $(STAMP)
	$(BIN)/soulfra run --live --ticks 0

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint typecheck
	$(BIN)/pytest --cov=soulfra.world --cov-report=term --cov-fail-under=90

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
