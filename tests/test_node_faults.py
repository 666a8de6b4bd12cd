"""Faults at the DICOM node (``cossl-edge serve``), against real components on loopback
(dcmtk's storescu/echoscu, Orthanc as the PACS): a foreign AE title, unsupported and malformed
instances, kill -9 mid-transfer, an unreachable PACS, the size bounds, spool retention. The
shared fixtures (``classifier``, ``pacs``, ``node_factory``) are in conftest.py. Each wait is
bounded; nothing is skipped when a tool is missing (``make test`` installs orthanc and
dcmtk)."""

from __future__ import annotations

import json
from pathlib import Path

import node_support as ns
import pydicom
import pytest
from dicom_factory import FAKE_NAME
from node_support import sr_for, uids

pytestmark = pytest.mark.slow


def test_foreign_ae_unsupported_and_malformed(tmp_path, node_factory):
    from dicom_factory import ct_series, sr_document

    node = node_factory(extra=["--allow", ns.SCANNER_AE], forward=False).start()
    good = ct_series(tmp_path / "ct", n=2, series="faults")
    # a calling AE title outside the allow-list: the association is rejected
    assert not ns.echo(node.port, calling="INTRUDER")
    r = ns.storescu(node.port, good[:1], calling="INTRUDER")
    assert r.returncode != 0 and not ns.acknowledged(r.stdout + r.stderr)[0]
    assert ns.echo(node.port)
    # an SR is not an image: Refused, SOP class not supported (0x0122), quarantined
    sr_file = sr_document(tmp_path / "doc.dcm")
    # truncated pixel data, and an image without a series: 0xA900, quarantined
    trunc = pydicom.dcmread(good[0])
    trunc.SOPInstanceUID = trunc.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.1"
    trunc.PixelData = trunc.PixelData[:40]
    trunc.save_as(tmp_path / "trunc.dcm", enforce_file_format=True)
    noseries = pydicom.dcmread(good[1])
    noseries.SOPInstanceUID = noseries.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.2"
    del noseries.SeriesInstanceUID
    noseries.save_as(tmp_path / "noseries.dcm", enforce_file_format=True)
    r = ns.storescu(node.port, [sr_file, tmp_path / "trunc.dcm", tmp_path / "noseries.dcm",
                                *good])
    out = r.stdout + r.stderr
    ok, bad = ns.acknowledged(out)
    assert sorted(map(Path, ok)) == sorted(good) and len(bad) == 3, out[-3000:]
    assert "Store Response (Refused: SOPClassNotSupported)" in out
    assert out.count("Store Response (Error: DataSetDoesNotMatchSOPClass)") == 2
    reasons = [json.loads(p.read_text()) for p in (node.state_dir / "quarantine").glob("*.json")]
    assert len(reasons) == 3
    text = " ".join(r["reason"] for r in reasons)
    assert "SOP class not supported" in text and "no Study or Series" in text
    assert any("pixel" in r["reason"] or "truncated" in r["reason"] for r in reasons), text
    events = node.events()
    assert sum(e["event"] == "refused" for e in events) == 3
    assert any(e["event"] == "association_rejected" and e["calling_ae"] == "INTRUDER"
               for e in events)
    assert FAKE_NAME not in json.dumps(reasons) + json.dumps(events)


def test_kill9_during_transfer_then_restart(tmp_path, pacs, node_factory):
    files = ns.write_series(tmp_path / "scan", 200, "kill9", patient=30)
    node = node_factory(extra=["--eostudy-timeout", "2"])
    node.start()
    sender = ns.storescu(node.port, files, background=True)

    def stored() -> int:
        with node.db() as db:
            return db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]

    ns.wait_until(lambda: stored() >= 60, 60, "60 instances received")
    node.kill9()
    out = sender.communicate(timeout=60)[0]
    acked, _ = ns.acknowledged(out)
    assert 55 <= len(acked) < 200, out[-1500:]  # the 60th may be stored, not yet answered
    node.start()  # same state folder: resumes
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    sr = sr_for(pacs, series_uid, timeout=60)
    referenced = ns.referenced_instances(sr)
    assert len(referenced) == len(set(referenced))
    assert set(uids([Path(a) for a in acked])) <= set(referenced)  # none acknowledged is lost
    with node.db() as db:
        rows = db.execute("SELECT sop_uid, state, classify_count FROM instances").fetchall()
        assert {r[0] for r in rows} == set(referenced)
        assert {(r[1], r[2]) for r in rows} == {("classified", 1)}
        assert db.execute("SELECT state FROM series").fetchone()[0] == "sent"
    classified = [e["instance"] for e in node.events() if e["event"] == "image"]
    assert len(classified) == len(set(classified)) == len(referenced)  # exactly once
    assert not list((node.state_dir / "spool" / ".tmp").iterdir())


