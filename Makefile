# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test lint venv bench clean

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python -m cossl_edge.demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/pip install --quiet --no-deps -r requirements-bench.lock
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .venv-edge build *.egg-info
