"""`cossl-edge evaluate` sees a labelled folder as training did: a run directory's recorded
DICOM stride (and video sampling) reaches labelled_samples; the sampling options override
it and are the only source for an ONNX model."""

from __future__ import annotations

import pytest
from dicom_factory import ct_series
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.commands.evaluate import data_sampling
from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import SamplingOptions

CONTRACT = PreprocessContract(channels=1, size=16)
SLICES = 6  # per class: one CT series of 6 slices


class _Stop(Exception):
    """Raised by the stand-in protocol once it has seen the images."""


@pytest.fixture(scope="module")
def strided_run(tmp_path_factory):
    """A run directory pretrained with --dicom-stride 2 (config.json + encoder.pt)."""
    from support.runs import write_tiny_run

    from cossl_edge.training.config import PretrainConfig

    run = tmp_path_factory.mktemp("strided-run")
    write_tiny_run(run, PretrainConfig(arch="resnet10", width=0.125, contract=CONTRACT,
                                       dicom_stride=2))
    return run


@pytest.fixture(scope="module")
def ct_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct-classes")
    for label in ("normal", "lesion"):
        ct_series(root / label, n=SLICES, series=label)
    return root


@pytest.fixture
def seen(monkeypatch):
    """How many images (and which labels) the evaluation protocol is handed."""
    from cossl_edge.evaluation import protocol

    got: dict = {}

    def stand_in(extractor, images, labels, settings, progress=None):
        got["images"], got["labels"] = len(images), sorted(set(labels))
        raise _Stop

    monkeypatch.setattr(protocol, "evaluate", stand_in)
    return got


def _evaluate(*args) -> dict:
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_run_dir_evaluates_on_the_slices_it_was_trained_on(strided_run, ct_classes, seen):
    res = _evaluate(strided_run, ct_classes)
    assert isinstance(res.exception, _Stop), res.output
    assert seen == {"images": 2 * SLICES // 2, "labels": ["lesion", "normal"]}


def test_sampling_options_override_the_run_record(strided_run, ct_classes, seen):
    res = _evaluate(strided_run, ct_classes, "--dicom-stride", 1)
    assert isinstance(res.exception, _Stop), res.output
    assert seen["images"] == 2 * SLICES
    res = _evaluate(strided_run, ct_classes, "--dicom-stride", 3)
    assert isinstance(res.exception, _Stop), res.output
    assert seen["images"] == 2 * SLICES // 3


def test_data_sampling_of_a_run_and_of_an_onnx_model(strided_run, tmp_path):
    assert data_sampling(strided_run, {}) == SamplingOptions(dicom_stride=2)
    assert data_sampling(strided_run, {"video_fps": 2.0}) == SamplingOptions(2, 1, 2.0)
    model = tmp_path / "encoder.onnx"  # an ONNX model records no sampling: options alone
    model.write_bytes(b"")
    assert data_sampling(model, {}) == SamplingOptions()
    assert data_sampling(model, {"dicom_stride": 4}) == SamplingOptions(dicom_stride=4)


def test_a_bad_sampling_option_is_one_line(strided_run, ct_classes):
    res = _evaluate(strided_run, ct_classes, "--dicom-stride", 0)
    assert res.exit_code == 2 and "dicom_stride must be" in res.output
    assert "Traceback" not in res.output
