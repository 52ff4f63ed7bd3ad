# Two entry points: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tokenwave-installed
TORCH := torch==2.13.0

.PHONY: demo test deps venv clean

deps:
	@bash scripts/install-system-deps.sh

# torch first, pinned to the local CPU build, so nothing later can pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[data,test,eval,serve,judges]' $(TORCH)
	$(PY) -m pip install -q --no-deps resemblyzer==0.1.4 aisfx==0.1.2 basic-pitch==0.4.0 # their pinned dependencies: see pyproject's judges
	touch $(STAMP)

venv: $(STAMP)

demo: deps venv
	$(VENV)/bin/tokenwave demo --out demo

test: deps venv
	$(VENV)/bin/lint-imports --no-cache    # the layering in pyproject.toml: no upward imports, no circles
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) demo .pytest_cache
