"""DICOM throughput: preprocessed images/s from a DICOM folder, first epoch and cached epochs.

Writes a synthetic CT series (512×512 int16 slices with slope/intercept, as scanners export
them; optionally RLE-compressed) into a temporary folder, then times the data path the
pretraining loop runs:

1. header pass: ``sources.discover`` (``stop_before_pixels``, series grouping, ordering);
2. first epoch: ``training.dataset.build_cache`` with an empty disk cache — decode, modality
   LUT, window, resize to the contract, write the cache;
3. a later run: ``build_cache`` again, every image read back from the disk cache;
4. each epoch after that: the ``medical`` view pipeline over the in-memory cache (two views
   per image), which is all an epoch costs once the cache is built.

    .venv/bin/python benchmarks/dicom_throughput.py [--slices 300] [--syntax native rle]

Writes its figures between the dicom-throughput markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from doc_section import replace_section

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- dicom-throughput:start -->", "<!-- dicom-throughput:end -->"
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic DICOM factory lives with the tests


def write_series(folder: Path, slices: int, size: int, syntax: str) -> int:
    from dicom_factory import CT_STORAGE, base_dataset, ct_hu, set_pixels, write
    from pydicom.uid import RLELossless

    folder.mkdir(parents=True)
    for i in range(slices):
        ds = base_dataset(CT_STORAGE, "CT", f"bench-{i}", "bench")
        hu = ct_hu(1, size, size, seed=i)[0]
        set_pixels(ds, np.round(hu + 1024).astype(np.int16))
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1.0, -1024.0, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.5 * i]
        ds.InstanceNumber = i + 1
        if syntax == "rle":
            ds.compress(RLELossless)
        write(ds, folder / f"IM{i:05d}")  # no suffix, as many scanners write them
    return sum(p.stat().st_size for p in folder.iterdir())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def measure(args, syntax: str) -> dict:
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.sources import discover
    from cossl_edge.training.dataset import build_cache
    from cossl_edge.training.views import TwoViews

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "dicom"
        nbytes = write_series(data, args.slices, args.size, syntax)
        os.environ["COSSL_EDGE_CACHE"] = str(Path(tmp) / "cache")
        contract = PreprocessContract(channels=1, size=args.image_size, window=args.window)
        found, t_scan = timed(lambda: discover(data))
        n = len(found.samples)
        assert n == args.slices and not found.skipped
        (first, kept, skipped), t_first = timed(
            lambda: build_cache(found.samples, contract, progress=False))
        (again, _, _), t_cached = timed(
            lambda: build_cache(found.samples, contract, progress=False))
        assert not skipped and np.array_equal(first, again)
        views = TwoViews("medical", contract)
        views(first[0].astype(np.float32))  # imports and first-call set-up off the clock
        _, t_views = timed(lambda: [views(img.astype(np.float32)) for img in first])
    return {"n": n, "mb": nbytes / 1e6, "scan": n / t_scan, "first": n / t_first,
            "cached": n / t_cached, "views": n / t_views}


def section(results: dict[str, dict], args) -> str:
    load = os.getloadavg()[0]
    names = list(results)
    cols = " | ".join(f"{k} ({results[k]['mb']:.0f} MB)" for k in names)

    def row(label: str, key: str) -> str:
        return f"| {label} | " + " | ".join(f"{results[k][key]:.0f}" for k in names) + " |"

    return f"""{START}
## DICOM throughput (`benchmarks/dicom_throughput.py`)

{args.slices} synthetic CT slices, {args.size}×{args.size} int16 with rescale, files without
suffix, window `{args.window}`, prepared to {args.image_size} px, 1 channel; images/s.
{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared with other jobs
(load average {load:.1f}); one process, no data-loading workers. Command:
`python benchmarks/dicom_throughput.py --slices {args.slices} --syntax {' '.join(names)}`.

| stage | {cols} |
|---|{'---|' * len(names)}
{row("header pass (`discover`: read up to the pixels, group, order)", "scan")}
{row("first epoch: decode + HU + window + resize, written to the disk cache", "first")}
{row("a later run: the same images read back from the disk cache", "cached")}
{row("every epoch: `medical` views from the in-memory cache (2 views per image)", "views")}

Decoding happens once: later epochs cost only the random views, and a second run on the
same folder and contract starts from the disk cache.
{END}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300, help="CT slices to write and read")
    ap.add_argument("--size", type=int, default=512, help="rows = columns of each slice")
    ap.add_argument("--image-size", type=int, default=64, help="contract size (px)")
    ap.add_argument("--window", default="header", help="contract window rule")
    ap.add_argument("--syntax", choices=("native", "rle"), nargs="+", default=["native", "rle"],
                    help="uncompressed Explicit VR Little Endian and/or RLE Lossless")
    ap.add_argument("--no-write", action="store_true", help="print, do not edit the doc")
    args = ap.parse_args()
    results = {}
    for syntax in args.syntax:
        results[syntax] = measure(args, syntax)
    text = section(results, args)
    print(text)
    if not args.no_write:
        replace_section(START, END, text)


if __name__ == "__main__":
    main()
