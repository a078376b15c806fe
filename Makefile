# The two commands of the quick start: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Development defaults for the demo configuration (relay.yaml); set real values in production.
export OPENCLAW_HOOKS_TOKEN ?= dev-hooks-token
export GITHUB_WEBHOOK_SECRET ?= dev-github-secret
export GENERIC_WEBHOOK_TOKEN ?= dev-generic-token

.PHONY: run test test-contract test-slow lint install system-deps slow-system-deps

# Tools the tests run as real processes: redis-server (the tests start their own), wrk (the
# benchmark), chromium (the console's browser test) and npm (installs the real OpenClaw gateway
# for tests/contract). Installed with apt-get when missing (needs root, as on the CI machines).
SYSTEM_TOOLS := redis-server wrk chromium npm
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

# The slow tests also run the real Prometheus Alertmanager (tests/test_alertmanager_live.py).
# Debian's package prometheus-alertmanager installs the binary under the same name (plus amtool).
SLOW_SYSTEM_TOOLS := prometheus-alertmanager
slow-system-deps:
	@missing=""; for t in $(SLOW_SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded,dev]'
	touch $(BIN)/relay

install: $(BIN)/relay

run: install
	$(BIN)/relay up

# The default suite includes tests/contract (marker `contract`): it installs the pinned OpenClaw
# gateway and Node 24 with npm into ~/.cache/openclaw-relay (or $OPENCLAW_RELAY_GATEWAY_CACHE) on
# first use. --dist loadfile keeps the contract module on one worker, which boots the gateway once.
test: install system-deps
	$(BIN)/pytest -m "not slow" -n 2 --dist loadfile

# Only the contract suite: the relay against the real gateway and the stub (docs/contract-tests.md).
test-contract: install system-deps
	$(BIN)/pytest -m contract -n 0

test-slow: install system-deps slow-system-deps
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy relay presets

# The relay and its baselines side by side (needs redis-server and wrk); see bench/README.md.
.PHONY: bench bench-smoke
bench: install
	$(BIN)/python bench/run.py

bench-smoke: install
	$(BIN)/python bench/run.py --quick --out bench/results-quick.md
