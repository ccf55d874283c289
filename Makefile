# Every target that needs Python depends on the virtualenv, which is (re)built from pyproject.toml
# and src/requirements.txt (the Lambda functions' locked dependencies, installed as constraints so
# the tests run the versions the artifact ships).
SHELL := /bin/bash
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
LOCK := src/requirements.txt
# pip refuses hashes in a constraints file (they would switch every install to hash-checking
# mode), so the venv is constrained by a hash-free view of the lock.
CONSTRAINTS := $(VENV)/constraints.txt
# sam build checks for `python3.13` on PATH, which the venv provides once it is first on PATH.
export PATH := $(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0

PYTHON313 := $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)

.PHONY: venv run test lint format typecheck sam-validate cfn-lint build pytest unit integration e2e bench openapi clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (pyenv 3.13.0 or python3.13 on PATH)"; exit 1; }
	@test -x $(VENV)/bin/python3.13 || $(PYTHON313) -m venv $(VENV)
	sed -e 's/ *\\$$//' -e '/^ *--hash=/d' $(LOCK) > $(CONSTRAINTS)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@touch $@

run: venv
	$(BIN)/onecopy-local

test: venv lint typecheck sam-validate cfn-lint build pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	$(BIN)/mypy

sam-validate: venv
	$(BIN)/sam validate --lint

# Informational checks too (I3011: stateful resources keep their data when the stack goes).
cfn-lint: venv
	$(BIN)/cfn-lint --include-checks I -- template.yaml

# What `sam deploy` ships: the functions as `sam build` makes them, plus a .pyc file for every
# module, so a cold start compiles nothing (scripts/precompile.py).
build: venv
	$(BIN)/sam build
	$(BIN)/python -m scripts.precompile .aws-sam/build

pytest: venv
	$(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

e2e: venv
	$(BIN)/pytest tests/e2e

openapi: venv
	$(BIN)/python scripts/export_openapi.py

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
