# The project's entry points: make run, make test, make lint, make bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NATIVE := $(wildcard native/*.c native/*.h native/*.py)

.PHONY: run test lint bench system-deps clean

# A fresh virtual environment with the package (and its C evaluator and sealer) built in place.
$(STAMP): pyproject.toml setup.py $(NATIVE)
	@bash scripts/system-deps.sh --build
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	$(BIN)/meterd --config config/daemon/meterd.toml

test: system-deps $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info meterd/*.so
