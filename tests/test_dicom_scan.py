"""`cossl-edge dicom scan`: every file once, no patient data, reasons and PHI tag names."""

from __future__ import annotations

import json

import pydicom
from dicom_factory import FAKE_ID, FAKE_NAME, mixed_folder
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.dicom.inventory import scan


def _folder(tmp_path):
    made = mixed_folder(tmp_path / "data")
    (tmp_path / "data" / "empty.dcm").write_bytes(b"")
    (tmp_path / "data" / "readme.txt").write_text("not an image")
    return tmp_path / "data", made


def test_scan_json_lists_every_file_once_without_patient_data(tmp_path):
    root, made = _folder(tmp_path)
    out = tmp_path / "inventory.json"
    result = CliRunner().invoke(app, ["dicom", "scan", str(root), "--json", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    inv = json.loads(text)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(inv["files"]) == len(files) == 11
    assert len({e["file"] for e in inv["files"]}) == len(files)
    for secret in (FAKE_NAME, FAKE_ID, str(root), "slice001"):
        assert secret not in text and secret not in result.output
    s = inv["summary"]
    assert (s["images"], s["frames"], s["skipped"], s["not_dicom"]) == (8, 11, 2, 1)
    assert s["skip_reasons"] == {"not an image (SR: structured report)": 1,
                                 "empty file (0 bytes)": 1}
    assert s["phi_tags_present"]["PatientName"] == 9  # 8 images + the SR
    assert {r["modality"] for r in inv["series"]} == {"CT", "MR", "CR", "OT", "US"}
    ct = [r for r in inv["series"] if r["files"] == 3][0]
    assert ct["modality"] == "CT" and ct["sizes"] == ["16x16"]
    assert "PatientName" in result.output and "Zyx" not in result.output


def test_scan_reports_missing_codec(tmp_path, monkeypatch):
    root, made = _folder(tmp_path)
    decoder_type = type(pydicom.pixels.get_decoder(pydicom.uid.RLELossless))
    monkeypatch.setattr(decoder_type, "is_available",
                        property(lambda self: self.UID != pydicom.uid.RLELossless))
    inv = scan(root)
    bad = [e for e in inv["files"] if e.get("decodable") is False]
    assert len(bad) == 1 and bad[0]["transfer_syntax"] == "RLE Lossless"
    assert "cossl-edge[codecs]" in bad[0]["why"]


def test_scan_decode_option_and_paths(tmp_path):
    root, made = _folder(tmp_path)
    rle = made["rle"][0]
    ds = pydicom.dcmread(rle)
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff" * 256])  # a damaged RLE stream
    ds.save_as(rle)
    quick = {e["file"]: e for e in scan(root)["files"]}
    inv = scan(root, decode=True, with_paths=True)
    by_path = {e["path"]: e for e in inv["files"]}
    damaged = by_path["rle.dcm"]
    assert quick[damaged["file"]]["decodable"] is True  # the header alone looks fine
    assert damaged["decodable"] is False
    assert damaged["why"].startswith("pixel data could not be decoded")
    assert by_path["readme.txt"]["status"] == "not-dicom"
    assert inv["summary"]["decodable"] == 7


def test_scan_of_missing_folder_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["dicom", "scan", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "not a folder" in result.output
