# make demo / make test / make bench: each makes its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-3.13 coverage lint unit integration interop demo bench soak dist clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check forkric tests loadtest
	$(BIN)/mypy --strict forkric

# Python 3.13, the oldest Lambda Managed Instances run: the unit, integration and differential
# tiers again on it, in a venv of its own. PY313 names the interpreter; none found is a loud skip.
PY313 ?= $(firstword $(lastword $(wildcard $(HOME)/.pyenv/versions/3.13.*/bin/python3.13)) \
	$(shell command -v python3.13))
VENV313 ?= .venv313
# The tiers that exercise the runtime itself (the tools around it, Locust, soak, the wheel, run
# once, on the venv's Python: CI time); the fork-hazard corpus runs its 3.13 cases on its own.
TESTS_313 ?= tests/unit tests/integration/test_supervisor.py \
	tests/integration/test_protocol_edges.py tests/integration/test_runtime.py \
	tests/integration/test_local.py tests/integration/test_snapstart.py \
	tests/integration/test_fork_repairs.py tests/integration/test_streaming.py \
	tests/interop/test_differential.py
STAMP313 := $(VENV313)/.installed

$(STAMP313): pyproject.toml
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP313)

# Every tier on this venv's Python with coverage across the processes the tests start (workers
# included: [tool.coverage.run] in pyproject.toml), the report printed; then the 3.13 tier.
test: lint
	rm -rf .cache/coverage
	$(BIN)/python -m coverage run -m pytest -q -p no:cacheprovider tests
	$(MAKE) --no-print-directory coverage
	$(MAKE) --no-print-directory test-3.13

# The supervisor and the worker must each stay above 85% of their lines.
coverage: venv
	$(BIN)/python -m coverage combine -q
	$(BIN)/python -m coverage report
	@for module in supervisor worker; do \
		$(BIN)/python -m coverage report --include=forkric/$$module.py --fail-under=85 \
			>/dev/null || { echo "forkric/$$module.py: line coverage under 85%"; exit 1; }; \
	done

test-3.13:
ifeq ($(PY313),)
	@echo "*** SKIPPED: the Python 3.13 tier: no python3.13 on PATH nor under" \
		"~/.pyenv/versions/3.13.*; set PY313=/path/to/python3.13 to run it ***"
else
	$(MAKE) --no-print-directory $(STAMP313)
	$(VENV313)/bin/python -m pytest -q -p no:cacheprovider $(TESTS_313)
endif

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
	rm -rf $(VENV) $(VENV313) .cache build dist *.egg-info
