# Quick start: `make lab` (set up and open the course) and `make test` (set up and run every test).
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?=
JOBS ?= 2
LAB_ARGS ?=
RESULTS_DIR ?= build/results
DIR ?=
DIST_ARGS ?=

# Some machines' pip configuration names local package folders that do not exist; pip's warnings
# about them are noise to a user. Real errors still show, and pip's exit status is kept.
SHELL := /bin/bash
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }

PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.course-deps
ASSIGNMENTS := $(notdir $(wildcard solutions/[0-9]*))
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup sandbox chromium lab test release student-dist results clean-venv

# Installs once per change of pyproject.toml; reuses an existing environment otherwise.
$(DEPS_STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install --quiet $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS)) -e '.[notebooks,dev]' 2>&1 | $(PIP_FILTER)
	touch $@

# The editable install must point at this checkout (a cached venv may have served another).
setup: $(DEPS_STAMP)
	@test "$$(cat $(VENV)/.course-src 2>/dev/null)" = "$(CURDIR)" || \
	  { set -o pipefail; $(PY) -m pip install --quiet --no-deps -e . 2>&1 | $(PIP_FILTER) && echo "$(CURDIR)" > $(VENV)/.course-src; }

# Opens work/, copies of the release that Generate and `make release` never touch (scripts/work_copies.py).
lab: setup
	$(PY) scripts/work_copies.py
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/work $(LAB_ARGS)

# The autograder runs each submission in a bubblewrap sandbox (course_grading); its tests need it.
sandbox:
	@command -v bwrap >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }; else \
	  echo "the autograder's tests need bubblewrap: install it (Debian/Ubuntu: sudo apt-get install bubblewrap)"; exit 1; fi; }

# The browser test (tests/test_browser.py) drives JupyterLab in Debian's Chromium through Playwright; without
# Chromium it is skipped (and fails under CI). No browser is downloaded: never `playwright install`.
chromium:
	@command -v chromium >/dev/null || [ -n "$$COURSE_CHROMIUM" ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && { apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }; } || \
	  echo "the browser test needs Chromium (Debian: sudo apt-get install chromium; or set COURSE_CHROMIUM): skipped without it"

test: setup sandbox chromium
	COURSE_FAST=1 $(PY) -m pytest -n $(JOBS) --dist loadfile --durations=15 --nbval-lax tests solutions

# First writes course.toml's student repository and ref into the solutions' Colab badges and setup
# cells (the source of truth: nbgrader's checksum of the locked setup cell then matches).
release: setup
	$(PY) scripts/student_dist.py stamp
	for a in $(ASSIGNMENTS); do $(BIN)/nbgrader generate_assignment "$$a" --force || exit 1; done

# The tree students get, to publish as course.toml's student_repository (README, "For instructors").
# DIR: a new or empty folder outside this repository, or a previous dist, which is replaced.
student-dist:
	@test -n "$(DIR)" || { echo "usage: make student-dist DIR=<folder outside this repository>, e.g. DIR=../course-student" >&2; exit 2; }
	$(PYTHON) scripts/student_dist.py build "$(DIR)" $(DIST_ARGS)

results: setup
	mkdir -p $(RESULTS_DIR) build/executed
	for nb in solutions/*/*.ipynb; do \
	  COURSE_RESULTS_DIR="$(abspath $(RESULTS_DIR))" $(BIN)/jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=3600 --output-dir build/executed "$$nb" || exit 1; done
	$(PY) -m course_lib results $(RESULTS_DIR) | tee build/results.md

clean-venv:
	rm -rf $(VENV)
