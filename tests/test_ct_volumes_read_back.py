"""The 3D CT phantoms, written as DICOM series, read back as volumes: the generator and the
volume reader agree on geometry and on where the nodule is."""

from __future__ import annotations

import numpy as np
import pytest

from clinical_examples.ct_volumes import write_series_set
from cossl_edge.phantoms.volumes import ct_volume
from cossl_edge.volumes.discovery import discover_volumes, load_volume


def test_phantom_series_read_back_as_volumes_with_their_geometry(tmp_path):
    rows = write_series_set(tmp_path, series=2, seed=3, size=96, length_mm=40.0)
    found = discover_volumes(tmp_path)
    assert len(found.volumes) == 2
    assert [s.path.name for s in found.skipped] == ["labels.csv"]  # not an image: said
    by_depth = {}
    for ref in found.volumes:
        vol = load_volume(ref, window="lung")
        by_depth.setdefault(vol.shape[0], []).append(vol)
        # slice-normal order: the voxel centres step by the recorded spacing along z
        assert abs(abs(vol.direction[2, 0]) - 1) < 1e-6
        assert np.isfinite(vol.array).all() and 0 <= vol.array.min() <= vol.array.max() <= 1
    for row in rows:
        vols = by_depth[int(row["slices"])]
        assert any(abs(v.spacing[0] - float(row["slice_spacing_mm"])) < 1e-3 for v in vols)
    nodule = next(r for r in rows if r["label"] == "nodule")
    vol = next(v for v in by_depth[int(nodule["slices"])]
               if abs(v.spacing[0] - float(nodule["slice_spacing_mm"])) < 1e-3)
    # the manifest's centre (mm, LPS) → the reader's voxel and the generator's are the same
    # place (the reader orders slices along the normal, +z; the generator top down)
    centre = np.array([float(nodule[f"centre_{a}_mm"]) for a in "xyz"])
    d, h, w = np.round(np.linalg.solve(vol.affine[:3, :3], centre - vol.affine[:3, 3]))
    index = next(i for i, r in enumerate(rows) if r is nodule)
    made = ct_volume(3, index, True, 96, 40.0)
    k, r, c = np.round(made.voxel(tuple(centre)))
    assert (d, h, w) == (vol.shape[0] - 1 - k, r, c)
    # and the value there is the generator's HU through the lung window (-600, 1500)
    hu = made.hu[int(k), int(r), int(c)]
    assert vol.array[int(d), int(h), int(w)] == pytest.approx(
        np.clip((hu + 600 + 750) / 1500, 0, 1), abs=3e-3)
    assert hu > -300  # a nodule, not air
