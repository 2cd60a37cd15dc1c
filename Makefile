# `make demo` debands the bundled example with the base package alone; `make test` runs the
# whole suite with every extra the tests exercise (what .ci/run calls), `make test-fast` all but
# the slow tests. Each sets up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine keeps a CPU build of torch on disk; elsewhere pip takes it from the index.
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: demo test test-fast lint bench clean

# the base package: what `deband image` and `deband video` need
$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(WHEELS) torch==2.13.0
	$(PY) -m pip install -q $(WHEELS) -e .
	touch $@

# and the test extra: ONNX, the web page, Ray, Playwright, pytest, ruff
$(VENV)/.installed: $(VENV)/.base
	$(PY) -m pip install -q $(WHEELS) -e '.[test]'
	touch $@

demo: $(VENV)/.base
	mkdir -p out
	$(VENV)/bin/deband image examples/sunset-banded.png -o out/sunset-debanded.png --compare --overwrite
	@echo "wrote out/sunset-debanded.png (16-bit) and out/sunset-debanded-compare.png"

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q

# everything but the tests marked slow (pyproject.toml's markers)
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: $(VENV)/.base
	$(PY) benchmarks/image_speed.py

clean:
	rm -rf $(VENV) out build *.egg-info
