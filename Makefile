# Two set-up commands, each of which installs everything into .venv first:
#   make demo   - train a small DINOSAVi on synthetic video, print its numbers beside k-means and propagation
#                 (make demo ARGS="key=value ..." passes overrides on)
#   make test   - lint, type-check, check the import contracts and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml setup.py dinosavi/metrics/_jf.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dinosavi mode=demo $(ARGS)

lint: install
	$(VENV)/bin/ruff check dinosavi tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q

bench: install
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
