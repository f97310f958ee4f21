# Heddle: two commands to remember.
#   make up    run the embedded stack (PostgreSQL, Kafka-protocol broker, every role, API)
#   make test  run the whole test suite against real PostgreSQL and real Apache Kafka

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: up test lint typecheck bench clean chromium

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP) $@

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
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
