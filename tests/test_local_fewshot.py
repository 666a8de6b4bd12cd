"""The local few-shot classifier on synthetic local maps: memory of local vectors,
calibration, several finding classes, abstention, save/load, the prototype and hybrid
scorings, episodes. Blobs through an ONNX model, heatmaps and the CLI are in
test_local_fewshot_cli.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.episodes import evaluate_episodes
from cossl_edge.fewshot import ClassifierError, FewShotClassifier
from cossl_edge.fewshot.local import normal_class_of

CONTRACT = PreprocessContract(channels=1, size=32)  # what a saved classifier is bound to


# -- synthetic local maps --------------------------------------------------------------------
TISSUES = np.array([[2.0, 1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 2.0, 1.0, 0.0, 1.0],
                    [1.0, 0.0, 0.0, 2.0, 1.0, 1.0]])


def synthetic_maps(rng, n: int, finding: np.ndarray | None, grid=(4, 5)):
    """N×6×h×w maps whose positions each hold one of three 'tissue' vectors plus noise (as a
    real encoder's local vectors cluster by content); with ``finding``, one position per map
    (random, returned) holds that vector instead."""
    kinds = rng.integers(0, len(TISSUES), (n, *grid))
    maps = TISSUES[kinds].transpose(0, 3, 1, 2) + rng.normal(0, 0.1, (n, 6, *grid))
    where = []
    for m in maps:
        r, c = rng.integers(0, grid[0]), rng.integers(0, grid[1])
        if finding is not None:
            m[:, r, c] = finding
        where.append((r, c))
    return maps.astype(np.float32), where


CRACK = np.array([3.0, 0.0, 0.0, 0.0, 0.0, 3.0])
NODULE = np.array([0.0, 3.0, 0.0, 0.0, 3.0, 0.0])


def test_finding_at_one_position_is_found_and_pointed_at():
    rng = np.random.default_rng(0)
    normal, _ = synthetic_maps(rng, 4, None)
    crack, _ = synthetic_maps(rng, 4, CRACK)
    clf = FewShotClassifier.fit(np.concatenate([normal, crack]), ["normal"] * 4 + ["crack"] * 4,
                                kind="local")
    q_normal, _ = synthetic_maps(rng, 10, None)
    q_crack, where = synthetic_maps(rng, 10, CRACK)
    proba, heat = clf.predict_local(np.concatenate([q_normal, q_crack]))
    assert proba.shape == (20, 2) and heat.shape == (20, 4, 5)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    labels = [p.label for p in clf.predict(np.concatenate([q_normal, q_crack]))]
    assert labels == ["normal"] * 10 + ["crack"] * 10
    peaks = [np.unravel_index(h.argmax(), h.shape) for h in heat[10:]]
    assert [(int(r), int(c)) for r, c in peaks] == where
    cal = clf.params["calibration"]
    assert max(cal["normal_evidence"]) < min(cal["finding_evidence"])


def test_several_finding_classes_and_abstain():
    rng = np.random.default_rng(1)
    parts = [synthetic_maps(rng, 3, f)[0] for f in (None, CRACK, NODULE)]
    clf = FewShotClassifier.fit(np.concatenate(parts), ["good"] * 3 + ["crack"] * 3 +
                                ["nodule"] * 3, kind="local", abstain_threshold=0.3)
    assert clf.params["normal_class"] == "good" and clf.classes == ["crack", "good", "nodule"]
    queries = np.concatenate([synthetic_maps(rng, 5, f)[0] for f in (None, CRACK, NODULE)])
    preds = clf.predict(queries)
    assert [p.label for p in preds] == ["good"] * 5 + ["crack"] * 5 + ["nodule"] * 5
    assert all(p.probability > 0.5 for p in preds)
    unsure = clf.predict(queries, abstain_threshold=1.0)
    assert {p.label for p in unsure} == {"unknown"}


def test_one_normal_shot_calibrates_on_its_own_positions():
    rng = np.random.default_rng(2)
    normal, _ = synthetic_maps(rng, 1, None)
    crack, _ = synthetic_maps(rng, 1, CRACK)
    clf = FewShotClassifier.fit(np.concatenate([normal, crack]), ["normal", "crack"],
                                kind="local")
    queries = np.concatenate([synthetic_maps(rng, 5, f)[0] for f in (None, CRACK)])
    assert [p.label for p in clf.predict(queries)] == ["normal"] * 5 + ["crack"] * 5


def test_save_load_roundtrip_model_binding_and_schema(tmp_path):
    rng = np.random.default_rng(3)
    x = np.concatenate([synthetic_maps(rng, 3, f)[0] for f in (None, CRACK)])
    clf = FewShotClassifier.fit(x, ["normal"] * 3 + ["crack"] * 3, kind="local",
                                centering=np.full(6, 0.5))
    clf.bind_model("a" * 64, "model.onnx", CONTRACT.to_dict())
    path = clf.save(tmp_path / "clf.json")
    saved = json.loads(path.read_text())
    assert saved["kind"] == "local" and saved["centering"] == [0.5] * 6
    assert len(saved["params"]["normal_memory"]) == 3 * 20  # every normal position
    back = FewShotClassifier.load(path)
    np.testing.assert_allclose(back.predict_proba(x), clf.predict_proba(x), atol=1e-6)
    with pytest.raises(ClassifierError, match="another model"):
        back.check_model("b" * 64, "other.onnx", source=path)
    del saved["params"]["calibration"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ClassifierError, match="malformed.*calibration"):
        FewShotClassifier.load(path)


def test_normal_class_and_shape_errors():
    assert normal_class_of(["No Finding", "nodule"]) == "No Finding"
    assert normal_class_of(["a", "b"], "b") == "b"
    with pytest.raises(ClassifierError, match="pass --normal-class NAME"):
        normal_class_of(["crack", "dent"])
    with pytest.raises(ClassifierError, match="pass --normal-class NAME"):
        normal_class_of(["normal", "ok", "crack"])
    with pytest.raises(ClassifierError, match="not a support class"):
        normal_class_of(["normal", "crack"], "nodule")
    rng = np.random.default_rng(4)
    x = np.concatenate([synthetic_maps(rng, 2, f)[0] for f in (None, CRACK)])
    clf = FewShotClassifier.fit(x, ["normal"] * 2 + ["crack"] * 2, kind="local")
    with pytest.raises(ClassifierError, match="local maps N×C×h×w"):
        clf.predict_proba(x.mean(axis=(2, 3)))
    with pytest.raises(ClassifierError, match="do not match"):
        clf.predict_proba(x[:, :, :3])
    proto = FewShotClassifier.fit(x.mean(axis=(2, 3)), ["normal"] * 2 + ["crack"] * 2)
    with pytest.raises(ClassifierError, match="--classifier local"):
        proto.predict_local(x)


def test_episodes_keep_the_normal_class():
    rng = np.random.default_rng(5)
    x = np.concatenate([synthetic_maps(rng, 6, f)[0] for f in (None, CRACK, NODULE)])
    labels = ["normal"] * 6 + ["crack"] * 6 + ["nodule"] * 6
    res = evaluate_episodes(x, labels, shots=(1, 3), episodes=8, ways=2, kind="local",
                            queries=3, seed=0)
    three = res["shots"]["3"]
    assert three["accuracy"] > 0.9 and "auc" in three and res["classifier"] == "local"
    assert three["per_class_recall"]["normal"] > 0.9  # in every episode


def test_prototype_scoring_of_a_gem_model_points_at_the_finding(tmp_path):
    """--local-scoring prototype: each local vector against the prototypes of the pooled
    (GeM) support embeddings; the heatmap's maximum is the finding's position."""
    rng = np.random.default_rng(3)

    def maps(n, finding):
        m = np.abs(rng.normal(0.5, 0.1, (n, 6, 5, 5))).astype(np.float32)
        where = []
        for x in m:
            r, c = rng.integers(0, 5, 2)
            if finding:
                x[:, r, c] = [0.2, 0.2, 3.0, 0.2, 3.0, 0.2]
            where.append((r, c))
        return m, where

    normal, _ = maps(5, False)
    finding, _ = maps(5, True)
    clf = FewShotClassifier.fit(np.concatenate([normal, finding]), ["normal"] * 5 +
                                ["defect"] * 5, kind="local", scoring="prototype", pool="gem")
    assert clf.params["scoring"] == "prototype" and set(clf.params["prototypes"]) == \
        {"defect", "normal"}
    qn, _ = maps(10, False)
    qf, where = maps(10, True)
    proba, heat = clf.predict_local(np.concatenate([qn, qf]))
    pred = np.asarray(clf.classes)[proba.argmax(1)]
    assert (pred == np.array(["normal"] * 10 + ["defect"] * 10)).mean() >= 0.9
    assert all(np.unravel_index(h.argmax(), h.shape) == tuple(w)
               for h, w in zip(heat[10:], where, strict=True))
    clf.save(tmp_path / "clf.json")
    again = FewShotClassifier.load(tmp_path / "clf.json")
    np.testing.assert_allclose(again.predict_local(qf)[0], clf.predict_local(qf)[0], atol=1e-3)


def test_hybrid_scoring_is_the_sum_of_both_standardised_scores(tmp_path):
    """--local-scoring hybrid: a(i) = standardised prototype score + standardised distance to
    the nearest normal support vector, both standardised on the normal support images (each
    left out of its own prototype and memory); the decision and the heatmap use that sum."""
    from cossl_edge.fewshot.local import anomaly, local_vectors, prototype_scores

    rng = np.random.default_rng(4)
    normal, _ = synthetic_maps(rng, 4, None)
    crack, where = synthetic_maps(rng, 4, CRACK)
    x = np.abs(np.concatenate([normal, crack]))
    labels = ["normal"] * 4 + ["crack"] * 4
    clf = FewShotClassifier.fit(x, labels, kind="local", scoring="hybrid", pool="gem")
    params = clf.params
    assert params["scoring"] == "hybrid" and len(params["normal_memory"]) == 4 * 20
    q, qwhere = synthetic_maps(rng, 3, CRACK)
    q = np.abs(q)
    proba, heat = clf.predict_local(q)
    z = local_vectors(q, np.asarray(clf.centering, np.float32))
    protos = {c: np.asarray(p, np.float32) for c, p in params["prototypes"].items()}
    (mp, sp), (mm, sm) = params["standardise"]["prototype"], params["standardise"]["memory"]
    expected = (prototype_scores(z, protos, "normal") - mp) / sp + \
        (anomaly(z, np.asarray(params["normal_memory"], np.float32)) - mm) / sm
    np.testing.assert_allclose(heat.reshape(3, -1), expected, atol=1e-4)
    assert sp > 0 and sm > 0 and (proba.argmax(1) == clf.classes.index("crack")).all()
    assert all(np.unravel_index(h.argmax(), h.shape) == tuple(w)
               for h, w in zip(heat, qwhere, strict=True))
    clf.save(tmp_path / "clf.json")
    again = FewShotClassifier.load(tmp_path / "clf.json")
    np.testing.assert_allclose(again.predict_local(q)[0], proba, atol=1e-3)
    broken = json.loads((tmp_path / "clf.json").read_text())
    del broken["params"]["standardise"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ClassifierError, match="standardise"):
        FewShotClassifier.load(tmp_path / "broken.json")
    with pytest.raises(ClassifierError, match="two normal images"):
        FewShotClassifier.fit(x[3:], labels[3:], kind="local", scoring="hybrid")
