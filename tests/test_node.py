"""The DICOM node (``cossl-edge serve``) against real components on loopback: dcmtk's
storescu/echoscu as the scanner, Orthanc as the PACS that receives the SRs (read back through
its REST API): rules, the end-to-end path, heatmap Secondary Captures, concurrency. The faults
(refused input, kill -9, an unreachable PACS, bounds) are in test_node_faults.py; the shared
fixtures (``classifier``, ``pacs``, ``node_factory``) in conftest.py. Each wait is bounded;
nothing is skipped when a tool is missing (``make test`` installs orthanc and dcmtk)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import node_support as ns
import numpy as np
import overlay_reading
import pydicom
import pytest
from dicom_factory import FAKE_ID, FAKE_NAME
from node_support import sr_for, uids

from cossl_edge.node.rules import Rules, RulesError

pytestmark = pytest.mark.slow


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_classifier(tmp_path_factory) -> Path:
    return ns.make_local_classifier(tmp_path_factory.mktemp("node-local-model"))


def expected_series_finding(classifier: Path, files: list[Path]) -> tuple[str, float]:
    """What `fewshot predict` gives for these files, combined the node's way (max: the image
    with the lowest no_finding probability)."""
    from cossl_edge.fewshot import FewShotClassifier
    from cossl_edge.runtime.encoder import Encoder

    clf = FewShotClassifier.load(classifier)
    emb = Encoder(clf.model_path).embed([str(f) for f in files])
    proba = clf.predict_proba(emb.vectors)
    row = proba[int(np.argmin(proba[:, clf.classes.index("no_finding")]))]
    return clf.classes[int(np.argmax(row))], float(row.max())


# -- rules (no network) -------------------------------------------------------------------------
def test_rules_exact_regex_and_image_type():
    rules = Rules.from_dict({"rules": [
        {"name": "chest-ct", "conditions": {"Modality": "CT",
                                             "BodyPartExamined": {"regex": "(?i)chest|thorax"},
                                             "ImageType": ["ORIGINAL", "PRIMARY"]}},
        {"name": "xr", "conditions": {"Modality": {"regex": "CR|DX"}}}]})
    ct = {"Modality": "CT", "BodyPartExamined": "Chest", "ImageType": "ORIGINAL\\PRIMARY\\AXIAL"}
    assert rules.select(ct) == "chest-ct"
    assert rules.select({**ct, "ImageType": "DERIVED\\SECONDARY"}) is None
    assert rules.select({**ct, "BodyPartExamined": "HEAD"}) is None
    assert rules.select({"Modality": "DX"}) == "xr"
    assert rules.select({"Modality": "MR"}) is None
    assert Rules([]).select({"Modality": "MR"}) == "all"
    for bad in ({"rules": [{"conditions": {"PatientName": "x"}}]}, {"rules": "x"},
                {"rules": [{"conditions": {"Modality": {"regex": "("}}}]}):
        with pytest.raises(RulesError):
            Rules.from_dict(bad)


def test_heatmap_choice_and_orientation():
    from pydicom.dataset import Dataset

    from cossl_edge.node.capture import choose, patient_orientation
    from cossl_edge.node.classify import ImageResult

    heat = [[0.0]]
    images = [ImageResult("a", "normal", 0.9, [0.1, 0.9], heatmap=heat),
              ImageResult("b", "bright", 0.7, [0.7, 0.3], heatmap=heat),
              ImageResult("c", "bright", 0.9, [0.9, 0.1], heatmap=heat),
              ImageResult("d", "unknown", 0.5, [0.5, 0.5], heatmap=heat),
              ImageResult("e", None, reason="unreadable"),
              ImageResult("f", "bright", 0.8, [0.8, 0.2], heatmap=heat)]
    chosen = choose(images, "normal", ["bright", "normal"], 2)
    assert [(r.sop_uid, round(p, 3)) for r, p in chosen] == [("c", 0.9), ("f", 0.8)]
    assert choose(images, "normal", ["bright", "normal"], 0) == []
    ds = Dataset()
    assert patient_orientation(ds) is None
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal: rows to P, columns to F
    assert patient_orientation(ds) == ("P", "F")
    ds.PatientOrientation = ["A", "FR"]
    assert patient_orientation(ds) == ("A", "F")


# -- end to end -----------------------------------------------------------------------------
def test_storescu_to_node_to_sr_in_orthanc(tmp_path, classifier, pacs, node_factory):
    files = ns.write_series(tmp_path / "scan", 12, "e2e", finding_every=4)
    node = node_factory().start()
    assert ns.echo(node.port)
    t0 = time.monotonic()
    r = ns.storescu(node.port, files)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ok, bad = ns.acknowledged(r.stdout + r.stderr)
    assert len(ok) == 12 and not bad
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    sr = sr_for(pacs, series_uid)
    delay = time.monotonic() - t0
    assert sorted(ns.referenced_instances(sr)) == sorted(uids(files))
    assert sr.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    items = ns.content_text(sr)
    label, prob = expected_series_finding(classifier, files)
    findings = [v for k, v in items if k == "Finding"]
    assert findings[0] == label  # the series group comes first
    series_prob = float([v for k, v in items if k == "Probability"][0])
    assert series_prob == pytest.approx(prob, abs=1e-4)
    sha = json.loads(classifier.read_text())["model_sha256"]
    assert ("Algorithm Parameters", f"model_sha256={sha}") in items
    assert ("Images classified", "12.0") in items and ("Images abstained", "0.0") in items
    # the state: every instance classified once, the series sent
    with node.db() as db:
        rows = db.execute("SELECT state, classify_count FROM instances").fetchall()
        assert [tuple(r) for r in rows] == [("classified", 1)] * 12
        assert db.execute("SELECT state FROM series").fetchone()[0] == "sent"
    # the log: salted ids, no patient data, no UIDs
    log = (node.state_dir / "node.jsonl").read_text()
    for secret in (FAKE_NAME, FAKE_ID, "Quokkason", series_uid, *uids(files)[:3]):
        assert secret not in log
    assert delay < 20


def test_local_classifier_heatmaps_as_secondary_captures(tmp_path, local_classifier, pacs):
    """Kind ``local``: the images called a finding, the 4 most likely, as heatmap Secondary
    Captures in a new series of the study, queued with the SR: the PACS unreachable at
    first, the node killed (-9) with them unsent, restarted; then the SCs and the SR arrive
    in Orthanc, the SR pointing at the SCs, each SC at its source image and red over it
    where the heatmap is high."""
    from cossl_edge.dicom.pixels import read_frame
    from cossl_edge.fewshot import FewShotClassifier
    from cossl_edge.fewshot.local import finding_probability
    from cossl_edge.node.capture import SECONDARY_CAPTURE, display
    from cossl_edge.runtime.heatmaps import overlay

    kinds = ["normal", "bright"] * 3 + ["bright"] * 4
    files, centres = ns.write_blob_series(tmp_path / "scan", kinds, "heat", patient=71)
    source = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): (f, c, k)
              for f, c, k in zip(files, centres, kinds, strict=True)}
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    node = ns.NodeProcess(local_classifier, tmp_path / "node",
                          forward=f"{ns.PACS_AE}@127.0.0.1:{ns.free_port()}",  # nobody there
                          extra=["--eostudy-timeout", "0.5", "--heatmap-count", "4",
                                 "--send", "sc"])  # SR and SCs: the behaviour before maps
    try:
        node.start()
        assert ns.storescu(node.port, files).returncode == 0
        ns.wait_until(lambda: any(e["event"] == "send_failed" for e in node.events()), 30,
                      "a failed attempt")
        node.kill9()
        with node.db() as db:
            row = db.execute("SELECT state, sc_paths FROM series").fetchone()
            assert row[0] == "reported" and len(json.loads(row[1])) == 4
            rows = db.execute("SELECT sop_uid, label, proba, heat FROM instances").fetchall()
        node.forward = f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}"
        node.start()
        sr = sr_for(pacs, str(first.SeriesInstanceUID))
        scs = pacs.datasets(lambda t: t.get("SOPClassUID") == SECONDARY_CAPTURE
                            and t.get("StudyInstanceUID") == first.StudyInstanceUID)
        sent = ns.wait_until(lambda: [e for e in node.events() if e["event"] == "sent"], 10,
                             "the sent event")
        assert len(sent) == 1
    finally:
        node.stop()
    clf = FewShotClassifier.load(local_classifier)
    normal = clf.classes.index("normal")
    p_finding = {r[0]: 1 - json.loads(r[2])[normal] for r in rows if r[1] == "bright"}
    top4 = sorted(p_finding, key=p_finding.get, reverse=True)[:4]
    assert len(p_finding) >= 5  # more images called a finding than pictures: the cap holds
    heat = {r[0]: np.asarray(json.loads(r[3])) for r in rows}
    # four SCs, one new series of the source study, each pointing at one of the top 4
    assert len(scs) == 4
    assert len({sc.SeriesInstanceUID for sc in scs}) == 1
    assert scs[0].SeriesInstanceUID != first.SeriesInstanceUID
    refs = [str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID) for sc in scs]
    assert sorted(refs) == sorted(top4)
    for sc, ref in zip(scs, refs, strict=True):
        assert sc.SOPClassUID == SECONDARY_CAPTURE and sc.Modality == "OT"
        assert str(sc.ReferencedImageSequence[0].ReferencedSOPInstanceUID) == ref
        assert sc.SourceImageSequence[0].ReferencedSOPClassUID == first.SOPClassUID
        assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == \
            ("RGB", 3, 8)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                        "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime",
                        "AccessionNumber", "ReferringPhysicianName"):
            assert str(sc.get(keyword) or "") == str(first.get(keyword) or ""), keyword
        path, centre, kind = source[ref]
        assert kind == "bright"
        rgb = sc.pixel_array
        # exactly the overlay of the heatmap that made the call
        expected = overlay(display(read_frame(path), 32, "resize"),
                           finding_probability(clf.params["calibration"], heat[ref]))
        assert np.array_equal(rgb, expected)
        # and red where the finding is: around the bright disk, grey elsewhere
        red = rgb[..., 0].astype(float) - rgb[..., 1]
        yy, xx = np.mgrid[:rgb.shape[0], :rgb.shape[1]]
        near = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 10 ** 2
        assert red[near].max() > 120 and red[near].mean() > red[~near].mean() + 30
    # the SR: every source instance and the SCs in its evidence; each SC is the
    # "Illustration of ROI" of its image's group
    sc_uids = {str(sc.SOPInstanceUID) for sc in scs}
    assert sorted(ns.referenced_instances(sr)) == sorted([*source, *sc_uids])
    assert set(ns.illustrations(sr)) == sc_uids
    # the log: no patient data, no UIDs; the report counts its pictures
    log = (node.state_dir / "node.jsonl").read_text()
    for secret in (str(first.PatientName), str(first.PatientID), *source, *sc_uids):
        assert secret not in log
    report = [e for e in node.events() if e["event"] == "report"]
    assert len(report) == 1 and report[0]["heatmaps"] == 4
    print(f"report with 4 heatmap SCs: {report[0]['s']:.3f} s")
    # a hang guard only: the 2 s target is measured by benchmarks/node_throughput.py (a
    # timed unit test fails on a loaded machine: 2.1 s once, beside five training runs)
    assert report[0]["s"] < 30


def test_not_selected_series_is_stored_not_classified(tmp_path, pacs, node_factory):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"name": "mr", "conditions": {"Modality": "MR"}}]}))
    files = ns.write_series(tmp_path / "scan", 3, "unselected")
    node = node_factory(extra=["--rules", str(rules)]).start()
    r = ns.storescu(node.port, files)
    assert r.returncode == 0
    ns.wait_until(lambda: any(e["event"] == "series_not_selected" for e in node.events()), 20,
                  "the series to be reported as not selected")
    with node.db() as db:
        assert db.execute("SELECT state FROM series").fetchone()[0] == "not_selected"
        assert {r[0] for r in db.execute("SELECT state FROM instances")} == {"not_selected"}
    assert len(list((node.state_dir / "spool").glob("*/*.dcm"))) == 3


def test_four_concurrent_associations(tmp_path, pacs, node_factory):
    per = 100
    series = [ns.write_series(tmp_path / f"s{k}", per, f"conc-{k}", patient=10 + k)
              for k in range(4)]
    node = node_factory().start()
    t0 = time.monotonic()
    procs = [ns.storescu(node.port, files, background=True) for files in series]
    outs = [p.communicate(timeout=150)[0] for p in procs]
    received_s = time.monotonic() - t0
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-2000:]
        assert len(ns.acknowledged(out)[0]) == per
    for files in series:
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        sr = sr_for(pacs, uid, timeout=60)
        assert sorted(ns.referenced_instances(sr)) == sorted(uids(files))
    with node.db() as db:
        assert tuple(db.execute("SELECT COUNT(*), MAX(classify_count) FROM instances"
                                " WHERE state='classified'").fetchone()) == (4 * per, 1)
    print(f"4 associations × {per}: received in {received_s:.1f} s "
          f"({4 * per / received_s:.0f} instances/s)")


def test_local_classifier_parametric_map_and_seg(tmp_path, local_classifier, pacs):
    """The default --send: for the series, a Parametric Map of P(finding) and a BINARY SEG
    with a frame per image called a finding, each in its own new series of the study on the
    source's geometry (each frame referencing its image, at its position), and the SR
    referencing them; read back from Orthanc with highdicom. Each frame's maximum lies on
    its image's bright disk; the SEG covers it."""
    import highdicom as hd

    from cossl_edge.node.overlays import PARAMETRIC_MAP, SEGMENTATION, THRESHOLD

    kinds = ["bright", "normal", "bright", "bright"]
    files, centres = ns.write_blob_series(tmp_path / "scan", kinds, "pmap", patient=72,
                                          geometry=True)
    source = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): (f, c)
              for f, c in zip(files, centres, strict=True)}
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    node = ns.NodeProcess(local_classifier, tmp_path / "node",
                          forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}",
                          extra=["--eostudy-timeout", "0.5"])
    try:
        node.start()
        assert ns.storescu(node.port, files).returncode == 0
        sr = sr_for(pacs, str(first.SeriesInstanceUID))
        ns.wait_until(lambda: any(e["event"] == "sent" for e in node.events()), 20, "sent")
    finally:
        node.stop()
    with node.db() as db:
        called = {r[0] for r in db.execute("SELECT sop_uid FROM instances WHERE label=?",
                                           ("bright",))}
    assert len(called) >= 2

    def of_study(sop_class):
        return pacs.datasets(lambda t: t.get("SOPClassUID") == sop_class
                             and t.get("StudyInstanceUID") == first.StudyInstanceUID)

    pmaps, segs = of_study(PARAMETRIC_MAP), of_study(SEGMENTATION)
    assert len(pmaps) == len(segs) == 1  # one of each for the series: a frame per image
    # what the benchmark counts: the study's frames by class, from Orthanc's index
    frames = pacs.sop_classes(str(first.StudyInstanceUID), frames=True)
    assert (frames[str(first.SOPClassUID)], frames[PARAMETRIC_MAP], frames[SEGMENTATION],
            frames["1.2.840.10008.5.1.4.1.1.88.33"]) == (0, len(called), len(called), 1)
    for obj in pmaps + segs:
        assert obj.SeriesInstanceUID != first.SeriesInstanceUID
        assert obj.StudyInstanceUID == first.StudyInstanceUID
        assert obj.FrameOfReferenceUID == first.FrameOfReferenceUID
        refs = overlay_reading.frame_sources(obj)
        assert sorted(refs) == sorted(called)
        for item, ref in zip(obj.PerFrameFunctionalGroupsSequence, refs, strict=True):
            src = pydicom.dcmread(source[ref][0], stop_before_pixels=True)
            assert item.PlanePositionSequence[0].ImagePositionPatient == \
                src.ImagePositionPatient
    pm = hd.pm.ParametricMap.from_dataset(pmaps[0])
    measures = pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.7, 0.7]
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    values = pm.pixel_array.astype(float).reshape(len(called), first.Rows, first.Columns)
    assert 0.0 <= values.min() and values.max() <= 1.0
    for frame, ref in zip(values, overlay_reading.frame_sources(pm), strict=True):
        overlay_reading.assert_map_on_disk(frame, source[ref][1])
    seg = hd.seg.Segmentation.from_dataset(segs[0])
    assert seg.SegmentationType == "BINARY"
    assert seg.SegmentSequence[0].SegmentLabel.endswith(f"P>{THRESHOLD:g}")
    for ref in called:  # highdicom finds each image's frame by its source reference
        mask = seg.get_pixels_by_source_instance([ref], segment_numbers=[1])[0, ..., 0]
        centre = source[ref][1]
        # the thresholded coarse map: on the disk's neighbourhood far more than elsewhere
        yy, xx = np.mgrid[:first.Rows, :first.Columns]
        near = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 12 ** 2
        assert mask[near].any() and 0 < mask.mean() < 0.5
        assert mask[near].mean() > 2 * mask[~near].mean()
    # the SR: per image, its frame of the SEG as the region of its TID 1410 group, the map
    # an illustration (with its frame); both in the evidence
    evidence = set(ns.referenced_instances(sr))
    assert {str(o.SOPInstanceUID) for o in pmaps + segs} <= evidence
    assert set(ns.illustrations(sr)) >= {str(pmaps[0].SOPInstanceUID)}
    regions = overlay_reading.segmentation_frames(sr)
    assert sorted(regions) == sorted(called)
    for ref, (seg_uid, number) in regions.items():
        assert seg_uid == segs[0].SOPInstanceUID
        assert overlay_reading.frame_sources(segs[0])[number - 1] == ref
    report = [e for e in node.events() if e["event"] == "report"]
    assert report[0]["pmaps"] == report[0]["segs"] == 1


