"""Every file pydicom ships for its own tests: each yields an image or a clear skip reason.

Kept fast: a header pass over each file and the decode of at most one frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_files

from cossl_edge.contract import PreprocessContract
from cossl_edge.dicom import DicomSkip
from cossl_edge.sources import discover, load_sample

# The reasons a file may be left out; anything else is a message nobody planned.
KNOWN_REASONS = ("empty file", "not a DICOM file", "corrupt", "not an image",
                 "no image in this object", "DICOMDIR", "truncated", "no pixel data",
                 "declares", "transfer syntax", "pixel data could not be decoded",
                 "invalid image size")


def test_every_bundled_file_gives_images_or_a_reason():
    files = [Path(f) for f in get_testdata_files() if Path(f).is_file()]
    assert len(files) > 100
    contract = PreprocessContract(channels=1, size=16)
    decoded, skipped = 0, {}
    for f in files:
        found = discover(f)
        assert len(found.samples) + len(found.skipped) >= 1 or f.name.startswith("."), f.name
        for s in found.skipped:
            skipped[f.name] = s.reason
        if not found.samples:
            continue
        try:
            img = load_sample(found.samples[0], contract)
        except DicomSkip as e:
            skipped[f.name] = str(e)
            continue
        assert img.dtype == np.float32 and img.ndim in (2, 3), f.name
        assert np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1, f.name
        assert contract.prepare(img).shape == (16, 16, 1)
        decoded += 1
    for name, reason in skipped.items():
        assert "\n" not in reason and reason.startswith(KNOWN_REASONS), (name, reason)
    assert decoded >= 75  # the codecs extra is installed: nearly all images decode
    # the deliberately broken ones are named as such
    assert skipped["rtplan.dcm"] == "not an image (RTPLAN: RT plan)"
    assert skipped["MR_truncated.dcm"].startswith("truncated")
    assert skipped["DICOMDIR"].startswith("DICOMDIR")
    assert skipped["JPEG-lossy.dcm"].startswith("pixel data could not be decoded")
    assert not {"CT_small.dcm", "MR_small_RLE.msb", "SC_rgb_jpeg_gdcm.dcm",
                "emri_small_jpeg_2k_lossless.dcm", "image_dfl.dcm"} & set(skipped)


def test_phi_tags_reads_raw_values_as_the_converted_ones_say():
    """phi_tags looks at raw elements (no conversion); on every bundled file it names the
    same tags as converting each value and keeping the non-empty ones."""
    import warnings

    import pydicom
    import pydicom.data

    from cossl_edge.dicom.header import PHI_KEYWORDS, phi_tags

    root = Path(pydicom.data.__file__).parent / "test_files"
    compared = found = 0
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".py"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                raw = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                converted = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                expected = [k for k in PHI_KEYWORDS if converted.get(k) not in (None, "")]
            except Exception:  # noqa: BLE001 - files that cannot be read are not the point
                continue
        assert phi_tags(raw) == expected, f.name
        compared += 1
        found += bool(expected)
    assert compared > 100 and found > 50
