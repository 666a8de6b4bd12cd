"""Fuzzing the DICOM reader: mutated bytes of generated files through discover + load_sample.

Whatever the bytes, the reader either gives a finite [0, 1] image or a documented error
(:class:`DicomSkip`, :class:`SourceError`, both ``ValueError``s with a reason) — never another
exception — and never allocates more than a small bound, whatever the header declares.
"""

from __future__ import annotations

import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import FAKE_ID, FAKE_NAME, ct_series, mr_image, multiframe, rle_ct, us_rgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cossl_edge.dicom import DicomSkip
from cossl_edge.sources import SourceError, discover, load_sample

DOCUMENTED = (DicomSkip, SourceError)
MAX_PEAK_BYTES = 32 << 20  # the seed files decode to a few KiB
HEADER_END = 600  # seeds' headers end about here: half the mutations land in them

OPS = ("flip", "set", "insert", "delete", "cut")
mutation = st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16), st.booleans(),
                     st.binary(min_size=1, max_size=8))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    d = tmp_path_factory.mktemp("seeds")
    files = [mr_image(d / "mr.dcm", 16, 16, window=True), ct_series(d / "ct", n=1)[0],
             multiframe(d / "mf.dcm", frames=3), us_rgb(d / "us.dcm"), rle_ct(d / "rle.dcm")]
    return [p.read_bytes() for p in files]


def mutate(data: bytes, ops: list[tuple[str, int, bool, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, in_header, value in ops:
        if not buf:
            break
        span = min(len(buf), HEADER_END) if in_header else len(buf)
        pos = where % span
        if op == "flip":
            buf[pos] ^= value[0] or 0xFF
        elif op == "set":
            buf[pos:pos + len(value)] = value
        elif op == "insert":
            buf[pos:pos] = value
        elif op == "delete":
            del buf[pos:pos + len(value)]
        else:
            del buf[pos:]
    return bytes(buf)


def read_everything(path: Path) -> int:
    """Discover and load every sample of ``path``; the number of images read."""
    read = 0
    for ref in discover(path).samples:
        try:
            image = load_sample(ref)
        except DOCUMENTED as e:
            assert str(e).strip(), "an error without a reason"
            continue
        assert image.dtype == np.float32 and np.isfinite(image).all()
        assert image.min() >= 0.0 and image.max() <= 1.0
        read += 1
    return read


def test_seeds_are_readable(seeds, tmp_path):
    for i, data in enumerate(seeds):
        (tmp_path / f"{i}.dcm").write_bytes(data)
        assert read_everything(tmp_path / f"{i}.dcm") >= 1


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 4), ops=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_dicom_never_crashes_nor_balloons(seeds, which, ops):
    data = mutate(seeds[which], ops)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.dcm"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                read_everything(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"{peak / 2**20:.1f} MiB for a {len(data)}-byte file"
    # pydicom's warnings quote the damaged value: none may escape with a patient's name in it
    said = " ".join(str(w.message) for w in caught)
    assert FAKE_NAME not in said and FAKE_ID not in said
