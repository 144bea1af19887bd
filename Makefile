# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql://127.0.0.1:5432/test

.PHONY: run test lint test-sqlite test-postgres bench soak fuzz check system-deps browser-deps peer-deps clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/interface check channels mappings rules
	mkdir -p var/scan/inbox
	$(BIN)/interface run

# The house keeps its shape: import contracts (docs/architecture.md), lint, format, types.
lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check interface tests
	$(BIN)/ruff format --check interface tests
	$(BIN)/mypy

check: $(STAMP)
	$(BIN)/interface check channels mappings rules

# The whole suite on SQLite, then again on the local PostgreSQL (CI sets REQUIRE_POSTGRES=1:
# an unreachable PostgreSQL fails the run instead of skipping it).
test: $(STAMP) system-deps peer-deps lint
	$(BIN)/interface check channels mappings rules
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(MAKE) --no-print-directory test-postgres

test-postgres: $(STAMP)
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_URL)', connect_timeout=5).close()" 2>/dev/null; then \
	  INTERFACE_TEST_DB_URL=$(PG_URL) $(BIN)/python -m pytest -q -p no:cacheprovider -m "not browser"; \
	elif [ -n "$$REQUIRE_POSTGRES$$CI" ]; then \
	  echo "PostgreSQL is not reachable at $(PG_URL): failing (CI never skips it)"; exit 1; \
	else \
	  echo "PostgreSQL not reachable at $(PG_URL): skipped the PostgreSQL run (set REQUIRE_POSTGRES=1 to fail)"; \
	fi

# System packages from Debian's archive, installed when missing (as root, with apt-get), the way a
# fresh machine and CI get them: Chromium for the browser tests (Playwright drives it; no browser
# download), slapd for the directory sign-in tests, tesseract, zbar and ghostscript for scanning,
# DejaVu for release packets (names outside Latin-1).
DEB_PACKAGES := chromium slapd ldap-utils tesseract-ocr libzbar0 ghostscript fonts-dejavu-core

# Third-party HL7 peers for tests/test_peers.py: Medplum's MLLP client (Node), pinned by
# tests/peers/package-lock.json, installed from the npm registry when missing (nodejs and npm
# from Debian if the machine has no node).
PEERS := tests/peers
peer-deps: $(PEERS)/node_modules/.installed

$(PEERS)/node_modules/.installed: $(PEERS)/package.json $(PEERS)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
	    || echo "could not install nodejs and npm: the Node peer tests will fail"; \
	  else echo "npm is missing (install nodejs and npm for the Node peer tests)"; fi; }
	cd $(PEERS) && npm ci --silent --no-audit --no-fund </dev/null
	touch $@


system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "could not install$$missing: the tests that need them will fail"; \
	  else echo "missing Debian packages:$$missing (install them for the tests that need them)"; fi; fi

browser-deps: system-deps

bench: $(STAMP)
	$(BIN)/interface bench

# Long forms of the slow tests (docs/reliability.md: R1 with 25 kills, R3, R5, R6, the absurd-field
# probes of tests/test_probe_classes.py), on SQLite then
# PostgreSQL; -rP prints each test's pass figures.
soak: $(STAMP)
	SOAK=1 $(BIN)/python -m pytest -q -p no:cacheprovider -rP -m slow
	SOAK=1 INTERFACE_TEST_DB_URL=$(PG_URL) $(BIN)/python -m pytest -q -p no:cacheprovider -rP -m slow

fuzz: $(STAMP)
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

clean:
	rm -rf var .pytest_cache
