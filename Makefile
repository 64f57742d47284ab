# The two commands of this project: `make run` and `make test`.
# Each creates .venv with the project installed on first use; only Python >= 3.11 and make needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-slow lint bench install

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	@touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m app run --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy db_manager app tests

# Everything but the slow cases (real processes killed, servers restarted, fuzzing): under
# 15 minutes on 2 cores. `make test-slow` runs those; .ci/run runs both.
test: lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) -m bench
