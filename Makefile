# Two commands do all the set-up on a fresh clone:
#   make demo   synthetic drone flight -> SLAM -> summary
#   make test   the test suite
# Both create the local virtual environment .venv on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vssm-demo

test: $(STAMP)
	$(PY) -m pytest -q test

bench: $(STAMP)
	$(VENV)/bin/vssm-bench

clean:
	rm -rf $(VENV) .cache build *.egg-info
