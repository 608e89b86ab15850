# Every target creates .venv and installs the project when missing (or when pyproject.toml changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: start micro server (RPC :8081, gateway :8080); then `. .venv/bin/activate` elsewhere
run: install
	$(BIN)/micro server

## test: lint, then the whole test suite
test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

## lint: ruff and mypy --strict
lint: install
	$(BIN)/ruff check micro tests bench examples
	$(BIN)/mypy

## bench: RPC, store and events benchmarks against their alternatives; tables into docs/
bench: install
	$(BIN)/python -m bench rpc --write-docs
	$(BIN)/python -m bench store --write-docs
	$(BIN)/python -m bench events --write-docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
