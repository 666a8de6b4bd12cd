"""Finding DICOM samples: series, slice order, stride, keys, skips, labels."""

from __future__ import annotations

import numpy as np
import pydicom
from dicom_factory import (
    FAKE_ID,
    FAKE_NAME,
    ct_series,
    mixed_folder,
    mr_image,
    multiframe,
)

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import (
    SamplingOptions,
    discover,
    labelled_samples,
    load_many,
    load_sample,
)


def test_mixed_folder_finds_every_image_and_skips_the_report(tmp_path):
    made = mixed_folder(tmp_path)
    found = discover(tmp_path)
    # 3 CT slices + MR (no suffix) + CR + 4 frames + US + RLE
    assert len(found.samples) == 3 + 1 + 1 + 4 + 1 + 1
    assert {s.kind for s in found.samples} == {"dicom"}
    assert made["mr"][0] in {s.path for s in found.samples}  # found without a .dcm suffix
    assert [(s.path.name, s.reason) for s in found.skipped] == [
        ("report.dcm", "not an image (SR: structured report)")]


def test_slices_ordered_along_the_normal_not_by_name(tmp_path):
    true_order = ct_series(tmp_path, n=5, shuffle_names=True)
    found = discover(tmp_path)
    assert [s.path for s in found.samples] == true_order
    assert sorted(p.name for p in true_order) != [p.name for p in true_order]


def test_oblique_orientation_orders_by_projected_position(tmp_path):
    paths = ct_series(tmp_path, n=4, shuffle_names=False)
    # coronal slices: the normal is +y; z decreases while y increases
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [0, 3.0 * i, -7.0 * i]
        ds.InstanceNumber = 10 - i
        ds.save_as(p)
    assert [s.path for s in discover(tmp_path).samples] == paths


def test_instance_number_orders_slices_without_position(tmp_path):
    paths = ct_series(tmp_path, n=4, shuffle_names=True)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.ImagePositionPatient
        ds.save_as(p)
    names = [s.path.name for s in discover(tmp_path).samples]
    # InstanceNumber runs opposite to the true order in this series
    assert names == [p.name for p in reversed(paths)]


def test_stride_thins_volumes_and_frames(tmp_path):
    ct = ct_series(tmp_path / "ct", n=5)
    mf = multiframe(tmp_path / "mf.dcm", frames=5)
    found = discover(tmp_path, SamplingOptions(dicom_stride=2))
    assert [s.path for s in found.samples if s.path != mf] == ct[::2]
    assert [s.frame for s in found.samples if s.path == mf] == [0, 2, 4]


def test_keys_are_sop_instance_uids_plus_frame(tmp_path):
    mf = multiframe(tmp_path / "mf.dcm", frames=3)
    ct = ct_series(tmp_path / "ct", n=1)[0]
    keys = {s.path: [] for s in discover(tmp_path).samples}
    for s in discover(tmp_path).samples:
        keys[s.path].append(s.key)
    mf_uid = pydicom.dcmread(mf, stop_before_pixels=True).SOPInstanceUID
    assert keys[mf] == [f"{mf_uid}#{i}" for i in range(3)]
    assert keys[ct] == [pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID]
    ids = [s.sample_id("salt") for s in discover(tmp_path).samples]
    assert len(set(ids)) == 4 and not any(mf_uid in i for i in ids)


def test_bad_files_are_skipped_with_reasons(tmp_path):
    good = ct_series(tmp_path, n=2)
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "garbage.dcm").write_bytes(b"\x00\x01not dicom at all" * 10)
    (tmp_path / "notes.txt").write_text("hello")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(good[0].read_bytes()[:-200])
    found = discover(tmp_path)
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert reasons["notes.txt"] == "not an image, video or DICOM file"
    assert reasons["cut.dcm"].startswith("truncated")
    assert "garbage.dcm" in reasons
    assert [s.path for s in found.samples] == good
    for text in reasons.values():
        assert FAKE_NAME not in text and FAKE_ID not in text


def test_load_many_prepares_dicom_samples(tmp_path):
    mixed_folder(tmp_path)
    found = discover(tmp_path)
    contract = PreprocessContract(channels=1, size=8, window="auto")
    arr, kept, skipped = load_many(found.samples, contract)
    assert arr.shape == (len(found.samples), 8, 8, 1) and not skipped
    assert arr.min() >= 0 and arr.max() <= 1 and np.isfinite(arr).all()
    assert kept == list(range(len(found.samples)))


def test_contract_window_reaches_the_reader(tmp_path):
    ref = discover(ct_series(tmp_path, n=1)[0]).samples[0]
    lung = load_sample(ref, PreprocessContract(window="lung"))
    brain = load_sample(ref, PreprocessContract(window="brain"))
    assert lung[0, 0] > 0.2 and brain[0, 0] == 0.0  # air is visible only in the lung window


def test_labels_from_csv_by_series_folder_and_uid(tmp_path):
    ct_series(tmp_path / "a", n=2, series="a")
    ct_series(tmp_path / "b", n=3, series="b")
    mr = mr_image(tmp_path / "loose" / "mr.dcm")
    uid_b = pydicom.dcmread(tmp_path / "b" / "slice001.dcm").SeriesInstanceUID
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\na,nodule\n{uid_b},clear\nloose/mr.dcm,other\n")
    samples, labels, classes = labelled_samples(tmp_path, csv)
    assert classes == ["clear", "nodule", "other"]
    assert sorted(labels) == ["clear"] * 3 + ["nodule"] * 2 + ["other"]
    assert labels[[s.path for s in samples].index(mr)] == "other"


def test_duplicate_instances_are_used_once(tmp_path):
    paths = ct_series(tmp_path / "a", n=2)
    copy = tmp_path / "b" / "copy.dcm"
    copy.parent.mkdir()
    copy.write_bytes(paths[0].read_bytes())
    found = discover(tmp_path)
    assert len(found.samples) == 2
    assert [s.reason for s in found.skipped] == [
        "duplicate (same SOPInstanceUID as another file)"]
