# The README's two commands: `make run` (the engine) and `make test` (set-up, lint, types, tests).
# Both create .venv when it is missing; torch==2.13.0 goes in first so that nothing pulls a
# multi-GB CUDA build of torch on a CPU machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# Extras installed with the project: CI adds `link` (aalink, GPL-3.0, optional for users) so the
# Ableton Link tests run there; without it they skip with the reason.
EXTRAS ?= dev

.PHONY: setup test lint run bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check riffbridge tests $(wildcard benchmarks scripts)
	$(BIN)/mypy riffbridge

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/riffbridge serve $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
