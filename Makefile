# make demo / make test / make bench: each makes its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint unit integration interop demo bench soak dist clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check forkric tests loadtest
	$(BIN)/mypy --strict forkric

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

# A 30-second soak of the leaky example: finds its 64 KB per call, recycles at 100 MB. A verdict
# (0 no leak, 3 leak) passes; inconclusive (4), failed invocations (5) or no run (1) fail.
SOAK_HANDLER ?= loadtest.handlers.leaky.handler
soak: venv
	$(BIN)/python -m forkric soak $(SOAK_HANDLER) --duration 30 --users 4 --workers 2 \
		--max-worker-memory 100 --out soak-out; code=$$?; test $$code -eq 0 -o $$code -eq 3

# The wheel and sdist to install from: pip install dist/forkric-*.whl (or '...whl[local]').
dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) .cache build dist *.egg-info
