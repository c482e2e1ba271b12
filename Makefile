# Everything the tests need is installed by these targets, pinned.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit lint typecheck e2e torture clean

include contracts.mk
include cometbft.mk
include docker.mk
include bench.mk
include browser.mk

install: $(STAMP) node-tools cometbft docker-compose-tool browser

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# anvil + escrow + a validator + a few deposits, credited; runs until Ctrl-C.
demo: $(STAMP) node-tools
	$(BIN)/bridge demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The fast inner loop: everything except the subprocess end-to-end tests.
test-unit: install
	$(BIN)/pytest -q -m "not e2e and not compose"

e2e: install
	$(BIN)/pytest -q -m "e2e and not compose"

# The crash torture alone (30 SIGKILLs of a solo node, 10 validator kills on CometBFT);
# `make test` runs it too. Bounded by counts, not time.
torture: install
	$(BIN)/pytest -q -m torture

# What CI runs (.ci/run): the suite, then the compose network for real (tests/compose/).
test: lint typecheck
	$(BIN)/pytest -q -m "not compose"
	$(MAKE) --no-print-directory compose-e2e

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
