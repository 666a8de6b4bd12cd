"""Shared fixtures: small generated data sets with visible structure (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SHAPES = ("square", "disk", "hbar", "vbar")


def shape_image(shape: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A bright shape at a random place on a noisy dark background, float in [0, 1]."""
    img = rng.random((size, size)).astype(np.float32) * 0.2
    s = size / 32
    cx, cy = rng.integers(int(8 * s), int(24 * s), 2)
    r = int(rng.integers(int(4 * s), int(8 * s)))
    yy, xx = np.mgrid[:size, :size]
    masks = {
        "square": (abs(xx - cx) < r) & (abs(yy - cy) < r),
        "disk": (xx - cx) ** 2 + (yy - cy) ** 2 < r * r,
        "hbar": (abs(yy - cy) < 2 * s) & (abs(xx - cx) < r + 4 * s),
        "vbar": (abs(xx - cx) < 2 * s) & (abs(yy - cy) < r + 4 * s),
    }
    img[masks[shape]] = 0.8 + 0.2 * rng.random()
    return img.clip(0, 1)


def write_shapes(root: Path, per_class: int, seed: int = 0, size: int = 32) -> Path:
    """ImageFolder-style PNGs: root/<shape>/<i>.png."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        d = root / shape
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = shape_image(shape, rng, size)
            Image.fromarray((img * 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """4 classes × 40 grayscale 32-px PNGs with visible structure."""
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
