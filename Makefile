# The two commands a newcomer needs:  `make run`  and  `make test`.
# Both create .venv on first use and install the project with its pinned dependencies.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt plugins/pytest-flakebot/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]' -e plugins/pytest-flakebot
	touch $@

## run: the main job. With forge credentials in the environment it serves webhooks;
##      without them it replays the shipped sample data end to end (see README).
run: $(BIN)/.installed
	$(BIN)/flakebot run

## test: lint and the whole test suite (what CI runs).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: the benchmarks in bench/ (they read ../shared; see docs/benchmarks.md).
bench: $(BIN)/.installed
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
