# StratX: `make help` lists the targets. Every target sets up .venv/ itself from the lock file.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
SPEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help install demo features test test-unit test-integration lint typecheck typecheck-links bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen --extra dev --inexact --python $(BIN)/python
	@touch $@

install: $(BIN)/.installed ## create .venv/ from the lock file (uv.lock)

demo: install ## quickstart: broker, topics, feature apps, replay of a bundled real race, Feast (SPEED=1: real time)
	$(BIN)/stratx demo --speed $(SPEED)

test: install typecheck-links ## the whole suite: lint, types, unit and integration tiers (starts its own broker)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

test-unit: install ## unit tier only (no broker)
	$(BIN)/pytest -m "not integration"

test-integration: install ## integration tier only (real embedded broker)
	$(BIN)/pytest -m integration

lint: install ## ruff lint + format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: install typecheck-links ## mypy on the source packages
	$(BIN)/mypy

# mypy cannot follow setuptools' editable-install import hook; mirror the installed layout
typecheck-links:
	@mkdir -p .typecheck/stratx
	@ln -sfn ../../functions .typecheck/stratx/functions
	@ln -sfn ../../quix_apps .typecheck/stratx/quix_apps

bench: install ## benchmarks: replay and feature apps vs raw confluent-kafka round trips, Feast reads
	$(BIN)/python bench/replay_throughput.py --repeat 3
	$(BIN)/python bench/features_throughput.py

features: install ## offline lap features + lap aggression of the bundled races and corpus (parquet)
	$(BIN)/stratx features build

clean: ## remove the environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .typecheck
