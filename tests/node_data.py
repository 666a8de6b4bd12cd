"""Data and models for the DICOM node tests and benchmark: CT phantom series and radiographs
(``clinical_examples/phantoms.py``), blob images for a local classifier, and a tiny fixed
ONNX encoder with a fitted classifier (a few seconds, no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from clinical_examples import phantoms as ph  # noqa: E402


def write_series(folder: Path, n: int, key: str, finding_every: int = 0, patient: int = 0,
                 seed: int = 0) -> list[Path]:
    """A CT phantom series of n slices (96 px); every ``finding_every``-th slice a nodule."""
    findings = ["nodule" if finding_every and i % finding_every == 0 else "no_finding"
                for i in range(n)]
    return [p for p, _ in ph.write_ct_series(folder, ph.fake_patient(patient, seed), findings,
                                             seed, key)]


def write_radiographs(folder: Path, findings: list[str], key: str, seed: int = 0,
                      patient: int = 50) -> list[Path]:
    out = []
    for i, finding in enumerate(findings):
        out.append(ph.write_radiograph(folder / f"{key}_{i:04d}.dcm",
                                       ph.fake_patient(patient + i, seed), finding, seed,
                                       f"{key}-{i}", "CR", "MONOCHROME2"))
    return out


def make_classifier(folder: Path, size: int = 32, model: Path | None = None) -> Path:
    """A tiny fixed ONNX encoder (tests/make_edge_fixtures.py) and a prototype classifier
    fitted on CT phantom slices (no_finding, nodule, effusion) through the node's own
    reading path: a few seconds, no training."""
    from support.models import build_tiny_model

    from cossl_edge.contract import PreprocessContract
    from cossl_edge.fewshot import FewShotClassifier
    from cossl_edge.runtime.encoder import open_with_contract

    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_tiny_model(folder / "model.onnx",
                                 PreprocessContract(channels=1, size=size), dim=32)
    encoder = open_with_contract(model, None, 1, False)
    support = folder / "support"
    paths, labels = [], []
    for finding in ph.FINDINGS:
        for p, lab in ph.write_ct_series(support / finding, ph.fake_patient(90, 1),
                                         [finding] * 6, 1, f"support-{finding}"):
            paths.append(p)
            labels.append(lab)
    from cossl_edge.dicom.pixels import read_frame

    x = encoder.embed_arrays([read_frame(p, None, encoder.contract.window) for p in paths])
    clf = FewShotClassifier.fit(x, labels, kind="proto", abstain_threshold=0.0)
    clf.bind_model(encoder.sha256, model, encoder.contract.to_dict())
    return clf.save(folder / "classifier.json")


def blob_image(kind: str, rng, size: int = 64) -> tuple[np.ndarray, tuple[int, int] | None]:
    """tests/test_local_fewshot_cli.py's blob images at ``size`` px: diagonal stripes and noise;
    ``bright`` adds a small bright disk (radius ~size/13). Returns the image in [0, 1] and the
    disk's centre (row, column), None for ``normal``."""
    k = size / 32
    yy, xx = np.mgrid[:size, :size]
    img = 0.4 + 0.1 * np.sin(2 * np.pi * (xx + yy) / (7 * k) + rng.uniform(0, 2 * np.pi))
    img += 0.05 * rng.random((size, size))
    if kind == "normal":
        return img.astype(np.float32), None
    cy, cx = (int(v) for v in rng.integers(round(6 * k), size - round(6 * k), 2))
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 6 * k * k] = 0.95
    return img.astype(np.float32), (cy, cx)


def blob_radius(size: int) -> float:
    """The radius (px) of :func:`blob_image`'s bright disk at ``size`` px."""
    return (6 * (size / 32) ** 2) ** 0.5


def write_blob_series(folder: Path, kinds: list[str], key: str, patient: int = 70,
                      seed: int = 0, size: int = 64, geometry: bool = False
                      ) -> tuple[list[Path], list[tuple[int, int] | None]]:
    """A CT series of blob images (``size`` px, stored 0–1000, window 500/1000: read back in
    [0, 1]) with the phantoms' full patient and study module; (files, disk centres).
    ``geometry``: with what a scanner gives and a Parametric Map and a SEG take over (frame
    of reference, pixel spacing 0.7 mm, slice thickness 2 mm)."""
    from dicom_factory import CT_STORAGE

    rng = np.random.default_rng(seed)
    files, centres = [], []
    for i, kind in enumerate(kinds):
        img, centre = blob_image(kind, rng, size)
        ds = ph._dataset(CT_STORAGE, "CT", ph.fake_patient(patient, seed), f"{key}-study",
                         f"{key}-series", f"{key}-{i}")
        ph._set_pixels(ds, np.round(img * 1000).astype(np.uint16), "MONOCHROME2", 12)
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
        ds.WindowCenter, ds.WindowWidth = 500, 1000
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.0 * i]
        ds.InstanceNumber = i + 1
        if geometry:
            ds.FrameOfReferenceUID = ph._uid(f"{key}-series", "frame-of-reference")
            ds.PositionReferenceIndicator = ""
            ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.0
        files.append(ph._save(ds, folder / f"{key}_{i:03d}.dcm"))
        centres.append(centre)
    return files, centres


def make_local_classifier(folder: Path, size: int = 32, model: Path | None = None) -> Path:
    """A local few-shot classifier (kind ``local``, normal vs bright) on a fixed convolution
    exported with its local map (tests/make_edge_fixtures.py ``build_local_model``), or on
    ``model`` (exported with ``--local-map``), fitted on blob images read through the node's
    own path: under a second, no training."""
    from support.models import build_local_model

    from cossl_edge.contract import PreprocessContract
    from cossl_edge.dicom.pixels import read_frame
    from cossl_edge.fewshot import FewShotClassifier
    from cossl_edge.runtime.encoder import Encoder

    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_local_model(folder / "local.onnx",
                                  PreprocessContract(channels=1, size=size))
    encoder = Encoder(model, threads=1)
    contract = encoder.contract
    kinds = ["normal"] * 5 + ["bright"] * 5
    files, _ = write_blob_series(folder / "support", kinds, "local-support", patient=91, seed=3)
    x = np.stack([contract.prepare(read_frame(p, None, contract.window)) for p in files])
    clf = FewShotClassifier.fit(encoder.run_local(contract.normalize(x)), kinds, kind="local",
                                centering=encoder.centering, abstain_threshold=0.0)
    clf.bind_model(encoder.sha256, model, contract.to_dict())
    return clf.save(folder / "classifier.json")