def test_forwarding_retries_and_survives_restart(tmp_path, classifier):
    """The PACS is down: the node backs off and retries; killed (-9) with the SR unsent and
    restarted, it sends it once the PACS is up."""
    pacs = ns.Orthanc(tmp_path / "late-pacs")  # ports chosen, not started yet
    files = ns.write_series(tmp_path / "scan", 4, "retry", patient=40)
    node = ns.NodeProcess(classifier, tmp_path / "node",
                          forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}",
                          extra=["--eostudy-timeout", "0.5"])
    try:
        node.start()
        assert ns.storescu(node.port, files).returncode == 0
        ns.wait_until(lambda: sum(e["event"] == "send_failed" for e in node.events()) >= 2, 30,
                      "two failed attempts")
        node.kill9()
        with node.db() as db:
            assert db.execute("SELECT state FROM series").fetchone()[0] == "reported"
        pacs.start()
        node.start()
        series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        sr = sr_for(pacs, series_uid)
        assert sorted(ns.referenced_instances(sr)) == sorted(uids(files))
        waits = [e["retry_in_s"] for e in node.events() if e["event"] == "send_failed"]
        assert waits[:2] == [0.2, 0.4]  # --retry-base 0.2, doubling
        sent = ns.wait_until(lambda: [e for e in node.events() if e["event"] == "sent"], 10,
                             "the sent event")
        assert len(sent) == 1
    finally:
        node.stop()
        pacs.stop()


def test_refusals_in_process(tmp_path, classifier):
    """What storescu cannot send (a stream that does not parse) and the size bounds, through
    the node's own C-STORE path."""
    from dicom_factory import CT_STORAGE, ct_series

    from cossl_edge.node.config import NodeConfig
    from cossl_edge.node.server import (
        CANNOT_UNDERSTAND,
        DOES_NOT_MATCH_SOP_CLASS,
        OUT_OF_RESOURCES,
        Node,
        Refused,
    )

    node = Node(NodeConfig(tmp_path / "state", max_instance_bytes=4000,
                           max_spool_bytes=3000), classifier)
    good = ct_series(tmp_path / "ct", n=1, series="inproc")[0]
    uid = str(pydicom.dcmread(good).SOPInstanceUID)
    garbage = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x07" * 500
    cases = [(garbage, CANNOT_UNDERSTAND), (good.read_bytes(), DOES_NOT_MATCH_SOP_CLASS),
             (b"x" * 5000, OUT_OF_RESOURCES)]
    node.cfg.max_spool_bytes = 10**6
    for data, status in cases:
        with pytest.raises(Refused) as e:
            node.scp.store(data, CT_STORAGE, "1.2.3" if status != DOES_NOT_MATCH_SOP_CLASS
                        else uid + "9", "X", {})
        assert e.value.status == status, e.value.reason
    node.cfg.max_spool_bytes = 100  # the spool is full
    with pytest.raises(Refused) as e:
        node.scp.store(good.read_bytes(), CT_STORAGE, uid, "X", {})
    assert e.value.status == OUT_OF_RESOURCES and "spool full" in e.value.reason
    node.cfg.max_spool_bytes = 10**6
    assert node.scp.store(good.read_bytes(), CT_STORAGE, uid, "X", {}) == "stored"
    assert node.scp.store(good.read_bytes(), CT_STORAGE, uid, "X", {}) == "duplicate"
    assert node.spool.used_bytes == good.stat().st_size
    node.state.close()


def test_spool_retention_and_a_late_instance(tmp_path, node_factory):
    """Finished series leave the spool after --retain-hours (their state stays); an instance
    arriving later reopens the series, whose new SR covers what is still on disk."""
    files = ns.write_series(tmp_path / "scan", 4, "retain", patient=60)
    node = node_factory(extra=["--retain-hours", "0", "--eostudy-timeout", "0.5"], forward=False)
    node.start()
    assert ns.storescu(node.port, files[:3]).returncode == 0
    ns.wait_until(lambda: any(e["event"] == "spool_freed" for e in node.events()), 30,
                  "the spool to be freed")
    assert not list((node.state_dir / "spool").glob("*/*.dcm"))
    assert ns.storescu(node.port, files[3:]).returncode == 0
    report = ns.wait_until(lambda: [e for e in node.events()
                                    if e["event"] == "report" and e["revision"] == 1], 30,
                           "the second report")[0]
    assert report["files_gone"] == 3 and report["images"] == 4
    with node.db() as db:
        assert db.execute("SELECT COUNT(*), MAX(classify_count) FROM instances"
                          " WHERE state='classified'").fetchone()[:] == (4, 1)
