"""`cossl-edge serve` before it listens: its inputs are checked before it creates any folder,
it warns when anyone can reach it, and the renamed options keep their old names hidden.
No network here: the node itself is replaced by a stand-in once the checks have passed."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.fewshot import FewShotClassifier

pytest.importorskip("pynetdicom")  # the node's extra: `serve` says so without it

runner = CliRunner()
ENV = {"COLUMNS": "250"}


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def _classifier(folder, model) -> str:
    x = np.random.default_rng(0).standard_normal((6, 4))
    clf = FewShotClassifier.fit(x, ["normal", "lesion"] * 3, kind="proto")
    clf.bind_model("0" * 64, model, PreprocessContract(channels=1, size=16).to_dict())
    return str(clf.save(folder / "classifier.json"))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty working folder, and a classifier whose model file exists."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    model = tmp_path / "encoder.onnx"
    model.write_bytes(b"stand-in")
    return {"work": work, "model": model, "classifier": _classifier(tmp_path, model)}


@pytest.fixture
def started(monkeypatch):
    """Replace the node by a stand-in that records its settings and returns at once."""
    import cossl_edge.node.server as server

    seen = {}

    class FakeNode:
        def __init__(self, cfg, classifier_file, model=None, echo_log=False):
            seen["cfg"] = cfg

        def serve_forever(self):
            seen["served"] = True

    monkeypatch.setattr(server, "Node", FakeNode)
    return seen


@pytest.mark.parametrize("case", ["missing classifier", "missing model", "missing --model",
                                  "missing rules", "bad rules"])
def test_wrong_inputs_fail_before_any_folder_is_made(case, site, tmp_path, started):
    argv = ["serve", site["classifier"]]
    if case == "missing classifier":
        argv = ["serve", str(tmp_path / "nonexistent.json")]
    elif case == "missing model":
        site["model"].unlink()
    elif case == "missing --model":
        argv += ["--model", str(tmp_path / "other.onnx")]
    elif case == "missing rules":
        argv += ["--rules", str(tmp_path / "rules.json")]
    else:
        (tmp_path / "rules.json").write_text("{not json")
        argv += ["--rules", str(tmp_path / "rules.json")]
    res = runner.invoke(app, argv, env=ENV)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert list(site["work"].iterdir()) == [], "serve made a folder before failing"
    assert "cfg" not in started
    expect = {"missing classifier": "nonexistent.json", "missing model": "encoder.onnx",
              "missing --model": "--model", "missing rules": "rules.json",
              "bad rules": "not a JSON file"}[case]
    assert expect in res.output


def test_warns_when_anyone_can_send(site, started):
    res = runner.invoke(app, ["serve", site["classifier"]], env=ENV)
    assert res.exit_code == 0, res.output
    text = _flat(res.output)
    assert "warning: listening on every network interface (0.0.0.0)" in text
    assert "--host 127.0.0.1" in text
    assert "warning: accepting any calling AE title; --allow AE_TITLE" in text
    assert started["served"]


def test_no_warning_when_limited(site, started):
    res = runner.invoke(app, ["serve", site["classifier"], "--host", "127.0.0.1",
                              "--allow", "CT_SCANNER"], env=ENV)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning")]
    assert len(warnings) == 1 and "plain DICOM (no TLS)" in warnings[0], res.output
    assert started["cfg"].allowed_aes == ("CT_SCANNER",)


def test_eostudy_timeout_and_heatmap_count(site, started):
    res = runner.invoke(app, ["serve", site["classifier"], "--eostudy-timeout", "2.5",
                              "--heatmap-count", "1"], env=ENV)
    assert res.exit_code == 0, res.output
    assert (started["cfg"].quiet_seconds, started["cfg"].heatmaps) == (2.5, 1)
    assert "deprecated" not in res.output
    res = runner.invoke(app, ["serve", site["classifier"]], env=ENV)
    assert (started["cfg"].quiet_seconds, started["cfg"].heatmaps) == (10.0, 4)


def test_old_names_still_work_with_a_warning(site, started):
    res = runner.invoke(app, ["serve", site["classifier"], "--quiet", "3", "--heatmaps", "0"],
                        env=ENV)
    assert res.exit_code == 0, res.output
    assert (started["cfg"].quiet_seconds, started["cfg"].heatmaps) == (3.0, 0)
    text = _flat(res.output)
    assert "--quiet is deprecated and will be removed; use --eostudy-timeout" in text
    assert "--heatmaps is deprecated and will be removed; use --heatmap-count" in text
    help_text = _flat(runner.invoke(app, ["serve", "--help"], env=ENV).output)
    assert "--eostudy-timeout" in help_text and "--heatmap-count" in help_text
    assert "--quiet" not in help_text and "--heatmaps " not in help_text
