# Two commands are all the set-up: `make test` and `make demo` create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Prefer the local CPU wheel of torch when pip can find it without the network; the project's
# own requirement stays a range so a GPU box keeps its CUDA build.
TORCH_LOCAL := $(shell $(PYTHON) -m pip download --no-index --no-deps -q -d /tmp/v2a-torch-probe torch==2.13.0 >/dev/null 2>&1 && echo yes)
CONSTRAINTS := $(if $(TORCH_LOCAL),-c .ci/constraints-cpu.txt,)

.PHONY: venv test lint demo schemas blender-addon clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH_LOCAL),$(PY) -m pip install -q torch==2.13.0,)
	$(PY) -m pip install -q $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

schemas: $(STAMP)
	$(PY) -m schemas.export

demo: $(STAMP)
	$(PY) -m bridge.demo

blender-addon: $(STAMP)
	$(PY) -m plugins.blender.build

clean:
	rm -rf $(VENV) build dist *.egg-info
