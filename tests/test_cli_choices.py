"""Options with a closed set of values are choices: --help lists them, and a wrong value
fails while the command line is parsed (exit code 2, click's message naming the valid ones),
before any file is read or any model loaded. Every value the code takes stays valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.commands import edge_options, export, pretrain, serve
from cossl_edge.contract import DICOM_WINDOWS, RESIZE_MODES
from cossl_edge.fewshot import KINDS
from cossl_edge.fewshot.local import SCORINGS
from cossl_edge.node.config import AGGREGATIONS
from cossl_edge.runtime.pooling import POOLS
from cossl_edge.training.config import ARCHS, FINDINGS
from cossl_edge.training.view_settings import PRESETS

runner = CliRunner()
ENV = {"COLUMNS": "250"}  # click's message on one line


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


class WorkStarted(AssertionError):
    pass


def _boom(*args, **kwargs):
    raise WorkStarted("the command started its work before the options were checked")


@pytest.fixture
def paths(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    return {"data": str(data), "model": str(model), "out": str(tmp_path / "out.json"),
            "run": str(tmp_path / "run")}


@pytest.fixture
def no_work(monkeypatch):
    """The first call of each command's body fails the test if it is ever reached."""
    monkeypatch.setattr(pretrain, "parse_auto", _boom)
    monkeypatch.setattr(export, "ProgressBars", _boom)
    monkeypatch.setattr(edge_options, "sampling", _boom)
    monkeypatch.setattr(serve, "renamed", _boom)


# (command line before the option, option, a wrong value, valid values the message lists)
BAD = [
    (["pretrain", "{data}"], "--arch", "resnet50", ARCHS),
    (["pretrain", "{data}"], "--init", "imagenet21k", pretrain.INITS),
    (["pretrain", "{data}"], "--pool", "avg", POOLS),
    (["pretrain", "{data}"], "--embed-pool", "avg", POOLS),
    (["pretrain", "{data}"], "--findings", "small", FINDINGS),
    (["pretrain", "{data}"], "--optimizer", "sgd", pretrain.OPTIMIZERS),
    (["pretrain", "{data}"], "--preset", "xray", ("auto", *PRESETS)),
    (["pretrain", "{data}"], "--stem", "tiny", pretrain.STEMS),
    (["pretrain", "{data}"], "--window", "liver", DICOM_WINDOWS),
    (["pretrain", "{data}"], "--resize", "crop", RESIZE_MODES),
    (["pretrain", "{data}"], "--channels", "2", ("1", "3")),
    (["pretrain", "{data}", "--method", "co-byol"], "--local-target", "g3", ("g2", "g1",
                                                                           "online")),
    (["export", "{run}"], "--target", "x86-64", export.TARGETS),
    (["fewshot", "fit", "{model}", "{data}", "--out", "{out}"], "--classifier", "protos",
     ("auto", *KINDS)),
    (["fewshot", "fit", "{model}", "{data}", "--out", "{out}"], "--local-scoring",
     "patchcore", ("auto", *SCORINGS)),
    (["fewshot", "eval", "{model}", "{data}"], "--classifier", "svm", ("auto", *KINDS)),
    (["fewshot", "eval", "{model}", "{data}"], "--local-scoring", "nearest",
     ("auto", *SCORINGS)),
    (["serve", "{out}"], "--aggregate", "median", AGGREGATIONS),
]


@pytest.mark.parametrize("head, option, wrong, valid", BAD,
                         ids=[f"{' '.join(h[:2]).strip('{}')} {o}" for h, o, _, _ in BAD])
def test_a_wrong_choice_fails_at_parsing_and_lists_the_valid_ones(head, option, wrong, valid,
                                                                  paths, no_work):
    argv = [a.format(**paths) for a in head] + [option, wrong]
    t0 = time.perf_counter()
    res = runner.invoke(app, argv, env=ENV)
    elapsed = time.perf_counter() - t0
    assert not isinstance(res.exception, WorkStarted), res.output
    assert res.exit_code == 2, res.output
    text = _flat(res.output)
    assert f"Invalid value for '{option}'" in text and repr(wrong) in text, text
    assert all(repr(v) in text for v in valid), text
    assert elapsed < 5, f"{elapsed:.1f} s to refuse a wrong value"
    assert not Path(paths["out"]).exists() and not Path(paths["run"]).exists()


def test_help_lists_the_choices():
    text = _flat(runner.invoke(app, ["fewshot", "fit", "--help"], env=ENV).output)
    assert "<" + "|".join(("auto", *KINDS)) + ">" in text
    text = _flat(runner.invoke(app, ["pretrain", "--help"], env=ENV).output)
    assert "<" + "|".join(DICOM_WINDOWS) + ">" in text
    assert "<" + "|".join(ARCHS) + ">" in text
    text = _flat(runner.invoke(app, ["serve", "--help"], env=ENV).output)
    assert "<max|mean>" in text


