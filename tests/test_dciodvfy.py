"""Every DICOM object the project writes passes dicom3tools' ``dciodvfy`` (the IOD checker:
modules, attribute types, VR and VM, value sets): the node's Comprehensive SR, heatmap
Secondary Captures, Parametric Maps and Segmentations, the phantoms (CT, CR, DX
MONOCHROME1/2, the 3D CT series), the finding scans (SC), the ELPV DX writer (synthetic
pixels; explicit, implicit and RLE) and tests/dicom_factory.py's valid objects. A line with
"Error" fails the test; warnings are printed (``pytest -s``).

Nothing is skipped when dciodvfy is missing: ``make node-tools`` installs dicom3tools.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import dicom_factory as fac  # noqa: E402

IDENTITY = {"model_sha256": "ab" * 32, "model_version": "test", "classifier_sha256": "cd" * 32,
            "classifier_kind": "local", "aggregate": "max", "abstain_threshold": 0.0,
            "classes": ["bright", "normal"], "normal_class": "normal"}


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) of ``dciodvfy path``."""
    tool = shutil.which("dciodvfy")
    assert tool, "dciodvfy not found: `make node-tools` installs it (apt-get install dicom3tools)"
    r = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (r.stdout + r.stderr).splitlines()
    errors = [ln for ln in lines if "Error" in ln]
    warnings = [ln for ln in lines if "Warning" in ln]
    return errors, warnings


def assert_valid(paths: list[Path]) -> None:
    report = {}
    for p in paths:
        errors, warnings = dciodvfy(p)
        if warnings:
            print(f"\n{p.name}: {len(warnings)} warning(s)\n  " + "\n  ".join(warnings))
        if errors:
            report[p.name] = errors
    assert not report, "\n".join(f"{name}:\n  " + "\n  ".join(e) for name, e in report.items())


# -- the node -----------------------------------------------------------------------------
def _node_objects(folder: Path, sources: list[Path], frames: dict[str, int] | None = None
                  ) -> list[Path]:
    """The SR, SCs, Parametric Maps and Segmentations the node writes for ``sources`` (each
    image called ``bright``; a Parametric Map where the source has a frame of reference; one
    per series where the images share a geometry). ``frames``: a multi-frame source → the
    frame classified (0-based)."""
    pytest.importorskip("highdicom")
    from cossl_edge.node import capture
    from cossl_edge.node import overlays as ov
    from cossl_edge.node import structured_report as sr
    from cossl_edge.node.classify import ImageResult, SeriesResult
    from cossl_edge.node.overlay_frames import OverlayFrame

    frames = frames or {}
    headers = {str(h.SOPInstanceUID): h for h in map(sr.read_header_dataset, sources)}
    series_uid = str(next(iter(headers.values())).SeriesInstanceUID)
    per_image = [ImageResult(uid, "bright", 0.8, [0.8, 0.2], heatmap=[[0.1, 0.9]])
                 for uid in headers]
    result = SeriesResult("bright", 0.8, {"bright": 0.8, "normal": 0.2}, "max",
                          per_image[0].sop_uid, len(per_image), 0, 0, per_image)
    folder.mkdir(parents=True, exist_ok=True)
    out, pictures = [], {}
    rng = np.random.default_rng(0)
    for uid, ds in headers.items():
        rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        sc = capture.build_sc(ds, rgb, "bright", 0.8, IDENTITY, series_uid)
        pictures[uid] = sc
        out.append(folder / f"sc-{len(out)}.dcm")
        out[-1].write_bytes(sr.encode(sc))
    found = [OverlayFrame(ds, frames.get(uid), ov.resample(rng.random((4, 4)), int(ds.Rows),
                                                           int(ds.Columns), "pad"),
                          "bright", 0.8) for uid, ds in headers.items()]
    maps = {}
    for built in ov.build_overlays(found, ov.KINDS, IDENTITY, series_uid):
        if isinstance(built.error, ov.OverlayUnavailable):  # no FoR: no Parametric Map
            continue
        assert built.error is None, built.error
        obj = built.dataset
        for f in built.frames:
            maps.setdefault(f.sop_uid, []).append(obj)
        out.append(folder / f"{obj.Modality.lower()}-{len(out)}.dcm")
        out[-1].write_bytes(sr.encode(obj))
    doc = sr.build_sr(headers, result, IDENTITY, series_uid, 0, "COSSL", pictures, maps,
                      frames)
    out.append(folder / "sr.dcm")
    out[-1].write_bytes(sr.encode(doc))
    return out


