"""Export calibration samples a folder as pretraining did: the run's recorded sampling."""

from __future__ import annotations

import pytest
from dicom_factory import ct_series

from cossl_edge.contract import PreprocessContract
from cossl_edge.export.calibration import calibration_images, load_calibration, run_sampling
from cossl_edge.export.errors import ExportError
from cossl_edge.sources import SamplingOptions
from cossl_edge.training.config import PretrainConfig


def test_run_sampling_reads_the_config():
    assert run_sampling(PretrainConfig()) == SamplingOptions()
    cfg = PretrainConfig(dicom_stride=3, video_every=2, video_fps=1.5)
    assert run_sampling(cfg) == SamplingOptions(3, 2, 1.5)
    assert run_sampling({"dicom_stride": 2}) == SamplingOptions(dicom_stride=2)
    with pytest.raises(ExportError, match="config.json: dicom_stride must be"):
        run_sampling({"dicom_stride": 0})


def test_calibration_folder_uses_the_sampling(tmp_path):
    ct_series(tmp_path / "ct", n=6)
    contract = PreprocessContract(channels=1, size=16)
    every, _ = load_calibration(tmp_path / "ct", contract, count=100)
    thinned, _ = load_calibration(tmp_path / "ct", contract, count=100,
                                  sampling=SamplingOptions(dicom_stride=2))
    assert len(every) == 6 and len(thinned) == 3
    assert (thinned == every[::2]).all()
    images, skipped, source = calibration_images(tmp_path, {}, contract, tmp_path / "ct", 100,
                                                 sampling=SamplingOptions(dicom_stride=3))
    assert (len(images), skipped, source) == (2, 0, "folder")
