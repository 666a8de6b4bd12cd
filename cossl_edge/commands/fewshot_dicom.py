"""``fewshot predict --dicom-out``: the Parametric Map and Segmentation of the images called
a finding, written as the node writes them (:mod:`cossl_edge.node.overlay_writer`)."""

from __future__ import annotations

from pathlib import Path

import typer


def dicom_kinds(dicom_out: Path | None, send: str | None) -> tuple[str, ...]:
    """--send with --dicom-out → the overlay kinds to write, checked before any work."""
    if dicom_out is None:
        if send is not None:
            raise ValueError("--send names what --dicom-out writes; add --dicom-out DIR")
        return ()
    from importlib.util import find_spec

    if find_spec("highdicom") is None:
        raise ValueError("--dicom-out writes with highdicom, which is not installed: "
                         "pip install 'cossl-edge[node]'")
    known = ("pmap", "seg")
    names = [t.strip().lower() for t in (send or "pmap,seg").split(",") if t.strip()]
    if not names or any(n not in known for n in names):
        raise ValueError(f"--send {send!r}: a comma-separated list of pmap, seg "
                         "(e.g. pmap,seg)")
    return tuple(k for k in known if k in names)


def overlay_writer(folder: Path, kinds: tuple[str, ...], samples, data_dir: Path, clf,
                    encoder, classifier_file: Path, abstain: float | None):
    """The OverlayWriter of --dicom-out, with the identity the node gives its objects; an
    error when no input is DICOM (the objects lie on a DICOM source's geometry)."""
    import hashlib

    from cossl_edge.node.classify import classifier_identity
    from cossl_edge.node.overlay_writer import OverlayWriter
    from cossl_edge.runtime import metadata as mm

    if not any(s.kind == "dicom" for s in samples):
        raise ValueError(f"{data_dir}: --dicom-out needs DICOM inputs (a Parametric Map and "
                         "a Segmentation lie on a DICOM image's geometry and reference it); "
                         "these images are not DICOM: use --heatmaps for pictures")
    identity = classifier_identity(
        clf, encoder.sha256, encoder.metadata.get(mm.KEY_VERSION) or "unknown",
        hashlib.sha256(classifier_file.read_bytes()).hexdigest(),
        clf.abstain_threshold if abstain is None else abstain,
        clf.normal_class)
    return OverlayWriter(folder, clf, identity, encoder.contract.resize, kinds)


def report_dicom(dicom, rows: list, folder: Path) -> None:
    """What --dicom-out wrote, what it left out and why (no patient data)."""
    count = {k: sum(r[1] == k for r in rows) for k in ("pmap", "seg")}
    frames = len({i for r in rows for i in r[3].split(";")})
    typer.echo(f"DICOM: {count['pmap']} Parametric Map(s), {count['seg']} Segmentation(s) "
               f"of {frames} image(s) called a finding → {folder} (index: overlays.csv)")
    for (kind, why), n in sorted(dicom.left_out.items()):
        name = {"pmap": "Parametric Map", "seg": "Segmentation"}[kind]
        typer.echo(f"  no {name} for {n} image(s): {why}")
    if dicom.not_dicom:
        typer.echo(f"  {dicom.not_dicom} image(s) called a finding are not DICOM: no DICOM "
                   "objects for them (--heatmaps draws pictures)")
