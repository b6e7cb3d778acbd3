# mailroom — every target does its own set-up on a machine with only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

var/main.cf: | $(STAMP)
	$(BIN)/mailroom -c var init --demo

run: $(STAMP) var/main.cf
	$(BIN)/mailroom -c var serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

docs: $(STAMP)
	$(BIN)/python -m mailroom.config.docs > docs/parameters.md

clean:
	rm -rf $(VENV) var build dist .pytest_cache .mypy_cache .ruff_cache
