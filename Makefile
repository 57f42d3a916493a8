# The two commands of the README: `make run` (set up and start on embedded defaults) and
# `make test` (set up and run every check; .ci/run calls exactly this).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup system-deps test-peers lint typecheck pytest bench cluster

# Two install levels: `make run` needs only the runtime dependencies; the dev tools (linters,
# test peers such as moto, playwright, schemathesis) come with `make setup` / `make test`.
$(VENV)/.runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.dev

# Debian packages the tests drive as real peers: dcmtk (storescu/storescp/dsrdump), Chromium (web
# pages), Orthanc + its DICOMweb plugin (the PACS), dicom3tools (dciodvfy), Tesseract (pixel PHI),
# HAProxy (cluster harness), Prometheus (promtool checks the alert rules). Installed only if missing.
DEBIAN_PKGS := dcmtk chromium orthanc orthanc-dicomweb dicom3tools tesseract-ocr haproxy prometheus \
	fonts-dejavu-core fonts-dejavu-extra fonts-liberation2
system-deps:
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(DEBIAN_PKGS) 2>/dev/null \
	  | awk '$$NF != "installed" {print $$1}'; \
	  for p in $(DEBIAN_PKGS); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq $$(echo $$missing | tr ' ' '\n' | sort -u) >/dev/null; \
	fi

run: $(VENV)/.runtime
	$(BIN)/xraygate serve

lint: setup
	$(BIN)/ruff check xraygate tests bench
	$(BIN)/ruff format --check xraygate tests bench

typecheck: setup
	$(BIN)/mypy

# npm test peers, pinned by their lock files, installed once into .pytest_cache (the tests do it
# too; here a registry problem shows before the run, and the parallel workers find it installed):
# the OpenID provider of the single sign-on tests (tests/gateway/oidc).
test-peers: setup
	$(BIN)/python -c "from tests.gateway.oidc import install; print('oidc-provider in', install())"

# The suite runs in parallel (pytest-xdist): every test has its own temp dir, database (a fresh
# PostgreSQL database or SQLite file) and ephemeral ports, so workers never share state. A module
# stays on one worker (--dist loadfile) so its module-scoped fixtures are built once.
# `make test PYTEST_WORKERS=0` runs it serially.
PYTEST_WORKERS ?= 4
pytest: setup system-deps test-peers
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint typecheck pytest

bench: setup system-deps
	$(BIN)/python bench/ingest.py --quick

# The multi-process deployment under faults (tests/cluster): ~1,000 instances through HAProxy into
# 2 SCPs, 3 workers, 2 gateways on PostgreSQL + S3; prints the verdict, fails unless it passes.
# More options: `make cluster CLUSTER_ARGS="--seed 2 --instances 400"` (see --help).
CLUSTER_ARGS ?=
cluster: setup system-deps
	$(BIN)/python -m tests.cluster $(CLUSTER_ARGS)
