"""`python -m clinical_examples.demo --tiny` end to end: data, pretraining, two int8 exports,
few-shot against the random-init encoder, classifier files, report, privacy check."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # clinical_examples: a checkout

from clinical_examples import demo  # noqa: E402
from cossl_edge.fewshot import FewShotClassifier  # noqa: E402


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert demo.main(["--tiny", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_tiny_demo_writes_everything(tiny_demo):
    out = tiny_demo
    for run in ("run-pretrained", "run-random-init"):
        assert (out / run / "encoder.int8.onnx").is_file()
    metrics = [json.loads(line) for line in (out / "run-pretrained" / "metrics.jsonl").open()]
    assert metrics[-1]["step"] == demo.DemoSettings.tiny().max_steps
    curves = json.loads((out / "run-pretrained" / "fewshot.json").read_text())["encoders"]
    assert len(curves) == 3 * len(demo.TASKS)  # pretrained, random-init, raw pixels × tasks
    for res in curves.values():
        assert set(res["shots"]) == {"1", "3"}
        assert all(0 <= r["accuracy"] <= 1 for r in res["shots"].values())
    for task in demo.TASKS:
        clf = FewShotClassifier.load(out / "classifiers" / f"{task}.json")
        assert clf.model_path == "encoder.int8.onnx" and len(clf.classes) == 3


@pytest.mark.slow
def test_tiny_demo_report_has_every_section(tiny_demo):
    page = (tiny_demo / "report.html").read_text()
    for key in ("training-curves", "knn-monitor", "embedding-map", "neighbours", "fewshot",
                "export"):
        assert f'<section id="{key}">' in page
    assert "random-init int8 · CT slice triage" in page
    # the map is coloured by the findings of the labelled set
    assert re.search(r"\d+ labelled images", page)


@pytest.mark.slow
def test_no_patient_data_in_artefacts_and_the_check_can_fail(tiny_demo):
    s = demo.DemoSettings.tiny()
    assert demo.privacy_leaks(tiny_demo, tiny_demo / "data", s, 0) == []
    name = demo.phantoms().fake_patient(0, 0).name
    data_files = [p for p in (tiny_demo / "data").rglob("*.dcm")]
    assert any(name.encode() in p.read_bytes() for p in data_files)  # the data does hold it
    leak = tiny_demo / "notes.txt"
    leak.write_text(f"patient {name}")
    try:
        assert demo.privacy_leaks(tiny_demo, tiny_demo / "data", s, 0) == ["notes.txt"]
    finally:
        leak.unlink()


def test_settings_and_headline():
    tiny = demo.DemoSettings.tiny()
    assert tiny.max_steps and tiny.max_steps < 10 and not tiny.latency
    assert demo.DemoSettings().time_budget <= 300  # the demo's pretraining stays ≤ 5 min
    res = {name: {t: {"shots": {"5": {"accuracy": acc}}} for t in demo.TASKS}
           for name, acc in (("co-simclr int8", 0.8), ("random-init int8", 0.5),
                             ("raw pixels", 0.6))}
    h = demo.headline(res, demo.DemoSettings())
    assert h == {"shots": 5, "pretrained": 0.8, "random": 0.5, "raw": 0.6}
