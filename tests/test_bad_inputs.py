"""Bad data files and folders through the CLI: each gives one clear line naming the file and
the fix, and an exit code (2) — or, inside a folder, a skip that is counted and reported
while the rest goes on. No case may print a patient's name or id, or allocate what a header
merely declares (the check is ``bad_inputs_support.check_bad_input``). Bad models,
classifiers, checkpoints and run files are in test_bad_inputs_models.py.

Files inside a folder are named in messages by their token (``file-…``); a path the user
typed on the command line is echoed back as typed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad_inputs_support import PATIENT_FILE, Case, _embed, _pngs, _pretrain, check_bad_input
from dicom_factory import MR_STORAGE, base_dataset, mr_image, write
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless


# -- inputs ----------------------------------------------------------------------------------
def _with(tmp: Path, write_bad: Callable[[Path], object]) -> Path:
    folder = _pngs(tmp / "data")
    write_bad(folder)
    return folder


def _truncated_dicom(folder: Path) -> None:
    path = mr_image(folder / PATIENT_FILE, 32, 32)
    path.write_bytes(path.read_bytes()[:-1000])


def _dicom_without_pixels(folder: Path) -> None:
    ds = base_dataset(MR_STORAGE, "MR", "nopix")
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 1, "MONOCHROME2"
    write(ds, folder / PATIENT_FILE)


def _dicom_huge_declared(folder: Path) -> None:
    path = mr_image(folder / PATIENT_FILE, 16, 16)
    raw = path.read_bytes()
    # Rows and Columns (US, explicit VR LE): tag bytes, "US", length 2, value 16 → 60000
    for tag in (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00"):
        at = raw.index(tag + b"US\x02\x00")
        raw = raw[:at + 8] + (60000).to_bytes(2, "little") + raw[at + 10:]
    path.write_bytes(raw)


def _dicom_jpeg_ls(folder: Path) -> None:
    ds = base_dataset(MR_STORAGE, "MR", "jls")
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(200) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    write(ds, folder / PATIENT_FILE)


def _float_tiff(value: float) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        a = np.full((16, 16), 0.5, np.float32)
        a[3, 4] = value
        Image.fromarray(a, mode="F").save(folder / "float.tif")
    return make


def _png16(folder: Path) -> None:
    a = (np.arange(256).reshape(16, 16) * 250).astype(np.uint16)
    Image.fromarray(a).save(folder / "deep.png")
    with Image.open(folder / "deep.png") as im:
        assert im.mode.startswith("I")  # really 16-bit on disk


def _symlink_out(tmp: Path, models: dict[str, Path]) -> list[str]:
    outside = _pngs(tmp / "outside", 1) / "ok0.png"
    folder = _pngs(tmp / "data")
    (folder / "link.png").symlink_to(outside)
    return _embed(tmp, models, folder)


CASES: dict[str, Case] = {
    "missing folder": Case(lambda t, m: _embed(t, m, t / "absent"), 2,
                           ("absent: no such file or folder", "check the path")),
    "missing folder (pretrain)": Case(lambda t, m: _pretrain(t, t / "absent"), 2,
                                      ("absent: no such file or folder",)),
    "empty folder": Case(lambda t, m: _pretrain(t, (t / "empty").mkdir() or t / "empty"), 2,
                         ("no images found (0 files skipped)", "point to a folder of")),
    "folder of non-images": Case(
        lambda t, m: _pretrain(t, _notes(t / "notes")), 2,
        ("no images found (2 files skipped)", "PNG/JPEG/TIFF, DICOM or video")),
    "zero-byte file": Case(lambda t, m: _embed(t, m, _with(t, lambda f: (f / "z.png")
                                                               .write_bytes(b""))),
                           0, ("empty file (0 bytes)",), skipped=1),
    "zero-byte DICOM": Case(lambda t, m: _embed(t, m, _with(t, lambda f: (f / PATIENT_FILE)
                                                                .write_bytes(b""))),
                            0, ("empty file (0 bytes)",), skipped=1),
    "truncated DICOM": Case(lambda t, m: _embed(t, m, _with(t, _truncated_dicom)), 0,
                            ("truncated: declares 2048 bytes of pixel data",), skipped=1),
    "DICOM without pixel data": Case(lambda t, m: _embed(t, m, _with(t, _dicom_without_pixels)),
                                     0, ("no pixel data in the file",), skipped=1),
    "transfer syntax without codecs": Case(
        lambda t, m: _embed(t, m, _with(t, _dicom_jpeg_ls)), 0,
        ("'JPEG-LS Lossless Image Compression' needs a decoder that is not installed",
         "pip install 'cossl-edge[codecs]'"), skipped=1, no_codecs=True),
    "Rows/Columns far beyond the data": Case(
        lambda t, m: _embed(t, m, _with(t, _dicom_huge_declared)), 0,
        ("declares 60000×60000×1 pixels per frame, beyond any real image",), skipped=1),
    "NaN in a float TIFF": Case(lambda t, m: _embed(t, m, _with(t, _float_tiff(np.nan))), 0,
                                ("NaN or infinite values", "clean the file"), skipped=1),
    "inf in a float TIFF": Case(lambda t, m: _embed(t, m, _with(t, _float_tiff(np.inf))), 0,
                                ("NaN or infinite values",), skipped=1),
    "16-bit PNG (accepted)": Case(lambda t, m: _embed(t, m, _with(t, _png16)), 0,
                                  ("embedded 3 samples",), skipped=0),
    "symlink out of the folder": Case(_symlink_out, 0, ("links outside the folder",),
                                      skipped=1),
}


def _notes(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "table.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, bad_input_models, tmp_path):
    check_bad_input(CASES[name], bad_input_models, tmp_path)
