"""An exported random-init encoder for the benchmarks that time speed, not accuracy: a run
directory written by hand (``PretrainConfig`` + a random-init backbone in encoder.pt, seed
0), exported to static int8 with ``cossl_edge.export.export_run``."""

from __future__ import annotations

from pathlib import Path


def exported_random_model(run: Path, calibration: Path, local_map: bool = False,
                          **config) -> Path:
    """Write the run into ``run`` (``config``: ``PretrainConfig`` fields; none: the default
    recipe), export it calibrated on 64 images of ``calibration`` (with its local map:
    ``export --local-map``) → the int8 model file."""
    import torch

    from cossl_edge.export import export_run
    from cossl_edge.training.backbones import build_encoder
    from cossl_edge.training.config import PretrainConfig

    run.mkdir(parents=True)
    cfg = PretrainConfig(**config)
    cfg.save(run / "config.json")
    torch.manual_seed(0)
    torch.save(build_encoder(cfg).state_dict(), run / "encoder.pt")
    export_run(run, calibration=calibration, calibration_count=64, measure_latency=False,
               local_map=local_map)
    return run / "encoder.int8.onnx"
