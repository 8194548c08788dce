# The README's two commands: `make run` and `make test`. Both do all set-up themselves.
# The venv's interpreter: the distribution's CPython when it is recent enough and has venv
# (Debian builds it with PGO and LTO: the clock loop runs ~20% faster than on a default
# source build, docs/decisions/0005-interpreter.md); else the first python3 on PATH.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	$$p -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' \
	>/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= runs/latest
DURATION ?= 6h

.PHONY: run test rehearsal bench bench-month lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ionclock sim --config configs/sim.toml --duration $(DURATION) --seed 1 --out $(OUT)

# BLAS on one thread (decision 0100): its spinning worker slows every twin run 1.5-2x.
BLAS1 := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test: $(STAMP)
	$(BLAS1) $(PY) -m pytest -q $(PYTEST_ARGS)

# The lab's dress rehearsal: `ionclock run` in real time against `ionclock twin-serve`
# (a killed server, a hung unit, a power-cycled DDS; ~6 min). Not in `make test`.
rehearsal: $(STAMP)
	$(BLAS1) $(PY) -m pytest -q -m rehearsal $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks

# A 30-day run of the default config with every role (issue 14: <= 20 min on one core).
bench-month: $(STAMP)
	$(PY) -m benchmarks.bench_loop --days 30

lint: $(STAMP)
	$(VENV)/bin/ruff check ionclock drivers servo sim_instruments procedures benchmarks
	$(PY) -m pytest -q tests/test_layering.py

clean:
	rm -rf $(VENV) runs .pytest_cache
