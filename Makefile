# The two commands of the README: `make run` (set up and start on embedded defaults) and
# `make test` (set up and run every check; .ci/run calls exactly this).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup system-deps lint typecheck pytest bench

$(BIN)/xraygate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/xraygate

# Debian packages the tests drive as real peers: dcmtk's storescu/storescp, and Chromium for
# the browser test of the web pages.
system-deps:
	@{ [ -x /usr/bin/storescu ] && [ -x /usr/bin/chromium ]; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq dcmtk chromium fonts-dejavu-core >/dev/null; }

run: setup
	$(BIN)/xraygate serve

lint: setup
	$(BIN)/ruff check xraygate tests bench
	$(BIN)/ruff format --check xraygate tests bench

typecheck: setup
	$(BIN)/mypy

pytest: setup system-deps
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: setup system-deps
	$(BIN)/python bench/ingest.py --quick
