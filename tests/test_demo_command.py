"""``cossl-edge demo``: the phantoms it draws, and what it says without the training extras
(the whole demo runs from the installed wheel in tests/test_packaging.py)."""

from __future__ import annotations

import importlib.util

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.commands import demo
from cossl_edge.phantoms.pixels import FINDINGS

runner = CliRunner()


def test_phantoms_are_split_into_unlabeled_labelled_and_support(tmp_path):
    folders = demo.write_phantoms(tmp_path, unlabeled=6, labelled_per_class=7)
    assert len(list(folders["unlabeled"].glob("*.png"))) == 6
    for finding in FINDINGS:
        labelled = sorted((folders["labeled"] / finding).glob("*.png"))
        support = sorted((folders["support"] / finding).glob("*.png"))
        assert len(labelled) == 7 and len(support) == demo.SUPPORT_PER_CLASS
        assert {p.name for p in support} <= {p.name for p in labelled}
    img = np.asarray(Image.open(labelled[0]))
    assert img.dtype == np.uint8 and img.ndim == 2 and img.std() > 10  # an image, not a blank


def test_without_the_training_extras_it_names_them(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert res.exit_code == 1
    assert "pip install 'cossl-edge[train,export]'" in res.output
    assert not (tmp_path / "d").exists()  # nothing written before the check
