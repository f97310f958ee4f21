# Heddle: two commands to remember.
#   make up    run the embedded stack (PostgreSQL, Kafka-protocol broker, every role, API)
#   make test  run the whole test suite against real PostgreSQL and real Apache Kafka

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Installs come from uv.lock (`make lock` rewrites it after a change to pyproject.toml);
# uv itself is pinned here and installed into the venv.
UV_VERSION := 0.13.9
UV     := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv
SYNC   := $(UV) sync --locked --inexact --python $(BIN)/python

.PHONY: up test lint typecheck bench clean openapi lock chromium

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)

# A lock that no longer matches pyproject.toml fails the install (and so CI), saying what to do.
CHECK_LOCK = @$(UV) lock --check --python $(BIN)/python || { \
	echo "uv.lock does not match pyproject.toml: run \`make lock\` and commit uv.lock"; exit 1; }

$(STAMP): pyproject.toml uv.lock | $(BIN)/uv
	$(CHECK_LOCK)
	$(SYNC) --extra embedded
	@touch $@

$(DEV_STAMP): pyproject.toml uv.lock | $(BIN)/uv
	$(CHECK_LOCK)
	$(SYNC) --extra dev
	@touch $(STAMP) $@

# Resolve pyproject.toml's dependencies again into uv.lock, keeping every locked version
# that still fits (`make lock UPGRADE=--upgrade` takes the newest instead).
lock: | $(BIN)/uv
	$(UV) lock --python $(BIN)/python $(UPGRADE)

up: $(STAMP)
	$(BIN)/heddle up

# The browser tests (tests/ui) drive Debian's chromium; as root, install it when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || echo "no chromium: tests/ui is skipped (fails in CI); install Debian's chromium"

# ... and axe-core (pinned by tests/ui/package-lock.json) for their accessibility check.
UI_TOOLS := tests/ui/node_modules/.package-lock.json
$(UI_TOOLS): tests/ui/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/ui --silent --no-audit --no-fund; \
	else echo "no npm: the accessibility check in tests/ui is skipped (fails in CI)"; fi

test: $(DEV_STAMP) chromium $(UI_TOOLS)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/deptry domain handlers projections api infra
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Rewrite docs/openapi.json from the app (tests/unit/test_openapi.py fails when it is stale).
openapi: $(STAMP)
	$(BIN)/python -m api.http.openapi

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
