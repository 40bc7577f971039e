# The two commands of the README: `make reproduce` (the mini reproduction) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= mini
# Nothing is ever downloaded from a model hub, in tests or in the mini profile.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONWARNINGS := ignore::DeprecationWarning

.PHONY: install reproduce test check-sync nbtest pytest clean

install: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23" -q
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

reproduce: install
	$(BIN)/digseg reproduce --profile $(PROFILE)

# CI fails if the exported module or the cleaned notebooks differ from what is committed.
check-sync: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	@if [ -n "$$(git status --porcelain -- digseg nbs)" ]; then \
	  git status --porcelain -- digseg nbs; git --no-pager diff --stat -- digseg nbs; \
	  echo "nbdev_export/nbdev_clean changed files: export and clean the notebooks, then commit."; exit 1; fi

nbtest: install
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: install
	$(BIN)/python -m pytest -q

test: check-sync nbtest pytest

clean:
	rm -rf $(VENV) _proc _docs
