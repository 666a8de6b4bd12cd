"""Bad models, classifiers, checkpoints and run files through the CLI (a contract for
another channel count, an ONNX file without its contract, a few-shot JSON for another model
or of the wrong shape, a corrupt or code-carrying checkpoint, a corrupt config.json, a labels
CSV that escapes its folder): each gives one clear line naming the file and the fix, and an
exit code (2); none prints patient data or runs code (the check is
``bad_inputs_support.check_bad_input``). And no user file is unpickled anywhere in the
product. Bad data files and folders are in test_bad_inputs.py.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
from bad_inputs_support import CONTRACT, Case, _embed, _pngs, _pretrain, check_bad_input
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.fewshot import FewShotClassifier


# -- inputs ----------------------------------------------------------------------------------
def _other_model_classifier(tmp: Path, models: dict[str, Path]) -> list[str]:
    clf = FewShotClassifier.fit(np.eye(4)[:2].repeat(2, 0), ["a", "a", "b", "b"])
    clf.bind_model("0" * 64, models["model"], CONTRACT.to_dict())
    clf.save(tmp / "clf.json")
    return ["fewshot", "predict", str(tmp / "clf.json"), str(_pngs(tmp / "data")), "--out",
            str(tmp / "p.csv"), "--model", str(models["model"])]


def _malformed_classifier(tmp: Path, models: dict[str, Path]) -> list[str]:
    (tmp / "clf.json").write_text(json.dumps({"schema_version": 1, "kind": "magic",
                                              "classes": "ab", "params": {}}))
    return ["fewshot", "predict", str(tmp / "clf.json"), str(_pngs(tmp / "data")), "--out",
            str(tmp / "p.csv"), "--model", str(models["model"])]


def _corrupt_checkpoint(tmp: Path, models: dict[str, Path]) -> list[str]:
    first = _pretrain(tmp, _pngs(tmp / "data", 8))
    assert CliRunner().invoke(app, first).exit_code == 0
    ckpt = tmp / "run" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:2000])
    return [*first[:-2], "2", "--quiet", "--resume"]


class _Payload:
    """Unpickling this would run code: it touches a file named by the test."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _resume_args(tmp: Path, checkpoint: object, config_text: str | None = None) -> list[str]:
    """A run directory as pretrain writes it, with the given checkpoint / config.json."""
    import torch

    from cossl_edge.training.config import PretrainConfig

    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = PretrainConfig(arch="resnet10", width=0.125, batch_size=4, contract=CONTRACT)
    config.save(run / "config.json")
    if config_text is not None:
        (run / "config.json").write_text(config_text)
    torch.save(checkpoint, run / "checkpoints" / "last.pt")
    return [*_pretrain(tmp, _pngs(tmp / "data", 8)), "--resume"]


def _pickled_checkpoint(tmp: Path, models: dict[str, Path]) -> list[str]:
    return _resume_args(tmp, {"model": _Payload(tmp / "code-ran")})


def _labels_escaping(tmp: Path, models: dict[str, Path]) -> list[str]:
    support = _pngs(tmp / "support", 4)
    _pngs(tmp / "elsewhere")
    (tmp / "labels.csv").write_text("path,label\nok0.png,a\nok1.png,b\n../elsewhere/ok0.png,b\n")
    return ["fewshot", "fit", str(models["model"]), str(support), "--labels",
            str(tmp / "labels.csv"), "--out", str(tmp / "clf.json")]


def _channels_contract(tmp: Path, models: dict[str, Path]) -> list[str]:
    rgb = PreprocessContract(channels=3, size=16)
    (tmp / "contract.json").write_text(rgb.to_json())
    return _embed(tmp, models, _pngs(tmp / "data"), "--contract", str(tmp / "contract.json"))


CASES: dict[str, Case] = {
    "wrong channel count for the model": Case(
        _channels_contract, 2, ("contract.json", "3 channel", "takes 1")),
    "ONNX file without the contract": Case(
        lambda t, m: ["embed", str(m["bare"]), str(_pngs(t / "data")), "--out",
                      str(t / "e.npz")], 2,
        ("bare.onnx: the model carries no preprocessing contract", "pass --contract FILE")),
    "few-shot JSON for another model": Case(
        _other_model_classifier, 2, ("clf.json: fitted on another model", "refit")),
    "few-shot JSON of the wrong shape": Case(
        _malformed_classifier, 2, ("clf.json: malformed classifier file", "refit")),
    "corrupt checkpoint": Case(_corrupt_checkpoint, 2,
                               ("last.pt: corrupt or unreadable checkpoint", "epoch-*.pt over it")),
    "checkpoint carrying a pickled object": Case(
        _pickled_checkpoint, 2, ("last.pt: corrupt or unreadable checkpoint (Unpickling",)),
    "corrupt config.json on resume": Case(
        lambda t, m: _resume_args(t, {}, "{not json"), 2,
        ("config.json: corrupt run configuration (JSONDecodeError)", "without --resume")),
    "labels CSV path escaping the folder": Case(
        _labels_escaping, 2, ("labels.csv", "line 4", "outside the folder")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, bad_input_models, tmp_path):
    check_bad_input(CASES[name], bad_input_models, tmp_path)


PRODUCT = [Path(__file__).parents[1] / d for d in ("cossl_edge", "training", "export")]


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for folder in PRODUCT:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(name):
                    found.append((path, node))
    return found


def _keyword(call: ast.Call, name: str):
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


def test_no_user_file_is_unpickled():
    """torch.load only with weights_only=True, np.load only with allow_pickle=False, and no
    pickle module at all, anywhere in the product."""
    loads = _calls("torch.load")
    assert loads, "the scan finds nothing: check PRODUCT"
    for path, call in loads:
        assert _keyword(call, "weights_only") is True, f"{path}:{call.lineno}"
    for path, call in _calls("np.load"):
        assert _keyword(call, "allow_pickle") is False, f"{path}:{call.lineno}"
    for folder in PRODUCT:
        for path in folder.rglob("*.py"):
            assert not re.search(r"^\s*(import|from) (c?pickle|dill|joblib)\b",
                                 path.read_text(), re.M), path
