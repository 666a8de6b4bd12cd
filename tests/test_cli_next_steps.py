"""What a command says when it is done: pretrain a short summary and the export command,
export the fewshot command, fewshot predict how its ids map back to files and when their
salt is the public default; report's heatmap folder under its new name."""

from __future__ import annotations

import csv
import re

import pytest
from support.folders import write_class_folders, write_noise_pngs
from support.models import build_tiny_model
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract

runner = CliRunner()
ENV = {"COLUMNS": "250"}


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.mark.slow
def test_pretrain_summary_then_export_names_the_next_command(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    write_noise_pngs(tmp_path / "data", 8, name="{i}.png")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["pretrain", "data", "--out", "run", "--arch", "resnet10",
                              "--width", "0.125", "--image-size", "16", "--batch-size", "4",
                              "--max-steps", "2", "--quiet", "--no-bf16", "--device", "cpu"],
                        env=ENV)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "{" not in out  # a summary, not a JSON dump
    first = out.splitlines()[0]
    assert re.fullmatch(r"pretrained: 2 steps( \(\d+ epochs?\))? in [\d.]+ s on 8 images; "
                        r"resnet10 at 16 px, fp32", first), first
    assert "encoder: run/encoder.pt" in out and "run directory: run " in out
    assert out.strip().splitlines()[-1].startswith("next: cossl-edge export run ")

    pytest.importorskip("onnxruntime.quantization")
    res = runner.invoke(app, ["export", "run", "--calibration-count", "8", "--no-latency"],
                        env=ENV)
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("next: cossl-edge fewshot eval run/encoder.int8.onnx LABELED_DIR")


def test_pretrain_stopped_summary_says_how_to_resume(tmp_path):
    from cossl_edge.commands.pretrain import summary_lines

    summary = {"steps": 7, "epochs": 0, "elapsed_s": 75.4, "images": 40, "skipped": 2,
               "stopped": True}
    lines = summary_lines(summary, tmp_path / "run",
                          "cossl-edge pretrain DATA_DIR --out run --resume")
    assert lines[0] == "stopped: 7 steps in 1 min 15 s on 40 images (2 files skipped)"
    assert lines[-1] == "next: continue it with  cossl-edge pretrain DATA_DIR --out run --resume"
    assert not any(line.startswith("encoder:") for line in lines)


def test_resume_command_keeps_the_options_given_and_hides_the_data_path():
    import typer

    from cossl_edge.commands.pretrain import register
    from cossl_edge.commands.relaunch import resume_command

    app_ = typer.Typer()
    register(app_)
    app_.command("noop")(lambda: None)
    cmd = typer.main.get_command(app_).commands["pretrain"]
    with cmd.make_context("pretrain", ["/scans/Doe_John", "--out", "my run", "--arch",
                                       "resnet18", "--epochs", "3"]) as ctx:
        line = resume_command(ctx)
    assert line == "cossl-edge pretrain DATA_DIR --out 'my run' --arch resnet18 --epochs 3 " \
                   "--resume"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    root = tmp_path_factory.mktemp("next-steps")
    contract = PreprocessContract(channels=1, size=16)
    model = build_tiny_model(root / "m.onnx", contract, dim=8)
    data = write_class_folders(root / "data", classes=2, per_class=4)
    clf = root / "clf.json"
    res = runner.invoke(app, ["fewshot", "fit", str(model), str(data), "--out", str(clf),
                              "--classifier", "proto"])
    assert res.exit_code == 0, res.output
    return {"model": model, "data": data, "clf": clf}


def test_predict_says_how_ids_map_back_and_warns_about_the_default_salt(edge, tmp_path,
                                                                       monkeypatch):
    monkeypatch.delenv("COSSL_EDGE_SALT", raising=False)
    preds = tmp_path / "p.csv"
    res = runner.invoke(app, ["fewshot", "predict", str(edge["clf"]), str(edge["data"]),
                              "--out", str(preds)], env=ENV)
    assert res.exit_code == 0, res.output
    assert "--id-map PATH also writes a CSV id,path" in res.stdout
    assert "public default salt" not in res.stdout  # a warning: stderr
    assert _flat(res.stderr).count("warning: the ids are salted with the public default "
                                   "salt") == 1
    assert "set COSSL_EDGE_SALT" in _flat(res.stderr)

    monkeypatch.setenv("COSSL_EDGE_SALT", "a site secret")
    id_map = tmp_path / "ids.csv"
    res = runner.invoke(app, ["fewshot", "predict", str(edge["clf"]), str(edge["data"]),
                              "--out", str(preds), "--id-map", str(id_map)], env=ENV)
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    assert f"id → file: {id_map} (it holds raw paths: keep it local)" in res.stdout
    ids = [r["id"] for r in csv.DictReader(preds.open())]
    mapped = {r["id"]: r["path"] for r in csv.DictReader(id_map.open())}
    assert sorted(ids) == sorted(mapped) and len(ids) == 8
    assert all(p.startswith("class_") and p.endswith(".png") for p in mapped.values())


def test_report_heatmaps_from_and_its_old_name(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 0, "step": 0, "event": "init"}\n')
    res = runner.invoke(app, ["report", str(run), "--heatmaps-from", str(tmp_path / "none")],
                        env=ENV)
    assert res.exit_code == 2 and "none" in res.output and "deprecated" not in res.output
    res = runner.invoke(app, ["report", str(run), "--heatmaps", str(tmp_path / "none")],
                        env=ENV)
    assert res.exit_code == 2
    assert "--heatmaps is deprecated and will be removed; use --heatmaps-from" in \
        _flat(res.output)
