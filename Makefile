# The two commands of the quick start: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Development secrets for the demo configuration (relay.yaml), written once to .env beside it:
# every relay command, in any terminal, reads them there. Set real values in production.
DEV_SECRETS := OPENCLAW_HOOKS_TOKEN=dev-hooks-token GITHUB_WEBHOOK_SECRET=dev-github-secret \
	GENERIC_WEBHOOK_TOKEN=dev-generic-token

.PHONY: run test test-contract test-repeat test-slow lint install system-deps

# Tools the tests run as real processes: redis-server (the tests start their own), wrk (the
# benchmark), chromium (the console's browser test), npm (installs the real OpenClaw gateway for
# tests/contract) and the real Prometheus Alertmanager
# (tests/presets/test_alertmanager_live.py; Debian's package installs the binary under its own name).
# promtool (the alert rules' unit tests) comes in Debian's package prometheus. Installed with
# apt-get when missing (needs root, as on the CI machines). Google's Pub/Sub emulator is not a
# Debian package: tests/presets/test_gmail_pubsub.py uses it where it is installed.
SYSTEM_TOOLS := redis-server wrk chromium npm prometheus-alertmanager
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded,dev,otel]'
	touch $(BIN)/relay

install: $(BIN)/relay

.env:
	@umask 077 && printf '%s\n' $(DEV_SECRETS) > .env && echo "wrote .env (development secrets for relay.yaml)"

run: install .env
	$(BIN)/relay up

# The default suite includes tests/contract (marker `contract`): it installs the pinned OpenClaw
# gateway and Node 24 with npm into ~/.cache/openclaw-relay (or $OPENCLAW_RELAY_GATEWAY_CACHE) on
# first use. --dist loadfile keeps the contract module on one worker, which boots the gateway once.
# --durations shows the slowest tests, so one drifting toward its timeout is seen before it fails.
test: install system-deps
	$(BIN)/pytest -m "not slow" -n 2 --dist loadfile --durations=15

# Only the contract suite: the relay against the real gateway and the stub (docs/contract-tests.md).
test-contract: install system-deps
	$(BIN)/pytest -m contract -n 0

# The default suite N times over, listing every test that failed at least once (flaky tests).
N ?= 5
test-repeat: install system-deps
	$(BIN)/python tests/repeat.py $(N)

test-slow: install system-deps
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy relay presets

# The relay and its baselines side by side (needs redis-server and wrk); see bench/README.md.
.PHONY: bench bench-smoke
bench: install
	$(BIN)/python bench/run.py

bench-smoke: install
	$(BIN)/python bench/run.py --quick --out bench/results-quick.md
