"""Models and image folders for the edge tests, written by the full environment.

``python tests/make_edge_fixtures.py OUT_DIR`` (what ``make test-edge`` runs with the full
venv) writes ``OUT_DIR/model.onnx`` — exported by :func:`cossl_edge.export.export_run` from a
tiny hand-built run directory when the exporter is installed, else built with
``onnx.helper`` — and labelled image folders. The minimal environment then reads them.
The builders live in ``tests/support/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from support.folders import write_class_folders
from support.models import build_tiny_model


def export_tiny_run(out: Path, calibration: Path) -> Path | None:
    """Export a tiny ResNet through the project's exporter (int8, calibrated on
    ``calibration``); None only when the exporter is not installed."""
    try:
        import torch
        from support.runs import write_tiny_run

        from cossl_edge.export import export_run
        from cossl_edge.training.config import PretrainConfig
    except ImportError:
        return None
    run = out / "run"
    encoder = write_tiny_run(run)
    cfg = PretrainConfig.load(run / "config.json")
    # the normal model a finished pretraining writes: the edge model has an anomaly map
    from cossl_edge import rundir
    from cossl_edge.sources import discover, load_many
    from cossl_edge.training import normal_stats

    images, _, _ = load_many(discover(calibration).samples, cfg.contract)
    normal_stats.save(normal_stats.compute(encoder, images, cfg.contract, torch.device("cpu")),
                      run / rundir.NORMAL_MODEL)
    export_run(run, calibration=calibration, calibration_count=16, measure_latency=False)
    return run / "encoder.int8.onnx"


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelled = write_class_folders(out / "labelled", classes=3, per_class=8)
    write_class_folders(out / "pair", classes=2, per_class=8, seed=1)  # normal vs finding
    exported = export_tiny_run(out, labelled)
    model = out / "model.onnx"
    if exported is not None:
        model.write_bytes(exported.read_bytes())
        how = "cossl_edge.export.export_run (int8)"
    else:
        build_tiny_model(model, centering=None)
        how = "onnx.helper (exporter not installed)"
    print(f"edge fixtures in {out}: model from {how}")


if __name__ == "__main__":
    main(sys.argv[1])