def test_node_sr_and_sc_from_phantom_ct(tmp_path):
    from node_data import write_blob_series

    files, _ = write_blob_series(tmp_path / "src", ["bright", "normal", "bright"], "dciod")
    assert_valid(_node_objects(tmp_path / "out", files))


def test_node_parametric_map_and_seg(tmp_path):
    """The overlays on sources with a frame of reference (phantom CT: Parametric Map and
    SEG) and without (DX, CR: SEG only), and the SR that references them."""
    from clinical_examples import phantoms as ph

    patient = ph.fake_patient(4, 0)
    ct = [p for p, _ in ph.write_ct_series(tmp_path / "ct", patient,
                                           ["nodule", "no_finding", "nodule"], 0, "pmk")]
    out = _node_objects(tmp_path / "out-ct", ct)
    kinds = [pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID for p in out]
    assert kinds.count("1.2.840.10008.5.1.4.1.1.30") == 1  # one Parametric Map per series
    assert kinds.count("1.2.840.10008.5.1.4.1.1.66.4") == 1  # and one SEG
    for p in out:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if ds.Modality in ("OT", "SEG") and "PerFrameFunctionalGroupsSequence" in ds:
            assert ds.NumberOfFrames == 3  # a frame per image
    assert_valid(out)
    dx = ph.write_radiograph(tmp_path / "dx.dcm", patient, "effusion", 0, "pm-dx", "DX",
                             "MONOCHROME2")
    out = _node_objects(tmp_path / "out-dx", [dx])
    kinds = [pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID for p in out]
    assert "1.2.840.10008.5.1.4.1.1.30" not in kinds  # the PM IOD requires a FoR
    assert kinds.count("1.2.840.10008.5.1.4.1.1.66.4") == 1
    assert_valid(out)


def _multiframe_ct(tmp_path: Path) -> Path:
    """A Legacy Converted Enhanced CT (highdicom) of a phantom CT series: a multi-frame
    source with a frame of reference and a plane position per frame."""
    import highdicom as hd

    from clinical_examples import phantoms as ph

    patient = ph.fake_patient(5, 0)
    slices = [pydicom.dcmread(p) for p, _ in ph.write_ct_series(
        tmp_path / "slices", patient, ["nodule"] * 5, 0, "mf-ct")]
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        slices, pydicom.uid.generate_uid(entropy_srcs=["mf-ct-series"]), 7,
        pydicom.uid.generate_uid(entropy_srcs=["mf-ct"]), 1)
    path = tmp_path / "mf-ct.dcm"
    mf.save_as(path, enforce_file_format=True)
    return path


def test_node_overlays_of_multiframe_sources(tmp_path):
    """A multi-frame source: the overlays hold the frame classified, referencing it by
    Referenced Frame Number (per frame and in the Source Image Sequence), on the source's
    plane position for that frame; the SR names the frame too. With a frame of reference
    (enhanced CT): a Parametric Map and a SEG; without (multi-frame secondary capture): a
    SEG aligned pixel for pixel."""
    from cossl_edge.node.overlay_frames import frame_position

    mf_ct = _multiframe_ct(tmp_path)
    source = pydicom.dcmread(mf_ct, stop_before_pixels=True)
    uid = str(source.SOPInstanceUID)
    out = _node_objects(tmp_path / "out-mf-ct", [mf_ct], {uid: 2})
    objects = [d for d in map(pydicom.dcmread, out)
               if "PerFrameFunctionalGroupsSequence" in d]  # the maps and SEGs
    assert {str(d.SOPClassUID) for d in objects} == {"1.2.840.10008.5.1.4.1.1.30",
                                                    "1.2.840.10008.5.1.4.1.1.66.4"}
    for d in objects:
        assert d.NumberOfFrames == 1 and d.FrameOfReferenceUID == source.FrameOfReferenceUID
        item = d.PerFrameFunctionalGroupsSequence[0]
        ref = item.DerivationImageSequence[0].SourceImageSequence
        assert len(ref) == 1 and ref[0].ReferencedSOPInstanceUID == uid
        assert int(ref[0].ReferencedFrameNumber) == 3
        assert [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient] == \
            frame_position(source, 2)
        assert d.SourceImageSequence[0].ReferencedFrameNumber == 3
    sr_doc = pydicom.dcmread(out[-1])
    text = str(sr_doc)
    assert "Referenced Frame Number" in text
    assert_valid(out)
    mf_sc = fac.multiframe(tmp_path / "mf-sc.dcm", frames=5)
    uid = str(pydicom.dcmread(mf_sc, stop_before_pixels=True).SOPInstanceUID)
    out = _node_objects(tmp_path / "out-mf-sc", [mf_sc], {uid: 2})
    segs = [pydicom.dcmread(p) for p in out
            if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG"]
    assert len(segs) == 1 and "FrameOfReferenceUID" not in segs[0]
    ref = segs[0].PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0] \
        .SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == uid and int(ref.ReferencedFrameNumber) == 3
    assert ref.ReferencedSOPClassUID == fac.MF_GRAY_STORAGE
    assert_valid(out)


