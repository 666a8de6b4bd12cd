"""The DICOM reading chain: HU values, windows, presets, inversion, colour, frames, codecs."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    FAKE_ID,
    FAKE_NAME,
    cr_monochrome1,
    ct_hu,
    ct_series,
    mr_image,
    multiframe,
    rle_ct,
    us_rgb,
)

from cossl_edge.dicom import DicomCodecError, DicomSkip, read_frame, window_to_unit
from cossl_edge.dicom import pixels as dicom_pixels
from cossl_edge.dicom.pixels import modality_values
from cossl_edge.dicom.windowing import auto_to_unit


def test_rescale_slope_intercept_gives_hounsfield_units(tmp_path):
    paths = ct_series(tmp_path, n=3, slope=2.0, intercept=-1024.0)
    hu = ct_hu(3, 16, 16)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        values = modality_values(ds.pixel_array, ds)
        # stored = round((HU + 1024) / 2), so HU comes back within one slope step
        assert np.abs(values - hu[i]).max() <= 1.0
        assert values.min() < -900 and values.max() > 1100  # air and bone survived


def test_header_window_maps_hu_to_unit_range(tmp_path):
    p = ct_series(tmp_path, n=1, slope=1.0, window=(40.0, 400.0))[0]
    img = read_frame(p, window="header")
    expected = window_to_unit(ct_hu(1, 16, 16)[0], 40.0, 400.0, "LINEAR")
    assert img.dtype == np.float32 and img.shape == (16, 16)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert img[0, 0] == 0.0  # air below the window
    assert img[8, 8] == 1.0  # bone above it


@pytest.mark.parametrize("preset,air,bone", [("lung", 0.233, 1.0), ("brain", 0.0, 1.0),
                                             ("bone", 0.0, 0.944)])
def test_named_presets_on_ct(tmp_path, preset, air, bone):
    p = ct_series(tmp_path, n=1, slope=1.0)[0]
    img = read_frame(p, window=preset)
    assert img[0, 0] == pytest.approx(air, abs=2e-3)  # HU -1000
    assert img[8, 8] == pytest.approx(bone, abs=2e-3)  # HU 1200


def test_preset_on_mr_falls_back_to_header_window(tmp_path):
    p = mr_image(tmp_path / "mr.dcm", window=True)
    stored = pydicom.dcmread(p).pixel_array
    np.testing.assert_allclose(read_frame(p, window="lung"),
                               window_to_unit(stored, 2000, 2000), atol=1e-6)


def test_auto_window_uses_percentiles(tmp_path):
    p = mr_image(tmp_path / "mr.dcm", window=True)
    stored = pydicom.dcmread(p).pixel_array
    img = read_frame(p, window="auto")  # ignores the header window
    np.testing.assert_allclose(img, auto_to_unit(stored), atol=1e-6)
    lo, hi = np.percentile(stored, [0.5, 99.5])
    assert img[stored <= lo].max() == 0.0 and img[stored >= hi].min() == 1.0


def test_header_mode_without_window_uses_percentiles(tmp_path):
    p = mr_image(tmp_path / "mr.dcm", window=False)
    img = read_frame(p, window="header")
    assert img.min() == 0.0 and img.max() == 1.0


def test_monochrome1_is_inverted(tmp_path):
    img = read_frame(cr_monochrome1(tmp_path / "cr.dcm"))
    row = img[0]
    assert row[0] == pytest.approx(1.0, abs=1e-3)  # stored 0 = white in MONOCHROME1
    assert row[-1] == pytest.approx(0.0, abs=1e-3)
    assert np.all(np.diff(row) <= 0)


def test_rgb_ultrasound_keeps_colour(tmp_path):
    img = read_frame(us_rgb(tmp_path / "us.dcm"))
    assert img.shape == (16, 20, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[0, :, 0], np.linspace(0, 255, 20).astype(np.uint8) / 255)
    assert np.allclose(img[..., 1], 128 / 255) and np.allclose(img[..., 2], 1.0)


def test_multiframe_reads_the_requested_frame(tmp_path):
    p = multiframe(tmp_path / "mf.dcm", frames=4)
    means = [float(np.median(read_frame(p, f))) for f in range(4)]
    np.testing.assert_allclose(means, [0.1, 0.2, 0.3, 0.4], atol=1e-6)
    with pytest.raises(DicomSkip, match="out of range"):
        read_frame(p, 4)


def test_rle_compressed_decodes_to_the_same_values(tmp_path):
    p = rle_ct(tmp_path / "rle.dcm")
    assert pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed
    expected = window_to_unit(ct_hu(1, 16, 16)[0], 40.0, 80.0, "LINEAR_EXACT")
    np.testing.assert_allclose(read_frame(p, window="brain"), expected, atol=1e-6)


def test_missing_codec_names_syntax_and_extra(tmp_path, monkeypatch):
    p = rle_ct(tmp_path / "rle.dcm")
    decoder_type = type(pydicom.pixels.get_decoder(pydicom.uid.RLELossless))
    monkeypatch.setattr(decoder_type, "is_available", property(lambda self: False))
    with pytest.raises(DicomCodecError) as err:
        read_frame(p)
    assert "RLE Lossless" in str(err.value)
    assert "pip install 'cossl-edge[codecs]'" in str(err.value)


def test_absurd_declared_size_refused_before_decoding(tmp_path, monkeypatch):
    p = ct_series(tmp_path, n=1)[0]
    ds = pydicom.dcmread(p)
    ds.Rows = ds.Columns = 30000  # 1.8 GB declared, 512 bytes present
    ds.save_as(p)
    monkeypatch.setattr(dicom_pixels, "pydicom_pixel_array",
                        lambda *a, **k: pytest.fail("decoder called on an absurd header"))
    with pytest.raises(DicomSkip, match="beyond any real image"):
        read_frame(p)


def test_compressed_with_absurd_frame_count_refused(tmp_path, monkeypatch):
    p = rle_ct(tmp_path / "rle.dcm")
    ds = pydicom.dcmread(p)
    ds.NumberOfFrames = 5_000_000
    ds.save_as(p)
    monkeypatch.setattr(dicom_pixels, "pydicom_pixel_array",
                        lambda *a, **k: pytest.fail("decoder called on an absurd header"))
    with pytest.raises(DicomSkip, match="corrupt or truncated"):
        read_frame(p, 0)


def test_errors_never_carry_patient_data(tmp_path):
    p = ct_series(tmp_path, n=1)[0]
    p.write_bytes(p.read_bytes()[:-100])  # truncated pixel data
    with pytest.raises(DicomSkip) as err:
        read_frame(p)
    msg = str(err.value)
    assert "truncated" in msg
    assert FAKE_NAME not in msg and FAKE_ID not in msg and str(tmp_path) not in msg


def test_enhanced_functional_groups_rescale_and_window(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    p = multiframe(tmp_path / "mf.dcm", frames=2)
    ds = pydicom.dcmread(p)
    del ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction
    del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType  # the frames' own, below
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -100, "HU"
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for center in (100, 300):  # frame 0 holds 100 → 100 HU; frame 1 holds 200 → 300 HU
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = center, 50, "LINEAR_EXACT"
        item = Dataset()
        item.FrameVOILUTSequence = Sequence([voi])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.save_as(p)
    # each frame sits at the centre of its own window: 0.5
    assert np.median(read_frame(p, 0)) == pytest.approx(0.5)
    assert np.median(read_frame(p, 1)) == pytest.approx(0.5)
    # the shared rescale gives HU, so a CT preset applies (RescaleType HU): brain (40, 80)
    assert np.median(read_frame(p, 1, window="brain")) == 1.0
    assert np.median(read_frame(p, 0, window="abdomen")) == pytest.approx(60 / 400 + 0.5)


def test_window_formulas_of_the_standard():
    # PS3.3 C.11.2.1.2.1 LINEAR: 0 at c − 0.5 − (w−1)/2, 1 at c − 0.5 + (w−1)/2
    x = np.array([-160.0, 39.5, 239.0, -1000.0, 3000.0])
    np.testing.assert_allclose(window_to_unit(x, 40, 400), [0, 0.5, 1, 0, 1], atol=1e-6)
    # LINEAR_EXACT: 0 at c − w/2, 1 at c + w/2
    np.testing.assert_allclose(window_to_unit(np.array([-160.0, 40.0, 240.0]), 40, 400,
                                              "LINEAR_EXACT"), [0, 0.5, 1], atol=1e-6)
    # SIGMOID: 0.5 at the centre, 1/(1+e^-4) one width above it
    np.testing.assert_allclose(window_to_unit(np.array([40.0, 440.0]), 40, 400, "SIGMOID"),
                               [0.5, 1 / (1 + np.exp(-4))], atol=1e-6)


def test_checked_read_skips_the_header_but_not_the_diagnosis(tmp_path, monkeypatch):
    """read_frame(checked=True) (the node: its SCP checked the header on receipt) gives the
    same pixels; when decoding fails it still raises the full path's reason."""
    files = [*ct_series(tmp_path / "ct", n=2), mr_image(tmp_path / "mr.dcm"),
             cr_monochrome1(tmp_path / "cr.dcm"), us_rgb(tmp_path / "us.dcm"),
             rle_ct(tmp_path / "rle.dcm")]
    for p in files:
        np.testing.assert_array_equal(read_frame(p, window="auto", checked=True),
                                      read_frame(p, window="auto"))
    mf = multiframe(tmp_path / "mf.dcm", frames=4)
    np.testing.assert_array_equal(read_frame(mf, 2, checked=True), read_frame(mf, 2))
    calls, original = [], dicom_pixels.read_header
    monkeypatch.setattr(dicom_pixels, "read_header",
                        lambda path: calls.append(path) or original(path))
    read_frame(files[0], checked=True)
    assert calls == []  # the header pass was skipped
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(files[0].read_bytes()[:-300])
    with pytest.raises(DicomSkip, match="truncated"):
        read_frame(cut, checked=True)
    # a codec that is not installed: the decoder is unavailable and decoding raises
    decoder_type = type(pydicom.pixels.get_decoder(pydicom.uid.RLELossless))
    monkeypatch.setattr(decoder_type, "is_available", property(lambda self: False))

    def no_plugin(*args, **kwargs):
        raise RuntimeError("no plugin")

    monkeypatch.setattr(dicom_pixels, "pydicom_pixel_array", no_plugin)
    with pytest.raises(DicomCodecError, match="RLE Lossless"):
        read_frame(files[-1], checked=True)
