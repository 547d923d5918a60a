# Two targets for users: `make run` (the default experiment, quick preset) and `make test`.
# Both create .venv with pip on first use (and again when pyproject.toml changes).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean-outputs

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,dist]"
	touch $(STAMP)

# The README's main job: FCDD on Fashion-MNIST, all ten classes, quick preset; ends in tables and a gallery.
run: $(STAMP)
	$(PY) -m oneclass.batch params/fcdd/fmnist.yaml --preset quick -j 2

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	for b in $(filter-out benchmarks/common.py,$(wildcard benchmarks/*.py)); do $(PY) $$b || exit 1; done
