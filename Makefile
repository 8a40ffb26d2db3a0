# The two set-up commands of the README: `make demo` and `make test`. Both create (or refresh) the
# project venv .venv from the pinned requirements and install mofl into it, building the custom op.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
OUT ?= out
PYTEST_ARGS ?=
# Test processes (pytest-xdist).
TEST_WORKERS ?= 2

.PHONY: venv install test demo bench clean

$(STAMP): requirements.txt requirements-nodeps.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade 'pip>=24' 'setuptools>=70,<80' wheel
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

venv: $(STAMP)

# The op is rebuilt on every install so a changed kernel source is never stale.
install: $(STAMP)
	$(PIP) install -q --no-build-isolation --no-deps -e .

# pytest exits 5 when it collects nothing; that is a failure for us too (no silent green). The 15
# slowest tests are listed at the end, to keep the suite within its time budget. Tests are
# spread over $(TEST_WORKERS) processes in runs of neighbouring tests (--dist worksteal: an idle
# process takes over the rest of another's run, so module fixtures are built at most twice).
test: install
	$(PY) -m pytest -q tests -n $(TEST_WORKERS) --dist worksteal --durations=15 -o tmp_path_retention_policy=failed -o tmp_path_retention_count=1 $(PYTEST_ARGS)

demo: install
	$(PY) -m tools.demo --output_dir=$(OUT)/demo

bench: install
	$(PY) -m tools.bench_render
	$(PY) -m tools.bench_train

clean:
	rm -rf $(VENV) build *.egg-info $(OUT)
	find mofl -name '*.so' -delete
