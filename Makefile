# The two commands of the quick start: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Development defaults for the demo configuration (relay.yaml); set real values in production.
export OPENCLAW_HOOKS_TOKEN ?= dev-hooks-token
export GITHUB_WEBHOOK_SECRET ?= dev-github-secret
export GENERIC_WEBHOOK_TOKEN ?= dev-generic-token

.PHONY: run test test-slow lint install

$(BIN)/relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded,dev]'
	touch $(BIN)/relay

install: $(BIN)/relay

run: install
	$(BIN)/relay up

test: install
	$(BIN)/pytest -m "not slow"

test-slow: install
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy relay presets

# The relay and its baselines side by side (needs redis-server and wrk); see bench/README.md.
.PHONY: bench bench-smoke
bench: install
	$(BIN)/python bench/run.py

bench-smoke: install
	$(BIN)/python bench/run.py --quick --out bench/results-quick.md
