# Thin wrappers. Each target creates .venv (if missing) and installs the project into it.
PROFILE ?= full
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup reproduce test test-unit test-fast test-notebooks lab bench clean-artifacts

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## make reproduce [PROFILE=full|quick|smoke]: data, then the whole notebook chain
reproduce: setup
	$(PY) -m helpers.pipeline --profile $(PROFILE)

## make test: every notebook on the smoke profile (nbval; it fetches the data), then the unit tests
test: test-notebooks
	$(MAKE) test-unit

test-unit: setup
	EMOJIVQ_PROFILE=smoke $(PY) -m pytest -q tests

## make test-fast: the unit tests without the slow ones, for a quick loop while editing
test-fast: setup
	EMOJIVQ_PROFILE=smoke $(PY) -m pytest -q -m "not slow" tests

test-notebooks: setup
	EMOJIVQ_PROFILE=smoke $(PY) -m pytest -q --nbval-lax -p no:cacheprovider notebooks/

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

## make bench: training, sampling and FID speed as one JSON object (run it on an idle machine)
bench: setup
	$(PY) benchmarks/run.py

clean-artifacts:
	rm -rf artifacts/$(PROFILE)
