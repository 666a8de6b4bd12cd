"""The few-shot heads behind one protocol and one table; the one normal-class rule, the node
included; the layers of the runtime (runtime < fewshot, no import cycle)."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from node_data import blob_image, write_blob_series  # noqa: E402
from support.models import build_local_model, build_tiny_model  # noqa: E402

from cossl_edge.cli import app  # noqa: E402
from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.fewshot import HEADS, ClassifierError, FewShotClassifier  # noqa: E402
from cossl_edge.fewshot.head import lists_problem  # noqa: E402
from cossl_edge.fewshot.maths import cl2n  # noqa: E402


@dataclass
class NearestMeanHead:
    """A head added in a test: the softmax of minus the Euclidean distance to class means."""

    scale: float = 1.0

    kind: ClassVar[str] = "nearest-mean"
    reads: ClassVar[str] = "embedding"
    maps: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: dict) -> NearestMeanHead:
        return cls(settings.get("scale", 1.0))

    def settings(self) -> dict:
        return {"scale": self.scale}

    def fit(self, x, labels, classes, centering, normal_class):
        y = np.asarray(labels)
        return {"means": [x[y == c].mean(0).tolist() for c in classes]}, None

    def proba(self, params, classes, centering, x):
        d = np.linalg.norm(x[:, None] - np.asarray(params["means"])[None], axis=2)
        e = np.exp(-(d - d.min(1, keepdims=True)) * self.scale)
        return e / e.sum(1, keepdims=True), None

    @staticmethod
    def check(params, classes):
        return lists_problem(params, ("means",))


def test_a_new_head_is_one_class_and_one_line_in_the_table(monkeypatch, tmp_path):
    monkeypatch.setitem(HEADS, NearestMeanHead.kind, NearestMeanHead)  # the one line
    x = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.0, 4.8]])
    clf = FewShotClassifier.fit(x, ["a", "a", "b", "b"], kind="nearest-mean", scale=2.0)
    assert clf.settings == {"scale": 2.0} and clf.reads == "embedding"
    back = FewShotClassifier.load(clf.save(tmp_path / "c.json"))
    assert [p.label for p in back.predict(np.array([[0.1, 0.1], [4.0, 5.0]]))] == ["a", "b"]
    assert np.array_equal(back.predict_proba(x), clf.predict_proba(x))
    (tmp_path / "bad.json").write_text((tmp_path / "c.json").read_text().replace("means", "m"))
    with pytest.raises(ClassifierError, match=r"params must hold the lists \('means',\)"):
        FewShotClassifier.load(tmp_path / "bad.json")


def test_every_head_follows_the_protocol():
    for kind, head in HEADS.items():
        assert head.kind == kind and head.reads in ("embedding", "local_map", "anomaly_map")
        for name in ("from_settings", "settings", "fit", "proba", "check"):
            assert callable(getattr(head, name)), (kind, name)
        assert head.from_settings({}).settings() == head().settings()
    with pytest.raises(ClassifierError, match="classifier must be one of"):
        FewShotClassifier.fit(np.eye(2), ["a", "b"], kind="nope")


def test_the_embedding_heads_apply_cl2n_with_the_recorded_centre():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    clf = FewShotClassifier.fit(x, list("aabbaabb"), kind="proto", temperature=0.5)
    z = cl2n(x, np.asarray(clf.centering, np.float32))
    logits = z @ np.asarray(clf.params["prototypes"], np.float32).T / 0.5
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(clf.predict_proba(x), e / e.sum(1, keepdims=True))


# -- one normal-class rule: fewshot fit and the node ---------------------------------------
def _healthy_folder(root: Path, size: int = 64) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for label, kind in (("healthy", "normal"), ("lesion", "bright")):
        (root / label).mkdir(parents=True)
        for i in range(6):
            img, _ = blob_image(kind, rng, size)
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", ["proto", "local"])
def test_node_serves_a_classifier_fitted_with_normal_class_healthy(tmp_path, kind):
    """Regression: the node took the normal class by its own rule, which knows no
    'healthy', so a classifier fitted with --normal-class healthy lost its series rule."""
    from cossl_edge.node.classify import SeriesClassifier

    contract = PreprocessContract(channels=1, size=32)
    model = (build_local_model(tmp_path / "m.onnx", contract) if kind == "local" else
             build_tiny_model(tmp_path / "m.onnx", contract, dim=16))
    out = tmp_path / "clf.json"
    res = CliRunner().invoke(app, ["fewshot", "fit", str(model),
                                   str(_healthy_folder(tmp_path / "support")), "--out",
                                   str(out), "--classifier", kind,
                                   "--normal-class", "healthy"])
    assert res.exit_code == 0, res.output
    assert FewShotClassifier.load(out).normal_class == "healthy"
    sc = SeriesClassifier(out, threads=1, aggregate="max")
    assert sc.normal == "healthy" and sc.identity["normal_class"] == "healthy"
    files, _ = write_blob_series(tmp_path / "series", ["normal", "bright", "normal"], "h")
    images, series = sc.classify([(f"1.2.{i}", f) for i, f in enumerate(files)])
    p_healthy = [r.probabilities[sc.clf.classes.index("healthy")] for r in images]
    assert series.key_image == images[int(np.argmin(p_healthy))].sop_uid
    with pytest.raises(ValueError, match="'nodule' is not a support class"):
        SeriesClassifier(out, threads=1, normal_class="nodule")


def test_node_folds_class_names_as_fewshot_fit_does(tmp_path):
    from cossl_edge.node.classify import SeriesClassifier

    model = build_tiny_model(tmp_path / "m.onnx", PreprocessContract(channels=1, size=16))
    x = np.random.default_rng(0).normal(size=(6, 16))
    clf = FewShotClassifier.fit(x, ["No Finding"] * 3 + ["nodule"] * 3, kind="proto")
    from cossl_edge.runtime.encoder import Encoder

    enc = Encoder(model, threads=1)
    clf.bind_model(enc.sha256, model, enc.contract.to_dict())
    assert SeriesClassifier(clf.save(tmp_path / "c.json"), threads=1).normal == "No Finding"
    clf = FewShotClassifier.fit(x, ["a"] * 3 + ["b"] * 3, kind="proto")
    clf.bind_model(enc.sha256, model, enc.contract.to_dict())
    assert SeriesClassifier(clf.save(tmp_path / "d.json"), threads=1).normal is None


# -- layers ----------------------------------------------------------------------------------
PACKAGE = ROOT / "cossl_edge"


def _imports(path: Path) -> set[str]:
    """Every cossl_edge module a file imports, lazily inside functions too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {n for n in found if n.startswith("cossl_edge")}


@pytest.mark.parametrize("package, above", [
    ("runtime", ("fewshot", "evaluation", "report", "node", "commands", "training", "export")),
    ("fewshot", ("evaluation", "report", "node", "commands", "training", "export"))])
def test_the_runtime_layers_import_only_downwards(package, above):
    wrong = [f"{p.relative_to(ROOT)} imports {n}" for p in (PACKAGE / package).glob("*.py")
             for n in _imports(p) if any(n.startswith(f"cossl_edge.{a}") for a in above)]
    assert wrong == []


def test_no_import_cycle_through_the_runtime_the_heads_and_the_evaluation():
    """(evaluation.knn ↔ fewshot and fewshot → local → scores → fewshot were cycles.)"""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for pkg in ("runtime", "fewshot", "evaluation")
               for p in (PACKAGE / pkg).glob("*.py")}
    graph = {m: {n for n in _imports(p) if n in modules and n != m}
             for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path + [m, n]
            if n not in state and (cycle := visit(n, path + [m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(modules):
        if m not in state:
            assert visit(m, []) is None
