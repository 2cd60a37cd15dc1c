# The README's two commands: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine keeps a CPU build of torch on disk; elsewhere pip takes it from the index.
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(WHEELS) torch==2.13.0
	$(PY) -m pip install -q $(WHEELS) -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	mkdir -p out
	$(VENV)/bin/deband image examples/sunset-banded.png -o out/sunset-debanded.png --compare --overwrite
	@echo "wrote out/sunset-debanded.png (16-bit) and out/sunset-debanded-compare.png"

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: $(VENV)/.installed
	$(PY) benchmarks/image_speed.py

clean:
	rm -rf $(VENV) out build *.egg-info
