# The two commands in the README:
#   make demo   - a venv in .venv with ringtrio alone (its native core built), then the demo
#   make test   - the same venv plus the test and bench extras, then the test suite
#                 on io_uring and again on the epoll backend (what .ci/run does)
# Either may come first on a fresh clone; `make setup` is the developer's full install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml setup.py ringtrio/_core/_speedups.c _native/ring.c _native/ring.h \
	_native/ring_impl.h _native/softring.c _native/uring_compat.h _native/build_ffi.py

.PHONY: setup demo test bench typecheck trio-suite anyio-suite clean

setup: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# ringtrio and its three run-time dependencies, nothing else: all the demo needs.
$(VENV)/.installed-ringtrio: $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Everything a developer and CI need: trio (the oracle), pytest, mypy,
# hypothesis, uvloop ...  Installing it also installs ringtrio, so the stamp
# above is brought up to date too.
$(VENV)/.installed: $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-ringtrio

demo: $(VENV)/.installed-ringtrio
	$(BIN)/python examples/demo.py

# Twice: on io_uring, then on the epoll backend (what runs where io_uring is
# refused), without the tests that never start a run (backend_independent).
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests
	RINGTRIO_BACKEND=epoll $(BIN)/python -m pytest -q -p no:cacheprovider -m "not backend_independent" tests

bench: setup
	$(BIN)/python bench/run.py

# trio's own tests from the installed trio wheel, run against ringtrio
# (tools/trio_suite/README.md). UPDATE_BASELINE=1 rewrites the baseline;
# TRIO_SUITE_ARGS passes more options or test ids (e.g. trio/_tests/test_sync.py).
trio-suite: setup
	$(BIN)/python tools/trio_suite/run.py $(if $(UPDATE_BASELINE),--update-baseline) $(TRIO_SUITE_ARGS)

# AnyIO's own test suite on trio and on ringtrio, side by side (tools/anyio_suite).
anyio-suite: setup
	$(BIN)/python tools/anyio_suite/run.py

typecheck: setup
	$(BIN)/python -m mypy ringtrio

clean:
	rm -rf $(VENV) build *.egg-info ringtrio/_native*.so ringtrio/_core/_speedups*.so
