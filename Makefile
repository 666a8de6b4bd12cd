# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export NO_ALBUMENTATIONS_UPDATE := 1
# torch's CPU build by default: on Linux, PyPI's torch is the CUDA build (several GB). The
# installs below add this index when it answers (5 s probe), so the lock's torch==2.13.0
# resolves to 2.13.0+cpu; where it does not answer (an offline mirror), pip's own
# configuration decides. `make TORCH_INDEX=` turns it off; point it at a mirror to override.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIP = $$($(PY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], \
	timeout=5)" "$(TORCH_INDEX)/" >/dev/null 2>&1 && [ -n "$(TORCH_INDEX)" ] && \
	echo --extra-index-url $(TORCH_INDEX))

.PHONY: demo test test-edge test-wheel test-arm wheel edge-install lint venv bench clean browser node-tools

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=77"
	$(BIN)/pip install --quiet $(TORCH_PIP) -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python -m clinical_examples.demo

test: venv node-tools test-edge test-wheel test-arm browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests --deselect tests/test_arm.py

# The report test opens the HTML page in a real headless browser: Debian's chromium
# (CI runs as root; nothing happens when it is already installed).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# The DICOM node tests (tests/test_node.py) start a real PACS (Orthanc) and scanner (dcmtk's
# storescu/echoscu) on loopback; tests/test_dciodvfy.py checks every object the project
# writes with dicom3tools' dciodvfy. Installed here when missing, like chromium.
node-tools:
	@command -v Orthanc >/dev/null && command -v storescu >/dev/null && \
		command -v dciodvfy >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq orthanc dcmtk dicom3tools >/dev/null)

# What users install: the wheel (pip wheel, no build isolation: the full venv's setuptools,
# so it builds offline). setuptools' own build/lib and build/bdist.* are removed first, so a
# module deleted from the tree can never ride along in the wheel from an earlier build.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DIST := dist
WHEEL := $(DIST)/cossl_edge-$(VERSION)-py3-none-any.whl

wheel: venv
	rm -rf build/lib build/bdist.* $(DIST)/cossl_edge-*.whl
	$(BIN)/pip wheel . --quiet --no-deps --no-build-isolation -w $(DIST)

# The minimal (edge) environment: the wheel, base only (no extras), with the dependencies it
# declares, pinned by the lock, plus pytest; no torch, MONAI, albumentations, onnx or
# scikit-learn. The full environment exports a model into EDGE_FIXTURES; the edge tests run
# from outside the checkout (importlib mode), so they import the installed wheel, and
# tests/test_edge_env.py checks that they did.
EDGE := .venv-edge
EDGE_FIXTURES := build/edge-fixtures

$(EDGE)/.installed: requirements.lock pyproject.toml
	test -x $(EDGE)/bin/python || $(PY) -m venv $(EDGE)
	$(EDGE)/bin/pip install --quiet -c requirements.lock pytest
	touch $@

edge-install: wheel $(EDGE)/.installed
	$(EDGE)/bin/pip install --quiet --no-deps --force-reinstall $(WHEEL)
	$(EDGE)/bin/pip install --quiet -c requirements.lock $(WHEEL)
	$(EDGE)/bin/pip check

test-edge: venv edge-install
	rm -rf $(EDGE_FIXTURES)
	$(BIN)/python tests/make_edge_fixtures.py $(EDGE_FIXTURES)
	cd $(EDGE_FIXTURES) && COSSL_EDGE_FIXTURES=$(abspath $(EDGE_FIXTURES)) COSSL_EDGE_MINIMAL=1 \
		COSSL_EDGE_CHECKOUT=$(CURDIR) $(abspath $(EDGE))/bin/python -m pytest -p no:cacheprovider \
		--import-mode=importlib --rootdir=$(CURDIR) $(CURDIR)/tests/test_edge_env.py

# The full wheel, wheel[train,export], in a clean venv of its own (torch from the lock: the
# pinned CPU build), trains, exports and embeds (tests/test_packaging.py). The venv is kept
# under build/, named by the hash of the lock and pyproject.toml; a rerun only reinstalls
# the freshly built wheel.
WHEEL_VENV := build/wheel-venv-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)

$(WHEEL_VENV)/.installed: | wheel
	rm -rf build/wheel-venv-*
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install --quiet $(TORCH_PIP) -c requirements.lock \
		"$(WHEEL)[train,export]"
	touch $@

test-wheel: venv wheel $(WHEEL_VENV)/.installed
	$(WHEEL_VENV)/bin/pip install --quiet --no-deps --force-reinstall $(WHEEL)
	$(WHEEL_VENV)/bin/pip check
	COSSL_WHEEL_VENV=$(abspath $(WHEEL_VENV)) $(BIN)/python -m pytest -p no:cacheprovider \
		tests/test_packaging.py -k installed_wheel

# The installed wheel's edge runtime on aarch64 under user-mode emulation (tests/test_arm.py):
# Debian's qemu-user-static (installed when missing), Debian's arm64 CPython and PyPI's aarch64
# wheels of the lock's versions, cached under build/arm/ (tests/arm/build_env.sh); pytest -s
# prints the x86 <-> aarch64 agreement (docs/edge.md), also written to build/arm/agreement.json.
ARM := build/arm

test-arm: venv wheel
	bash tests/arm/build_env.sh $(ARM) $(WHEEL) $(BIN)/python
	COSSL_ARM_DIR=$(abspath $(ARM)) $(BIN)/python -m pytest -p no:cacheprovider -s \
		tests/test_arm.py

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/pip install --quiet --no-deps -r requirements-bench.lock
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .venv-edge build $(DIST) *.egg-info
