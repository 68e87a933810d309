# zasync developer tasks.
#
#   make run      a Plone site with zasync on http://127.0.0.1:8080 (creates .venv,
#                 the instance in var/instance and the site on first use)
#   make test     run the test suite (creates .venv on first use)
#   make test-long  the few tests of minutes each that make test leaves out
#   make cluster  start a local cluster in var/cluster: ZEO, a web instance on
#                 :8080, two workers; `make cluster-stop` stops it (MULTI_DB=1:
#                 queues in their own database)
#   make demo     the engine alone: queue jobs on a FileStorage, watch them run
#   make lint     ruff check + ruff format --check
#   make format   ruff format + ruff check --fix
#   make docs     build the Sphinx docs, warnings are errors
#   make bench    run the benchmarks: engine, cluster (ZEO, PostgreSQL), the peers
#                 (huey + Redis, Procrastinate), concurrent enqueue, Plone
#                 requests that queue jobs, the dashboard, retention
#   make soak     issue 14's faults against real workers, counted (minutes)
#   make i18n     rebuild locales/zasync.pot from the code, sync the translations
#   make screenshots  the browser tests, saving docs/_static/*.png as they go
#   make rest-docs    docs/rest.md's answers from a real run of its examples
#   make lock     re-resolve requirements/constraints.txt from PyPI (UPGRADE=1)
#   make check-lock  offline check that the lock covers pyproject.toml
#   make clean    remove build artefacts (keeps .venv); distclean also drops .venv
#
# Everything is installed into ./.venv from the pinned requirements/constraints.txt.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
# Python 3.11 is what the lock is resolved for; fall back to python3 if absent.
PYTHON      ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
CONSTRAINTS := requirements/constraints.txt
# Everything, Plone included: `make test` runs the Plone tests too.
EXTRAS      ?= plone,zeo,relstorage,test,test-plone,docs,dev,bench
STAMP       := $(VENV)/.installed

