# StratX: `make help` lists the targets. Every target sets up .venv/ itself from the lock file.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
SPEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help install up demo features train evaluate backtest serve bentos bento-images dashboard browser mosquitto test test-fast test-unit test-integration lint typecheck typecheck-links bench bench-check audit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# --compile-bytecode: the dependencies' .pyc are built once here. Where PYTHONDONTWRITEBYTECODE is
# set (CI, containers) Python would otherwise compile every imported module from source in every
# process: each app, `bentoml serve` and CLI subprocess paid seconds of CPU for it.
$(BIN)/.installed: pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen --extra dev --inexact --compile-bytecode --python $(BIN)/python
	@touch $@

install: $(BIN)/.installed ## create .venv/ from the lock file (uv.lock)

up: install ## quickstart: champions (trained if missing), broker, 5 model services, streaming apps, dashboard, replay of a real race (SPEED=1: real time; Ctrl-C stops)
	$(BIN)/stratx up --speed $(SPEED)

demo: install ## quickstart: broker, topics, feature apps, replay of a bundled real race, Feast (SPEED=1: real time)
	$(BIN)/stratx demo --speed $(SPEED)

train: install ## train the five models on the bundled corpus (MLflow registry, @champion)
	$(BIN)/stratx train

evaluate: install ## score the champions on the unseen test races: .stratx/reports/report.md + metrics.json
	$(BIN)/stratx evaluate

backtest: install ## replay the test races (RACE_ARGS="--year 2023 --event Bahrain" for one) through the whole pipeline and score every prediction and alert: .stratx/reports/backtest/
	$(BIN)/stratx backtest $(RACE_ARGS)

serve: install ## every model's BentoML service on its own port (Ctrl-C stops)
	$(BIN)/stratx serve

bentos: install ## build one Bento per model (offline; needs the champions: make train)
	$(BIN)/stratx bentos build

bento-images: install ## Bentos + their Docker build contexts for compose.bentos.yaml (needs make train)
	$(BIN)/stratx bentos build --export

dashboard: install ## the live dashboard + overlay (http://127.0.0.1:5006/, /overlay) on STRATX_BROKER_ADDRESS
	$(BIN)/stratx dashboard

# the browser tests drive Debian's chromium through Playwright (no browser download); as root this
# installs it, otherwise those tests skip and say why
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "note: Debian chromium not installed (needs root): browser tests will skip"; }

# the push-feed tests (tests/quix_apps/test_live_push.py) start Debian's mosquitto MQTT broker
# themselves; as root this installs it, otherwise those tests skip and say why
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null) || echo "note: Debian mosquitto not installed (needs root): push-feed tests will skip"; }

test: install typecheck-links browser mosquitto ## the whole suite: lint, types, unit and integration tiers (starts its own broker)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadscope --no-loadscope-reorder

# Test tiers: test-fast (pure functions, schemas, recipes on small real slices; no broker, no
# trained champions; about 2 minutes) < test-unit (+ `slow`: whole races, the corpus, the small
# champions cached in tests/artifacts/, Feast applies, CLI subprocesses) < test (+ lint, types and
# the `integration` tier: broker, BentoML servers, browser; what CI runs).
test-fast: install ## fast tier: no broker, no trained models, no whole-race fixtures (markers: not integration, not slow)
	$(BIN)/pytest -n 2 -m "not integration and not slow"

test-unit: install ## unit tier only (no broker)
	$(BIN)/pytest -m "not integration"

test-integration: install mosquitto ## integration tier only (real embedded broker, mosquitto)
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
	@ln -sfn ../../bentos .typecheck/stratx/bentos
	@ln -sfn ../../panel_app .typecheck/stratx/panel_app
	@ln -sfn ../../localstack .typecheck/stratx/localstack

bench-check: install ## which bench/results/ figures are stale: measured on a commit older than the code they measure
	$(BIN)/python bench/check_stale.py

bench: install ## benchmarks: replay, feature apps, training time, serving latency, dashboard latency
	$(BIN)/python bench/replay_throughput.py --repeat 3
	$(BIN)/python bench/features_throughput.py
	$(BIN)/python bench/train_time.py --no-progress
	$(BIN)/python bench/serving_latency.py
	$(BIN)/python bench/dashboard_latency.py

audit: install ## pip-audit of every locked package (uv.lock, all extras; needs PyPI's JSON API; fails if a package cannot be audited): see SECURITY.md
	@mkdir -p .stratx
	$(BIN)/uv export --frozen --no-hashes --no-emit-project --all-extras --all-groups --quiet -o .stratx/audit-requirements.txt
	$(BIN)/pip-audit --disable-pip --no-deps --strict --progress-spinner off -r .stratx/audit-requirements.txt

features: install ## offline lap features + lap aggression of the bundled races and corpus (parquet)
	$(BIN)/stratx features build

clean: ## remove the environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .typecheck
