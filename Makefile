# Thin wrappers. Each target creates .venv (if missing) and installs the project into it.
PROFILE ?= full
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup reproduce test test-unit test-fast test-notebooks lab bench device-check offline-bundle clean-artifacts

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

## make device-check [DATA=data/processed]: on a GPU or MPS machine, the device's tests, the smoke
## chain from the smoke dataset in DATA, Inception against the CPU and steps/s (benchmarks/device_check.py).
## Installs and fetches nothing: it runs with .venv's Python if there is one, else $(PYTHON).
DATA       ?= data/processed
DEVICE_PY  ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
device-check:
	$(DEVICE_PY) benchmarks/device_check.py --data $(DATA) --out device_check.json

## make offline-bundle: bundle/ with the project's wheels (all but torch) and the smoke dataset, for
## the device check on a machine without the network (benchmarks/pack_offline.py; INSTALL.txt inside)
offline-bundle: setup
	$(PY) benchmarks/pack_offline.py --out bundle

clean-artifacts:
	rm -rf artifacts/$(PROFILE)
