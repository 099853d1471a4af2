# eventgw: `make run` serves the gateway on the embedded SQLite database; `make test` checks it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
HTTP ?= 127.0.0.1:8080
GRPC ?= 127.0.0.1:50051

.PHONY: run test lint typecheck pytest proto bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(BENCH_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@ $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(RUN_STAMP) $(BENCH_STAMP)

## run: install, migrate the embedded SQLite database, serve HTTP and gRPC
run: $(RUN_STAMP)
	$(PY) -m gateway db upgrade
	$(PY) -m gateway serve --http $(HTTP) --grpc $(GRPC)

## test: ruff, mypy (strict) and the whole pytest suite
test: lint typecheck pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

pytest: $(DEV_STAMP)
	$(VENV)/bin/pytest

## bench: install the bench extra and run eventgw bench (e.g. BENCH_ARGS="--seconds 5 --runs 9")
bench: $(BENCH_STAMP)
	$(PY) -m gateway bench $(BENCH_ARGS)

## proto: regenerate gateway/pb/ from protos/ (committed; a test checks it is fresh)
proto: $(DEV_STAMP)
	$(PY) -m gateway.codegen

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
