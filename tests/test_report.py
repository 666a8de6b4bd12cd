"""The HTML report: sections filled from a run directory, honest when data is missing, and
rendered by a real headless browser (Debian's chromium, installed by `make test`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.folders import write_shapes
from support.models import build_tiny_model
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.report import build_report, pca_2d, read_metrics

SECTIONS = ("training-curves", "knn-monitor", "embedding-map", "neighbours", "fewshot",
            "export")


def fake_run(root: Path) -> Path:
    """A run directory as pretrain + export + fewshot eval leave it (tiny ONNX model)."""
    run = root / "run"
    run.mkdir()
    contract = PreprocessContract(channels=1, size=16)
    (run / "config.json").write_text(json.dumps(
        {"method": "co-byol", "arch": "resnet10", "width": 0.25, "contract": contract.to_dict(),
         "feature_grid": 2, "num_images": 40, "seed": 7, "bf16_resolved": False,
         "cossl_edge_version": "9.9.9"}))
    recs = [{"epoch": 0, "step": 0, "event": "init", "effective_rank": 3.0, "knn_monitor": 0.4}]
    recs += [{"epoch": e, "step": 10 * e, "loss": 1.0 / e, "lr": 1e-3, "tau": 0.99,
              "loss_global": 1.2 / e, "loss_local": 2.0 / e, "images_per_s": 400.0,
              "elapsed_s": 60.0 * e,
              "effective_rank": 3.0 + e, "knn_monitor": 0.4 + 0.1 * e} for e in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + '\n{"cut')
    rng = np.random.default_rng(0)
    np.save(run / "calibration.npy", rng.random((24, 16, 16, 1)).astype(np.float16))
    build_tiny_model(run / "encoder.onnx", contract)
    (run / "export-report.json").write_text(json.dumps({
        "files": {"fp32": {"file": "encoder.onnx", "bytes": 4_000_000},
                  "int8": {"file": "encoder.int8.onnx", "bytes": 1_100_000}},
        "int8_agreement": {"cosine_mean": 0.998, "cosine_min": 0.99,
                           "knn_top1_agreement": 0.97},
        "int8": {"target": "arm"}, "parity_max_abs_diff": 3e-6, "int8_recommended": False,
        "warnings": ["int8 kNN agreement 0.97 below 0.98"],
        "latency": [{"engine": e, "batch": b, "threads": t, "ms": ms}
                    for e, ms in (("torch", 9.0), ("ort-fp32", 4.0), ("ort-int8", 2.0))
                    for b in (1, 32) for t in (1, 2)]}))
    curve = {"shots": {"1": {"accuracy": 0.5, "ci95": 0.05}, "5": {"accuracy": 0.7,
                                                                   "ci95": 0.03}}}
    (run / "fewshot.json").write_text(json.dumps(
        {"encoders": {"pretrained": curve, "random-init": {"shots": {"1": {"accuracy": 0.4},
                                                                     "5": {"accuracy": 0.5}}}}}))
    return run


def section(page: str, key: str) -> str:
    match = re.search(f'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"section {key} missing"
    return match.group(1)


def test_full_run_fills_every_section(tmp_path):
    page = build_report(fake_run(tmp_path))
    for key in SECTIONS:
        body = section(page, key)
        assert 'class="missing"' not in body, key
        assert body.count("data:image/png;base64,") == 1, key
    assert "0.9980" in section(page, "export") and "arm" in section(page, "export")
    assert "pretrained" in section(page, "fewshot") and "5-shot 70.0" in section(page, "fewshot")
    assert "co-byol" in page and str(tmp_path) not in page  # no raw path on the page
    summary = page[:page.index("<nav>")]
    for shown in ("<th>steps</th><td>30</td>", "3.0 min", "<td>fp32</td>", "<td>7</td>",
                  "9.9.9"):
        assert shown in summary, shown
    export = section(page, "export")
    assert "3.00e-06" in export and "not recommended: int8 kNN agreement" in export


def test_missing_data_is_said(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "step": 0, "event": "init"}))
    page = build_report(run)
    for key in SECTIONS:
        assert 'class="missing"' in section(page, key), key
    assert "--monitor" in section(page, "knn-monitor")
    assert "cossl-edge export" in section(page, "export")


def test_labelled_data_colours_map_and_computes_fewshot(tmp_path):
    run = fake_run(tmp_path)
    (run / "fewshot.json").unlink()
    data = write_shapes(tmp_path / "shapes", per_class=12, size=16)
    page = build_report(run, data=data)
    assert "48 labelled images" in section(page, "embedding-map")
    fewshot = section(page, "fewshot")
    assert "this encoder" in fewshot and "10-shot" in fewshot


def test_not_a_run_dir_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output


def test_metrics_reader_and_pca(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"trunc')
    assert read_metrics(path) == [{"a": 1}]
    x = np.random.default_rng(0).normal(size=(50, 6)) * np.array([10, 1, 1, 1, 1, 0.1])
    p = pca_2d(x)
    assert p.shape == (50, 2) and p[:, 0].var() > 20 * p[:, 1].var()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    return path


CHECK_SCRIPT = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-decoded', imgs.filter(i => i.complete && i.naturalWidth > 0
    && i.naturalHeight > 0).length);
  document.body.setAttribute('data-sections', document.querySelectorAll('section h2').length);
});</script>"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    run = fake_run(tmp_path)
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = dict(re.findall(r'data-(images|decoded|sections)="(\d+)"', dom))
    assert found == {"images": "6", "decoded": "6", "sections": "6"}, dom[:300]
    for key in SECTIONS:
        assert f'id="{key}"' in dom


def test_floors_and_evaluate_results_join_the_report(tmp_path):
    """fewshot eval --json keeps its raw-pixel and before-adaptation floors: the few-shot
    section draws them; evaluate --json RUN_DIR/evaluation.json gets its own section."""
    run = fake_run(tmp_path)
    (run / "fewshot.json").write_text(json.dumps({
        "shots": {"5": {"accuracy": 0.81, "ci95": 0.02}},
        "raw_pixel_floor": {"shots": {"5": {"accuracy": 0.62, "ci95": 0.02}}},
        "init_floor": {"model": "encoder.init.onnx",
                       "shots": {"5": {"accuracy": 0.55, "ci95": 0.03}}}}))
    (run / "evaluation.json").write_text(json.dumps({
        "linear_probe": {"accuracy": 0.931}, "knn": {"accuracy": 0.912},
        "fewshot": {"shots": {"5": {"accuracy": 0.8}}},
        "robustness": {"noise": {"available": True, "levels": [0.0, 0.2],
                                 "probe": [0.931, 0.7]}}}))
    page = build_report(run)
    fewshot = section(page, "fewshot")
    for name in ("raw pixels", "before adaptation", "5-shot 62.0", "5-shot 55.0"):
        assert name in fewshot, name
    evaluation = section(page, "evaluation")
    assert "93.1%" in evaluation and "91.2%" in evaluation and "σ 0.2: 70.0%" in evaluation
    assert page.index('id="evaluation"') < page.index('id="export"')
