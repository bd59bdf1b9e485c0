# The compendium's entry points. On a fresh machine:
#   make pipeline   the whole pipeline on the offline default profile (every figure and table)
#   make test       every test (pytest, nbval on the notebooks, snakemake lint and dry runs)
# Both create .venv (python3 -m venv) and install this repository into it when needed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes (the stamp is older than it) or the venv is new.
STAMP := $(VENV)/.installed-test
CORES ?= all
# Extra arguments for snakemake, e.g. `make pipeline SNAKEMAKE_ARGS="-n"` or "--forceall".
SNAKEMAKE_ARGS ?=
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-x -k cams"`.
PYTEST_ARGS ?=
# The venv's tools first on PATH, so papermill/nbval kernels and snakemake jobs use it.
RUN := PATH="$(abspath $(BIN)):$$PATH"
SNAKEMAKE := $(RUN) $(BIN)/snakemake --cores $(CORES) --rerun-incomplete --keep-going --printshellcmds

.PHONY: help install pipeline paper test pytest nbval lab explorer clean-venv

help:
	@echo "make pipeline   run the whole pipeline (default profile: offline, CPU or GPU as found)"
	@echo "make test       run every test (pytest + nbval + snakemake lint and dry runs)"
	@echo "make paper      run the pipeline with config/paper.yaml (ResNet-50, your ILSVRC2012, GPU)"
	@echo "make lab        open Jupyter Lab on the notebooks"
	@echo "make explorer   open the interactive CAM explorer (notebooks/explorer.ipynb) in Jupyter Lab"
	@echo "make install    only create $(VENV) and install this repository into it"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

install: $(STAMP)

pipeline: $(STAMP)
	$(SNAKEMAKE) $(SNAKEMAKE_ARGS)

paper: $(STAMP)
	$(SNAKEMAKE) --configfile config/paper.yaml $(SNAKEMAKE_ARGS)

# Every test; the exit status is non-zero when any part fails (both parts always run).
test: $(STAMP)
	@status=0; \
	$(MAKE) --no-print-directory pytest || status=1; \
	$(MAKE) --no-print-directory nbval || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED" >&2; else echo "make test: all passed"; fi; \
	exit $$status

# pytest over tests/ (lib tests, and tests/test_pipeline.py: snakemake --lint and dry runs).
pytest: $(STAMP)
	$(RUN) $(BIN)/python -m pytest tests $(PYTEST_ARGS)

# nbval re-executes each notebook with its quick default parameters and compares outputs.
nbval: $(STAMP)
	$(RUN) $(BIN)/python -m pytest --nbval-lax \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/*.ipynb $(PYTEST_ARGS)

lab: $(STAMP)
	$(RUN) $(BIN)/jupyter lab

# The interactive CAM explorer (lib.widgets); not part of the pipeline. Run All Cells, then use the controls.
explorer: $(STAMP)
	$(RUN) $(BIN)/jupyter lab notebooks/explorer.ipynb

clean-venv:
	rm -rf $(VENV)
