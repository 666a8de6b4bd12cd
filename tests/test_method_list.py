"""One method list: a method added there (and its implementation registered) appears in
pretrain --help, in the run's configuration and in the comparison benchmark."""

import importlib
import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cossl_edge.training import method_list, methods
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.method_list import MethodInfo, MethodOption

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_method():
    """A toy method: co-simclr's loss with the local weight scaled by a setting of its own
    (``toy_gain``) that no configuration field has."""
    info = method_list.add_method(MethodInfo(
        "toy", "a toy method that only tests use", 0.3,
        (MethodOption("toy_gain", "Scale of the toy's local weight.", 1.5),
         MethodOption("temperature", "InfoNCE temperature."))))

    @methods.implements("toy")
    class Toy(methods.CoSimCLR):
        def set_progress(self, fraction):
            self.w_s_now = self.w_s * float(self.config.option("toy_gain")) / 2

    yield info
    method_list.remove_method("toy")
    methods.IMPLEMENTATIONS.pop("toy", None)


def _app() -> typer.Typer:
    from cossl_edge.commands import pretrain

    app = typer.Typer()
    pretrain.register(app)
    app.command("noop")(lambda: None)  # two commands: `pretrain` stays a subcommand
    return app


def test_a_listed_method_is_in_pretrain_help(toy_method):
    result = CliRunner().invoke(_app(), ["pretrain", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the table's wrapped lines
    assert "<co-simclr|simclr|co-byol|byol|toy>" in text
    assert "toy: a toy method that only tests use" in text
    assert "--toy-gain <float> Scale of the toy's local weight. (toy) [default: 1.5]" in text


def test_a_listed_method_trains_and_its_settings_reach_the_config(toy_method, shapes_dir,
                                                                  tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), [
        "pretrain", str(shapes_dir), "--out", str(out), "--width", "0.25", "--image-size", "16",
        "--batch-size", "16", "--max-steps", "1", "--quiet", "--no-bf16",
        "--method", "toy", "--toy-gain", "3.0", "--temperature", "0.3"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["method"] == "toy"
    assert saved["method_options"] == {"toy_gain": 3.0}
    assert saved["temperature"] == 0.3 and saved["w_s_resolved"] == 0.3
    assert PretrainConfig.load(out / "config.json").option("toy_gain") == 3.0
    # the default comes from the list; a setting the method lacks is refused
    assert PretrainConfig(method="toy").option("toy_gain") == 1.5
    with pytest.raises(ValueError, match="co-simclr has no setting toy_gain"):
        PretrainConfig(method="co-simclr", method_options={"toy_gain": 1.0}) \
            .check_method_options()
    bad = CliRunner().invoke(_app(), ["pretrain", str(shapes_dir), "--out", str(tmp_path / "x"),
                                      "--method", "co-simclr", "--toy-gain", "2"])
    assert bad.exit_code == 2 and "not a setting of co-simclr" in bad.output


def test_a_listed_method_is_in_the_comparison_benchmark(toy_method, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        compare = importlib.import_module("compare_methods")
        with pytest.raises(SystemExit):
            compare.parse_args(["--help"])
        assert "toy" in capsys.readouterr().out
        args = compare.parse_args(["--methods", "toy", "--set", "toy_gain=2.5"])
        config = compare.base_config("toy", 0, args)
        assert config.method == "toy" and config.option("toy_gain") == 2.5
        # a base method keeps w_s = 0, and a setting it lacks is not handed to it
        assert compare.base_config("simclr", 0, args).method_options == {}
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_every_listed_method_has_an_implementation():
    assert set(method_list.METHODS) <= set(methods.IMPLEMENTATIONS)
    assert method_list.DEFAULT_METHOD in method_list.METHODS
