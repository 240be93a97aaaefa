# The two commands in the README:
#   make demo   - set everything up (a venv in .venv, the native core built) and run the demo
#   make test   - set everything up and run the test suite (what .ci/run does)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench typecheck clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py ringtrio/_core/_speedups.c _native/ring.c _native/ring.h _native/uring_compat.h _native/build_ffi.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

demo: setup
	$(BIN)/python examples/demo.py

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup
	$(BIN)/python bench/run.py

typecheck: setup
	$(BIN)/python -m mypy ringtrio

clean:
	rm -rf $(VENV) build *.egg-info ringtrio/_native*.so
