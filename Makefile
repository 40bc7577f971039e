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

.PHONY: install reproduce test check-sync readme nbtest pytest clean release

install: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23" -q
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

reproduce: install
	$(BIN)/digseg reproduce --profile $(PROFILE)

# Not part of the two README commands: how the shipped models were made. `digseg pretrain --config
# configs/mini/prior.yaml` recreates pretrained/mini-sd and mini-clip (hours); `make release` fine-tunes the
# released pretrained/digseg-mini and dedos-mini from them (the recipes of benchmarks/prior_quality.py, trained for
# about 100 and 20 minutes), publishes them, scores them on held-out images and writes their model cards (~2 h on 2 cores).
release: install
	$(BIN)/python benchmarks/prior_quality.py --only digseg_long,dedos_long,digseg_released,dedos_released --publish --cards

# README.md is written from nbs/index.ipynb (the front page). nbdev_readme would render it with Quarto, which
# cannot be installed here (the quarto-cli package downloads its binary at install time): nbconvert does it.
# The claims table of the committed report (benchmarks/results/reproduce_mini/claims.md, written by the code
# that computes the verdicts) replaces the line `<!-- claims.md -->` of the front page, and the mini models' table
# (benchmarks/results/prior_quality.md, written by benchmarks/prior_quality.py from its JSON) the line `<!-- prior_quality.md -->`.
readme: install
	$(BIN)/jupyter nbconvert --to markdown --stdout --log-level ERROR nbs/index.ipynb > README.md
	$(BIN)/python -c "from digseg.report import insert_table, MODELS_MARKER; insert_table('README.md', 'benchmarks/results/reproduce_mini/claims.md'); insert_table('README.md', 'benchmarks/results/prior_quality.md', MODELS_MARKER)"

# CI fails if the exported module, the cleaned notebooks or the README differ from what is committed.
check-sync: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(MAKE) --no-print-directory readme
	@if [ -n "$$(git status --porcelain -- digseg nbs README.md)" ]; then \
	  git status --porcelain -- digseg nbs README.md; git --no-pager diff --stat -- digseg nbs README.md; \
	  echo "nbdev_export/nbdev_clean/make readme changed files: export and clean the notebooks, make readme, then commit."; exit 1; fi

nbtest: install
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: install
	$(BIN)/python -m pytest -q

test: check-sync nbtest pytest

clean:
	rm -rf $(VENV) _proc _docs
