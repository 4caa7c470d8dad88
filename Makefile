# The workbook's commands. Each target does its own set-up: `make test` on a fresh clone builds
# .venv first. `setup` is a no-op when requirements.txt and pyproject.toml have not changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test unit notebooks lab lint clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Execute every notebook headless into build/ (executed .ipynb + HTML), then print the results.
run: setup
	$(BIN)/python scripts/run_notebooks.py --out build

# Unit tests, then every notebook cell through nbval in this environment's own kernel.
test: setup
	$(BIN)/python -m pytest tests
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  WORKBOOK_RESULTS=$(CURDIR)/build/test-results $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=1800 notebooks; \
	else echo "no notebooks yet: nothing for nbval to run"; fi

# Re-execute the committed notebooks in place (what a maintainer does before committing one).
notebooks: setup
	$(BIN)/python scripts/run_notebooks.py --inplace $(NB)

lab: setup
	$(BIN)/jupyter lab notebooks/

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf build .cache .pytest_cache
