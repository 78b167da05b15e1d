# The project's entry points: make run, make test, make lint, make bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NATIVE := $(wildcard native/*.c native/*.h native/*.py)

.PHONY: run test lint bench bench-quick system-deps clean rig rig-stop rig-test

# A fresh virtual environment with the package (and its C evaluator and sealer) built in place,
# and the sealer's test build (storage fault injection, meterd._seal_faults) that the tests run.
$(STAMP): pyproject.toml setup.py $(NATIVE)
	@bash scripts/system-deps.sh --build
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python native/build_seal.py --test-build
	touch $@

system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	$(BIN)/meterd --config config/daemon/meterd.toml

# Everything CI checks: lint, one short run of every benchmark, and the whole suite (last, so
# its summary closes the output).  The meter rig's guest is built in the background
# meanwhile (scripts/rig.sh prebuild); its tests wait for that build.
test: system-deps $(STAMP)
	@PYTHON=$(abspath $(BIN)/python) bash scripts/rig.sh prebuild
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory bench-quick
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Each benchmark once with --quick: the real code paths must finish and print figures
# (too few samples to quote; `make bench` on an idle machine makes the README's figures).
bench-quick: $(STAMP)
	@for b in benchmarks/bench_*.py; do \
		echo "== $$b --quick"; \
		out=$$($(BIN)/python $$b --quick) || { echo "$$out"; echo "$$b --quick failed"; exit 1; }; \
		echo "$$out"; \
		echo "$$out" | grep -q '[0-9]' || { echo "$$b --quick printed no figures"; exit 1; }; \
	done

# The meter rig: a Debian guest in QEMU with meterd installed by the README's systemd
# steps (scripts/rig.sh; images cached in build/rig, build/rig-arm64 for ARCH=arm64).
# `make rig` leaves it booted. `make test` runs the rig's tests (x86_64) with the rest.
ARCH ?= x86_64

rig: $(STAMP)
	@ARCH=$(ARCH) bash scripts/system-deps.sh --rig
	ARCH=$(ARCH) bash scripts/rig.sh boot

rig-stop:
	ARCH=$(ARCH) bash scripts/rig.sh stop

# Only the tests that need the booted meter (they boot and kill their own guest).
rig-test: $(STAMP)
	@ARCH=$(ARCH) bash scripts/system-deps.sh --rig
	ARCH=$(ARCH) bash scripts/rig.sh build
	ARCH=$(ARCH) $(BIN)/python -m pytest tests/rig

clean:
	rm -rf $(VENV) build *.egg-info meterd/*.so
