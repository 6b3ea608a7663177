# The two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test bench lint format clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dialhub needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $(STAMP)

## Serve the demo at http://$(HOST):$(PORT) (embedded Redis and SQLite unless REDIS_URL/DATABASE_URL are set).
run: $(STAMP)
	$(BIN)/dialhub serve --demo --host $(HOST) --port $(PORT)

## Run the test suite (embedded Redis and SQLite unless REDIS_URL/DATABASE_URL are set).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Run the benchmarks; each prints a last line of JSON.
bench: $(STAMP)
	@set -e; for script in bench/*.py; do \
		case $$(basename $$script) in _*) continue;; esac; \
		echo "== $$script"; $(BIN)/python $$script; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