def test_node_sr_and_sc_from_sparse_sources(tmp_path):
    """Sources with only the identity a scanner must send (no dates, no physician, no
    study id, no orientation): what the node adds is still complete."""
    files = fac.ct_series(tmp_path / "ct", n=2) + [fac.cr_monochrome1(tmp_path / "cr.dcm")]
    assert_valid(_node_objects(tmp_path / "out-ct", files[:2]))
    assert_valid(_node_objects(tmp_path / "out-cr", files[2:]))


def test_node_sc_adds_no_patient_data(tmp_path):
    """Type 2 patient attributes the source lacked are present and empty in the SC."""
    from cossl_edge.node import structured_report as sr

    src = fac.base_dataset(fac.CT_STORAGE, "CT", "bare", "bare")
    del src.PatientName, src.PatientID, src.PatientBirthDate
    fac.set_pixels(src, np.zeros((8, 8), np.uint16))
    path = fac.write(src, tmp_path / "bare.dcm")
    out = _node_objects(tmp_path / "out", [path])
    for p in out:
        ds = pydicom.dcmread(p)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
            assert keyword in ds and not ds[keyword].value, (p.name, keyword)
    assert sr.read_header_dataset(out[-1]).Modality == "SR"
    assert_valid(out)


# -- phantoms and finding scans --------------------------------------------------------------
def test_phantom_ct_and_radiographs(tmp_path):
    from clinical_examples import phantoms as ph

    patient = ph.fake_patient(3, 0)
    files = [p for p, _ in ph.write_ct_series(tmp_path / "ct", patient,
                                              ["no_finding", "nodule"], 0, "ctk")]
    for modality, photometric in (("CR", "MONOCHROME1"), ("CR", "MONOCHROME2"),
                                  ("DX", "MONOCHROME1"), ("DX", "MONOCHROME2")):
        files.append(ph.write_radiograph(tmp_path / f"{modality}-{photometric}.dcm", patient,
                                         "effusion", 0, f"r-{modality}-{photometric}",
                                         modality, photometric))
    assert_valid(files)


def test_phantom_ct_volume_series(tmp_path):
    """Every slice of two 3D phantom series (clinical_examples/ct_volumes.py), one with a
    nodule; small, so that every file is checked."""
    from clinical_examples import ct_volumes as cv

    rows = cv.write_series_set(tmp_path, 2, seed=0, size=32, length_mm=8.0)
    files = sorted(tmp_path.rglob("*.dcm"))
    assert len(files) == sum(int(r["slices"]) for r in rows)
    assert_valid(files)


def test_finding_scans(tmp_path):
    from clinical_examples import finding_scans as fs

    img, _ = fs.finding_scan(np.random.default_rng(0), grade=2, size=64)
    assert_valid([fs.write_scan(tmp_path / f"scan{i}.dcm", img, i, 0) for i in range(2)])


def test_elpv_dx_writer(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import elpv_data

    rng = np.random.default_rng(0)
    files = []
    for index in range(4):  # explicit, implicit, explicit, RLE
        for window in (True, False):
            path = tmp_path / f"cell{index}-{window}.dcm"
            elpv_data.write_dx(rng.integers(0, 256, (30, 30)).astype(np.uint8), path, index,
                               window)
            files.append(path)
    assert_valid(files)


# -- tests/dicom_factory.py (its valid objects; bad inputs are written elsewhere) -------------
def test_dicom_factory_valid_objects(tmp_path):
    made = fac.mixed_folder(tmp_path)
    made.pop("sr")  # a bare Basic Text SR: an object that is not an image, on purpose
    assert_valid([p for paths in made.values() for p in paths])
