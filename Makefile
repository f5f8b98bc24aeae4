# make demo / make test / make bench: each makes its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint unit integration interop demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check forkric tests loadtest

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

unit: venv
	$(BIN)/python -m pytest -q tests/unit

integration: venv
	$(BIN)/python -m pytest -q tests/integration

interop: venv
	$(BIN)/python -m pytest -q tests/interop

demo: venv
	$(BIN)/python -m loadtest.demo

bench: venv
	$(BIN)/python -m loadtest.bench

clean:
	rm -rf $(VENV) .cache build *.egg-info
