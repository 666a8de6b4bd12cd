# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test test-edge lint venv bench clean browser

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=77"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python -m cossl_edge.demo

test: venv test-edge browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests

# The report test opens the HTML page in a real headless browser: Debian's chromium
# (CI runs as root; nothing happens when it is already installed).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# The minimal (edge) environment: only the base package's dependencies, pinned by the lock,
# plus pytest; no torch, MONAI, albumentations, onnx or scikit-learn. The full environment
# exports a model into EDGE_FIXTURES, the edge environment embeds and classifies with it.
EDGE := .venv-edge
EDGE_FIXTURES := build/edge-fixtures
EDGE_PACKAGES := numpy onnxruntime pydicom typer pillow pytest

$(EDGE)/.installed: requirements.lock pyproject.toml
	test -x $(EDGE)/bin/python || $(PY) -m venv $(EDGE)
	$(EDGE)/bin/pip install --quiet -c requirements.lock $(EDGE_PACKAGES)
	$(EDGE)/bin/pip install --quiet --no-deps -e .
	touch $@

test-edge: venv $(EDGE)/.installed
	rm -rf $(EDGE_FIXTURES)
	$(BIN)/python tests/make_edge_fixtures.py $(EDGE_FIXTURES)
	COSSL_EDGE_FIXTURES=$(abspath $(EDGE_FIXTURES)) COSSL_EDGE_MINIMAL=1 \
		$(EDGE)/bin/python -m pytest -p no:cacheprovider tests/test_edge_env.py

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/pip install --quiet --no-deps -r requirements-bench.lock
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .venv-edge build *.egg-info
