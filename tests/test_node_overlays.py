"""The node's Parametric Maps and Segmentations across a series and on multi-frame sources:
which images share an object (no network), and a multi-frame enhanced CT through the node to
Orthanc, read back with highdicom: the map and the SEG hold the frame the node classified,
reference it by its number, lie on its plane, and the SR names it. The per-series objects of
single-frame images end to end: tests/test_node.py; dciodvfy on all: tests/test_dciodvfy.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import node_support as ns
import numpy as np
import overlay_reading
import pydicom
import pytest
from pydicom.dataset import Dataset

from cossl_edge.node.overlay_frames import OverlayFrame, frame_number_of, groups


def _header(i: int, z: float, **changes) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{i}"
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.3", "1.2.4"
    ds.Rows = ds.Columns = 8
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, z]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 1.0
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def _frame(ds: Dataset, frame: int | None = None) -> OverlayFrame:
    return OverlayFrame(ds, frame, np.zeros((8, 8), np.float32), "bright", 0.9)


def test_which_images_share_an_object():
    """One object per geometry: same frame of reference, size, orientation and pixel
    measures, each at a position of its own; sources without a frame of reference alone."""
    same = [_frame(_header(i, float(i))) for i in range(3)]
    assert [len(g) for g in groups(same)] == [3]
    other_spacing = _frame(_header(3, 3.0, PixelSpacing=[0.6, 0.6]))
    other_size = _frame(_header(4, 4.0, Rows=16))
    again = _frame(_header(5, 0.0))  # a second image at slice 0 (another acquisition)
    no_for = [_frame(_header(6 + i, 0.0, FrameOfReferenceUID=None)) for i in range(2)]
    out = groups(same + [other_spacing, other_size, again, *no_for])
    assert [[f.sop_uid[-1] for f in g] for g in out] == \
        [["0", "1", "2"], ["3"], ["4"], ["5"], ["6"], ["7"]]


def test_frames_of_a_multiframe_source_share_its_object():
    mf = _header(1, 0.0, NumberOfFrames=4)
    mf.PerFrameFunctionalGroupsSequence = []
    for z in (0.0, 1.0, 1.0, 2.0):  # frames 1 and 2 at one position (two phases)
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0, 0, z]
        item.PlanePositionSequence = [position]
        mf.PerFrameFunctionalGroupsSequence.append(item)
    out = groups([_frame(mf, 0), _frame(mf, 1), _frame(mf, 2), _frame(mf, 3)])
    assert [[f.frame for f in g] for g in out] == [[0, 1, 3], [2]]
    obj = Dataset()  # what frame_number_of reads: the per-frame source references
    obj.PerFrameFunctionalGroupsSequence = []
    for number in (3, 1):
        ref, derivation, item = Dataset(), Dataset(), Dataset()
        ref.ReferencedSOPInstanceUID, ref.ReferencedFrameNumber = mf.SOPInstanceUID, number
        derivation.SourceImageSequence = [ref]
        item.DerivationImageSequence = [derivation]
        obj.PerFrameFunctionalGroupsSequence.append(item)
    assert frame_number_of(obj, "1.2.3.1", 0) == 2 and frame_number_of(obj, "1.2.3.1", 2) == 1
    assert frame_number_of(obj, "1.2.3.1", 1) is None


def test_object_uids_follow_the_images_held():
    from cossl_edge.node.overlays import instance_uid_of

    a, b = _frame(_header(0, 0.0)), _frame(_header(1, 1.0))
    ids = {"model_sha256": "ab" * 32, "classifier_sha256": "cd" * 32}
    assert instance_uid_of("seg", "1.2.3", [a, b], ids) == \
        instance_uid_of("seg", "1.2.3", [b, a], ids)
    assert instance_uid_of("seg", "1.2.3", [a], ids) != instance_uid_of("seg", "1.2.3", [a, b], ids)
    assert instance_uid_of("seg", "1.2.3", [a], ids) != instance_uid_of("pmap", "1.2.3", [a], ids)
    other = {**ids, "model_sha256": "ef" * 32}
    assert instance_uid_of("seg", "1.2.3", [a], ids) != instance_uid_of("seg", "1.2.3", [a], other)


# -- a multi-frame source end to end -----------------------------------------------------------
@pytest.fixture(scope="module")
def local_classifier(tmp_path_factory) -> Path:
    return ns.make_local_classifier(tmp_path_factory.mktemp("node-local-model"))


def _enhanced_ct(folder: Path, kinds: list[str], key: str) -> tuple[Path, list]:
    """A Legacy Converted Enhanced CT (highdicom) of blob images: one multi-frame object
    with a frame of reference, pixel spacing and a plane position per frame; (file, disk
    centres)."""
    import highdicom as hd

    files, centres = ns.write_blob_series(folder / "slices", kinds, key, patient=74,
                                          geometry=True)
    slices = [pydicom.dcmread(f) for f in files]
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        slices, pydicom.uid.generate_uid(entropy_srcs=[key, "series"]), 3,
        pydicom.uid.generate_uid(entropy_srcs=[key, "instance"]), 1)
    path = folder / f"{key}.dcm"
    mf.save_as(path, enforce_file_format=True)
    return path, centres


@pytest.mark.slow
def test_building_leaves_the_sources_as_they_were(tmp_path):
    """The builders hand highdicom copies of the headers that share their elements: the
    headers the SR is then built from are unchanged (a type 2 attribute the copy adds, the
    stand-in SOP class of a multi-frame source without a frame of reference)."""
    import copy

    import dicom_factory as fac

    from cossl_edge.node.overlays import build_overlays
    from cossl_edge.node.structured_report import read_header_dataset

    ct, _ = ns.write_blob_series(tmp_path / "ct", ["bright"] * 3, "unchanged", geometry=True)
    cases = [([read_header_dataset(f) for f in ct], None),
             ([read_header_dataset(fac.cr_monochrome1(tmp_path / "cr.dcm"))], None),
             ([read_header_dataset(fac.multiframe(tmp_path / "mf.dcm", frames=5))], 2)]
    identity = {"model_sha256": "ab" * 32, "classifier_kind": "local"}
    for headers, frame in cases:
        for h in headers:
            del h.PatientSex  # the copies get it, empty
        before = [copy.deepcopy(h) for h in headers]
        frames = [OverlayFrame(h, frame, np.full((int(h.Rows), int(h.Columns)), 0.9,
                                                 np.float32), "bright", 0.9) for h in headers]
        built = build_overlays(frames, ["pmap", "seg"], identity, "1.2.3")
        assert any(b.dataset is not None for b in built)
        assert all("PatientSex" in b.dataset for b in built if b.dataset is not None)
        assert headers == before


def test_multiframe_source_end_to_end(tmp_path, local_classifier, pacs):
    import highdicom as hd

    from cossl_edge.node.overlays import PARAMETRIC_MAP, SEGMENTATION

    kinds = ["normal", "normal", "bright", "normal", "normal"]  # the node reads frame 3 of 5
    path, centres = _enhanced_ct(tmp_path, kinds, "mf-e2e")
    source = pydicom.dcmread(path, stop_before_pixels=True)
    uid = str(source.SOPInstanceUID)
    node = ns.NodeProcess(local_classifier, tmp_path / "node",
                          forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}",
                          extra=["--eostudy-timeout", "0.5"])
    try:
        node.start()
        # -R: propose the files' own SOP class (storescu's default list lacks this one)
        r = subprocess.run([ns.require("storescu"), "-v", "-R", "-aet", ns.SCANNER_AE,
                            "-aec", ns.NODE_AE, "-to", "20", "127.0.0.1", str(node.port),
                            str(path)], capture_output=True, text=True, timeout=120)
        assert ns.acknowledged(r.stdout + r.stderr)[0], r.stdout + r.stderr
        sr = ns.sr_for(pacs, str(source.SeriesInstanceUID))
        ns.wait_until(lambda: any(e["event"] == "sent" for e in node.events()), 20, "sent")
    finally:
        node.stop()
    with node.db() as db:
        assert db.execute("SELECT label FROM instances").fetchone()[0] == "bright"

    def of_study(sop_class):
        return pacs.datasets(lambda t: t.get("SOPClassUID") == sop_class
                             and t.get("StudyInstanceUID") == source.StudyInstanceUID)

    pmaps, segs = of_study(PARAMETRIC_MAP), of_study(SEGMENTATION)
    assert len(pmaps) == len(segs) == 1
    position = source.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence[0]
    for obj in pmaps + segs:
        assert obj.NumberOfFrames == 1 and obj.FrameOfReferenceUID == source.FrameOfReferenceUID
        item = obj.PerFrameFunctionalGroupsSequence[0]
        ref = item.DerivationImageSequence[0].SourceImageSequence
        assert len(ref) == 1 and ref[0].ReferencedSOPInstanceUID == uid
        assert ref[0].ReferencedFrameNumber == 3
        assert obj.SourceImageSequence[0].ReferencedFrameNumber == 3
        assert item.PlanePositionSequence[0].ImagePositionPatient == \
            position.ImagePositionPatient
        measures = obj.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert [float(v) for v in measures.PixelSpacing] == [0.7, 0.7]
    pm = hd.pm.ParametricMap.from_dataset(pmaps[0])
    overlay_reading.assert_map_on_disk(pm.pixel_array.reshape(source.Rows, source.Columns),
                                       centres[2])
    seg = hd.seg.Segmentation.from_dataset(segs[0])
    mask = seg.get_pixels_by_source_frame(uid, [3], segment_numbers=[1])[0, ..., 0]
    assert 0 < mask.mean() < 0.5
    # the SR: the image group's region is the SEG's frame, its source the frame classified
    assert overlay_reading.segmentation_frames(sr) == {uid: (segs[0].SOPInstanceUID, 1)}
    sources = []

    def walk(items):
        for it in items:
            if it.get("ValueType") == "IMAGE":
                r = it.ReferencedSOPSequence[0]
                if r.ReferencedSOPInstanceUID == uid:
                    sources.append(int(r.ReferencedFrameNumber))
            walk(it.get("ContentSequence", []))

    walk(sr.ContentSequence)
    assert sources and set(sources) == {3}