def _parse(path: list[str], argv: list[str]) -> dict:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    with cmd.make_context(path[-1], argv) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize("option, values", [
    ("--arch", ARCHS), ("--init", pretrain.INITS), ("--pool", POOLS), ("--embed-pool", POOLS),
    ("--findings", FINDINGS), ("--optimizer", pretrain.OPTIMIZERS),
    ("--preset", ("auto", *PRESETS)), ("--stem", pretrain.STEMS), ("--window", DICOM_WINDOWS),
    ("--resize", RESIZE_MODES), ("--channels", ("1", "3")),
])
def test_every_value_the_code_takes_still_parses(option, values):
    name = option[2:].replace("-", "_")
    for value in values:
        assert str(_parse(["pretrain"], ["data", option, value])[name]) == value
    for value in ("auto", *KINDS):
        assert str(_parse(["fewshot", "fit"], ["m", "d", "--out", "o", "--classifier",
                                               value])["classifier"]) == value


def test_defaults_are_unchanged():
    params = _parse(["pretrain"], ["data"])
    assert {k: str(params[k]) for k in ("arch", "init", "pool", "findings", "optimizer",
                                        "preset", "stem", "window", "resize", "channels")} == {
        "arch": "auto", "init": "imagenet", "pool": "mean", "findings": "global",
        "optimizer": "adamw", "preset": "auto", "stem": "auto", "window": "header",
        "resize": "resize", "channels": "1"}
    assert params["embed_pool"] is None
    assert str(_parse(["export"], ["run"])["target"]) == "auto"
    fit = _parse(["fewshot", "fit"], ["m", "d", "--out", "o"])
    assert (str(fit["classifier"]), str(fit["local_scoring"])) == ("auto", "auto")
    assert str(_parse(["serve"], ["c.json"])["aggregate"]) == "max"


def test_pretrain_passes_plain_strings_on(monkeypatch, tmp_path):
    """The configuration gets str values, not Enum members (config.json, comparisons)."""
    pytest.importorskip("torch")
    import cossl_edge.training.loop as loop

    seen = {}

    def fake_run(config, data_dir, out, **kwargs):
        seen["config"] = config
        return {"steps": 0, "epochs": 0, "elapsed_s": 0.0, "images": 0, "skipped": 0,
                "stopped": False}

    monkeypatch.setattr(loop, "pretrain", fake_run)
    res = runner.invoke(app, ["pretrain", str(tmp_path), "--out", str(tmp_path / "r"),
                              "--arch", "resnet18", "--stem", "small", "--window", "lung",
                              "--channels", "3", "--method", "co-byol", "--local-target", "g1",
                              "--max-steps", "1"], env=ENV)
    assert res.exit_code == 0, res.output
    c = seen["config"]
    for value in (c.arch, c.stem, c.pool, c.optimizer, c.contract.window, c.contract.resize,
                  c.local_target):
        assert type(value) is str
    assert (c.arch, c.stem, c.contract.window, c.contract.channels, c.local_target) == (
        "resnet18", "small", "lung", 3, "g1")


def test_the_lists_written_in_the_cli_match_the_checks():
    """The sets checked in torch or onnxruntime modules, which the CLI does not import."""
    pytest.importorskip("torch")
    import torch

    from cossl_edge.commands.method_options import CHOICES
    from cossl_edge.training.backbones import STEMS
    from cossl_edge.training.methods import LOCAL_TARGETS
    from cossl_edge.training.optim import build_optimizer

    assert set(pretrain.STEMS) == {"auto", *STEMS}
    assert tuple(CHOICES["local_target"]) == tuple(LOCAL_TARGETS)
    layer = torch.nn.Linear(2, 2)
    for name in pretrain.OPTIMIZERS:
        build_optimizer(name, layer, 1e-3, 0.0)
    with pytest.raises(ValueError, match="optimizer must be"):
        build_optimizer("sgd", layer, 1e-3, 0.0)
    pytest.importorskip("onnxruntime.quantization")
    from cossl_edge.export.quantize import TARGETS

    assert tuple(export.TARGETS) == tuple(TARGETS)


# In a fresh process: every wrong choice is refused without loading torch or onnxruntime.
SCRIPT = """
import json, sys
from typer.testing import CliRunner
from cossl_edge.cli import app
codes = [CliRunner().invoke(app, argv).exit_code for argv in json.loads(sys.argv[1])]
heavy = [m for m in ("torch", "onnxruntime", "onnx", "cossl_edge.training.loop")
         if m in sys.modules]
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_wrong_choices_load_nothing_heavy(paths, tmp_path):
    argvs = [[a.format(**paths) for a in head] + [option, wrong]
             for head, option, wrong, _ in BAD]
    run = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(argvs)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env=os.environ | {"COLUMNS": "200"})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2] * len(BAD), "heavy": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model.onnx"]
