"""Volumes (cossl_edge.volumes): DICOM series and NIfTI files as one D×H×W array with its
geometry, resampling, the window as in 2D, multi-frame enhanced objects, and every rule
that keeps a series out of the volumes, each reported as one line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from cossl_edge.dicom import read_frame, read_header
from cossl_edge.volumes import (
    Volume,
    VolumeSkip,
    discover_volumes,
    load_volume,
    load_volumes,
    nifti_volume,
    resample,
)
from tests.dicom_factory import (
    CT_STORAGE,
    FAKE_ID,
    FAKE_NAME,
    base_dataset,
    ct_series,
    set_pixels,
    write,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.1")
PYDICOM_TESTS = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"


def _series(folder: Path, positions, orientation=AXIAL, pixel_spacing=(1.0, 1.0),
            values=None, rows: int = 6, cols: int = 5, name: str = "s") -> list[Path]:
    """One CT file per position (stored value 100·k for the k-th given position, rescale
    identity, header window 500/1000 LINEAR_EXACT: unit value 0.1·k), written in a
    shuffled file order; ``orientation`` may be one per slice."""
    order = np.random.default_rng(0).permutation(len(positions))
    paths = []
    for k in order:
        ds = base_dataset(CT_STORAGE, "CT", f"{name}-{k}", name)
        v = 100 * k if values is None else values[k]
        set_pixels(ds, np.full((rows, cols), v, np.int16))
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 500, 1000, "LINEAR_EXACT"
        iop = orientation[k] if isinstance(orientation[0], tuple | list) else orientation
        ds.ImageOrientationPatient = list(iop)
        ds.ImagePositionPatient = [float(x) for x in positions[k]]
        ds.PixelSpacing = list(pixel_spacing)
        ds.InstanceNumber = int(k) + 1
        paths.append(write(ds, folder / f"f{len(paths):03d}-{k}.dcm"))
    return paths


def _one(folder: Path, **kw) -> Volume:
    found = discover_volumes(folder)
    assert len(found.volumes) == 1, found
    return load_volume(found.volumes[0], **kw)


def _skip_reason(folder: Path, **kw) -> str:
    found = discover_volumes(folder)
    [(_, result)] = list(load_volumes(found.volumes, **kw))
    assert not isinstance(result, Volume)
    return result.reason


# -- ordering and geometry -------------------------------------------------------------------
def test_oblique_series_in_shuffled_files_stacks_along_the_normal(tmp_path):
    row = np.array([np.cos(0.3), np.sin(0.3), 0.0])
    col = np.array([0.0, 0.0, -1.0])
    normal = np.cross(row, col)
    start = np.array([10.0, -20.0, 30.0])
    # the k-th given slice lies 2.5·k mm along −normal: written order is the reverse
    positions = [start - 2.5 * k * normal for k in range(5)]
    _series(tmp_path, positions, tuple(row) + tuple(col), pixel_spacing=(0.7, 0.5))
    vol = _one(tmp_path)
    assert vol.shape == (5, 6, 5)
    # ordered by position along the normal: the last given slice comes first
    np.testing.assert_allclose(vol.array[:, 0, 0], [0.4, 0.3, 0.2, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.7, 0.5))
    np.testing.assert_allclose(vol.direction[:, 0], normal, atol=1e-9)
    np.testing.assert_allclose(vol.direction[:, 1], col)
    np.testing.assert_allclose(vol.direction[:, 2], row)
    np.testing.assert_allclose(vol.origin, positions[4])
    np.testing.assert_allclose(vol.affine @ [4, 0, 0, 1], [*positions[0], 1], atol=1e-9)
    np.testing.assert_allclose(vol.affine @ [0, 1, 1, 1], [*(positions[4] + 0.7 * col
                                                            + 0.5 * row), 1], atol=1e-9)


def test_a_linear_ramp_along_z_survives_resampling(tmp_path):
    _series(tmp_path, [(0, 0, 2.5 * k) for k in range(5)], pixel_spacing=(0.5, 2.0),
            rows=8, cols=4)
    vol = _one(tmp_path, spacing=(1.0, 1.0, 1.0))
    assert vol.shape == (11, 4, 7)  # 10 mm / 1 + 1; 3.5 mm / 1 + 1; 6 mm / 1 + 1
    assert vol.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(vol.array[:, 2, 3], 0.04 * np.arange(11), atol=1e-6)
    assert vol.array.dtype == np.float32
    # one axis kept as stored
    kept = _one(tmp_path, spacing=(None, 0.5, None))
    assert kept.shape == (5, 8, 4) and kept.spacing == (2.5, 0.5, 2.0)


def test_resample_is_exact_on_a_3d_linear_function():
    k, j, i = np.mgrid[:4, :5, :6].astype(np.float32)
    vol = Volume((0.1 * k + 0.02 * j + 0.01 * i), (3.0, 2.0, 1.0), np.eye(3), np.zeros(3))
    out = resample(vol, (1.5, 0.5, 2.0))
    assert out.shape == (7, 17, 3)
    kk, jj, ii = np.mgrid[:7, :17, :3]
    expect = 0.1 * kk * 1.5 / 3 + 0.02 * jj * 0.5 / 2 + 0.01 * ii * 2.0
    np.testing.assert_allclose(out.array, expect, atol=1e-6)
    with pytest.raises(VolumeSkip, match="positive"):
        resample(vol, (0.0, None, None))


def test_window_and_lut_are_the_2d_paths_slice_by_slice(tmp_path):
    paths = ct_series(tmp_path, n=4)  # rescale slope 2, intercept −1024, window 40/400
    for window in ("header", "lung"):
        vol = _one(tmp_path, window=window)
        for k, p in enumerate(paths):
            np.testing.assert_array_equal(vol.array[k], read_frame(p, None, window))


def test_auto_window_is_one_window_over_the_volume(tmp_path):
    _series(tmp_path, [(0, 0, k) for k in range(6)])
    vol = _one(tmp_path, window="auto")
    means = vol.array.mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0.15)  # per-slice windows would make every slice alike


def test_pydicom_four_slice_series_reads_as_a_volume(tmp_path):
    shutil.copytree(PYDICOM_TESTS / "98892001" / "CT5N", tmp_path / "ct5n")
    vol = _one(tmp_path)
    assert vol.shape == (5, 16, 16)
    np.testing.assert_allclose(vol.spacing[0], 2.5, atol=1e-4)
    np.testing.assert_allclose(vol.origin[2], -1.2375, atol=1e-4)  # lowest z first
    assert 0.0 <= vol.array.min() and vol.array.max() <= 1.0


# -- multi-frame enhanced CT ------------------------------------------------------------------
def _enhanced_ct(path: Path, z_of_frame: list[float]) -> Path:
    ds = base_dataset(ENHANCED_CT, "CT", "enh", "enh")
    frames = np.stack([np.full((4, 3), 10 * f, np.int16) for f in range(len(z_of_frame))])
    set_pixels(ds, frames)
    shared = Dataset()
    orient, measures, rescale, voi = Dataset(), Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = list(AXIAL)
    measures.PixelSpacing, measures.SliceThickness = [0.8, 0.6], 2.0
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 10, -1000, "HU"
    voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = -500, 1000, "LINEAR_EXACT"
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([rescale])
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for z in z_of_frame:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [-5.0, 7.0, z]
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return write(ds, path)


def test_enhanced_multiframe_ct_orders_its_frames_by_their_positions(tmp_path):
    # frame f holds stored 10·f → HU 100·f − 1000 → unit 0.1·f under the frame window
    path = _enhanced_ct(tmp_path / "enhanced.dcm", [6.0, 0.0, 4.0, 2.0])
    vol = _one(tmp_path, window="header")
    np.testing.assert_allclose(vol.array[:, 0, 0], [0.1, 0.3, 0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(vol.spacing, (2.0, 0.8, 0.6))
    np.testing.assert_allclose(vol.origin, [-5.0, 7.0, 0.0])
    np.testing.assert_array_equal(vol.array[0], read_frame(path, 1, "header"))


def test_a_multiframe_object_without_positions_is_not_a_volume(tmp_path):
    from tests.dicom_factory import multiframe

    multiframe(tmp_path / "mf.dcm", frames=4)
    assert "no ImagePositionPatient" in _skip_reason(tmp_path)


# -- NIfTI -------------------------------------------------------------------------------------
nib = pytest.importorskip("nibabel")


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray, **header) -> Path:
    image = nib.Nifti1Image(data, affine)
    for k, v in header.items():
        image.header[k] = v
    nib.save(image, path)
    return path


@pytest.mark.parametrize("name", ["ramp.nii", "ramp.nii.gz"])
def test_nifti_round_trip_affine_to_spacing_and_orientation(tmp_path, name):
    c, s = np.cos(0.2), np.sin(0.2)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [12.0, -30.0, 7.0]
    i, j, k = np.mgrid[:5, :6, :7]
    data = (100.0 * k + j).astype(np.float32)  # (i, j, k) storage, ramp along k
    _nifti(tmp_path / name, data, affine, cal_min=0.0, cal_max=1000.0)
    vol = _one(tmp_path, window="header")
    assert vol.shape == (7, 6, 5)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.9, 0.8), rtol=1e-6)
    lps = np.diag([-1.0, -1, 1]) @ affine[:3]
    np.testing.assert_allclose(vol.origin, lps[:, 3], atol=1e-5)
    np.testing.assert_allclose(vol.direction[:, 2], lps[:, 0] / 0.8, atol=1e-6)
    np.testing.assert_allclose(vol.affine[:3, :3], lps[:, [2, 1, 0]], atol=1e-5)
    np.testing.assert_allclose(vol.array[:, 3, 2], (100 * np.arange(7) + 3) / 1000, atol=1e-6)
    out = _one(tmp_path, window="header", spacing=(1.25, None, None))
    assert out.shape == (13, 6, 5)
    np.testing.assert_allclose(out.array[:, 0, 0], 0.05 * np.arange(13), atol=1e-6)


def test_nifti_bad_inputs_are_one_line_each(tmp_path):
    _nifti(tmp_path / "four_d.nii", np.zeros((4, 4, 4, 3), np.float32), np.eye(4))
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti at all")
    found = discover_volumes(tmp_path)
    reasons = [r.reason for _, r in load_volumes(found.volumes)]
    assert len(reasons) == 2 and all(r.startswith("NIfTI file ") for r in reasons)
    assert any("not a readable NIfTI file" in r for r in reasons)
    assert any("4 dimensions" in r for r in reasons)
    assert all("\n" not in r and str(tmp_path) not in r for r in reasons)


def test_missing_nibabel_names_the_extra(tmp_path, monkeypatch):
    path = _nifti(tmp_path / "v.nii", np.zeros((3, 3, 3), np.float32), np.eye(4))
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(VolumeSkip, match=r"cossl-edge\[volumes\]"):
        nifti_volume(path)


# -- bad inputs: one line naming the series, never a traceback, never patient data -----------
def _check_line(reason: str, folder: Path) -> None:
    assert reason.startswith("series ") and "\n" not in reason
    assert FAKE_NAME not in reason and FAKE_ID not in reason and str(folder) not in reason


def test_a_missing_slice_is_reported(tmp_path):
    _series(tmp_path, [(0, 0, 2.0 * k) for k in (0, 1, 2, 4, 5)])
    reason = _skip_reason(tmp_path)
    _check_line(reason, tmp_path)
    assert "missing slice(s): a gap of 4 mm after slice 3 of 5" in reason


def test_pydicom_series_with_a_distant_slice_is_a_gap(tmp_path):
    shutil.copytree(PYDICOM_TESTS / "77654033" / "CT2", tmp_path / "ct2")
    assert "missing slice(s)" in _skip_reason(tmp_path)


def test_mixed_orientations_are_reported(tmp_path):
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    _series(tmp_path, [(0, 0, k) for k in range(4)], [AXIAL, AXIAL, coronal, AXIAL])
    reason = _skip_reason(tmp_path)
    _check_line(reason, tmp_path)
    assert "mixed orientations: 1 of 4 slices" in reason


def test_pydicom_series_with_two_orientations_is_mixed(tmp_path):
    shutil.copytree(PYDICOM_TESTS / "98892001" / "CT2N", tmp_path / "ct2n")
    assert "mixed orientations" in _skip_reason(tmp_path)


def test_non_uniform_spacing_is_reported(tmp_path):
    _series(tmp_path, [(0, 0, z) for z in (0.0, 1.0, 2.0, 3.3, 4.3)])
    reason = _skip_reason(tmp_path)
    _check_line(reason, tmp_path)
    assert "non-uniform slice spacing: steps from 1 to 1.3 mm" in reason


def test_slices_sharing_a_position_are_reported(tmp_path):
    _series(tmp_path, [(0, 0, z) for z in (0.0, 1.0, 1.0, 2.0)])
    assert "share a position" in _skip_reason(tmp_path)


def test_too_few_slices_for_the_depth_are_skipped_not_padded(tmp_path):
    _series(tmp_path, [(0, 0, 3.0 * k) for k in range(3)])
    reason = _skip_reason(tmp_path, spacing=(1.0, None, None), min_depth=8)
    _check_line(reason, tmp_path)
    assert "too few slices for a volume: 7 at 1 mm, at least 8 needed" in reason
    assert "skipped, not padded" in reason
    assert _one(tmp_path, spacing=(1.0, None, None), min_depth=7).shape[0] == 7


def test_a_single_slice_is_not_a_volume(tmp_path):
    _series(tmp_path, [(0, 0, 0)])
    assert "a single slice is not a volume" in _skip_reason(tmp_path)


def test_a_corrupt_slice_skips_its_series_with_the_reason(tmp_path):
    paths = _series(tmp_path, [(0, 0, k) for k in range(4)])
    found = discover_volumes(tmp_path)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 20])  # truncated after discovery
    [(_, result)] = list(load_volumes(found.volumes))
    _check_line(result.reason, tmp_path)
    assert "could not be read: truncated" in result.reason


def test_a_file_corrupt_at_discovery_is_its_own_skip_and_leaves_a_gap(tmp_path):
    paths = _series(tmp_path, [(0, 0, k) for k in range(5)])
    middle = next(p for p in paths if p.stem.endswith("-2"))
    middle.write_bytes(middle.read_bytes()[:200])
    found = discover_volumes(tmp_path)
    assert [s.path for s in found.skipped] == [middle]
    [(_, result)] = list(load_volumes(found.volumes))
    assert "missing slice(s)" in result.reason


def test_good_and_bad_series_side_by_side(tmp_path):
    ct_series(tmp_path / "good", n=4, series="good")
    _series(tmp_path / "bad", [(0, 0, z) for z in (0.0, 1.0, 3.0)], name="bad")
    found = discover_volumes(tmp_path)
    results = [r for _, r in load_volumes(found.volumes)]
    assert sorted(type(r).__name__ for r in results) == ["Skipped", "Volume"]
    vol = next(r for r in results if isinstance(r, Volume))
    assert vol.key == read_header(next((tmp_path / "good").iterdir())).series_uid
    assert len(vol.sample_id()) == 16 and vol.sample_id() != vol.key