BIN         := $(VENV)/bin
PYTEST_ARGS ?=
# e.g. BENCH_PEERS_ARGS=--quick, or "--jobs 1000 --system huey --system fs"
BENCH_PEERS_ARGS   ?=
BENCH_ENQUEUE_ARGS ?=
# e.g. BENCH_RETENTION_ARGS="--jobs 2000 --rounds 3"
BENCH_RETENTION_ARGS ?=
# e.g. SOAK_ARGS="--scenario pause --scenario disk-full"
SOAK_ARGS          ?=
# Lint what exists: benchmarks/ may not be there (yet).
LINT_PATHS  := $(wildcard src tests benchmarks docs/conf.py requirements/*.py)
SPHINXOPTS  ?=

.PHONY: help install test test-long lint format docs bench soak i18n screenshots rest-docs demo run cluster cluster-stop lock \
        check-lock clean distclean

help:
	@sed -n '3,23p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# //'

# ------------------------------------------------------------------ install

$(BIN)/python:
	@echo ">>> creating virtual env $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# Re-run whenever the project metadata or the lock changes.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	@echo ">>> installing zasync[$(EXTRAS)] into $(VENV) from $(CONSTRAINTS)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $@

install: $(STAMP)

# ------------------------------------------------------------------ use

# pytest exits 5 when it collected no tests: that is a failure, said in words.
test: $(STAMP)
	@rc=0; $(BIN)/pytest -m "not long" $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

# The tests of minutes each (marker `long`), left out of `make test`.
test-long: $(STAMP)
	@rc=0; $(BIN)/pytest -m long $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going $(SPHINXOPTS) -b html docs docs/_build/html

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_cluster.py
	$(BIN)/python benchmarks/bench_peers.py $(BENCH_PEERS_ARGS)
	$(BIN)/python benchmarks/bench_enqueue.py $(BENCH_ENQUEUE_ARGS)
	$(BIN)/python benchmarks/bench_plone.py $(BENCH_PLONE_ARGS)
	$(BIN)/python benchmarks/bench_dashboard.py $(BENCH_DASHBOARD_ARGS)
	$(BIN)/python benchmarks/bench_retention.py $(BENCH_RETENTION_ARGS)

# Issue 14's faults against real workers (minutes; needs root for the
# full-disk tmpfs, PostgreSQL, and faketime for the clock skew).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(SOAK_ARGS)

# The zasync translation domain: the .pot from the code, templates, ZCML and
# profiles; each language's .po gets the new message ids (translate them)
# and loses the ones gone.
LOCALES := src/zasync/plone/locales
i18n: $(STAMP)
	$(BIN)/i18ndude rebuild-pot --pot $(LOCALES)/zasync.pot --create zasync src/zasync/plone
	$(BIN)/i18ndude sync --pot $(LOCALES)/zasync.pot $(LOCALES)/*/LC_MESSAGES/zasync.po
	@$(BIN)/i18ndude find-untranslated -n $$(find src/zasync/plone -name '*.pt') || true

# docs/rest.md's answers, rewritten from a real run of its examples.
rest-docs: $(STAMP)
	ZASYNC_WRITE_REST_DOCS=1 $(BIN)/pytest -q tests/plone/test_plone_restapi.py -k documented

# The browser tests (Debian's chromium) save what they see for the docs.
SCREENSHOT_TESTS ?= tests/deploy/test_serve.py tests/plone/test_plone_dashboard_browser.py
screenshots: $(STAMP)
	ZASYNC_SCREENSHOTS=1 $(BIN)/pytest -q -k browser $(SCREENSHOT_TESTS)

demo: $(STAMP)
	$(BIN)/zasync demo

run: $(STAMP)
	$(BIN)/zasync serve --instance var/instance

CLUSTER_OPTIONS := --directory var/cluster $(if $(MULTI_DB),--multi-db)

cluster: $(STAMP)
	$(BIN)/zasync cluster start $(CLUSTER_OPTIONS)

cluster-stop: $(STAMP)
	$(BIN)/zasync cluster stop --directory var/cluster

# ------------------------------------------------------------------ lock

UV ?= $(shell command -v uv 2>/dev/null || echo $(BIN)/uv)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv

# Resolve every extra from PyPI for CPython 3.11, stable releases only.
# Existing pins are kept where they still fit; `make lock UPGRADE=1` re-resolves
# everything to the newest stable versions.
LOCK_FLAGS := --prerelease disallow --all-extras --python-version 3.11
ifneq ($(UPGRADE),)
LOCK_FLAGS += --upgrade
endif

lock: | $(UV)
	@echo ">>> resolving $(CONSTRAINTS) from PyPI"
	@{ \
	  echo "# Pinned versions of zasync's whole dependency set: runtime and every extra"; \
	  echo "# (plone, zeo, relstorage, test, test-plone, buildout, docs, dev, bench),"; \
	  echo "# for CPython 3.11, stable releases only."; \
	  echo "# Do not edit by hand. Regenerate with 'make lock' (keeps pins that still fit)"; \
	  echo "# or 'make lock UPGRADE=1' (newest stable versions); both run:"; \
	  echo "#   uv pip compile --prerelease disallow --all-extras --python-version 3.11 \\"; \
	  echo "#       [--upgrade] pyproject.toml -o $(CONSTRAINTS)"; \
	  echo "# Use it as a constraints file:  pip install -c $(CONSTRAINTS) -e '.[test]'"; \
	  echo "#"; \
	} > $(CONSTRAINTS).tmp
	@if [ -f $(CONSTRAINTS) ]; then cp $(CONSTRAINTS) $(CONSTRAINTS).body; fi
	$(UV) pip compile --quiet --no-header --annotation-style line $(LOCK_FLAGS) \
	    pyproject.toml -o $(CONSTRAINTS).body
	cat $(CONSTRAINTS).body >> $(CONSTRAINTS).tmp
	rm -f $(CONSTRAINTS).body
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	$(PYTHON) requirements/buildout_versions.py
	@$(MAKE) --no-print-directory check-lock

# Offline: no pre-releases, not zasync itself, every pyproject requirement
# pinned; buildout's [versions] (requirements/versions.cfg) says the same.
check-lock:
	$(PYTHON) requirements/check_lock.py
	$(PYTHON) requirements/buildout_versions.py --check

# ------------------------------------------------------------------ clean

clean:
	rm -rf docs/_build build dist .pytest_cache .ruff_cache src/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
