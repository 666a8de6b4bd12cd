"""Few-shot classifiers, the numpy logistic regression and episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from cossl_edge.evaluation.episodes import (
    EpisodeError,
    binary_auc,
    evaluate_episodes,
    sample_episodes,
)
from cossl_edge.fewshot import ClassifierError, FewShotClassifier, cl2n
from cossl_edge.fewshot.logreg import fit_logistic, predict_logistic_proba


def test_cl2n_centres_and_normalises():
    x = np.array([[4.0, 5.0], [1.0, 1.0]])
    z = cl2n(x, np.array([1.0, 1.0]))
    np.testing.assert_allclose(z[0], [0.6, 0.8], atol=1e-6)
    assert np.all(np.isfinite(z[1]))  # a zero vector after centring stays finite


def test_cl2n_prototypes_on_toy_set():
    # Two clusters that only separate after centring: raw cosine sees both near (10, 10).
    rng = np.random.default_rng(0)
    a = np.array([10.5, 10.0]) + rng.normal(0, 0.05, (5, 2))
    b = np.array([10.0, 10.5]) + rng.normal(0, 0.05, (5, 2))
    x = np.concatenate([a, b])
    labels = ["a"] * 5 + ["b"] * 5
    clf = FewShotClassifier.fit(x, labels, kind="proto", centering=np.array([10.0, 10.0]))
    protos = np.asarray(clf.params["prototypes"])
    np.testing.assert_allclose(protos, [[1.0, 0.0], [0.0, 1.0]], atol=0.15)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-6)
    assert [p.label for p in clf.predict(np.array([[10.6, 10.0], [10.0, 10.6]]))] == ["a", "b"]


@pytest.mark.parametrize("n_classes", [2, 10])
def test_numpy_logreg_agrees_with_sklearn(n_classes):
    x, y = load_digits(n_class=n_classes, return_X_y=True)
    x = x[:300] / 16.0
    y = y[:300]
    w, b = fit_logistic(x, y, n_classes, C=0.5)
    ours = predict_logistic_proba(x, w, b)
    ref = LogisticRegression(C=0.5, tol=1e-8, max_iter=5000).fit(x, y)
    theirs = ref.predict_proba(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert (ours.argmax(1) == ref.predict(x)).mean() == 1.0


def test_abstain_gives_unknown():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    clf = FewShotClassifier.fit(x, ["a", "b"], kind="proto", centering=np.zeros(2),
                                abstain_threshold=0.9)
    sure, unsure = clf.predict(np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert sure.label == "a" and sure.probability > 0.9
    assert unsure.label == "unknown" and unsure.probability == pytest.approx(0.5)
    assert [c for c, _ in unsure.top_k] == ["a", "b"] or [c for c, _ in unsure.top_k] == ["b", "a"]
    assert clf.predict(np.array([[1.0, 1.0]]), abstain_threshold=0.0)[0].label in ("a", "b")


@pytest.mark.parametrize("kind", ["proto", "logreg", "knn"])
def test_save_load_roundtrip_and_model_mismatch(tmp_path, kind):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(2, 1, (6, 4)), rng.normal(-2, 1, (6, 4))])
    labels = ["x"] * 6 + ["y"] * 6
    clf = FewShotClassifier.fit(x, labels, kind=kind, k=3)
    clf.bind_model("a" * 64, "model.onnx", {"size": 16})
    path = clf.save(tmp_path / "clf.json")
    assert json.loads(path.read_text())["schema_version"] == 1
    back = FewShotClassifier.load(path)
    np.testing.assert_allclose(back.predict_proba(x), clf.predict_proba(x), atol=1e-6)
    assert [p.label for p in back.predict(x)] == labels
    back.check_model("a" * 64, "model.onnx")
    with pytest.raises(ClassifierError, match="another model.*refit"):
        back.check_model("b" * 64, "other.onnx", source=path)


def test_load_refuses_non_classifier(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ClassifierError, match="not a cossl-edge classifier"):
        FewShotClassifier.load(bad)


def test_episodes_deterministic_and_disjoint():
    labels = np.repeat(np.arange(5), 7)
    a = sample_episodes(labels, ways=3, shots=2, queries=4, episodes=20, seed=3)
    b = sample_episodes(labels, ways=3, shots=2, queries=4, episodes=20, seed=3)
    c = sample_episodes(labels, ways=3, shots=2, queries=4, episodes=20, seed=4)
    assert all(np.array_equal(s1, s2) and np.array_equal(q1, q2)
               for (s1, q1), (s2, q2) in zip(a, b, strict=True))
    assert any(not np.array_equal(s1, s2) for (s1, _), (s2, _) in zip(a, c, strict=True))
    for s, q in a:
        assert not set(s) & set(q)
        assert len(s) == 6 and len(set(labels[s])) == 3
        assert set(labels[q]) == set(labels[s])
    with pytest.raises(EpisodeError, match="lower --ways"):
        sample_episodes(labels, ways=6, shots=2, queries=4, episodes=1)


def test_binary_auc():
    assert binary_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0], bool)) == 1.0
    assert binary_auc(np.array([0.5, 0.5]), np.array([1, 0], bool)) == 0.5


def test_evaluate_episodes_metrics():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 8))
    x = np.concatenate([c + rng.normal(0, 0.5, (10, 8)) for c in centres])
    labels = np.repeat(["p", "q", "r"], 10)
    res = evaluate_episodes(x, labels, shots=(1, 5), episodes=30, kind="logreg", seed=1)
    five = res["shots"]["5"]
    assert five["accuracy"] > 0.9 and 0 <= five["ci95"] < 0.1
    assert set(five["per_class_recall"]) == {"p", "q", "r"}
    assert "auc" not in five
    noise = evaluate_episodes(rng.normal(size=(30, 8)), labels, shots=(1,), episodes=30,
                              ways=2, seed=1)
    one = noise["shots"]["1"]
    assert 0.3 < one["accuracy"] < 0.7 and 0.0 <= one["auc"] <= 1.0
    again = evaluate_episodes(x, labels, shots=(1, 5), episodes=30, kind="logreg", seed=1)
    assert again == res
