"""The table of source readers and SamplingOptions: a new source is one reader and one
registration; sampling values are checked once, with errors that name the fix."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import ct_series
from PIL import Image

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import (
    READERS,
    Reader,
    SampleRef,
    SamplingOptions,
    SourceError,
    discover,
    labelled_samples,
    load_many,
    load_sample,
    native_side,
    register_reader,
    unregister_reader,
)


def _npy_reader() -> Reader:
    """A toy source: a .npy file holds a stack of 2D images, one sample per image."""

    def list_file(path, key, sampling):
        n = np.load(path, mmap_mode="r").shape[0]
        return [SampleRef(path, "npy", i, f"{key}#{i}") for i in range(n)]

    def read(ref, contract=None):
        return np.load(ref.path)[ref.frame].astype(np.float32)

    return Reader(kind="npy", label="NumPy", matches=lambda p: p.suffix == ".npy",
                  list_file=list_file, read=read,
                  native_side=lambda ref: min(np.load(ref.path, mmap_mode="r").shape[1:3]))


@pytest.fixture
def npy_reader():
    register_reader(_npy_reader())
    yield
    unregister_reader("npy")


def test_a_registered_reader_is_discovered_and_loaded(tmp_path, npy_reader):
    stack = np.random.default_rng(0).random((3, 10, 12)).astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    found = discover(tmp_path)
    npy = [s for s in found.samples if s.kind == "npy"]
    assert [(s.frame, s.key) for s in npy] == [(i, f"stack.npy#{i}") for i in range(3)]
    assert [s.kind for s in found.samples] == ["image", "npy", "npy", "npy"]
    assert found.skipped[0].reason == "not an image, video, DICOM or NumPy file"
    np.testing.assert_array_equal(load_sample(npy[1]), stack[1])
    arr, kept, skipped = load_many(npy, PreprocessContract(channels=1, size=8))
    assert arr.shape == (3, 8, 8, 1) and kept == [0, 1, 2] and not skipped
    assert native_side(npy) == 10


def test_unregistering_restores_the_table(tmp_path):
    before = [r.kind for r in READERS]
    register_reader(_npy_reader())
    with pytest.raises(SourceError, match="already registered"):
        register_reader(_npy_reader())
    unregister_reader("npy")
    assert [r.kind for r in READERS] == before == ["image", "video", "dicom"]
    np.save(tmp_path / "stack.npy", np.zeros((2, 4, 4)))
    found = discover(tmp_path)
    assert not found.samples
    assert found.skipped[0].reason == "not an image, video or DICOM file"
    with pytest.raises(SourceError, match="unknown sample kind 'npy'"):
        load_sample(SampleRef(tmp_path / "stack.npy", "npy", 0))


def test_sampling_options_defaults_keep_everything(tmp_path):
    ct = ct_series(tmp_path / "lung", n=4)
    assert SamplingOptions() == SamplingOptions(1, 1, None)
    assert [s.path for s in discover(tmp_path, SamplingOptions()).samples] == ct
    assert [s.path for s in discover(tmp_path, SamplingOptions(dicom_stride=3)).samples] == \
        ct[::3]
    samples, labels, _ = labelled_samples(tmp_path, None, SamplingOptions(dicom_stride=2))
    assert [s.path for s in samples] == ct[::2] and labels == ["lung", "lung"]


@pytest.mark.parametrize("kwargs,match", [
    ({"dicom_stride": 0}, "dicom_stride must be a whole number of at least 1.*--dicom-stride"),
    ({"dicom_stride": 1.5}, "dicom_stride"),
    ({"dicom_stride": True}, "dicom_stride"),
    ({"video_every": -2}, "video_every must be .*--video-every"),
    ({"video_fps": 0}, "video_fps must be a positive number.*--video-fps"),
    ({"video_fps": float("nan")}, "video_fps"),
    ({"video_fps": "2"}, "video_fps"),
])
def test_sampling_options_refuse_bad_values(kwargs, match):
    with pytest.raises(SourceError, match=match):
        SamplingOptions(**kwargs)


def test_sampling_options_are_frozen():
    s = SamplingOptions(dicom_stride=2, video_fps=2.5)
    with pytest.raises(AttributeError):
        s.dicom_stride = 3  # type: ignore[misc]
    assert s.to_dict() == {"dicom_stride": 2, "video_every": 1, "video_fps": 2.5}