def test_send_choices(tmp_path, local_classifier, pacs):
    """--send sr,pmap: the map and no SEG, no SC; a bad list stops serve with one line."""
    from cossl_edge.node.config import parse_send
    from cossl_edge.node.overlays import PARAMETRIC_MAP, SEGMENTATION

    assert parse_send("sc") == ("sr", "sc")  # the SR always: `sc` is the SR and pictures
    assert parse_send("SEG, sr") == ("sr", "seg")
    with pytest.raises(ValueError):
        parse_send("sr,png")
    files, _ = ns.write_blob_series(tmp_path / "scan", ["bright", "bright"], "choice",
                                    patient=73, geometry=True)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    node = ns.NodeProcess(local_classifier, tmp_path / "node",
                          forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}",
                          extra=["--eostudy-timeout", "0.5", "--send", "sr,pmap"])
    try:
        node.start()
        assert ns.storescu(node.port, files).returncode == 0
        sr_for(pacs, str(first.SeriesInstanceUID))
    finally:
        node.stop()
    classes = [pacs.get(f"/instances/{i}/simplified-tags").get("SOPClassUID")
               for i in pacs.instances()]
    study = [c for c, i in zip(classes, pacs.instances(), strict=True)
             if pacs.get(f"/instances/{i}/simplified-tags").get("StudyInstanceUID")
             == first.StudyInstanceUID]
    assert study.count(PARAMETRIC_MAP) >= 1
    assert SEGMENTATION not in study and "1.2.840.10008.5.1.4.1.1.7" not in study
