# Truce: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.truce-installed
PACKAGES := truce gateway model_store converters edge loadtests

.PHONY: venv demo test lint format pytest clean gpu-check

venv: $(STAMP)

# One install, pinned by requirements/lock.txt (constraints), then the packages that must
# go in without their declared dependencies (see the comment in requirements/nodeps.txt).
$(STAMP): pyproject.toml requirements/lock.txt requirements/nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet -c requirements/lock.txt -e '.[all,dev]'
	$(PIP) install --quiet --no-deps -r requirements/nodeps.txt
	touch $@

demo: venv
	$(PY) -m truce.demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

pytest: venv
	$(PY) -m pytest

test: lint pytest

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Needs a CUDA GPU; prints CPU vs GPU agreement and throughput (record it in BENCHMARKS.md).
gpu-check: venv
	$(PY) -m gateway.gpu_check
