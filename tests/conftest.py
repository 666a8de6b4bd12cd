"""Shared fixtures: small generated data sets with visible structure (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """4 classes × 40 grayscale 32-px PNGs with visible structure."""
    # imported here: the edge run loads this conftest without tests/ on sys.path
    from support.folders import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shapes"), per_class=40)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Keep the decoded-image cache out of the user's home during tests.
    monkeypatch.setenv("COSSL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# -- the DICOM node (tests/test_node*.py) -------------------------------------------------------
# Session-scoped so that the node modules share one fitted classifier and one Orthanc: it
# listens on free loopback ports only, keeps its database in a temporary folder, and each test
# finds its own SR by series UID. node_support is imported lazily (only these tests need it).
@pytest.fixture(scope="session")
def classifier(tmp_path_factory) -> Path:
    import node_support as ns

    return ns.make_classifier(tmp_path_factory.mktemp("node-model"))


@pytest.fixture(scope="session")
def pacs(tmp_path_factory):
    import node_support as ns

    with ns.running_orthanc(tmp_path_factory.mktemp("orthanc")) as p:
        yield p


@pytest.fixture
def node_factory(tmp_path, classifier, pacs):
    import node_support as ns

    started = []

    def make(name: str = "node", extra: list[str] | None = None, forward: bool = True):
        node = ns.NodeProcess(classifier, tmp_path / name,
                              forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}" if forward
                              else None, extra=["--eostudy-timeout", "1", *(extra or [])])
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


@pytest.fixture(scope="session")
def bad_input_models(tmp_path_factory) -> dict[str, Path]:
    """The small ONNX models the bad-input tables use (tests/bad_inputs_support.py)."""
    from bad_inputs_support import build_models

    return build_models(tmp_path_factory.mktemp("models"))
