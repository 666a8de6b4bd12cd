"""docs/img/node-overlay.png: a source image with the node's Parametric Map and SEG laid
over it, drawn from the objects Orthanc stores (fetched back over its REST API, read with
highdicom), not from the classifier's own picture.

Real components on loopback, as in tests/test_node.py: Orthanc as the PACS, dcmtk's
storescu as the scanner sending the study to the PACS and to ``cossl-edge serve --send
sr,pmap,seg``, which forwards its objects to the PACS. The study is 4 blob phantoms (256 px,
a CT frame of reference, stripes and noise; 3 with a bright disk whose place the phantom
knows); the classifier is the tests' local one (a fixed convolution exported with its local
map, 8×8 positions at 32 px, fitted on 5 normal and 5 bright blob images: no training),
so the picture shows where the objects put P(finding), not what a trained model finds.

    .venv/bin/python benchmarks/node_overlay_figure.py [--out docs/img/node-overlay.png]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import node_support as ns

OUT = ROOT / "docs" / "img" / "node-overlay.png"
SIZE = 256  # px of the phantoms
KINDS = ["bright", "normal", "bright", "bright"]


def source_frame(pm_or_seg, sop_uid: str) -> np.ndarray:
    """rows×cols of a highdicom Parametric Map (real world values) or BINARY SEG (segment 1)
    at the source image ``sop_uid``, whether the object holds one frame or several."""
    import highdicom as hd

    if isinstance(pm_or_seg, hd.seg.Segmentation):
        pixels = pm_or_seg.get_pixels_by_source_instance([sop_uid], segment_numbers=[1])
    else:
        pixels = pm_or_seg.get_pixels_by_source_instance([sop_uid])
    return np.asarray(pixels, np.float32).reshape(pixels.shape[1], pixels.shape[2])


def frame_position(obj, sop_uid: str) -> list[float]:
    """The plane position of the frame of ``obj`` derived from the image ``sop_uid``."""
    for item in obj.PerFrameFunctionalGroupsSequence:
        refs = [str(src.ReferencedSOPInstanceUID) for der in item.DerivationImageSequence
                for src in der.SourceImageSequence]
        if sop_uid in refs:
            return [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
    raise LookupError("no frame of this object is derived from that image")


def grey(ds) -> np.ndarray:
    """The source as a reader sees it: modality LUT, then its window (linear), in [0, 1]."""
    from pydicom.pixels import apply_modality_lut

    value = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    return np.clip((value - (center - width / 2)) / width, 0, 1)


def fetch(pacs, study_uid: str) -> dict[str, list]:
    """The study's source images, Parametric Maps and SEGs, downloaded from Orthanc."""
    from cossl_edge.node.overlays import PARAMETRIC_MAP, SEGMENTATION

    def of(keep) -> list:
        return pacs.datasets(lambda t: t.get("StudyInstanceUID") == study_uid and keep(t))

    return {"source": of(lambda t: t.get("Modality") == "CT"
                         and t.get("SOPClassUID") not in (PARAMETRIC_MAP, SEGMENTATION)),
            "pmap": of(lambda t: t.get("SOPClassUID") == PARAMETRIC_MAP),
            "seg": of(lambda t: t.get("SOPClassUID") == SEGMENTATION)}


def run_study(work: Path) -> tuple[dict, dict[str, tuple[int, int]]]:
    """Send the study to Orthanc and to the node, wait for the node's objects in Orthanc →
    (the downloaded objects, {source SOP UID: the disk's centre} of the disk images)."""
    import pydicom

    files, centres = ns.write_blob_series(work / "study", KINDS, "overlay-figure",
                                          patient=74, size=SIZE, geometry=True)
    disks = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): c
             for f, c in zip(files, centres, strict=True) if c is not None}
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    clf = ns.make_local_classifier(work / "classifier")
    with ns.running_orthanc(work / "pacs") as pacs:
        r = ns.storescu(pacs.dicom_port, files, called=ns.PACS_AE)  # the scanner → PACS
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        node = ns.NodeProcess(clf, work / "node",
                              forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}",
                              extra=["--eostudy-timeout", "0.5", "--send", "sr,pmap,seg"])
        try:
            node.start()
            r = ns.storescu(node.port, files)  # the scanner → the node
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
            ns.wait_until(lambda: any(e["event"] == "sent" for e in node.events()), 60,
                          "the node's objects in Orthanc")
        finally:
            node.stop()
        return fetch(pacs, str(first.StudyInstanceUID)), disks


def draw(objects: dict, disks: dict[str, tuple[int, int]], out: Path) -> str:
    """Two panels of the first disk image that has a map: the source with the phantom's
    box; the source with the map (alpha), the SEG's outline and the box. → its SOP UID."""
    import highdicom as hd
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    pmaps = [hd.pm.ParametricMap.from_dataset(ds) for ds in objects["pmap"]]
    segs = [hd.seg.Segmentation.from_dataset(ds) for ds in objects["seg"]]
    sources = {str(ds.SOPInstanceUID): ds for ds in objects["source"]}

    def holding(objs, uid):
        return next(o for o in objs if uid in {ref[2] for ref in o.get_source_image_uids()})

    uid = next(u for u in sources if u in disks
               and any(u in {ref[2] for ref in pm.get_source_image_uids()} for pm in pmaps))
    src = sources[uid]
    pm, seg = holding(pmaps, uid), holding(segs, uid)
    # the frames drawn lie where the source lies: same frame of reference and position
    assert pm.FrameOfReferenceUID == seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    where = [float(v) for v in src.ImagePositionPatient]
    assert frame_position(pm, uid) == frame_position(seg, uid) == where
    p, mask = source_frame(pm, uid), source_frame(seg, uid) > 0
    image = grey(src)
    assert p.shape == mask.shape == image.shape
    (cy, cx), r = disks[uid], ns.blob_radius(SIZE)
    box = (cx - r, cy - r, 2 * r, 2 * r)  # x, y, width, height of the phantom's disk
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    inside = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    assert mask[inside].any(), "the SEG misses the phantom's disk"
    my, mx = np.unravel_index(int(np.argmax(p)), p.shape)
    print(f"drawn: the frame of image {int(src.InstanceNumber)} of {int(pm.NumberOfFrames)} "
          f"in the map; its maximum {float(p.max()):.2f} at "
          f"{float(np.hypot(my - cy, mx - cx)):.0f} px from the disk's centre (radius "
          f"{r:.0f} px); SEG {int(mask[inside].sum())} px in the box, "
          f"{int(mask[~inside].sum())} outside")
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 3.2), dpi=100, constrained_layout=True)
    for ax in axes:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
        ax.add_patch(Rectangle(box[:2], *box[2:], fill=False, ec="lime", lw=1.2, ls="--"))
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_title("source (CT), the phantom's disk box", fontsize=9)
    # opacity follows P(finding): the source stays visible where the map says nothing
    shown = axes[1].imshow(p, cmap="inferno", vmin=0, vmax=1, alpha=np.clip(p, 0, 0.8),
                           interpolation="nearest")
    axes[1].contour(mask, levels=[0.5], colors="cyan", linewidths=1.0)
    axes[1].set_title("Parametric Map P(finding), SEG outline (P > 0.5)", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02, label="P(finding)")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100)
    plt.close(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").save(out, optimize=True)  # no alpha channel: smaller
    return uid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        objects, disks = run_study(Path(tmp))
    print(f"from Orthanc: {len(objects['source'])} source images, {len(objects['pmap'])} "
          f"Parametric Map(s), {len(objects['seg'])} SEG(s)")
    draw(objects, disks, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
